"""`mrimpute eval`: score a model on subjects with known contrasts, score one pair, or compare two evaluations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..config import ModelConfig
from ..runtime.train_settings import TrainSettings
from .console import console, make_table, reporting, run_guarded
from .train_options import DEFAULT_CONTRASTS, settings_from_options

if TYPE_CHECKING:
    from ..pipeline.evaluate import EvalSettings


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
        if "unc_blurred_error" in s:  # the reference: |error| blurred, vs |error|
            row["blurred |error| rho"] = f"{s['unc_blurred_error']:.3f}"
        if "unc_shared_error" in s:  # the reference: another subset's |error|, vs |error|
            row["other inputs' |error| rho"] = f"{s['unc_shared_error']:.3f}"
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
    from ..pipeline.compare import compare_many, markdown_table, read_rows, run_label

    labels = [run_label(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [chr(ord("A") + i) for i in range(len(paths))]
    wide, long = compare_many([(label, read_rows(p)) for label, p in zip(labels, paths)], protocol)
    runs = ", ".join(f"{label} = {p}" for label, p in zip(labels, paths))
    title = (f"{runs} ({protocol} protocol; mean over subjects; * = differs from {labels[0]} with p < 0.05 in both a "
             "paired t-test and a Wilcoxon signed-rank test)")
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
    write_atomically(out_dir / "comparison.md", lambda tmp: tmp.write_text(markdown_table(title, wide)), force=force)
    written.append(out_dir / "comparison.md")
    console.print(make_table(title, wide))
    console.print(f"wrote {', '.join(map(str, written))}")


# eval --folds: each fold's model is trained as `train` trains one, with its defaults (TrainSettings, ModelConfig)
TrainInputs = Annotated[str, typer.Option(help="With --folds: input modalities of each fold's model.")]
TrainOutputs = Annotated[str, typer.Option(help="With --folds: output modalities.")]
TrainEpochs = Annotated[int, typer.Option(min=1, help="With --folds: maximum epochs per fold.")]
TrainSteps = Annotated[int, typer.Option("--train-steps", min=1, help="With --folds: steps per epoch.")]
TrainWidth = Annotated[float, typer.Option(help="With --folds: width multiplier.")]
TrainCrop = Annotated[int, typer.Option(min=8, help="With --folds: training crop.")]
TrainBatch = Annotated[int, typer.Option(min=1, help="With --folds: batch size.")]
FoldSeed = Annotated[int, typer.Option(help="With --folds: seed for the folds and the training.")]


def _fold_template(args: SimpleNamespace, reports_dir: Path) -> TrainSettings:
    """The settings each fold's model is trained with: the --train-* options, --seed, --device, the rest defaults."""
    chosen = {name.removeprefix("train_"): value for name, value in vars(args).items() if name.startswith("train_")}
    return settings_from_options({**chosen, "data": args.data, "out": reports_dir / "unused.pt", "seed": args.seed,
                                  "device": args.device})


def _eval_settings(args: SimpleNamespace, reports_dir: Path) -> EvalSettings:
    """What to score, from the options (--subjects, or a --split's part)."""
    from ..errors import InputError
    from ..modalities import parse_modality_list
    from ..pipeline.evaluate import EvalSettings
    from ..runtime.views import parse_axis, parse_views

    chosen = [s for s in args.subjects.split(",") if s] or None
    if args.split is not None:
        from ..data.split import load_split

        if chosen:
            raise InputError("--split chooses the subjects: give --subjects or --split, not both")
        chosen = list(load_split(args.split).part(args.part))
    return EvalSettings(
        data=args.data, model=args.model, subjects=chosen, held_out=args.part if args.split else None,
        targets=parse_modality_list(args.targets) if args.targets else None, subsets=args.subsets,
        device=args.device, qc_dir=reports_dir / "qc" if args.qc else None, baseline=args.baseline,
        baseline_data=args.baseline_data, baseline_cache=reports_dir / "forest-cache" if args.baseline else None,
        views=parse_views(args.axis, args.views, args.merge), merge=args.merge, mirror=args.mirror,
        striping_axis=parse_axis(args.striping_axis) if args.striping_axis else None,
        uncertainty=args.uncertainty, lesion_input=args.lesion_input)


def _score_dataset(args: SimpleNamespace, reports_dir: Path) -> None:
    """Score a model (or a baseline, or --folds cross-validated models) over --data; write and show the reports."""
    from ..io.atomic import check_writable
    from ..io.folders import ensure_folder
    from ..pipeline.evaluate import evaluate, summarise, update_model_card, write_reports
    from ..runtime.model_loading import default_model_path

    template = _fold_template(args, reports_dir) if args.folds else None  # a bad --train-* option: refused first
    ensure_folder(reports_dir)  # created if missing, and refused before minutes of work, not after
    for report in ("metrics.csv", "summary.json"):
        check_writable(reports_dir / report, args.force)
    settings = _eval_settings(args, reports_dir)
    with reporting() as reporter:
        if template is not None:
            from ..pipeline.crossval import cross_validate

            rows = cross_validate(template, settings, args.folds, reports_dir, reporter)
        else:
            rows = evaluate(settings, reporter)
    csv_path, json_path = write_reports(rows, reports_dir, args.force)
    console.print(make_table(f"mean ± sd per subset ({args.protocol} protocol)",
                             _format_summary(summarise(rows, args.protocol))))
    console.print(f"wrote {csv_path} and {json_path}")
    if args.update_card:
        console.print(f"updated {update_model_card(args.model or default_model_path(), rows, args.protocol)}")


def _evaluate(args: SimpleNamespace) -> None:
    """One pair (--pred/--truth), a comparison (--compare) or a dataset (--data)."""
    from ..errors import InputError
    from ..metrics import PROTOCOLS
    from ..runtime.device import set_threads

    set_threads(args.threads)
    if args.pred or args.truth:
        if not (args.pred and args.truth):
            raise InputError("--pred and --truth go together")
        return _score_pair(args.pred, args.truth, args.mask, args.lesion, args.out_dir, args.force)
    reports_dir = args.out_dir or Path("eval-output")
    if args.protocol.removesuffix("@lesion") not in PROTOCOLS:
        raise InputError(f"unknown protocol '{args.protocol}': expected one of {', '.join(PROTOCOLS)} (or "
                         "<protocol>@lesion: inside the lesion mask)")
    if args.compare:
        return _compare(args.compare, args.protocol, reports_dir, args.force)
    if args.data is None:
        raise InputError("give --data (with a model), --pred and --truth, or --compare A.csv --compare B.csv")
    _score_dataset(args, reports_dir)


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
                                           "forest, trained on the model's training subjects; each prediction is kept "
                                           "in OUT-DIR/forest-cache, so a rerun fits only the forests still missing)."),
    baseline_data: Optional[Path] = typer.Option(None, help="Where the baseline's training subjects are "
                                                 "(default: --data)."),
    folds: int = typer.Option(0, min=0, help="Cross-validate: train on K-1 folds of --data, score the held-out fold."),
    train_inputs: TrainInputs = DEFAULT_CONTRASTS,
    train_outputs: TrainOutputs = DEFAULT_CONTRASTS,
    train_epochs: TrainEpochs = TrainSettings.epochs,
    train_steps_per_epoch: TrainSteps = TrainSettings.steps_per_epoch,
    train_width: TrainWidth = ModelConfig.width,
    train_crop: TrainCrop = TrainSettings.crop,
    train_batch_size: TrainBatch = TrainSettings.batch_size,
    seed: FoldSeed = TrainSettings.seed,
    axis: Optional[str] = typer.Option(None, help="Apply the model along this slice axis: axial, coronal or sagittal."),
    views: Optional[str] = typer.Option(None, help="Synthesise along each of these axes (e.g. axial,coronal,sagittal): "
                                        "rows per view and for their merge, with a striping score."),
    merge: str = typer.Option("mean", help="With --views: merge the views voxel-wise by mean or median."),
    mirror: bool = typer.Option(False, help="Average each synthesis with that of the inputs' left-right mirror "
                                "image (synth --mirror)."),
    striping_axis: Optional[str] = typer.Option(None, help="With --views/--axis: the axis striping is measured "
                                                "across (default: the model's slice axis)."),
    uncertainty: bool = typer.Option(False, help="Add the in-brain Pearson and Spearman correlations between the "
                                     "uncertainty map (synth --uncertainty) and the absolute error."),
    lesion_input: bool = typer.Option(True, help="A lesion-aware model gets each subject's lesion.nii.gz as its "
                                      "lesion channel (--no-lesion-input: an empty mask)."),
) -> None:
    """Score synthesis: a model over subjects and input subsets (--data), one pair (--pred/--truth), or --compare."""
    args = SimpleNamespace(**locals())  # every option by name
    run_guarded(lambda: _evaluate(args))
