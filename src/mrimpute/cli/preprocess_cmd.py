"""`mrimpute preprocess`: co-register a subject's scans onto a reference scan, with a mask and a manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded

INPUT_HELP = "Input volume ({name}), any grid and orientation."


def preprocess_command(
    out_dir: Path = typer.Option(..., help="Output folder: <modality>.nii.gz, brainmask.nii.gz, "
                                           "transforms/<m>_to_<ref>.tfm, manifest.json."),
    ref: str = typer.Option(..., help="Reference scan: MODALITY=FILE (e.g. flair=F.nii.gz), or MODALITY when that "
                                      "modality is given by its own option. Every scan is registered onto it."),
    t1: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="T1-weighted")),
    t1c: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="contrast-enhanced T1")),
    t2: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="T2-weighted")),
    flair: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="FLAIR")),
    pd: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="proton density")),
    spacing: float = typer.Option(0.0, min=0.0, help="Isotropic output voxel size in mm (0: the reference's grid "
                                                     "and header)."),
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
        from ..errors import InputError
        from ..pipeline.preprocess import PreprocessOptions, preprocess

        given = {name: path for name, path in
                 {"t1": t1, "t1c": t1c, "t2": t2, "flair": flair, "pd": pd}.items() if path is not None}
        name, sep, file = ref.partition("=")
        name = name.strip().lower()
        if name not in ("t1", "t1c", "t2", "flair", "pd"):
            raise InputError(f"--ref {ref}: unknown modality {name!r} (t1, t1c, t2, flair or pd)")
        if sep:
            if name in given and os.path.realpath(file) != os.path.realpath(given[name]):
                raise InputError(f"--ref {ref}: {name} is also given as --{name} {given[name]}")
            given = {name: Path(file), **{k: v for k, v in given.items() if k != name}}
        elif name not in given:
            raise InputError(f"--ref {ref}: give the file as --ref {name}=FILE or --{name} FILE")
        if len(given) < 1:
            raise InputError("give at least one input volume")
        options = PreprocessOptions(spacing=spacing, affine=affine, n4=n4, mask=mask, skull_strip=skull_strip,
                                    threads=threads, force=force, min_overlap=min_overlap, max_metric=max_metric)
        with reporting() as reporter:
            result = preprocess(given, name, out_dir, options, reporter)
        if result.rows:
            console.print(make_table("registration onto " + name, result.rows))
        console.print(make_table("written", [{"output": k, "file": str(v)} for k, v in result.outputs.items()]
                                 + [{"output": "manifest", "file": str(result.manifest)}]))
        console.print(f"{result.seconds.get('total', 0.0):.1f} s", highlight=False)

    run_guarded(job)
