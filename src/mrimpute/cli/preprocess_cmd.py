"""`mrimpute preprocess`: co-register a subject's scans onto a reference scan, with a mask and a manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded
from .modality_options import with_modality_options

INPUT_HELP = "Input volume ({name}), any grid and orientation."


@with_modality_options(INPUT_HELP)  # one --<modality> option per row of the modality table
def preprocess_command(
    out_dir: Path = typer.Option(..., help="Output folder: <modality>.nii.gz, brainmask.nii.gz, "
                                           "transforms/<m>_to_<ref>.tfm, manifest.json."),
    ref: str = typer.Option(..., help="Reference scan: MODALITY=FILE (e.g. flair=F.nii.gz), or MODALITY when that "
                                      "modality is given by its own option. Every scan is registered onto it."),
    inputs: dict[str, Path] = None,  # filled by with_modality_options
    spacing: float = typer.Option(0.0, min=0.0, help="Isotropic output voxel size in mm (0: the reference's grid "
                                                     "and header)."),
    inplane: float = typer.Option(0.0, min=0.0, help="In-plane output voxel size in mm, keeping the reference's "
                                                     "slices (thickness, positions, orientation): a grid for a 2D "
                                                     "axial model on thick-slice scans, e.g. --inplane 1. 0: off."),
    affine: bool = typer.Option(False, "--affine", help="After the rigid registration try an affine one "
                                                        "(kept when its metric is better)."),
    n4: bool = typer.Option(False, "--n4", help="N4 bias-field correction of every scan."),
    mask: Optional[Path] = typer.Option(None, help="Brain mask on the reference's space (default: a computed "
                                                   "head/foreground mask, or with --skull-strip a brain mask)."),
    skull_strip: bool = typer.Option(False, "--skull-strip", help="Brain extraction: zero every output outside the "
                                                                 "brain (deepbet's mask of the T1 or T1c scan on the "
                                                                 "output grid, written as brainmask.nii.gz; or "
                                                                 "--mask when given)."),
    threads: int = typer.Option(2, min=0, help="SimpleITK threads (0: SimpleITK's default)."),
    min_overlap: float = typer.Option(0.7, help="Refuse a scan whose head mask overlaps the reference's less "
                                                "(Dice) after registration."),
    max_metric: float = typer.Option(-0.05, help="Refuse a scan whose final Mattes metric is above this "
                                                 "(near 0: unrelated images)."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    """Register every scan onto the reference (rigid, mutual information), resample, mask; write NIfTI, transforms,
    manifest."""

    def job() -> None:
        from ..pipeline.preprocess import PreprocessOptions, preprocess

        name, given = _reference_first(ref, dict(inputs))
        options = PreprocessOptions(spacing=spacing, inplane=inplane, affine=affine, n4=n4, mask=mask,
                                    skull_strip=skull_strip, threads=threads, force=force, min_overlap=min_overlap,
                                    max_metric=max_metric)
        with reporting() as reporter:
            result = preprocess(given, name, out_dir, options, reporter)
        if result.rows:
            console.print(make_table("registration onto " + name, result.rows))
        console.print(make_table("written", [{"output": k, "file": str(v)} for k, v in result.outputs.items()]
                                 + [{"output": "manifest", "file": str(result.manifest)}]))
        console.print(f"{result.seconds.get('total', 0.0):.1f} s", highlight=False)

    run_guarded(job)


def _reference_first(ref: str, given: dict[str, Path]) -> tuple[str, dict[str, Path]]:
    """--ref MODALITY[=FILE] checked against the modality options: the reference's name, and every input (modality ->
    path, in table order) with the reference first when given as MODALITY=FILE."""
    from ..errors import InputError
    from ..modalities import canonical_modality

    name, sep, file = ref.partition("=")
    try:
        name = canonical_modality(name)
    except InputError as exc:
        raise InputError(f"--ref {ref}: {exc}") from None
    if sep:
        if name in given and os.path.realpath(file) != os.path.realpath(given[name]):
            raise InputError(f"--ref {ref}: {name} is also given as --{name} {given[name]}")
        given = {name: Path(file), **{k: v for k, v in given.items() if k != name}}
    elif name not in given:
        raise InputError(f"--ref {ref}: give the file as --ref {name}=FILE or --{name} FILE")
    if len(given) < 1:
        raise InputError("give at least one input volume")
    return name, given
