"""Training augmentation on a batch of crops, as batched tensor operations.

Spatial (every plane of a sample alike): a small rotation and scaling, sometimes a smooth elastic displacement.
Intensity (each encoder input on its own; decoder targets and lesion masks never): gamma, a brightness factor, a
smooth multiplicative bias field, Gaussian noise — the nnU-Net default set, at ranges suited to brain-mean units.
Every random number is drawn from the caller's numpy generator, so a seeded run (and every process of a
distributed one) repeats exactly. Written here rather than with TorchIO or MONAI: their transforms take one subject
per call, where a training step here holds 16 crops of up to 8 planes each.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = ("intensity", "spatial")


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations run and their ranges (probabilities are per sample)."""

    intensity: bool = False
    spatial: bool = False
    rotation_deg: float = 12.0
    scale: tuple[float, float] = (0.88, 1.12)
    elastic_px: float = 2.0  # standard deviation of the displacement at a 4 x 4 control grid
    gamma: tuple[float, float] = (0.7, 1.5)
    brightness: tuple[float, float] = (0.9, 1.1)
    bias: float = 0.3  # largest coefficient of the bias field's quadratic log-polynomial
    noise: float = 0.03  # largest noise standard deviation (brain-mean units)
    probability: float = 0.5

    @property
    def active(self) -> bool:
        return self.intensity or self.spatial

    def margin(self, crop: int) -> int:
        """Extra pixels each side a crop needs so that a rotated, shrunk view stays inside it."""
        if not self.spatial:
            return 0
        reach = crop / 2 * math.sqrt(2) / self.scale[0] + 3 * self.elastic_px
        return int(math.ceil(reach - crop / 2)) + 2


def parse_augmentations(text: str) -> Augmentation:
    """'intensity,spatial' (or a part, or '' / 'none') as an Augmentation."""
    names = [p.strip() for p in text.split(",") if p.strip() and p.strip() != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation '{unknown[0]}': expected {', '.join(AUGMENTATIONS)} or none")
    return Augmentation(intensity="intensity" in names, spatial="spatial" in names)


@functools.lru_cache(maxsize=8)
def _bias_basis(size: int) -> torch.Tensor:
    """The quadratic polynomials x, y, x^2, xy, y^2 on a size x size grid in [-1, 1] (5, size, size)."""
    axis = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y, x * x - 1 / 3, x * y, y * y - 1 / 3])


def _spatial(aug: Augmentation, planes: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """planes: (P, B, S, S) with S >= crop -> (P, B, crop, crop), resampled by a per-sample rotation and scale."""
    count, batch, size = planes.shape[0], planes.shape[1], planes.shape[-1]
    apply = rng.random(batch) < aug.probability
    angle = np.where(apply, np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg, batch)), 0.0)
    zoom = np.where(apply, rng.uniform(*aug.scale, batch), 1.0)
    elastic = (rng.random(batch) < aug.probability * 0.4) & apply
    control = rng.standard_normal((batch, 2, 4, 4)) * aug.elastic_px * elastic[:, None, None, None]
    ratio = crop / size / zoom
    cos, sin = np.cos(angle) * ratio, np.sin(angle) * ratio
    theta = torch.tensor(np.stack([np.stack([cos, -sin, np.zeros(batch)], 1), np.stack([sin, cos, np.zeros(batch)], 1)],
                                  1), dtype=planes.dtype, device=planes.device)
    grid = F.affine_grid(theta, [batch, count, crop, crop], align_corners=False)
    if elastic.any():
        shift = torch.tensor(control * 2.0 / size, dtype=planes.dtype, device=planes.device)
        grid = grid + F.interpolate(shift, size=(crop, crop), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    moved = F.grid_sample(planes.transpose(0, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved.transpose(0, 1)


def _intensity(aug: Augmentation, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """image: (B, H, W) in brain-mean units, background 0 -> the same with per-sample intensity changes in the brain."""
    batch, size = image.shape[0], image.shape[-1]
    brain = image > 0

    def per_sample(values: np.ndarray, neutral: float) -> torch.Tensor:
        chosen = np.where(rng.random(batch) < aug.probability, values, neutral)
        return torch.tensor(chosen, dtype=image.dtype, device=image.device).view(batch, 1, 1)

    gamma = per_sample(np.exp(rng.uniform(np.log(aug.gamma[0]), np.log(aug.gamma[1]), batch)), 1.0)
    gain = per_sample(rng.uniform(*aug.brightness, batch), 1.0)
    coefficients = rng.uniform(-aug.bias, aug.bias, (batch, 5)) * (rng.random((batch, 1)) < aug.probability)
    field = torch.exp(torch.einsum("bk,khw->bhw", torch.tensor(coefficients, dtype=image.dtype, device=image.device),
                                   _bias_basis(size).to(image)))
    sigma = per_sample(rng.uniform(0.0, aug.noise, batch), 0.0)
    noise = torch.tensor(rng.standard_normal(image.shape), dtype=image.dtype, device=image.device) * sigma
    changed = image.clamp(min=0).pow(gamma) * gain * field + noise
    return torch.where(brain, changed.clamp(min=0), image)


def augment(aug: Augmentation, planes: torch.Tensor, names: list[str], inputs: list[str], crop: int,
            rng: np.random.Generator) -> torch.Tensor:
    """Augment a batch (planes, batch, S, S); `inputs` names the planes that get intensity changes; returns the
    planes cut to crop x crop (the centre when there is no spatial augmentation). A plane named 'lesion' stays
    binary."""
    if aug.spatial:
        planes = _spatial(aug, planes, crop, rng)
        if "lesion" in names:
            index = names.index("lesion")
            planes[index] = (planes[index] > 0.5).to(planes.dtype)
    elif planes.shape[-1] != crop:
        start = (planes.shape[-1] - crop) // 2
        planes = planes[..., start : start + crop, start : start + crop]
    if aug.intensity:
        planes = planes.clone()
        for name in inputs:
            index = names.index(name)
            planes[index] = _intensity(aug, planes[index], rng)
    return planes.contiguous()
