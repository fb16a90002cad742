"""Rigid registration by mutual information, searched on the metric's values (no gradients).

Why not SimpleITK's own optimisers: on the open_ms scans (0.5-0.9 mm in-plane, 3-4 mm slices) its regular-step
gradient descent on Mattes MI stopped wherever its step shrank ("step too small" after ~15 iterations at a level),
up to 0.9 mm from the metric's optimum and even at a worse metric than the header's alignment, because the metric's
gradient (from a gradient image of the moving scan) is not the derivative of the value it reports. The Amoeba and
Powell optimisers of SimpleITK, driven through its parameter scales, did not move the rotations at all. So the
search here only compares metric values:

- levels: both scans block-averaged (BinShrink) to about 8, 4 and 2 mm per axis; thick slices are never
  interpolated finer than they were acquired;
- the metric: minus the mutual information of a 32-bin joint histogram (each scan's 0.5-99.5 percentile range,
  smoothed by a one-bin Gaussian) between the fixed level's voxels inside its head mask dilated by 6 mm (a seeded
  random subset of at most 60,000 at the finest level) and the moving level interpolated trilinearly at the
  transformed points; points falling outside the moving scan are left out (with fewer than 10% inside, the metric
  is 0: no information). The mask keeps the air (noise only) from flattening the metric;
- the search: a compass (pattern) search over the six Euler parameters in millimetres (a rotation counts as its
  arc at 80 mm from the centre): each parameter is tried one step up and down, a successful sweep is extended
  once along its direction, a sweep without success halves the step; 4 -> 0.5 mm at 8 mm, 1 -> 0.25 mm at 4 mm,
  0.5 -> 0.05 mm at 2 mm;
- starts: the headers as they are, the fields of view's centres and the intensities' centres of mass; each is
  searched at the coarsest level and the best metric is kept for the finer levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from . import brainmask

ARC_RADIUS_MM = 80.0
BINS = 32
MASK_DILATION_MM = 6.0
STARTS = ("GEOMETRY", "MOMENTS", "HEADER")


@dataclass(frozen=True)
class Level:
    voxel_mm: float          # target block size
    first_step_mm: float
    last_step_mm: float
    max_points: int | None   # a seeded random subset of the masked voxels, or all of them


LEVELS = (Level(8.0, 4.0, 0.5, None), Level(4.0, 1.0, 0.25, None), Level(2.0, 0.5, 0.05, 60_000))
MIN_LEVEL_VOXELS = 8  # a level whose fixed image is thinner than this along an axis is skipped (small scans)
MIN_OVERLAP_POINTS, MIN_OVERLAP_FRACTION = 100, 0.1  # fewer metric points inside the moving scan: metric 0


def shrink(image: sitk.Image, voxel_mm: float) -> sitk.Image:
    """The image block-averaged to about `voxel_mm` along each axis (axes already that coarse are kept)."""
    factors = [max(1, int(np.floor(voxel_mm / s + 0.5))) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _bin_range(values: np.ndarray) -> tuple[float, float]:
    """The lower edge of the first bin and bins per intensity unit: the 0.5-99.5 percentile range in BINS bins."""
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(BINS / max(float(high - low), 1e-6))


def trilinear(volume: np.ndarray, index_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of a [k, j, i] array at continuous (i, j, k) indices, and which indices fall inside it."""
    nz, ny, nx = volume.shape
    flat = volume.ravel()
    base = np.floor(index_xyz).astype(np.int64)
    inside = ((base >= 0).all(axis=1) & (base[:, 0] < nx - 1) & (base[:, 1] < ny - 1) & (base[:, 2] < nz - 1))
    base = base[inside]
    frac = (index_xyz[inside] - base).astype(np.float32)
    fx, fy, fz = frac[:, 0], frac[:, 1], frac[:, 2]
    i000 = (base[:, 2] * ny + base[:, 1]) * nx + base[:, 0]
    plane = nx * ny

    def along_x(start: np.ndarray) -> np.ndarray:
        return flat.take(start) * (1 - fx) + flat.take(start + 1) * fx

    near = along_x(i000) * (1 - fy) + along_x(i000 + nx) * fy
    far = along_x(i000 + plane) * (1 - fy) + along_x(i000 + plane + nx) * fy
    return near * (1 - fz) + far * fz, inside


class MutualInformation:
    """Minus the mutual information of the fixed level's masked voxels and the moving level under a transform."""

    def __init__(self, fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, max_points: int | None,
                 seed: int) -> None:
        index = np.argwhere(sitk.GetArrayViewFromImage(fixed_mask) > 0)  # (k, j, i)
        if max_points and len(index) > max_points:
            index = index[np.sort(np.random.default_rng(seed).choice(len(index), max_points, replace=False))]
        values = sitk.GetArrayViewFromImage(fixed)[index[:, 0], index[:, 1], index[:, 2]]
        direction = np.array(fixed.GetDirection()).reshape(3, 3) * np.array(fixed.GetSpacing())
        xyz = index[:, ::-1].astype(np.float64)
        # physical (LPS) points, computed without BLAS (threaded BLAS crawls on a busy machine)
        self.points = [np.array(fixed.GetOrigin())[r] + sum(direction[r, c] * xyz[:, c] for c in range(3))
                       for r in range(3)]
        low, scale = _bin_range(values)
        self.fixed_bins = np.clip(((values - low) * scale).astype(np.int64), 0, BINS - 1) * BINS
        self.moving = sitk.GetArrayFromImage(moving).astype(np.float32)
        self.moving_low, self.moving_scale = _bin_range(self.moving)
        self.moving_index = np.linalg.inv(np.array(moving.GetDirection()).reshape(3, 3) * np.array(moving.GetSpacing()))
        self.moving_origin = np.array(moving.GetOrigin())
        self.evaluations = 0

    def __call__(self, transform: sitk.Euler3DTransform) -> float:
        self.evaluations += 1
        matrix = np.array(transform.GetMatrix()).reshape(3, 3)
        centre = np.array(transform.GetCenter())
        # moving index = A p + b for a fixed point p
        a = self.moving_index @ matrix
        b = self.moving_index @ (centre + np.array(transform.GetTranslation()) - matrix @ centre - self.moving_origin)
        index = np.stack([sum(a[r, c] * self.points[c] for c in range(3)) + b[r] for r in range(3)], axis=1)
        values, inside = trilinear(self.moving, index)
        if values.size < max(MIN_OVERLAP_POINTS, MIN_OVERLAP_FRACTION * inside.size):
            return 0.0  # the scans hardly overlap: no information
        bins = np.clip(((values - self.moving_low) * self.moving_scale).astype(np.int64), 0, BINS - 1)
        joint = np.bincount(self.fixed_bins[inside] + bins, minlength=BINS * BINS).reshape(BINS, BINS)
        joint = gaussian_filter(joint.astype(np.float64), 1.0, mode="constant")
        joint /= joint.sum()
        independent = np.outer(joint.sum(axis=1), joint.sum(axis=0))
        used = joint > 0
        return -float(np.sum(joint[used] * np.log(joint[used] / independent[used])))


def moved(base: sitk.Euler3DTransform, offset_mm: np.ndarray) -> sitk.Euler3DTransform:
    """`base` with its angles changed by offset_mm[:3] / ARC_RADIUS_MM and its translation by offset_mm[3:]."""
    transform = sitk.Euler3DTransform(base)
    step = np.concatenate([np.asarray(offset_mm[:3]) / ARC_RADIUS_MM, offset_mm[3:]])
    transform.SetParameters([float(v) for v in np.array(base.GetParameters()) + step])
    return transform


def compass_search(cost, start: np.ndarray, first_step: float, last_step: float) -> tuple[np.ndarray, float]:
    """Minimise cost by trying each coordinate one step up and down; halve the step after a sweep without success."""
    x = np.array(start, dtype=float)
    value = cost(x)
    step = first_step
    while step >= last_step:
        before = x.copy()
        for axis in range(len(x)):
            for sign in (1.0, -1.0):
                trial = x.copy()
                trial[axis] += sign * step
                trial_value = cost(trial)
                if trial_value < value:
                    x, value = trial, trial_value
                    break
        if np.array_equal(x, before):
            step /= 2
            continue
        extended = x + (x - before)  # a successful sweep: try going as far again
        extended_value = cost(extended)
        if extended_value < value:
            x, value = extended, extended_value
    return x, value


def initial_transform(fixed: sitk.Image, moving: sitk.Image, start: str) -> sitk.Euler3DTransform:
    """HEADER: identity about the fixed field of view's centre; GEOMETRY or MOMENTS: SimpleITK's initialiser."""
    if start == "HEADER":
        transform = sitk.Euler3DTransform()
        transform.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
        return transform
    mode = getattr(sitk.CenteredTransformInitializerFilter, start)
    return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode))


def level_mask(fixed_level: sitk.Image, fixed_mask: sitk.Image | None) -> sitk.Image:
    """The voxels that drive the metric: the given mask on the level's grid, or the level's head mask, dilated."""
    if fixed_mask is None:
        mask = brainmask.head_mask(fixed_level)
    else:
        mask = sitk.Resample(sitk.Cast(fixed_mask, sitk.sitkUInt8), fixed_level, sitk.Transform(3, sitk.sitkIdentity),
                             sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    radius = [max(1, int(round(MASK_DILATION_MM / s))) for s in fixed_level.GetSpacing()]
    return sitk.BinaryDilate(mask, radius)


def register_rigid(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None = None, seed: int = 0
                   ) -> tuple[sitk.Euler3DTransform, str, dict[str, float]]:
    """The rigid transform (fixed points -> moving points), the start it came from, and each start's metric."""
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    tried: dict[str, float] = {}
    transform, chosen = None, STARTS[0]
    levels = [level for level in LEVELS if min(shrink(fixed, level.voxel_mm).GetSize()) >= MIN_LEVEL_VOXELS]
    for number, level in enumerate(levels or LEVELS[-1:]):
        fixed_level = shrink(fixed, level.voxel_mm)
        cost = MutualInformation(fixed_level, shrink(moving, level.voxel_mm), level_mask(fixed_level, fixed_mask),
                                 level.max_points, seed)
        bases = {start: initial_transform(fixed, moving, start) for start in STARTS} if number == 0 \
            else {chosen: transform}
        best = None
        for start, base in bases.items():
            offset, value = compass_search(lambda x, b=base, c=cost: c(moved(b, x)), np.zeros(6), level.first_step_mm,
                                           level.last_step_mm)
            if number == 0:
                tried[start] = round(value, 4)
            if best is None or value < best[0]:
                best = (value, start, moved(base, offset))
        _, chosen, transform = best
    return transform, chosen, tried
