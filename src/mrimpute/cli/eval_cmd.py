"""`mrimpute eval`: score a model on subjects with known contrasts, for every input subset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded


def _format_summary(summary: list[dict]) -> list[dict]:
    return [{"target": s["target"], "inputs": s["subset"], "n": s["n"],
             "MSE": f"{s['mse']:.4f} ± {s['mse_sd']:.4f}", "PSNR": f"{s['psnr']:.2f} ± {s['psnr_sd']:.2f}",
             "SSIM": f"{s['ssim']:.4f} ± {s['ssim_sd']:.4f}"} for s in summary]


def eval_command(
    data: Path = typer.Option(..., help="Folder of subject folders or a CSV manifest, with true contrasts."),
    model: Optional[Path] = typer.Option(None, help="Model checkpoint (default: the shipped model)."),
    subjects: str = typer.Option("", help="Comma-separated subjects to score (default: all)."),
    targets: str = typer.Option("", help="Comma-separated targets (default: every output of the model)."),
    subsets: str = typer.Option("all", help="all | single | single+rest | explicit, e.g. 't1,t2;t1'."),
    out_dir: Path = typer.Option(Path("eval-output"), help="Folder for metrics.csv and summary.json."),
    protocol: str = typer.Option("brain", help="Protocol shown in the table: paper, brain or brasyn."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, help="Overwrite earlier reports."),
    update_card: bool = typer.Option(False, help="Add the table to the model's card (<model>.md)."),
) -> None:
    """Synthesise each target from each input subset and score it (MSE, MAE, PSNR, SSIM under three protocols)."""

    def job() -> None:
        from ..errors import InputError
        from ..metrics import PROTOCOLS
        from ..modalities import parse_modality_list
        from ..pipeline.evaluate import EvalSettings, evaluate, summarise, update_model_card, write_reports
        from ..pipeline.model_loading import default_model_path

        if protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol '{protocol}': expected one of {', '.join(PROTOCOLS)}")
        settings = EvalSettings(data=data, model=model, subjects=[s for s in subjects.split(",") if s] or None,
                                targets=parse_modality_list(targets) if targets else None, subsets=subsets, device=device)
        with reporting() as reporter:
            rows = evaluate(settings, reporter)
        csv_path, json_path = write_reports(rows, out_dir, force)
        console.print(make_table(f"mean ± sd per subset ({protocol} protocol)", _format_summary(summarise(rows, protocol))))
        console.print(f"wrote {csv_path} and {json_path}")
        if update_card:
            console.print(f"updated {update_model_card(model or default_model_path(), rows, protocol)}")

    run_guarded(job)
