"""Brain extraction (skull strip) of a T1-weighted scan with deepbet, and applying its mask to co-registered scans.

Method: deepbet (Fisch et al. 2024, "deepbet: Fast brain extraction of T1-weighted MRI using Convolutional Neural
Networks", Computers in Biology and Medicine; MIT licence; https://github.com/wwu-mmll/deepbet). Its two CNNs (a
bounding-box model at 128^3 and a mask model at 256^3, TorchScript) ship inside its wheel: nothing is downloaded at
run time and it runs on the CPU (a few seconds a scan). It was trained on T1-weighted heads, so the mask is computed
on the T1 input (else the contrast-enhanced T1), resampled to 1 mm isotropic first when its voxels are not about
1 mm (thick clinical slices), and the mask is taken back onto the scan's grid (linear interpolation of the binary
mask, > 0.5). The mask is then applied to every co-registered input. Measured against an independent mask: see
benchmarks/brain_extraction.py.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, MrimputeError
from . import spatial

SOURCES = ("t1", "t1c")  # the contrasts deepbet is meant for, in order of preference
ISO_TOLERANCE_MM = 0.15  # voxels within this of 1 mm on every axis are used as they are
MIN_BRAIN_ML = 300.0  # less brain than this is a failed extraction (an adult brain holds 1000-1800 ml)


class BrainExtractionUnavailable(MrimputeError):
    """deepbet is not installed."""


def method(source: str) -> str:
    """The method as recorded in manifests and sidecars."""
    return (f"deepbet {_version()} (Fisch et al. 2024; CNN weights shipped in its wheel) on the {source} scan "
            "at 1 mm, mask taken back to the grid and applied to every input")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("deepbet")
    except Exception:  # not installed: reported when it is used
        return "(not installed)"


def choose_source(inputs: dict[str, object], where: str | Path = "--skull-strip") -> str:
    """The input to compute the brain mask on (T1, else T1c); refuse when there is none."""
    for name in SOURCES:
        if name in inputs:
            return name
    raise InputError(f"{where}: --skull-strip needs a T1-weighted input (--t1 or --t1c): its brain extraction "
                     f"(deepbet) works on T1-weighted scans; given: {', '.join(inputs) or 'none'}")


@functools.lru_cache(maxsize=2)
def _extractor(use_gpu: bool = False):
    try:
        from deepbet import BrainExtraction
    except ImportError as exc:
        raise BrainExtractionUnavailable(f"deepbet: brain extraction needs the deepbet package ({exc}); "
                                         "install it with `pip install deepbet`") from None
    import warnings

    with warnings.catch_warnings():  # torch.jit.load's deprecation notice is deepbet's, not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        return BrainExtraction(no_gpu=not use_gpu)


def brain_mask_image(image: sitk.Image, where: str | Path = "input", use_gpu: bool = False) -> sitk.Image:
    """A uint8 brain mask (1 = brain) of a T1-weighted head on the image's own grid."""
    import nibabel as nib

    image = sitk.Cast(image, sitk.sitkFloat32)
    resampled = max(abs(s - 1.0) for s in image.GetSpacing()) > ISO_TOLERANCE_MM
    work = spatial.resample(image, spatial.isotropic_grid(image, 1.0)) if resampled else image
    data = spatial.array_from_image(work).astype(np.float32)
    affine = spatial.affine_of(work)
    try:
        _, mask_image, _ = _extractor(use_gpu).run(nib.Nifti1Image(data, affine))
    except (AssertionError, ValueError, IndexError) as exc:  # deepbet asserts when it finds no foreground
        raise InputError(f"{where}: brain extraction found no brain ({exc or type(exc).__name__})") from None
    mask = np.asarray(mask_image.dataobj) > 0
    while mask.ndim > 3:
        mask = mask[..., 0]
    if resampled:
        back = spatial.resample(spatial.image_from_array(mask.astype(np.float32), affine), image)
        mask = spatial.array_from_image(back) > 0.5
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    if mask.sum() * voxel_ml < MIN_BRAIN_ML:
        raise InputError(f"{where}: brain extraction found only {mask.sum() * voxel_ml:.0f} ml of brain (an adult "
                         f"brain holds 1000-1800 ml): is it a T1-weighted head scan?")
    out = spatial.image_from_array(mask.astype(np.float32), spatial.affine_of(image))
    return sitk.Cast(out > 0.5, sitk.sitkUInt8)


def brain_mask_array(data_ras: np.ndarray, affine_ras: np.ndarray, where: str | Path = "input",
                     use_gpu: bool = False) -> np.ndarray:
    """brain_mask_image for a voxel array indexed [i, j, k] with its voxel-to-world affine: a bool array."""
    mask = brain_mask_image(spatial.image_from_array(data_ras, affine_ras), where, use_gpu)
    return spatial.array_from_image(mask) > 0


def apply_mask(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero outside the brain (or the brain's minimum when it holds negative values, e.g. z-scored input, so that
    the background stays the volume's lowest constant value)."""
    inside = data[mask]
    fill = min(0.0, float(inside.min())) if inside.size else 0.0
    return np.where(mask, data, np.float32(fill)).astype(np.float32)


def strip_volumes(volumes: dict, use_gpu: bool = False) -> tuple[dict, np.ndarray, str]:
    """Skull-strip co-registered Volumes (RAS+ data): the mask from T1 (else T1c), applied to every one.
    Returns the stripped volumes, the mask and the method."""
    from ..io.nifti import canonical_affine

    source = choose_source(volumes, next(iter(volumes.values())).path if volumes else "--skull-strip")
    reference = volumes[source]
    mask = brain_mask_array(reference.data, canonical_affine(reference), reference.path, use_gpu)
    stripped = {name: replace(volume, data=apply_mask(volume.data, mask)) for name, volume in volumes.items()}
    return stripped, mask, method(source)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float(np.logical_and(a, b).sum()) / total if total else 0.0


def atlas_reference_mask(gm: np.ndarray, wm: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """An independent brain mask from tissue probability maps: GM + WM > threshold (maps scaled to 0-1 by their
    maximum when stored as 0-255), largest component, holes filled (ventricles, CSF inside the brain)."""
    from scipy import ndimage

    scale = max(float(gm.max()), float(wm.max()), 1.0) if max(gm.max(), wm.max()) > 1.0 else 1.0
    mask = (gm.astype(np.float32) + wm.astype(np.float32)) / scale > threshold
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(sizes.argmax())
    return ndimage.binary_fill_holes(mask)
