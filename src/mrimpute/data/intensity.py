"""Foreground masks and the paper's normalisation: divide each volume by its mean intensity over the brain."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FOREGROUND_FRACTION = 1e-3  # of the 99.9th percentile: voxels below count as background


def foreground_mask(data: np.ndarray) -> np.ndarray:
    """Voxels that are part of the (skull-stripped) head: clearly above zero."""
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, dtype=bool)
    threshold = FOREGROUND_FRACTION * float(np.percentile(positive, 99.9))
    return data > threshold


def blur_inside(volume: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma in voxels) of the values inside the mask, normalised by the blurred mask (no fall-off at
    the mask's edge); float64, values outside the mask meaningless."""
    weight = ndimage.gaussian_filter(mask.astype(np.float64), sigma)
    return ndimage.gaussian_filter(np.where(mask, volume, 0.0), sigma) / np.maximum(weight, 1e-12)


def normalise(data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Clip negatives, zero the background, divide by the mean over the mask; returns (volume, factor)."""
    clipped = np.where(mask, np.clip(data, 0.0, None), 0.0).astype(np.float32)
    inside = clipped[mask]
    factor = float(inside.mean()) if inside.size else 0.0
    if not factor > 0.0:
        raise ValueError("the volume has no positive intensity inside the brain mask")
    return clipped / np.float32(factor), factor


def bounding_box(mask: np.ndarray, axes: tuple[int, ...], multiple: int = 4, margin: int = 0) -> list[slice]:
    """Per-axis slices around the mask's foreground along the given axes, grown to a multiple of `multiple`.

    The box may reach beyond the array; callers pad with zeros (see crop_padded).
    """
    box = [slice(0, n) for n in mask.shape]
    for axis in axes:
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo, hi = (int(present[0]) - margin, int(present[-1]) + 1 + margin) if present.size else (0, mask.shape[axis])
        extra = (-(hi - lo)) % multiple
        lo -= extra // 2
        hi += extra - extra // 2
        box[axis] = slice(lo, hi)
    return box


def crop_padded(data: np.ndarray, box: list[slice]) -> np.ndarray:
    """Cut a box out of an array, padding with zeros wherever the box reaches beyond it."""
    pad = [(max(0, -s.start), max(0, s.stop - n)) for s, n in zip(box, data.shape)]
    inner = tuple(slice(max(0, s.start), min(n, s.stop)) for s, n in zip(box, data.shape))
    return np.pad(data[inner], pad) if any(p != (0, 0) for p in pad) else data[inner]


def paste(cropped: np.ndarray, box: list[slice], into: np.ndarray) -> np.ndarray:
    """Write the part of a cropped array that lies inside `into` (the box may reach beyond it) in place, and
    return `into`: the inverse of crop_padded."""
    src = tuple(slice(max(0, -s.start), max(0, -s.start) + min(n, s.stop) - max(0, s.start))
                for s, n in zip(box, into.shape))
    dst = tuple(slice(max(0, s.start), min(n, s.stop)) for s, n in zip(box, into.shape))
    into[dst] = cropped[src]
    return into
