"""`mrimpute eval`: score a model on subjects with known contrasts, score one pair, or compare two evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded


def _format_summary(summary: list[dict]) -> list[dict]:
    """The console table of a summary: mean ± sd of each headline metric (metrics.METRICS), then the extras."""
    from ..metrics import format_value, shown_metrics

    rows = []
    for s in summary:
        row = {"target": s["target"], "inputs": s["subset"], **({"view": s["view"]} if "view" in s else {}),
               "n": s["n"], **{m.label: format_value(m, s[m.name], s[f"{m.name}_sd"])
                               for m in shown_metrics(headline_only=True)}}
        if "striping" in s:
            row["striping (truth)"] = f"{s['striping']:.4f} ({s['striping_truth']:.4f})"
        if "unc_pearson" in s:
            row["uncertainty~|error| r / rho"] = f"{s['unc_pearson']:.3f} / {s['unc_spearman']:.3f}"
        rows.append(row)
    return rows


PAIR_REPORTS = ("pair_metrics.csv", "pair_metrics.json")


def _score_pair(pred: Path, truth: Path, mask: Optional[Path], lesion: Optional[Path], out_dir: Optional[Path],
                force: bool) -> None:
    import csv
    import json

    from ..data.intensity import foreground_mask
    from ..io.atomic import check_writable, write_atomically
    from ..io.folders import ensure_folder
    from ..io.nifti import check_same_grid, load_volume
    from ..pipeline.evaluate import score_all

    if out_dir is not None:  # refuse before the work, not after
        ensure_folder(out_dir)
        for report in PAIR_REPORTS:
            check_writable(out_dir / report, force)
    volumes = [load_volume(p) for p in (truth, pred, mask, lesion) if p is not None]
    check_same_grid(volumes)
    brain = volumes[2].data > 0.5 if mask else foreground_mask(volumes[0].data)
    lesion_mask = volumes[-1].data > 0.5 if lesion else None
    scores = score_all(volumes[1].data, volumes[0].data, brain, lesion_mask)
    rows = [{"protocol": k, **v} for k, v in scores.items()]
    console.print(make_table(f"{pred} against {truth}", rows))
    if out_dir is None:
        return
    csv_path, json_path = (out_dir / name for name in PAIR_REPORTS)

    def _csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    files = {"pred": str(pred), "truth": str(truth), "mask": str(mask) if mask else None,
             "lesion": str(lesion) if lesion else None}
    write_atomically(csv_path, _csv, force=force)
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps({**files, "scores": scores}, indent=2) + "\n"),
                     force=force)
    console.print(f"wrote {csv_path} and {json_path}", highlight=False)


def _compare(paths: list[Path], protocol: str, out_dir: Path, force: bool) -> None:
    import csv

    from ..io.atomic import write_atomically
    from ..io.folders import ensure_folder
    from ..pipeline.compare import compare_many, read_rows, run_label

    labels = [run_label(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [chr(ord("A") + i) for i in range(len(paths))]
    wide, long = compare_many([(label, read_rows(p)) for label, p in zip(labels, paths)], protocol)
    ensure_folder(out_dir)
    written = []
    for name, rows in (("comparison.csv", wide), ("comparison_tests.csv", long)):
        def _write(tmp: Path, rows: list[dict] = rows) -> None:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(out_dir / name, _write, force=force)
        written.append(out_dir / name)
    runs = ", ".join(f"{label} = {p}" for label, p in zip(labels, paths))
    console.print(make_table(f"{runs} ({protocol} protocol; mean over subjects; * = differs from {labels[0]} with "
                             f"p < 0.05 in both a paired t-test and a Wilcoxon signed-rank test)", wide))
    console.print(f"wrote {written[0]} and {written[1]}")


def eval_command(
    data: Optional[Path] = typer.Option(None, help="Dataset with true contrasts: subject folders, BIDS, BraTS names, "
                                      "an nnU-Net folder or a CSV manifest."),
    model: Optional[Path] = typer.Option(None, help="Model checkpoint (default: the shipped model)."),
    subjects: str = typer.Option("", help="Comma-separated subjects to score (default: all)."),
    split: Optional[Path] = typer.Option(None, help="Score a part of a declared split (e.g. models/split.toml); a "
                                         "model that trained (or, for test, selected) on one of its subjects is "
                                         "refused."),
    part: str = typer.Option("test", help="With --split: test or validation."),
    targets: str = typer.Option("", help="Comma-separated targets (default: every output of the model)."),
    subsets: str = typer.Option("all", help="all | single | single+rest | explicit, e.g. 't1,t2;t1'."),
    pred: Optional[Path] = typer.Option(None, help="Score one synthesised volume (with --truth)."),
    truth: Optional[Path] = typer.Option(None, help="The true volume for --pred."),
    mask: Optional[Path] = typer.Option(None, help="Brain mask for --pred (default: the truth's foreground)."),
    lesion: Optional[Path] = typer.Option(None, help="Lesion mask for --pred: adds in-lesion scores."),
    compare: Optional[list[Path]] = typer.Option(None, help="Evaluations to test against the first one: "
                                                 "metrics.csv files or folders of them (repeat the option)."),
    out_dir: Optional[Path] = typer.Option(None, help="Folder for metrics.csv, summary.json and qc/ PNGs (default "
                                           "eval-output); with --pred/--truth, pair_metrics.csv and .json are "
                                           "written there only when it is given. Created if missing."),
    protocol: str = typer.Option("brain", help="Protocol shown in the table: paper, brain or brasyn (or e.g. "
                                 "brain@lesion: inside the lesion)."),
    qc: bool = typer.Option(True, help="Write a QC montage per subject and target."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: torch's default)."),
    force: bool = typer.Option(False, help="Overwrite earlier reports."),
    update_card: bool = typer.Option(False, help="Add the table to the model's card (<model>.md)."),
    baseline: Optional[str] = typer.Option(None, help="Score a baseline instead of the model: 'replica' (random "
                                           "forest, trained on the model's training subjects)."),
    baseline_data: Optional[Path] = typer.Option(None, help="Where the baseline's training subjects are "
                                                 "(default: --data)."),
    folds: int = typer.Option(0, min=0, help="Cross-validate: train on K-1 folds of --data, score the held-out fold."),
    train_inputs: str = typer.Option("t1,t1c,t2,flair", help="With --folds: input modalities of each fold's model."),
    train_outputs: str = typer.Option("t1,t1c,t2,flair", help="With --folds: output modalities."),
    train_epochs: int = typer.Option(20, min=1, help="With --folds: maximum epochs per fold."),
    train_steps: int = typer.Option(50, min=1, help="With --folds: steps per epoch."),
    train_width: float = typer.Option(0.375, help="With --folds: width multiplier."),
    train_crop: int = typer.Option(96, min=8, help="With --folds: training crop."),
    train_batch_size: int = typer.Option(16, min=1, help="With --folds: batch size."),
    seed: int = typer.Option(0, help="With --folds: seed for the folds and the training."),
    axis: Optional[str] = typer.Option(None, help="Apply the model along this slice axis: axial, coronal or sagittal."),
    views: Optional[str] = typer.Option(None, help="Synthesise along each of these axes (e.g. axial,coronal,sagittal): "
                                        "rows per view and for their merge, with a striping score."),
    merge: str = typer.Option("mean", help="With --views: merge the views voxel-wise by mean or median."),
    striping_axis: Optional[str] = typer.Option(None, help="With --views/--axis: the axis striping is measured "
                                                "across (default: the model's slice axis)."),
    uncertainty: bool = typer.Option(False, help="Add the in-brain Pearson and Spearman correlations between the "
                                     "uncertainty map (synth --uncertainty) and the absolute error."),
    lesion_input: bool = typer.Option(True, help="A lesion-aware model gets each subject's lesion.nii.gz as its "
                                      "lesion channel (--no-lesion-input: an empty mask)."),
) -> None:
    """Score synthesis: a model over subjects and input subsets (--data), one pair (--pred/--truth), or --compare."""

    def job() -> None:
        from ..errors import InputError
        from ..metrics import PROTOCOLS
        from ..modalities import parse_modality_list
        from ..pipeline.device import set_threads
        from ..pipeline.evaluate import EvalSettings, evaluate, summarise, update_model_card, write_reports
        from ..pipeline.model_loading import default_model_path

        set_threads(threads)
        if pred or truth:
            if not (pred and truth):
                raise InputError("--pred and --truth go together")
            return _score_pair(pred, truth, mask, lesion, out_dir, force)
        reports_dir = out_dir or Path("eval-output")
        if protocol.removesuffix("@lesion") not in PROTOCOLS:
            raise InputError(f"unknown protocol '{protocol}': expected one of {', '.join(PROTOCOLS)} (or "
                             "<protocol>@lesion: inside the lesion mask)")
        if compare:
            return _compare(compare, protocol, reports_dir, force)
        if data is None:
            raise InputError("give --data (with a model), --pred and --truth, or --compare A.csv --compare B.csv")
        from ..io.atomic import check_writable
        from ..io.folders import ensure_folder

        ensure_folder(reports_dir)  # created if missing, and refused before minutes of work, not after
        for report in ("metrics.csv", "summary.json"):
            check_writable(reports_dir / report, force)
        from ..pipeline.views import parse_axis, parse_views

        chosen = [s for s in subjects.split(",") if s] or None
        if split is not None:
            from ..data.split import load_split

            if chosen:
                raise InputError("--split chooses the subjects: give --subjects or --split, not both")
            chosen = list(load_split(split).part(part))
        settings = EvalSettings(data=data, model=model, subjects=chosen, held_out=part if split else None,
                                targets=parse_modality_list(targets) if targets else None, subsets=subsets,
                                device=device, qc_dir=reports_dir / "qc" if qc else None, baseline=baseline,
                                baseline_data=baseline_data, views=parse_views(axis, views, merge), merge=merge,
                                striping_axis=parse_axis(striping_axis) if striping_axis else None,
                                uncertainty=uncertainty, lesion_input=lesion_input)
        with reporting() as reporter:
            if folds:
                from ..pipeline.crossval import cross_validate
                from ..pipeline.train import TrainSettings

                template = TrainSettings(data=data, inputs=parse_modality_list(train_inputs),
                                         outputs=parse_modality_list(train_outputs), out=reports_dir / "unused.pt",
                                         epochs=train_epochs, steps_per_epoch=train_steps, width=train_width,
                                         crop=train_crop, batch_size=train_batch_size, seed=seed, device=device)
                reports_dir.mkdir(parents=True, exist_ok=True)
                rows = cross_validate(template, settings, folds, reports_dir, reporter)
            else:
                rows = evaluate(settings, reporter)
        csv_path, json_path = write_reports(rows, reports_dir, force)
        console.print(make_table(f"mean ± sd per subset ({protocol} protocol)",
                                 _format_summary(summarise(rows, protocol))))
        console.print(f"wrote {csv_path} and {json_path}")
        if update_card:
            console.print(f"updated {update_model_card(model or default_model_path(), rows, protocol)}")

    run_guarded(job)
