"""`mrimpute preprocess`: put a subject's scans on one grid (the reference scan's, or an isotropic one).

Steps: load + reorient (every input is read and reordered to RAS+ in memory; physical space is unchanged), optional
N4 bias-field correction (in each scan's native space), rigid mutual-information registration of each scan onto the
reference (optionally then affine), a same-subject check, resampling (linear), the brain mask (given, or a
computed head/foreground mask; with --skull-strip and no given mask, deepbet's brain mask of the T1/T1c
scan on the output grid, see preprocess.skullstrip), optional skull strip, and the atomic writing of NIfTI, transforms
and manifest.
`pipeline.native` takes a volume on the preprocessed grid back onto one input's original grid.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..errors import InputError, OutputError
from ..io.atomic import refuse_overwrite, write_atomically
from ..io.checksum import sha256_file
from ..io.nifti import AFFINE_TOLERANCE_MM, Volume, canonical_affine, load_volume, save_like
from ..modalities import row as modality_row
from ..preprocess import brainmask, rigid, skullstrip, spatial
from .reporting import Reporter

MIN_OVERLAP = 0.7      # Dice of the moving scan's head mask with the reference's, after registration
MAX_METRIC = -0.05     # Mattes MI metric (negative; near 0 = no shared information)
MASK_NAME = "brainmask"
BRAIN_SHARE = 0.4      # brain-only scans (DWI, ADC): the least part of the reference's head mask their mask fills


@dataclass
class PreprocessOptions:
    spacing: float = 0.0          # 0: the reference's grid; otherwise an isotropic grid of this spacing (mm)
    inplane: float = 0.0          # >0: the reference's slices, resampled in-plane to this voxel size (mm)
    affine: bool = False
    n4: bool = False
    mask: Path | None = None
    skull_strip: bool = False
    threads: int = 0
    force: bool = False
    seed: int = 0
    min_overlap: float = MIN_OVERLAP
    max_metric: float = MAX_METRIC


@dataclass
class PreprocessResult:
    outputs: dict[str, Path]
    manifest: Path
    rows: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def to_sitk(volume: Volume):
    return spatial.image_from_array(volume.data, canonical_affine(volume))


def output_paths(out_dir: Path, modalities: list[str], reference: str) -> dict[str, Path]:
    paths = {name: out_dir / f"{name}.nii.gz" for name in modalities}
    paths[MASK_NAME] = out_dir / f"{MASK_NAME}.nii.gz"
    for name in modalities:
        if name != reference:
            paths[f"transform:{name}"] = out_dir / "transforms" / f"{name}_to_{reference}.tfm"
    paths["manifest"] = out_dir / "manifest.json"
    return paths


def preprocess(inputs: dict[str, Path], reference: str, out_dir: Path, options: PreprocessOptions | None = None,
               reporter: Reporter | None = None) -> PreprocessResult:
    """Co-register every input onto the reference input and write them, the mask, transforms and manifest."""
    import SimpleITK as sitk

    options = options or PreprocessOptions()
    reporter = reporter or Reporter()
    if reference not in inputs:
        raise InputError(f"the reference modality {reference} is not among the inputs ({', '.join(inputs)})")
    if options.spacing < 0 or options.inplane < 0:
        raise InputError(f"--spacing and --inplane must be >= 0 (got {options.spacing}, {options.inplane})")
    if options.spacing and options.inplane:
        raise InputError("--spacing (isotropic) and --inplane (the reference's slices) exclude each other")
    out_dir = Path(out_dir)
    blocking = next((part for part in (out_dir, *out_dir.parents) if part.exists() and not part.is_dir()), None)
    if blocking is not None:  # a missing folder (and missing parents) is created when the outputs are written
        raise OutputError(f"{out_dir}: output folder cannot be created ({blocking} is a file)")
    modalities = [reference] + _leaders_first([m for m in inputs if m != reference])
    strip_source = None
    if options.skull_strip and options.mask is None:  # brain extraction needs a T1-weighted scan: refuse first
        strip_source = skullstrip.choose_source(inputs, inputs[reference])
    paths = output_paths(out_dir, modalities, reference)
    given = list(inputs.values()) + ([options.mask] if options.mask else [])
    refuse_overwrite(list(paths.values()), given, options.force)
    spatial.set_threads(options.threads)
    moving_names = modalities[1:]
    steps = 5 + len(moving_names) + (len(modalities) if options.n4 else 0)
    reporter.start("preprocess", steps)
    seconds: dict[str, float] = {}
    done: list[str] = []

    def timed(step: str, started: float) -> None:
        seconds[step] = round(time.perf_counter() - started, 3)
        reporter.advance()

    # load + reorient
    started = time.perf_counter()
    volumes = {name: load_volume(inputs[name]) for name in modalities}
    images = {name: to_sitk(volume) for name, volume in volumes.items()}
    checksums = {name: sha256_file(Path(inputs[name])) for name in modalities}
    mask_volume = load_volume(options.mask) if options.mask else None
    done.append("load+reorient")
    timed("load+reorient", started)

    started = time.perf_counter()
    head = {name: brainmask.head_mask(image) for name, image in images.items()}
    seconds["head-masks"] = round(time.perf_counter() - started, 3)
    if options.n4:
        for name in modalities:
            started = time.perf_counter()
            reporter.message(f"N4 bias-field correction: {name}")
            images[name] = spatial.n4(images[name], head[name])
            timed(f"n4:{name}", started)
        done.append("n4")

    fixed = images[reference]
    transforms: dict[str, sitk.Transform] = {}
    rows: list[dict] = []
    for name in moving_names:
        started = time.perf_counter()
        leader = _same_grid_leader(name, volumes)
        if leader is not None:  # e.g. an ADC map on the DWI's grid: the DWI's registration is reused
            transform = transforms.get(leader, sitk.Transform(3, sitk.sitkIdentity))
            result = spatial.RegistrationResult(transform, _fine_metric(fixed, images[name], transform),
                                                f"via {leader} (same grid)", 0.0)
        else:
            result = spatial.register(fixed, images[name], None, affine=options.affine, seed=options.seed)
        inside = modality_row(name).brain_only and not modality_row(reference).brain_only
        overlap = _head_overlap(head[name], head[reference], result.transform, inside)
        row = {"scan": name, "metric": round(result.metric, 4), "overlap": round(overlap, 4),
               "overlap_measure": "inside the reference's head" if inside else "Dice",
               "init": result.initialisation, "seconds": round(time.perf_counter() - started, 2)}
        rows.append(row)
        reporter.table_row(row)
        # a scan registered through another one is judged by that one's check (an ADC map's head mask is noise)
        if leader is None and (overlap < options.min_overlap or result.metric > options.max_metric):
            reporter.finish()
            raise InputError(
                f"{inputs[name]}: cannot be the same subject as {inputs[reference]} (after registration: head "
                f"overlap {overlap:.2f}, minimum {options.min_overlap}; Mattes metric {result.metric:.3f}, "
                f"maximum {options.max_metric})")
        transforms[name] = result.transform
        timed(f"register:{name}", started)
    done.append("register-affine" if options.affine else "register-rigid")

    # target grid
    started = time.perf_counter()
    grid = (spatial.isotropic_grid(fixed, options.spacing) if options.spacing else
            spatial.inplane_grid(fixed, options.inplane) if options.inplane else fixed)
    new_grid = bool(options.spacing or options.inplane)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    resampled = {name: spatial.resample(images[name], grid, transforms.get(name, identity)) for name in modalities}
    done.append("resample")
    timed("resample", started)

    started = time.perf_counter()
    if mask_volume is not None:
        mask_image = spatial.resample(to_sitk(mask_volume), grid, nearest=True)
        mask_image = sitk.Cast(mask_image > 0.5, sitk.sitkUInt8)
        mask_method = f"given: {options.mask}"
    elif strip_source is not None:
        reporter.message(f"brain extraction (deepbet) on {strip_source}")
        if options.threads:
            import torch

            torch.set_num_threads(options.threads)
        mask_image = skullstrip.brain_mask_image(resampled[strip_source], inputs[strip_source])
        mask_method = skullstrip.method(strip_source)
    else:
        mask_image = spatial.resample(head[reference], grid, nearest=True) if new_grid else head[reference]
        mask_method = brainmask.MASK_METHOD
    if options.skull_strip:
        for name in modalities:
            resampled[name] = sitk.Mask(resampled[name], sitk.Cast(mask_image, sitk.sitkUInt8))
        done.append("skull-strip (given mask)" if mask_volume is not None else "skull-strip (deepbet)")
    done.append("mask")
    timed("mask", started)

    # write
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if transforms:
        (out_dir / "transforms").mkdir(exist_ok=True)
    ref_volume = volumes[reference]
    outputs: dict[str, Path] = {}
    for name in modalities + [MASK_NAME]:
        image = mask_image if name == MASK_NAME else resampled[name]
        data = spatial.array_from_image(image).astype(np.float32)
        if name == MASK_NAME:
            data = (data > 0.5).astype(np.float32)
        if new_grid:
            _save_new_grid(data, spatial.affine_of(grid), ref_volume, paths[name], options.force,
                           mask=name == MASK_NAME)
        else:
            save_like(data, ref_volume, paths[name], force=options.force)
        outputs[name] = paths[name]
    for name, transform in transforms.items():
        write_atomically(paths[f"transform:{name}"],
                         lambda tmp, t=transform: sitk.WriteTransform(t, str(tmp)), force=options.force)
        outputs[f"transform:{name}"] = paths[f"transform:{name}"]
    done.append("write")
    timed("write", started)
    seconds["total"] = round(sum(v for k, v in seconds.items()), 3)

    manifest = {
        "mrimpute_version": __version__,
        "reference": reference,
        "inputs": {name: {"path": str(Path(inputs[name]).resolve()), "sha256": checksums[name],
                          "shape": list(volumes[name].shape), "orientation": volumes[name].orientation}
                   for name in modalities},
        "mask": {"path": str(paths[MASK_NAME].name), "method": mask_method,
                 **({"sha256": sha256_file(options.mask), "input": str(Path(options.mask).resolve())}
                    if options.mask else {})},
        "outputs": {name: paths[name].name for name in modalities},
        "transforms": {name: {"path": str(paths[f"transform:{name}"].relative_to(out_dir)),
                              "type": transforms[name].GetName(),
                              "convention": f"maps {reference} (reference/fixed) physical points, ITK LPS, to "
                                            f"{name} (moving) points"}
                       for name in transforms},
        "grid": {"spacing": ([options.spacing] * 3 if options.spacing else
                             f"reference, {options.inplane} mm in-plane" if options.inplane else "reference"),
                 "voxel_mm": [round(s, 6) for s in grid.GetSpacing()], "shape": list(grid.GetSize()),
                 "affine": spatial.affine_of(grid).round(6).tolist()},
        "spacing": options.spacing or None,
        "inplane": options.inplane or None,
        "steps": done,
        "registration": {row["scan"]: {k: v for k, v in row.items() if k != "scan"} for row in rows},
        "seconds": seconds,
        "options": {"affine": options.affine, "n4": options.n4, "skull_strip": options.skull_strip,
                    "threads": options.threads, "seed": options.seed, "min_overlap": options.min_overlap,
                    "max_metric": options.max_metric},
    }
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(paths["manifest"], lambda tmp: tmp.write_text(text), force=options.force)
    reporter.advance()
    reporter.finish()
    return PreprocessResult(outputs, paths["manifest"], rows, seconds)


def _leaders_first(names: list[str]) -> list[str]:
    """The moving scans with each one registered through another (`registers_via` in the table) after that one."""
    leaders = [n for n in names if modality_row(n).registers_via not in names]
    return leaders + [n for n in names if n not in leaders]


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

