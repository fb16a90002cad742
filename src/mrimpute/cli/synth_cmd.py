"""`mrimpute synth`: synthesise missing contrasts of one subject from whichever contrasts it has."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded

INPUT_HELP = "Input volume ({name}), co-registered with the other inputs."


def _target_for(out: Path, target: Optional[str], missing: list[str]) -> str:
    from ..errors import InputError
    from ..modalities import KNOWN_MODALITIES, canonical_modality

    if target:
        return canonical_modality(target)
    stem = out.name.split(".")[0].lower()
    if stem in KNOWN_MODALITIES:
        return stem
    if len(missing) == 1:
        return missing[0]
    raise InputError(f"{out}: say which contrast to write with --target (one of {', '.join(missing)})")


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
        from ..pipeline.synthesize import check_outputs, synthesize, write_outputs

        if threads:
            torch.set_num_threads(threads)
        given = {name: path for name, path in
                 {"t1": t1, "t1c": t1c, "t2": t2, "flair": flair, "pd": pd, "dwi": dwi}.items() if path is not None}
        if not given:
            raise InputError("give at least one input volume (e.g. --t1 t1.nii.gz)")
        if (out is None) == (out_dir is None):
            raise InputError("give either --out FILE (one contrast) or --out-dir DIR (every missing contrast)")
        from ..io.checkpoint import load_checkpoint

        from ..pipeline.synthesize import check_request

        model_path = model or default_model_path()
        config = load_checkpoint(model_path)["config"]
        outputs = config["outputs"]
        check_request(config["inputs"], outputs, list(given), [], model_path)
        missing = [m for m in outputs if m not in given]
        if out is not None:
            paths = {_target_for(out, target, missing): out}
        else:
            if not out_dir.is_dir():
                raise InputError(f"{out_dir}: output folder does not exist")
            paths = {m: out_dir / f"{m}.nii.gz" for m in missing}
            if not paths:
                raise InputError(f"{model_path}: every output of the model was given as input; nothing to synthesise")
        check_outputs(list(paths.values()), list(given.values()), force)
        with reporting() as reporter:
            result = synthesize(given, list(paths), model_path, device, batch_size, reporter)
        written = write_outputs(result, paths, force)
        rows = [{"contrast": t, "file": str(p), "from": "+".join(m for m in result.factors)} for t, p in zip(paths, written)]
        console.print(make_table("synthesised", rows))

    run_guarded(job)
