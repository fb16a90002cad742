"""The steps of `mrimpute preprocess` (see pipeline.preprocess), in the order it runs them: load + reorient, head
masks, optional N4, registration of each scan, resampling, the brain mask (and skull strip), and the writing of the
volumes and transforms. Each step reads and extends one `PreprocessRun` and records its seconds there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..io.atomic import write_atomically
from ..io.checksum import sha256_file
from ..io.nifti import AFFINE_TOLERANCE_MM, Volume, canonical_affine, load_volume, save_like
from ..modalities import row as modality_row
from ..preprocess import brainmask, rigid, skullstrip, spatial
from ..runtime.reporting import Reporter

if TYPE_CHECKING:
    from .preprocess import PreprocessOptions

MASK_NAME = "brainmask"
BRAIN_SHARE = 0.4      # brain-only scans (DWI, ADC): the least part of the reference's head mask their mask fills


@dataclass
class PreprocessRun:
    """One `preprocess` call: what it was given, and what each step adds (SimpleITK images are typed Any)."""

    inputs: dict[str, Path]
    reference: str
    modalities: list[str]           # the reference first, then each scan after the one it registers through
    out_dir: Path
    paths: dict[str, Path]
    options: PreprocessOptions
    reporter: Reporter
    strip_source: str | None = None  # the scan deepbet's brain mask is computed on (--skull-strip, no --mask)
    seconds: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    volumes: dict[str, Volume] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    mask_volume: Volume | None = None
    head: dict[str, Any] = field(default_factory=dict)
    transforms: dict[str, Any] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    grid: Any = None
    resampled: dict[str, Any] = field(default_factory=dict)
    mask_image: Any = None
    mask_method: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def new_grid(self) -> bool:
        return bool(self.options.spacing or self.options.inplane)

    def timed(self, step: str, started: float) -> None:
        """Record a step's seconds since `started` and advance the progress by one step."""
        self.seconds[step] = round(time.perf_counter() - started, 3)
        self.reporter.advance()


def to_sitk(volume: Volume):
    return spatial.image_from_array(volume.data, canonical_affine(volume))


def load_and_reorient(run: PreprocessRun) -> None:
    """Read every input (and a given mask), reordered to RAS+ in memory, and checksum the inputs."""
    started = time.perf_counter()
    run.volumes = {name: load_volume(run.inputs[name]) for name in run.modalities}
    run.images = {name: to_sitk(volume) for name, volume in run.volumes.items()}
    run.checksums = {name: sha256_file(Path(run.inputs[name])) for name in run.modalities}
    run.mask_volume = load_volume(run.options.mask) if run.options.mask else None
    run.done.append("load+reorient")
    run.timed("load+reorient", started)


def head_masks(run: PreprocessRun) -> None:
    """Each scan's head/foreground mask, in its native space (timed, but not a step of the progress)."""
    started = time.perf_counter()
    run.head = {name: brainmask.head_mask(image) for name, image in run.images.items()}
    run.seconds["head-masks"] = round(time.perf_counter() - started, 3)


def n4_correct(run: PreprocessRun) -> None:
    """N4 bias-field correction of every scan within its head mask, in its native space."""
    for name in run.modalities:
        started = time.perf_counter()
        run.reporter.message(f"N4 bias-field correction: {name}")
        run.images[name] = spatial.n4(run.images[name], run.head[name])
        run.timed(f"n4:{name}", started)
    run.done.append("n4")


def register_scans(run: PreprocessRun) -> None:
    """Register every scan but the reference onto it (or reuse the registration of the scan it shares a grid with),
    refusing one that cannot be the same subject."""
    for name in run.modalities[1:]:
        _register_scan(run, name)
    run.done.append("register-affine" if run.options.affine else "register-rigid")


def _register_scan(run: PreprocessRun, name: str) -> None:
    import SimpleITK as sitk

    started = time.perf_counter()
    options, reference, fixed = run.options, run.reference, run.images[run.reference]
    leader = _same_grid_leader(name, run.volumes)
    if leader is not None:  # e.g. an ADC map on the DWI's grid: the DWI's registration is reused
        transform = run.transforms.get(leader, sitk.Transform(3, sitk.sitkIdentity))
        result = spatial.RegistrationResult(transform, _fine_metric(fixed, run.images[name], transform),
                                            f"via {leader} (same grid)", 0.0)
    else:
        result = spatial.register(fixed, run.images[name], None, affine=options.affine, seed=options.seed)
    inside = modality_row(name).brain_only and not modality_row(reference).brain_only
    overlap = _head_overlap(run.head[name], run.head[reference], result.transform, inside)
    row = {"scan": name, "metric": round(result.metric, 4), "overlap": round(overlap, 4),
           "overlap_measure": "inside the reference's head" if inside else "Dice",
           "init": result.initialisation, "seconds": round(time.perf_counter() - started, 2)}
    run.rows.append(row)
    run.reporter.table_row(row)
    # a scan registered through another one is judged by that one's check (an ADC map's head mask is noise)
    if leader is None and (overlap < options.min_overlap or result.metric > options.max_metric):
        run.reporter.finish()
        raise InputError(
            f"{run.inputs[name]}: cannot be the same subject as {run.inputs[reference]} (after registration: head "
            f"overlap {overlap:.2f}, minimum {options.min_overlap}; Mattes metric {result.metric:.3f}, "
            f"maximum {options.max_metric})")
    run.transforms[name] = result.transform
    run.timed(f"register:{name}", started)


def resample_all(run: PreprocessRun) -> None:
    """The target grid (the reference's, isotropic, or in-plane) and every scan resampled onto it (linear)."""
    import SimpleITK as sitk

    started = time.perf_counter()
    options, fixed = run.options, run.images[run.reference]
    run.grid = (spatial.isotropic_grid(fixed, options.spacing) if options.spacing else
                spatial.inplane_grid(fixed, options.inplane) if options.inplane else fixed)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    run.resampled = {name: spatial.resample(run.images[name], run.grid, run.transforms.get(name, identity))
                     for name in run.modalities}
    run.done.append("resample")
    run.timed("resample", started)


def brain_mask(run: PreprocessRun) -> None:
    """The mask on the output grid (given, deepbet's brain mask, or the reference's head mask), and with
    --skull-strip every output zeroed outside it."""
    import SimpleITK as sitk

    started = time.perf_counter()
    options, grid = run.options, run.grid
    if run.mask_volume is not None:
        mask_image = spatial.resample(to_sitk(run.mask_volume), grid, nearest=True)
        run.mask_image = sitk.Cast(mask_image > 0.5, sitk.sitkUInt8)
        run.mask_method = f"given: {options.mask}"
    elif run.strip_source is not None:
        run.reporter.message(f"brain extraction (deepbet) on {run.strip_source}")
        if options.threads:
            import torch

            torch.set_num_threads(options.threads)
        run.mask_image = skullstrip.brain_mask_image(run.resampled[run.strip_source], run.inputs[run.strip_source])
        run.mask_method = skullstrip.method(run.strip_source)
    else:
        head = run.head[run.reference]
        run.mask_image = spatial.resample(head, grid, nearest=True) if run.new_grid else head
        run.mask_method = brainmask.MASK_METHOD
    if options.skull_strip:
        for name in run.modalities:
            run.resampled[name] = sitk.Mask(run.resampled[name], sitk.Cast(run.mask_image, sitk.sitkUInt8))
        run.done.append("skull-strip (given mask)" if run.mask_volume is not None else "skull-strip (deepbet)")
    run.done.append("mask")
    run.timed("mask", started)


def write_outputs(run: PreprocessRun) -> None:
    """Write every volume and the mask (on the reference's header, or a new grid's) and the transforms, atomically."""
    import SimpleITK as sitk

    started = time.perf_counter()
    force, paths = run.options.force, run.paths
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if run.transforms:
        (run.out_dir / "transforms").mkdir(exist_ok=True)
    ref_volume = run.volumes[run.reference]
    for name in run.modalities + [MASK_NAME]:
        image = run.mask_image if name == MASK_NAME else run.resampled[name]
        data = spatial.array_from_image(image).astype(np.float32)
        if name == MASK_NAME:
            data = (data > 0.5).astype(np.float32)
        if run.new_grid:
            _save_new_grid(data, spatial.affine_of(run.grid), ref_volume, paths[name], force, mask=name == MASK_NAME)
        else:
            save_like(data, ref_volume, paths[name], force=force)
        run.outputs[name] = paths[name]
    for name, transform in run.transforms.items():
        write_atomically(paths[f"transform:{name}"],
                         lambda tmp, t=transform: sitk.WriteTransform(t, str(tmp)), force=force)
        run.outputs[f"transform:{name}"] = paths[f"transform:{name}"]
    run.done.append("write")
    run.timed("write", started)


def _same_grid_leader(name: str, volumes: dict[str, Volume]) -> str | None:
    """The modality whose registration `name` reuses: its table row's `registers_via`, when given on the same grid."""
    via = modality_row(name).registers_via
    if via is None or via not in volumes:
        return None
    a, b = volumes[name], volumes[via]
    same = a.shape == b.shape and np.allclose(a.affine, b.affine, atol=AFFINE_TOLERANCE_MM)
    return via if same else None


def _fine_metric(fixed, moving, transform) -> float:
    """The Mattes metric `spatial.register` reports: on both scans block-averaged to the finest level's voxels."""
    import SimpleITK as sitk

    fine = [rigid.shrink(sitk.Cast(image, sitk.sitkFloat32), rigid.LEVELS[-1].voxel_mm) for image in (fixed, moving)]
    return spatial.final_metric(*fine, transform)


def _head_overlap(moving_head, reference_head, transform, inside: bool = False) -> float:
    """Dice of the moving scan's head mask, moved onto the reference, with the reference's, within the moving field
    of view (a scan may cover fewer slices than the reference).

    inside (brain-only scans such as DWI, whose mask is a brain, not a head: their Dice with a head is about 0.7 when
    perfectly aligned): the fraction of the moved mask inside the reference's head, and at most the part of the
    reference's head it fills over BRAIN_SHARE (a brain fills at least that much of its head; a small object
    somewhere inside the head does not pass)."""
    import SimpleITK as sitk

    moved_mask = spatial.resample(moving_head, reference_head, transform, nearest=True)
    coverage = sitk.Image(moving_head.GetSize(), sitk.sitkUInt8) + 1
    coverage.CopyInformation(moving_head)
    in_view = sitk.Mask(reference_head, spatial.resample(coverage, reference_head, transform, nearest=True))
    if not inside:
        return brainmask.dice(moved_mask, in_view)
    moved = sitk.GetArrayViewFromImage(moved_mask) > 0
    head = sitk.GetArrayViewFromImage(in_view) > 0
    both = float((moved & head).sum())
    return min(both / max(int(moved.sum()), 1), both / max(BRAIN_SHARE * int(head.sum()), 1), 1.0)


def _save_new_grid(data_xyz: np.ndarray, affine: np.ndarray, like: Volume, path: Path, force: bool,
                   mask: bool = False) -> None:
    """Write an array indexed [i, j, k] on a new grid; qform/sform codes are the reference's (or scanner)."""
    header = like.image.header
    image = nib.Nifti1Image(data_xyz.astype(np.uint8 if mask else np.float32), affine)
    image.set_qform(affine, code=int(header["qform_code"]) or 1)
    image.set_sform(affine, code=int(header["sform_code"]) or 1)
    image.header.set_xyzt_units(*like.image.header.get_xyzt_units())
    write_atomically(path, lambda tmp: nib.save(image, str(tmp)), force=force)
