"""SimpleITK registration and resampling in physical space.

Conventions: images carry an ITK (LPS) physical frame; `image_from_array` builds one from a nibabel-style RAS
voxel-to-world affine so that what SimpleITK sees is exactly what the NIfTI header says (nibabel's choice of
sform/qform). A transform returned by `register` maps points of the FIXED (reference) space to the MOVING
space, as every ITK registration transform does; resampling the moving scan with it puts it on the fixed grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import rigid

LPS = np.diag([-1.0, -1.0, 1.0])


def set_threads(threads: int) -> None:
    """Threads every SimpleITK filter and registration uses (0: SimpleITK's default)."""
    if threads > 0:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def image_from_array(data_xyz: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A float32 SimpleITK image of a voxel array indexed [i, j, k] with a RAS voxel-to-world affine."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data_xyz, (2, 1, 0)), dtype=np.float32))
    set_grid(image, affine)
    return image


def set_grid(image: sitk.Image, affine: np.ndarray) -> None:
    matrix = LPS @ np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    direction = matrix / spacing
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction.ravel()])
    image.SetOrigin([float(o) for o in LPS @ np.asarray(affine, dtype=float)[:3, 3]])


def array_from_image(image: sitk.Image) -> np.ndarray:
    """The voxel array of an image indexed [i, j, k] (SimpleITK's arrays are [k, j, i])."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def affine_of(image: sitk.Image) -> np.ndarray:
    """The RAS voxel-to-world affine of a SimpleITK image."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS @ np.array(image.GetOrigin())
    return affine


def isotropic_grid(reference: sitk.Image, spacing: float) -> sitk.Image:
    """An empty grid with the reference's orientation and extent and isotropic voxels of `spacing` mm."""
    old = np.array(reference.GetSpacing())
    size = np.maximum(1, np.ceil(np.array(reference.GetSize()) * old / spacing)).astype(int)
    # keep the centre of the field of view where it was
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    centre_index = (np.array(reference.GetSize()) - 1) / 2.0
    centre = np.array(reference.GetOrigin()) + direction @ (centre_index * old)
    origin = centre - direction @ ((size - 1) / 2.0 * spacing)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([float(spacing)] * 3)
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin([float(o) for o in origin])
    return grid


NEAR_ISOTROPIC = 1.25  # thickest / thinnest voxel side below which a grid has no slice axis of its own


def slice_axis(reference: sitk.Image) -> int:
    """The reference's slice axis: that of its thickest voxels, or, on an (almost) isotropic grid (sides within
    25%), the voxel axis closest to superior-inferior, so that the slices are axial (a 2D axial model's)."""
    spacing = np.array(reference.GetSpacing())
    if spacing.max() >= NEAR_ISOTROPIC * spacing.min():
        return int(np.argmax(spacing))
    direction = np.array(reference.GetDirection()).reshape(3, 3)  # columns: each voxel axis in LPS
    return int(np.argmax(np.abs(direction[2])))  # the largest S component (LPS and RAS share the S axis)


def inplane_grid(reference: sitk.Image, inplane: float) -> sitk.Image:
    """An empty grid with the reference's orientation, slices (along `slice_axis`: their number, thickness and
    positions) and extent, and `inplane` mm voxels along the two other axes."""
    old = np.array(reference.GetSpacing())
    axis = slice_axis(reference)
    new = np.full(3, float(inplane))
    new[axis] = old[axis]
    size = np.maximum(1, np.ceil(np.array(reference.GetSize()) * old / new)).astype(int)
    size[axis] = reference.GetSize()[axis]
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    centre = np.array(reference.GetOrigin()) + direction @ ((np.array(reference.GetSize()) - 1) / 2.0 * old)
    origin = centre - direction @ ((size - 1) / 2.0 * new)  # the field of view's centre stays; slices stay put
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in new])
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin([float(o) for o in origin])
    return grid


def resample(moving: sitk.Image, grid: sitk.Image, transform: sitk.Transform | None = None,
             nearest: bool = False) -> sitk.Image:
    """The moving image sampled on the grid's voxels (transform maps grid points to moving points); 0 outside."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(moving, grid, transform or sitk.Transform(3, sitk.sitkIdentity), interpolator, 0.0,
                         moving.GetPixelID())


def n4(image: sitk.Image, mask: sitk.Image, shrink: int = 4, iterations: tuple[int, ...] = (20, 20, 10)) -> sitk.Image:
    """N4 bias-field correction fitted on a shrunk copy; the bias field is applied at full resolution."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    positive = sitk.Maximum(image, 0.0) + 1.0  # N4 works on log intensities
    shrink = max(1, int(shrink))
    small = sitk.Shrink(positive, [shrink] * 3)
    small_mask = sitk.Shrink(sitk.Cast(mask, sitk.sitkUInt8), [shrink] * 3)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.Execute(small, small_mask)
    log_field = corrector.GetLogBiasFieldAsImage(positive)
    return sitk.Cast((positive / sitk.Exp(log_field)) - 1.0, sitk.sitkFloat32)


@dataclass
class RegistrationResult:
    transform: sitk.Transform      # fixed (reference) points -> moving points
    metric: float                  # Mattes MI at the finest level searched (more negative is better)
    initialisation: str            # the start kept: GEOMETRY, MOMENTS or HEADER (+AFFINE)
    seconds: float
    tried: dict = field(default_factory=dict)  # start -> its metric at the coarsest level (AFFINE: Mattes)


def _method(fixed_mask: sitk.Image | None, seed: int, sampling: float, iterations: int) -> sitk.ImageRegistrationMethod:
    """SimpleITK's Mattes MI registration with regular-step gradient descent (the --affine stage)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK treats seed 0 as "seed from the wall clock": shift by one so every seed is reproducible
    method.SetMetricSamplingPercentage(sampling, int(seed) + 1)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def final_metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                 fixed_mask: sitk.Image | None = None, seed: int = 1) -> float:
    """Mattes MI of the pair under a transform (20% of the fixed voxels, fixed seed: comparable between runs).

    seed must not be 0 (SimpleITK's wall-clock seed)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform, inPlace=False)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # too few samples overlap
        return 0.0


def register(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None = None, affine: bool = False,
             seed: int = 0, sampling: float = 0.2, iterations: int = 100) -> RegistrationResult:
    """Rigid mutual-information registration of moving onto fixed (see `rigid`), optionally then affine.

    fixed_mask: the fixed voxels that drive the rigid metric (default: the fixed scan's head mask), dilated 6 mm.
    The reported metric is Mattes MI on the scans block-averaged to about 2 mm (the finest level searched). The
    affine stage (SimpleITK, regular-step gradient descent, levels [4, 2, 1]) is kept only when it improves it."""
    start = time.perf_counter()
    transform, init, tried = rigid.register_rigid(fixed, moving, fixed_mask, seed)
    fixed_fine = rigid.shrink(sitk.Cast(fixed, sitk.sitkFloat32), rigid.LEVELS[-1].voxel_mm)
    moving_fine = rigid.shrink(sitk.Cast(moving, sitk.sitkFloat32), rigid.LEVELS[-1].voxel_mm)
    metric = final_metric(fixed_fine, moving_fine, transform)
    if affine:
        method = _method(None, seed, sampling, iterations)
        start_affine = sitk.AffineTransform(3)
        start_affine.SetCenter(transform.GetCenter())
        start_affine.SetMatrix(transform.GetMatrix())
        start_affine.SetTranslation(transform.GetTranslation())
        method.SetInitialTransform(start_affine, inPlace=False)
        result = method.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
        if result.GetName() == "CompositeTransform":
            result = sitk.CompositeTransform(result).GetNthTransform(0)
        candidate = sitk.AffineTransform(result)
        value = final_metric(fixed_fine, moving_fine, candidate)
        tried["AFFINE"] = round(value, 4)
        if value <= metric:
            metric, transform = value, candidate
            init = f"{init}+AFFINE"
    return RegistrationResult(transform, metric, init, time.perf_counter() - start, tried)


def displacement(a: sitk.Transform, b: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """|a(p) - b(p)| in mm for each physical (LPS) point p, one per row."""
    return np.array([np.linalg.norm(np.subtract(a.TransformPoint(tuple(p)), b.TransformPoint(tuple(p))))
                     for p in points])


def mask_points(mask: sitk.Image, count: int = 2000, seed: int = 0) -> np.ndarray:
    """Up to `count` physical (LPS) points of a mask's voxels, drawn at random with a seed."""
    index = np.argwhere(sitk.GetArrayFromImage(mask) > 0)[:, ::-1]  # (i, j, k)
    rng = np.random.default_rng(seed)
    if len(index) > count:
        index = index[rng.choice(len(index), count, replace=False)]
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    return np.array(mask.GetOrigin()) + (index * np.array(mask.GetSpacing())) @ direction.T
