"""`mrimpute eval`: score a model on subjects with known contrasts, score one pair, or compare two evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded


def _format_summary(summary: list[dict]) -> list[dict]:
    return [{"target": s["target"], "inputs": s["subset"], "n": s["n"],
             "MSE": f"{s['mse']:.4f} ± {s['mse_sd']:.4f}", "PSNR": f"{s['psnr']:.2f} ± {s['psnr_sd']:.2f}",
             "SSIM": f"{s['ssim']:.4f} ± {s['ssim_sd']:.4f}"} for s in summary]


def _score_pair(pred: Path, truth: Path, mask: Optional[Path], lesion: Optional[Path]) -> None:
    from ..data.intensity import foreground_mask
    from ..io.nifti import check_same_grid, load_volume
    from ..pipeline.evaluate import score_all

    volumes = [load_volume(p) for p in (truth, pred, mask, lesion) if p is not None]
    check_same_grid(volumes)
    brain = volumes[2].data > 0.5 if mask else foreground_mask(volumes[0].data)
    lesion_mask = volumes[-1].data > 0.5 if lesion else None
    scores = score_all(volumes[1].data, volumes[0].data, brain, lesion_mask)
    console.print(make_table(f"{pred} against {truth}", [{"protocol": k, **v} for k, v in scores.items()]))


def _compare(paths: list[Path], protocol: str, out_dir: Path, force: bool) -> None:
    import csv

    from ..errors import InputError
    from ..io.atomic import write_atomically
    from ..pipeline.compare import compare_runs, read_rows

    if len(paths) != 2:
        raise InputError("--compare takes two metrics.csv files: --compare A.csv --compare B.csv")
    results = compare_runs(read_rows(paths[0]), read_rows(paths[1]), protocol)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "comparison.csv"

    def _write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)

    write_atomically(target, _write, force=force)
    console.print(make_table(f"A = {paths[0]}  vs  B = {paths[1]} ({protocol}; * = p < 0.05 in both tests)", results))
    console.print(f"wrote {target}")


def eval_command(
    data: Optional[Path] = typer.Option(None, help="Folder of subject folders or a CSV manifest, with true contrasts."),
    model: Optional[Path] = typer.Option(None, help="Model checkpoint (default: the shipped model)."),
    subjects: str = typer.Option("", help="Comma-separated subjects to score (default: all)."),
    targets: str = typer.Option("", help="Comma-separated targets (default: every output of the model)."),
    subsets: str = typer.Option("all", help="all | single | single+rest | explicit, e.g. 't1,t2;t1'."),
    pred: Optional[Path] = typer.Option(None, help="Score one synthesised volume (with --truth)."),
    truth: Optional[Path] = typer.Option(None, help="The true volume for --pred."),
    mask: Optional[Path] = typer.Option(None, help="Brain mask for --pred (default: the truth's foreground)."),
    lesion: Optional[Path] = typer.Option(None, help="Lesion mask for --pred: adds in-lesion scores."),
    compare: Optional[list[Path]] = typer.Option(None, help="Two metrics.csv files to test against each other."),
    out_dir: Path = typer.Option(Path("eval-output"), help="Folder for metrics.csv, summary.json and qc/ PNGs."),
    protocol: str = typer.Option("brain", help="Protocol shown in the table: paper, brain or brasyn."),
    qc: bool = typer.Option(True, help="Write a QC montage per subject and target."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, help="Overwrite earlier reports."),
    update_card: bool = typer.Option(False, help="Add the table to the model's card (<model>.md)."),
    baseline: Optional[str] = typer.Option(None, help="Score a baseline instead of the model: 'replica' (random "
                                           "forest, trained on the model's training subjects)."),
    baseline_data: Optional[Path] = typer.Option(None, help="Where the baseline's training subjects are (default: --data)."),
    folds: int = typer.Option(0, min=0, help="Cross-validate: train on K-1 folds of --data, score the held-out fold."),
    train_inputs: str = typer.Option("t1,t1c,t2,flair", help="With --folds: input modalities of each fold's model."),
    train_outputs: str = typer.Option("t1,t1c,t2,flair", help="With --folds: output modalities."),
    train_epochs: int = typer.Option(20, min=1, help="With --folds: maximum epochs per fold."),
    train_steps: int = typer.Option(50, min=1, help="With --folds: steps per epoch."),
    train_width: float = typer.Option(0.375, help="With --folds: width multiplier."),
    train_crop: int = typer.Option(96, min=8, help="With --folds: training crop."),
    train_batch_size: int = typer.Option(16, min=1, help="With --folds: batch size."),
    seed: int = typer.Option(0, help="With --folds: seed for the folds and the training."),
) -> None:
    """Score synthesis: a model over subjects and input subsets (--data), one pair (--pred/--truth), or --compare."""

    def job() -> None:
        from ..errors import InputError
        from ..metrics import PROTOCOLS
        from ..modalities import parse_modality_list
        from ..pipeline.evaluate import EvalSettings, evaluate, summarise, update_model_card, write_reports
        from ..pipeline.model_loading import default_model_path

        if protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol '{protocol}': expected one of {', '.join(PROTOCOLS)}")
        if compare:
            return _compare(compare, protocol, out_dir, force)
        if pred or truth:
            if not (pred and truth):
                raise InputError("--pred and --truth go together")
            return _score_pair(pred, truth, mask, lesion)
        if data is None:
            raise InputError("give --data (with a model), --pred and --truth, or --compare A.csv --compare B.csv")
        from ..io.atomic import check_writable

        if out_dir.is_dir():  # refuse before minutes of work, not after
            for report in ("metrics.csv", "summary.json"):
                check_writable(out_dir / report, force)
        settings = EvalSettings(data=data, model=model, subjects=[s for s in subjects.split(",") if s] or None,
                                targets=parse_modality_list(targets) if targets else None, subsets=subsets,
                                device=device, qc_dir=out_dir / "qc" if qc else None, baseline=baseline,
                                baseline_data=baseline_data)
        with reporting() as reporter:
            if folds:
                from ..pipeline.crossval import cross_validate
                from ..pipeline.train import TrainSettings

                template = TrainSettings(data=data, inputs=parse_modality_list(train_inputs),
                                         outputs=parse_modality_list(train_outputs), out=out_dir / "unused.pt",
                                         epochs=train_epochs, steps_per_epoch=train_steps, width=train_width,
                                         crop=train_crop, batch_size=train_batch_size, seed=seed, device=device)
                out_dir.mkdir(parents=True, exist_ok=True)
                rows = cross_validate(template, settings, folds, out_dir, reporter)
            else:
                rows = evaluate(settings, reporter)
        csv_path, json_path = write_reports(rows, out_dir, force)
        console.print(make_table(f"mean ± sd per subset ({protocol} protocol)", _format_summary(summarise(rows, protocol))))
        console.print(f"wrote {csv_path} and {json_path}")
        if update_card:
            console.print(f"updated {update_model_card(model or default_model_path(), rows, protocol)}")

    run_guarded(job)
