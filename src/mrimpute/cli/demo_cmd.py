"""`mrimpute demo`: the main job on the embedded sample subject and the shipped model."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options
from .console import console, make_table, reporting, run_guarded


def demo_command(
    out_dir: Path = typer.Option(Path("demo-output"), help="Folder for the NIfTI, PNG preview and metrics JSON."),
    model: options.Model = None,
    device: options.Device = "auto",
    threads: options.Threads = 0,
    force: bool = typer.Option(False, help="Overwrite the outputs of an earlier demo."),
) -> None:
    """Synthesise FLAIR from T1 + T2 of the bundled subject (open_ms patient07) and score it against the real one."""

    def job() -> None:
        from ..io.folders import ensure_folder
        from ..pipeline.demo import run_demo
        from ..runtime.device import set_threads

        set_threads(threads)
        ensure_folder(out_dir)
        with reporting() as reporter:
            summary = run_demo(out_dir, model, device, force, reporter)
        metrics = summary["in_brain"]
        console.print(make_table("demo: FLAIR from T1 + T2, open_ms patient07, inside the brain", [
            {"SSIM": metrics["ssim"], "PSNR (dB)": metrics["psnr"], "MAE": metrics["mae"], "MSE": metrics["mse"],
             "seconds": summary["synthesis_seconds"]}]))
        console.print(f"wrote {summary['files']['nifti']}, {summary['files']['preview']} "
                      f"and {out_dir / 'metrics.json'}")

    run_guarded(job)
