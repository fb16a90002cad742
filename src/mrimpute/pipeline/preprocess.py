"""`mrimpute preprocess`: put a subject's scans on one grid (the reference scan's, or an isotropic one).

Steps: load + reorient (every input is read and reordered to RAS+ in memory; physical space is unchanged), optional
N4 bias-field correction (in each scan's native space), rigid mutual-information registration of each scan onto the
reference (optionally then affine), a same-subject check, resampling (linear), the brain mask (given, or a
computed head/foreground mask; with --skull-strip and no given mask, deepbet's brain mask of the T1/T1c
scan on the output grid, see preprocess.skullstrip), optional skull strip, and the atomic writing of NIfTI, transforms
and manifest. The steps themselves are in pipeline.preprocess_steps.
`pipeline.native` takes a volume on the preprocessed grid back onto one input's original grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import InputError, OutputError
from ..io.atomic import refuse_overwrite, write_atomically
from ..io.checksum import sha256_file
from ..modalities import row as modality_row
from ..preprocess import skullstrip, spatial
from ..runtime.reporting import Reporter
from . import preprocess_steps as steps
from .preprocess_steps import MASK_NAME, PreprocessRun

MIN_OVERLAP = 0.7      # Dice of the moving scan's head mask with the reference's, after registration
MAX_METRIC = -0.05     # Mattes MI metric (negative; near 0 = no shared information)


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
    run = _plan(inputs, reference, Path(out_dir), options or PreprocessOptions(), reporter or Reporter())
    steps.load_and_reorient(run)
    steps.head_masks(run)
    if run.options.n4:
        steps.n4_correct(run)
    steps.register_scans(run)
    steps.resample_all(run)
    steps.brain_mask(run)
    steps.write_outputs(run)
    run.seconds["total"] = round(sum(v for k, v in run.seconds.items()), 3)
    text = json.dumps(_manifest(run), indent=2) + "\n"
    write_atomically(run.paths["manifest"], lambda tmp: tmp.write_text(text), force=run.options.force)
    run.reporter.advance()
    run.reporter.finish()
    return PreprocessResult(run.outputs, run.paths["manifest"], run.rows, run.seconds)


def _plan(inputs: dict[str, Path], reference: str, out_dir: Path, options: PreprocessOptions,
          reporter: Reporter) -> PreprocessRun:
    """Check the request before any work (reference, grid options, output folder, a T1 scan for deepbet, existing
    outputs), then start the progress."""
    if reference not in inputs:
        raise InputError(f"the reference modality {reference} is not among the inputs ({', '.join(inputs)})")
    if options.spacing < 0 or options.inplane < 0:
        raise InputError(f"--spacing and --inplane must be >= 0 (got {options.spacing}, {options.inplane})")
    if options.spacing and options.inplane:
        raise InputError("--spacing (isotropic) and --inplane (the reference's slices) exclude each other")
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
    reporter.start("preprocess", 5 + len(modalities[1:]) + (len(modalities) if options.n4 else 0))
    return PreprocessRun(inputs, reference, modalities, out_dir, paths, options, reporter, strip_source)


def _manifest(run: PreprocessRun) -> dict:
    options, reference, paths, transforms, grid = run.options, run.reference, run.paths, run.transforms, run.grid
    return {
        "mrimpute_version": __version__,
        "reference": reference,
        "inputs": {name: {"path": str(Path(run.inputs[name]).resolve()), "sha256": run.checksums[name],
                          "shape": list(run.volumes[name].shape), "orientation": run.volumes[name].orientation}
                   for name in run.modalities},
        "mask": {"path": str(paths[MASK_NAME].name), "method": run.mask_method,
                 **({"sha256": sha256_file(options.mask), "input": str(Path(options.mask).resolve())}
                    if options.mask else {})},
        "outputs": {name: paths[name].name for name in run.modalities},
        "transforms": {name: {"path": str(paths[f"transform:{name}"].relative_to(run.out_dir)),
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
        "steps": run.done,
        "registration": {row["scan"]: {k: v for k, v in row.items() if k != "scan"} for row in run.rows},
        "seconds": run.seconds,
        "options": {"affine": options.affine, "n4": options.n4, "skull_strip": options.skull_strip,
                    "threads": options.threads, "seed": options.seed, "min_overlap": options.min_overlap,
                    "max_metric": options.max_metric},
    }


def _leaders_first(names: list[str]) -> list[str]:
    """The moving scans with each one registered through another (`registers_via` in the table) after that one."""
    leaders = [n for n in names if modality_row(n).registers_via not in names]
    return leaders + [n for n in names if n not in leaders]
