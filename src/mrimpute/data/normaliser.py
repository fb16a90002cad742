"""One intensity normaliser for training and synthesis alike.

Background is the volume's exterior: the voxels near the border's own level (its mode when the border is one
constant value, as in skull-stripped or z-scored volumes, else its median) that are connected to the border, so a
z-scored brain's negative half and dark ventricles stay brain. Each step after that is equivariant to a positive
affine rescaling a*x + b of the volume, so the normalised result does not depend on the intensity convention:

- encoder inputs: the brain's 0.5th percentile is the zero, voxels above p99.9 + (p99.9 - p0.5) are clipped
  (saturated voxels), then the brain's mean is 1;
- decoder targets keep the paper's units (Chartsias et al.): clipped at 0 and at the same outlier limit, brain
  mean 1 (scanner-scale data only: targets come from training and evaluation subjects).

Checkpoints say which normaliser they were trained with (`NORMALISER` in their metadata); models trained before
this one (no such entry) keep the paper's plain brain-mean division (`legacy_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NORMALISER = "robust-exterior-v1"
LEGACY_NORMALISER = "brain-mean-v0"
DESCRIPTION = {
    NORMALISER: "background = the exterior connected to the border; inputs: brain p0.5 -> 0, clip above "
                "p99.9 + (p99.9 - p0.5), brain mean 1; targets: clipped to [0, that limit], brain mean 1",
    LEGACY_NORMALISER: "each volume / its mean over the brain (negatives clipped to 0, background 0)",
}
# how close to the border's level background may be, as a share of the robust intensity range: a constant border
# (skull-stripped, z-scored with a constant background) is matched almost exactly, a noisy one (air) loosely
CONSTANT_BORDER_TOLERANCE, NOISY_BORDER_TOLERANCE = 1e-3, 0.01
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.9
SPECK_FRACTION = 0.01  # foreground components smaller than this share of the largest are noise in the air
HEAD_LITRES = 2.1  # more foreground than this is a head (skull-stripped brains hold 1.0-1.8 litres)
LEGACY_FOREGROUND_FRACTION = 1e-3
HANDLED = "; normalised from the brain's own range"  # how a finding about an unusual convention ends


@dataclass(frozen=True)
class Scaling:
    """How one volume was put into model units."""

    zero: float  # the input value that becomes 0 (the brain's 0.5th percentile)
    limit: float  # values above are clipped (outliers)
    scale: float  # the brain's mean after shifting by zero and clipping: inputs are divided by it
    target_scale: float  # the brain's mean of the volume clipped to [0, limit]: targets are divided by it
    clipped: int = 0  # voxels of the brain above the limit
    peak: float = 0.0  # the brain's largest value

    def as_dict(self) -> dict:
        return {k: round(float(v), 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _border_values(data: np.ndarray) -> np.ndarray:
    faces = []
    for axis in range(data.ndim):
        faces += [np.take(data, 0, axis=axis).ravel(), np.take(data, -1, axis=axis).ravel()]
    return np.concatenate(faces)


def border_level(data: np.ndarray) -> tuple[float, bool]:
    """The background's level and whether the border is constant: its most common value when that holds most of
    the border, else its median."""
    border = _border_values(data)
    values, counts = np.unique(border, return_counts=True)
    top = int(np.argmax(counts))
    constant = bool(counts[top] >= 0.5 * border.size)
    return (float(values[top]) if constant else float(np.median(border))), constant


def exterior(data: np.ndarray) -> np.ndarray:
    """Background: voxels near the border's level (see the tolerances), connected to the volume's border."""
    level, constant = border_level(data)
    high = float(np.percentile(data, HIGH_PERCENTILE))
    if high <= level:  # the border holds the brightest tail: take the largest value instead
        high = float(data.max())
    tolerance = CONSTANT_BORDER_TOLERANCE if constant else NOISY_BORDER_TOLERANCE
    candidate = data <= level + tolerance * (high - level)
    labels, _ = ndimage.label(candidate)
    touching = np.unique(_border_values(labels))
    return np.isin(labels, touching[touching > 0])


def foreground(data: np.ndarray) -> np.ndarray:
    """The head or brain: everything but the exterior, without specks of noise in the air."""
    mask = ~exterior(data)
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= SPECK_FRACTION * sizes.max()) + 1
    return np.isin(labels, keep)


def scaling(data: np.ndarray, brain: np.ndarray) -> Scaling:
    """Robust statistics of the brain's intensities (raises ValueError when the brain has no contrast)."""
    inside = data[brain].astype(np.float64)
    if inside.size == 0:
        raise ValueError("no brain voxels to normalise")
    low, high = np.percentile(inside, [LOW_PERCENTILE, HIGH_PERCENTILE])
    limit = high + (high - low)
    clipped = np.clip(inside, low, limit)
    scale = float((clipped - low).mean())
    if not scale > 0.0:
        raise ValueError("the brain has no contrast (constant intensity)")
    target_scale = float(np.clip(inside, 0.0, limit).mean())
    return Scaling(float(low), float(limit), scale, target_scale, int((inside > limit).sum()), float(inside.max()))


def as_input(data: np.ndarray, brain: np.ndarray, s: Scaling) -> np.ndarray:
    """Encoder units: (clip(x, zero, limit) - zero) / scale inside the brain, 0 outside."""
    values = (np.clip(data, s.zero, s.limit) - s.zero) / s.scale
    return np.where(brain, values, 0.0).astype(np.float32)


def as_target(data: np.ndarray, brain: np.ndarray, s: Scaling) -> np.ndarray:
    """The paper's units: clip(x, 0, limit) / target_scale inside the brain, 0 outside."""
    scale = s.target_scale if s.target_scale > 0 else s.scale
    return np.where(brain, np.clip(data, 0.0, s.limit) / scale, 0.0).astype(np.float32)


def findings(data: np.ndarray, brain: np.ndarray, s: Scaling, voxel_ml: float) -> list[str]:
    """What a user should hear about an input: an unusual intensity convention, a head, extreme outliers."""
    notes = []
    inside = data[brain]
    below = float((inside < 0).mean()) if inside.size else 0.0
    level, _ = border_level(data)
    if below > 0.1 and level < 0:
        notes.append(f"looks z-scored ({below:.0%} of the brain below 0, background {level:.3g}){HANDLED}")
    elif np.issubdtype(data.dtype, np.floating) and data.min() >= 0 and data.max() <= 1.0:
        notes.append(f"looks min-max scaled (values within 0-1){HANDLED}")
    litres = float(brain.sum()) * voxel_ml / 1000.0
    if litres > HEAD_LITRES:
        notes.append(f"looks like a head, not a brain ({litres:.1f} litres of foreground; brains are 1.0-1.8): the "
                     "model expects skull-stripped inputs (use --skull-strip)")
    spread = s.limit - s.zero
    if s.clipped and s.peak > s.limit + spread:
        notes.append(f"{s.clipped} outlier voxel(s) above {s.limit:.4g} (up to {s.peak:.4g}) clipped")
    return notes


def legacy_foreground(data: np.ndarray) -> np.ndarray:
    """The first models' foreground: voxels above 1e-3 of the positive voxels' 99.9th percentile."""
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, dtype=bool)
    return data > LEGACY_FOREGROUND_FRACTION * float(np.percentile(positive, 99.9))


def legacy_scaling(data: np.ndarray, brain: np.ndarray) -> Scaling:
    """The first models' normalisation as a Scaling: negatives to 0, divided by the brain's mean."""
    inside = np.clip(data[brain], 0.0, None)
    factor = float(inside.mean()) if inside.size else 0.0
    if not factor > 0.0:
        raise ValueError("the volume has no positive intensity inside the brain mask")
    peak = float(data.max())
    return Scaling(0.0, max(peak, 0.0), factor, factor, 0, peak)


@dataclass(frozen=True)
class Normaliser:
    """A normaliser by name: the foreground finder and the scaling rule of a checkpoint's training."""

    name: str = NORMALISER

    @property
    def legacy(self) -> bool:
        return self.name == LEGACY_NORMALISER

    def foreground(self, data: np.ndarray) -> np.ndarray:
        return legacy_foreground(data) if self.legacy else foreground(data)

    def scaling(self, data: np.ndarray, brain: np.ndarray) -> Scaling:
        return legacy_scaling(data, brain) if self.legacy else scaling(data, brain)

    def describe(self) -> str:
        return DESCRIPTION[self.name]


def normaliser_for(metadata: dict) -> Normaliser:
    """The normaliser a checkpoint was trained with (models without the entry predate it: the legacy one)."""
    name = metadata.get("normaliser", LEGACY_NORMALISER) if isinstance(metadata, dict) else LEGACY_NORMALISER
    if name not in DESCRIPTION:
        raise ValueError(f"unknown normaliser '{name}'")
    return Normaliser(name)
