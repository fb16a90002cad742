"""Lesion masks: which file of a subject is its mask, and how any mask becomes a binary array on a grid.

A mask is binarised by one documented rule: a label map (every value a whole number, e.g. BraTS labels 1, 2, 3)
counts every non-zero label as lesion; a probability map (fractional values in [0, 1]) counts voxels >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.nifti import Volume, check_same_grid, load_volume

EXPERT, PREDICTED = "lesion", "lesion_predicted"
LESION_SOURCES: dict[str, tuple[str, ...]] = {
    "expert": (EXPERT,),                 # only expert masks; a subject without one has no lesion
    "either": (EXPERT, PREDICTED),       # the expert mask, else a segmentation model's
    "predicted": (PREDICTED, EXPERT),    # the segmentation model's mask, else the expert one
}
PROBABILITY_THRESHOLD = 0.5


def binarise(data: np.ndarray, path: Path | str) -> np.ndarray:
    """A boolean lesion mask from a label map (non-zero) or a probability map (>= 0.5)."""
    if not np.isfinite(data).all():
        raise InputError(f"{path}: lesion mask has NaN or infinite values")
    if (data < 0).any():
        raise InputError(f"{path}: lesion mask has negative values; expected labels or probabilities")
    whole = np.allclose(data, np.round(data), atol=1e-4)
    if not whole and data.max() > 1.0 + 1e-4:
        raise InputError(f"{path}: lesion mask has fractional values above 1; expected labels or probabilities")
    return data > 0.5 if whole else data >= PROBABILITY_THRESHOLD


def load_lesion_mask(path: Path | str, reference: Volume) -> np.ndarray:
    """A binary lesion mask (RAS+) that must lie on the reference volume's grid."""
    mask = load_volume(path)
    if mask.shape != reference.shape:
        raise InputError(f"{path}: lesion mask has shape {mask.shape} but {reference.path} has {reference.shape}; "
                         "a mask from another subject needs resampling (mrimpute add-lesion does it)")
    check_same_grid([reference, mask])
    return binarise(mask.data, path)


def lesion_file(masks: dict[str, Path], source: str) -> Path | None:
    """The subject's lesion mask file for a source ('expert', 'either', 'predicted'); None means no lesion."""
    if source not in LESION_SOURCES:
        raise InputError(f"unknown lesion mask source '{source}': expected one of {', '.join(LESION_SOURCES)}")
    return next((masks[name] for name in LESION_SOURCES[source] if name in masks), None)
