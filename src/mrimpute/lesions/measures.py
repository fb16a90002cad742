"""Measures of lesions in a (synthetic) image: contrast against normal-appearing white matter, and overlap of a
simple hyperintensity segmentation with a lesion mask; `lesion_report` gathers them for add-lesion.

Documented methods (all on RAS+ arrays of one grid):
- white matter: the brightest of three intensity classes of the T1 inside the brain (multi-Otsu thresholds,
  scikit-image), eroded by one voxel; normal-appearing white matter (NAWM): the same computed on the brain minus
  every lesion mask given, dilated by two voxels.
- hyperintensities: brain voxels (brain eroded by two voxels, to drop the bright rim) whose robust z-score
  (median and 1.4826 x MAD of the brain) exceeds `z` (default 3), in connected components of at least
  `min_voxels` voxels (default 5).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from ..errors import InputError

HYPER_Z = 3.0
MIN_COMPONENT_VOXELS = 5


def white_matter(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The brightest of three T1 intensity classes inside the brain, eroded by one voxel."""
    thresholds = threshold_multiotsu(t1[brain], classes=3)
    return ndimage.binary_erosion(brain & (t1 > thresholds[-1]))


def normal_white_matter(t1: np.ndarray, brain: np.ndarray, lesions: list[np.ndarray]) -> np.ndarray:
    """White matter of the brain outside every lesion mask dilated by two voxels (the classes are fitted there)."""
    normal = brain.copy()
    for lesion in lesions:
        normal &= ~ndimage.binary_dilation(lesion, iterations=2)
    return white_matter(t1, normal)


def contrast_ratio(image: np.ndarray, region: np.ndarray, reference: np.ndarray) -> float:
    """Mean intensity inside `region` over the mean inside `reference` (e.g. lesion / NAWM)."""
    if not region.any() or not reference.any():
        raise ValueError("contrast ratio needs non-empty lesion and reference regions")
    return float(image[region].mean() / image[reference].mean())


def hyperintensities(image: np.ndarray, brain: np.ndarray, z: float = HYPER_Z,
                     min_voxels: int = MIN_COMPONENT_VOXELS) -> np.ndarray:
    """Voxels much brighter than the brain's median (robust z > z), in components of >= min_voxels voxels."""
    inner = ndimage.binary_erosion(brain, iterations=2)
    values = image[inner]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median))) or float(values.std()) or 1.0
    bright = inner & ((image - median) / spread > z)
    labels, count = ndimage.label(bright)
    if count == 0:
        return bright
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _ratio(image: np.ndarray, region: np.ndarray, reference: np.ndarray) -> float:
    """Lesion-to-NAWM contrast, NaN where no normal-appearing white matter was found."""
    try:
        return contrast_ratio(image, region, reference)
    except ValueError:
        return float("nan")


def lesion_report(synthetic: np.ndarray, inserted: np.ndarray, brain: np.ndarray, recipient_t1: np.ndarray | None,
                  source_image: np.ndarray | None = None, source_lesion: np.ndarray | None = None,
                  source_brain: np.ndarray | None = None, source_t1: np.ndarray | None = None,
                  recipient_lesion: np.ndarray | None = None) -> dict[str, float]:
    """Contrast of the drawn lesions against normal-appearing white matter (needs the recipient's T1), the same
    for the source's real lesions when given, and the Dice of a hyperintensity segmentation of the synthetic image
    with the mask (the recipient's own lesions, when given, are left out of the segmentation)."""
    inserted = inserted & brain
    if not inserted.any():
        raise InputError("the lesion mask has no voxel inside the brain")
    report: dict[str, float] = {"lesion_voxels": int(inserted.sum())}
    if recipient_t1 is not None:
        own = [recipient_lesion] if recipient_lesion is not None else []
        nawm = normal_white_matter(recipient_t1, brain, [inserted, *own])
        report["synthetic_lesion_to_nawm"] = _ratio(synthetic, inserted, nawm)
    if source_image is not None and source_lesion is not None and source_brain is not None and source_t1 is not None:
        source_nawm = normal_white_matter(source_t1, source_brain, [source_lesion])
        report["real_lesion_to_nawm"] = _ratio(source_image, source_lesion & source_brain, source_nawm)
    segmented = hyperintensities(synthetic, brain)
    if recipient_lesion is not None:  # the recipient's own lesions are not the drawn ones
        segmented &= ~(recipient_lesion & ~inserted)
    report["hyperintense_voxels"] = int(segmented.sum())
    report["dice_hyperintensities_vs_mask"] = dice(segmented, inserted)
    return report
