"""Bring a lesion mask onto another subject's grid: as it is when it already lies there, otherwise through a rigid
registration of the image it was drawn on (the `preprocess` SimpleITK code) and nearest-neighbour resampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.nifti import AFFINE_TOLERANCE_MM, Volume, canonical_affine, check_same_grid, load_volume
from ..preprocess import spatial
from .masks import binarise


@dataclass
class TransferredMask:
    """A binary lesion mask (RAS+) on the target's grid, and what was done to put it there."""

    mask: np.ndarray
    how: str


def _same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=AFFINE_TOLERANCE_MM)


def _image(volume: Volume):
    """The volume as a SimpleITK image (RAS+ array, world geometry from its affine)."""
    return spatial.image_from_array(volume.data, canonical_affine(volume))


def transfer_lesion_mask(mask_path: Path, target: Volume, mask_reference: Path | None = None,
                         seed: int = 0) -> TransferredMask:
    """The lesion mask on the target's grid: as is when it already lies there; otherwise resampled (nearest
    neighbour) through a rigid registration of `mask_reference` (the image the mask was drawn on) onto the
    target."""
    mask_volume = load_volume(mask_path)
    mask = binarise(mask_volume.data, mask_path)
    if _same_grid(mask_volume, target):
        return TransferredMask(mask, f"{mask_path.name} lies on the grid of {target.path.name}: used as is")
    if mask_reference is None:
        raise InputError(f"{mask_path}: lesion mask grid {mask_volume.shape} differs from {target.path} "
                         f"{target.shape}; give --lesion-ref (the image the mask was drawn on) to register it")
    reference = load_volume(mask_reference)
    check_same_grid([reference, mask_volume])
    # rigid: on this project's MNI-space subjects and atlas, Mattes-MI affine drifted into shear and scale
    # (ms19 onto the ICBM atlas: +83% lesion volume) while rigid stays near the true, identity, alignment
    result = spatial.register(_image(target), _image(reference), None, affine=False, seed=seed)
    mask_image = spatial.image_from_array(mask.astype(np.float32), mask_volume.affine)
    moved = spatial.resample(mask_image, _image(target), result.transform, nearest=True)
    resampled = spatial.array_from_image(moved) > 0.5
    if not resampled.any():
        raise InputError(f"{mask_path}: no lesion voxel lands inside {target.path} after registration")
    return TransferredMask(resampled, f"registered {reference.path.name} onto {target.path.name} (rigid, Mattes MI "
                                      f"{result.metric:.3f}) and resampled {mask_path.name} by nearest neighbour")
