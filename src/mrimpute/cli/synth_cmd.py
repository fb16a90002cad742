"""`mrimpute synth`: synthesise missing contrasts of one subject from whichever contrasts it has."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded

INPUT_HELP = "Input volume ({name}), co-registered with the other inputs."


def synth_command(
    t1: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="T1-weighted")),
    t1c: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="contrast-enhanced T1")),
    t2: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="T2-weighted")),
    flair: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="FLAIR")),
    pd: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="proton density")),
    dwi: Optional[Path] = typer.Option(None, help=INPUT_HELP.format(name="diffusion-weighted")),
    out: Optional[Path] = typer.Option(None, help="Output NIfTI for one target contrast."),
    target: Optional[str] = typer.Option(None, help="Contrast to write to --out (default: from --out's name)."),
    out_dir: Optional[Path] = typer.Option(None, help="Write every contrast the model has that was not given here."),
    model: Optional[Path] = typer.Option(None, help="Model checkpoint (default: the shipped model)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(0, min=0, help="Slices per forward pass (0: chosen from the slice size)."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: torch's default)."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    """Synthesise missing contrasts; outputs keep the first input's grid and header (float32, mean-normalised)."""

    def job() -> None:
        import torch

        from ..errors import InputError
        from ..pipeline.model_loading import default_model_path
        from ..pipeline.synthesize import check_outputs, plan_outputs, synthesize, write_outputs

        if threads:
            torch.set_num_threads(threads)
        given = {name: path for name, path in
                 {"t1": t1, "t1c": t1c, "t2": t2, "flair": flair, "pd": pd, "dwi": dwi}.items() if path is not None}
        if not given:
            raise InputError("give at least one input volume (e.g. --t1 t1.nii.gz)")
        model_path = model or default_model_path()
        paths = plan_outputs(model_path, given, out, target, out_dir)
        check_outputs(list(paths.values()), list(given.values()), force)
        with reporting() as reporter:
            result = synthesize(given, list(paths), model_path, device, batch_size, reporter)
        written = write_outputs(result, paths, force)
        inputs_used = "+".join(result.factors)
        console.print(make_table("synthesised", [{"contrast": t, "file": str(p), "from": inputs_used}
                                                 for t, p in zip(paths, written)]))

    run_guarded(job)
