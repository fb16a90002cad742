"""A head (foreground) mask computed from one scan.

Method (documented, deterministic): the lower of two Otsu thresholds (three classes) of the scan (a light Gaussian
smoothing first), the largest 3D connected component, a morphological closing (radius ~3 mm, rounded to voxels per
axis), then 3D hole filling
and 2D hole filling slice by slice along the coarsest axis. This is a HEAD / FOREGROUND mask: it contains skull,
scalp and any tissue brighter than the background. It is NOT a skull strip; "--skull-strip" with a computed mask
only removes the background (air, noise). Give a true brain mask with --mask for a real skull strip.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

MASK_METHOD = ("head/foreground mask (not a skull strip): lower three-class Otsu threshold of the smoothed reference, "
               "largest connected component, morphological closing (3 mm), hole filling")


def head_mask(image: sitk.Image, closing_mm: float = 3.0) -> sitk.Image:
    """A uint8 head/foreground mask (1 inside) on the image's grid; see the module docstring for the method."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    spacing = np.array(image.GetSpacing())
    smoothed = sitk.SmoothingRecursiveGaussian(image, float(max(spacing.min(), 1.0)))
    # three-class Otsu (background / darker tissue / brighter tissue): the lower threshold separates the
    # background from every tissue, where a two-class Otsu may cut between dark and bright tissue
    classes = sitk.OtsuMultipleThresholds(smoothed, numberOfThresholds=2, numberOfHistogramBins=128)
    otsu = sitk.Cast(classes >= 1, sitk.sitkUInt8)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(otsu), sortByObjectSize=True)
    largest = sitk.Equal(components, 1)
    radius = [max(1, round(closing_mm / s)) for s in spacing]
    radius = [min(r, 5) for r in radius]
    closed = sitk.BinaryMorphologicalClosing(largest, radius, sitk.sitkBall, 1)
    filled = sitk.BinaryFillhole(closed, fullyConnected=False, foregroundValue=1)
    # 2D hole filling slice by slice along the coarsest axis (open ventricles in thick slices)
    array = sitk.GetArrayFromImage(filled).astype(bool)  # z, y, x
    axis = 2 - int(np.argmax(spacing))
    try:
        from scipy import ndimage
        array = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(array, axis, 0)])
        array = np.moveaxis(array, 0, axis)
    except ImportError:  # scipy is optional: the 3D filling above is kept
        pass
    mask = sitk.GetImageFromArray(array.astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def dice(a: sitk.Image, b: sitk.Image) -> float:
    """Dice overlap of two masks on one grid (0 when both are empty)."""
    x = sitk.GetArrayFromImage(a) > 0
    y = sitk.GetArrayFromImage(b) > 0
    total = int(x.sum()) + int(y.sum())
    return 2.0 * float(np.logical_and(x, y).sum()) / total if total else 0.0
