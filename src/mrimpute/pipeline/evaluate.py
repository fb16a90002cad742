"""Evaluation: for every subject, target and input subset, synthesise and score under every protocol."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import SLICE_AXES
from ..data.intensity import foreground_mask
from ..data.subjects import discover_subjects
from ..errors import InputError
from ..io.atomic import write_atomically
from ..io.nifti import Volume, check_same_grid, load_volume
from ..lesions.masks import load_lesion_mask
from ..metrics import PROTOCOLS, compare, format_value, metric_names, shown_metrics, striping
from ..modalities import all_subsets, canonical_modality
from ..preview import save_qc
from ..runtime.reporting import Reporter
from ..runtime.session import SynthesisSession
from ..runtime.synthesize import Product
from ..runtime.views import merge_views, merged_label
from .eval_extras import Prediction, extra_scores, shared_errors

ROW_KEYS = ("subject", "target", "subset", "n_inputs", "protocol")


def csv_fields() -> tuple[str, ...]:
    """metrics.csv's leading columns: the row's keys, each metric of metrics.METRICS, the data range."""
    return (*ROW_KEYS, *metric_names(), "data_range")


CSV_FIELDS = csv_fields()  # subject, ..., protocol, mse, mae, psnr, ssim, slope, data_range
# added by --views/--axis (striping, brain units, the same on every protocol's row) and --uncertainty
OPTIONAL_METRICS = ("striping", "striping_truth", "unc_pearson", "unc_spearman", "unc_blurred_error",
                    "unc_shared_error")


@dataclass
class EvalSettings:
    """What `mrimpute eval --model --data` takes."""

    data: Path
    model: Path | None = None
    subjects: list[str] | None = None
    targets: list[str] | None = None
    subsets: str = "all"
    device: str = "auto"
    qc_dir: Path | None = None
    baseline: str | None = None  # "replica": score the REPLICA-style forest instead of the model
    baseline_data: Path | None = None  # where the baseline's training subjects are (default: data)
    baseline_cache: Path | None = None  # where the baseline keeps each prediction, so a rerun resumes (eval: reports)
    views: list[str] | None = None  # slice axes to synthesise along: rows per view (and merged), with striping
    merge: str = "mean"  # how several views are merged: mean or median
    mirror: bool = False  # each view averaged with the synthesis of the inputs' left-right mirror image
    striping_axis: str | None = None  # the axis striping is measured across (default: the model's slice axis)
    uncertainty: bool = False  # add the in-brain correlations between the uncertainty map and the absolute error
    lesion_input: bool = True  # a lesion-aware model gets each subject's expert lesion mask (False: an empty one)
    held_out: str | None = None  # "test" or "validation": the subjects are a split's part the model must not know


def check_held_out(subjects: list[str], metadata: dict, part: str, model: Path | str) -> None:
    """Refuse a model whose checkpoint lists any of a split's held-out subjects among those it trained on (or, for
    the test part, selected its best epoch on)."""
    seen = set(metadata.get("training_subjects", []))
    seen |= set(metadata.get("validation_subjects", [])) if part == "test" else set()
    leaked = sorted(seen & set(subjects))
    if leaked:
        raise InputError(f"{model}: the model saw {', '.join(leaked)} in training or model selection; it cannot be "
                         f"scored on the split's {part} subjects")


def parse_subsets(spec: str, available: list[str]) -> list[tuple[str, ...]]:
    """'all' (every non-empty subset), 'single' (each input alone), 'single+rest' (each alone and all together),
    or explicit subsets like 't1,t2;t1'; subsets needing an unavailable input are dropped."""
    if spec == "all":
        return all_subsets(available)
    if spec == "single":
        return [(m,) for m in available]
    if spec == "single+rest":
        return [(m,) for m in available] + ([tuple(available)] if len(available) > 1 else [])
    subsets = []
    for part in spec.split(";"):
        subset = tuple(canonical_modality(m) for m in part.split(",") if m.strip())
        if subset and all(m in available for m in subset):
            subsets.append(tuple(m for m in available if m in subset))
    return subsets


def evaluate(settings: EvalSettings, reporter: Reporter | None = None) -> list[dict]:
    """One row per subject x target x subset x protocol, from a synthesis session on the model (read once)."""
    reporter = reporter or Reporter()
    session = SynthesisSession.open(settings.model, settings.device)
    if settings.held_out:
        check_held_out(settings.subjects or [], session.model.metadata, settings.held_out,
                       settings.model or "the model")
    subjects = discover_subjects(settings.data)
    if settings.subjects:
        unknown = set(settings.subjects) - {s.name for s in subjects}
        if unknown:
            raise InputError(f"{settings.data}: no subject named {', '.join(sorted(unknown))}")
        subjects = [s for s in subjects if s.name in settings.subjects]
    predict = _predictor(session, settings, reporter, subjects)
    rows = [row for subject in subjects for row in _subject_rows(subject, session, settings, predict, reporter)]
    if not rows:
        raise InputError(f"{settings.data}: nothing to evaluate (no subject has a target and another input)")
    return rows


def _predictor(session: SynthesisSession, settings: EvalSettings, reporter: Reporter, subjects: list):
    """The model's predictor, or the REPLICA-style forest's (--baseline replica) trained on the subjects the model
    trained on (with settings.baseline_cache, fitted forest by forest over every subject's requests first)."""
    if not settings.baseline:
        return _model_predictor(session, reporter, settings)
    from .baseline import replica_for_eval

    requests = (request for subject in subjects for request in subject_requests(subject, session, settings))
    return replica_for_eval(session, settings, reporter, requests)


def subject_requests(subject, session: SynthesisSession, settings: EvalSettings, reporter: Reporter | None = None):
    """For each target the subject has: (target, input subsets, normalised inputs, their mask, the volumes)."""
    config = session.config
    present = [m for m in dict.fromkeys(config.inputs + config.outputs) if m in subject.files]
    volumes = {m: load_volume(subject.files[m]) for m in present}
    check_same_grid(list(volumes.values()))
    for target in [t for t in (settings.targets or config.outputs) if t in volumes]:
        available = [m for m in config.inputs if m in volumes and m != target]
        subsets = parse_subsets(settings.subsets, available)
        if subsets:
            prepared = session.normalise({m: volumes[m].data for m in available})
            if reporter is not None:
                reporter.message(f"{subject.name}: {target} from {len(subsets)} input subset(s)")
            yield target, subsets, prepared.volumes, prepared.mask, volumes


def _subject_rows(subject, session: SynthesisSession, settings: EvalSettings, predict, reporter: Reporter
                  ) -> list[dict]:
    """The rows of one subject: each target it has from each input subset, scored (and its QC picture)."""
    config, rows = session.config, []
    for target, subsets, inputs, mask, volumes in subject_requests(subject, session, settings, reporter):
        lesion = _lesion_mask(subject, volumes[target])
        drawn = lesion if config.lesion_channel and settings.lesion_input else None
        results = predict(inputs, mask, subsets, target, drawn)
        truth = volumes[target].data
        brain = foreground_mask(truth)
        striping_axis = settings.striping_axis or config.slice_axis
        truth_striping = striping(truth, brain, SLICE_AXES[striping_axis]) if settings.views else None
        shared = shared_errors(results, truth, brain) if settings.uncertainty else {}
        for (view, subset), maps in results.items():
            extra = extra_scores(maps, truth, brain, view if settings.views else None, striping_axis, truth_striping)
            if settings.uncertainty:
                extra["unc_shared_error"] = shared[(view, subset)]
            for protocol, scores in score_all(maps["synthesis"], truth, brain, lesion).items():
                rows.append({"subject": subject.name, "target": target, "subset": "+".join(subset),
                             "n_inputs": len(subset), "protocol": protocol, **scores, **extra})
        if settings.qc_dir is not None:
            settings.qc_dir.mkdir(parents=True, exist_ok=True)
            last_view = list(results)[-1][0]  # the merged view when there are several
            shown = max(subsets, key=len)  # the largest requested subset: only its inputs are shown
            save_qc(settings.qc_dir / f"{subject.name}_{target}.png", {m: inputs[m] for m in shown}, truth,
                    results[(last_view, shown)]["synthesis"], brain, target, force=True, subset=shown,
                    lesion=lesion, subject=subject.name)  # lesions outlined on the true and synthetic target
    return rows


def _model_predictor(session: SynthesisSession, reporter: Reporter, settings: EvalSettings):
    """Synthesis of one target from several input subsets (and its uncertainty with settings.uncertainty), each
    input encoded once per batch of slices; along each of settings.views, plus their merge when there are several."""
    views = settings.views or [session.config.slice_axis]
    kinds = ["synthesis"] + (["uncertainty"] if settings.uncertainty else [])

    def predict(inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                target: str, lesion: np.ndarray | None = None) -> Prediction:
        products = [Product(kind, subset, target) for subset in subsets for kind in kinds]
        per_view = {view: session.products(inputs, mask, products, reporter=reporter, axis=view, lesion=lesion,
                                           mirror=settings.mirror) for view in views}
        if len(views) > 1:
            per_view[merged_label(views, settings.merge)] = merge_views(list(per_view.values()), settings.merge)
        return {(view if settings.views else "", subset): {k: results[Product(k, subset, target)] for k in kinds}
                for view, results in per_view.items() for subset in subsets}

    return predict


def _lesion_mask(subject, reference: Volume) -> np.ndarray | None:
    """The subject's expert lesion mask on the reference grid, if it has one with any lesion voxel."""
    if "lesion" not in subject.masks:
        return None
    mask = load_lesion_mask(subject.masks["lesion"], reference)
    return mask if mask.any() else None


def score_all(prediction: np.ndarray, truth: np.ndarray, brain: np.ndarray,
              lesion: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Scores under every protocol, and inside the lesion ('<protocol>@lesion') when a lesion mask is given."""
    scores = {protocol: compare(prediction, truth, brain, protocol) for protocol in PROTOCOLS}
    if lesion is not None:
        scores.update({f"{protocol}@lesion": compare(prediction, truth, brain, protocol, region=lesion)
                       for protocol in PROTOCOLS})
    return scores


def summarise(rows: list[dict], protocol: str = "brain") -> list[dict]:
    """Mean and sd of each metric per target and subset for one protocol (the paper's Table IV layout)."""
    groups: dict[tuple[str, str, str | None], list[dict]] = {}
    for row in rows:
        if row["protocol"] == protocol:
            groups.setdefault((row["target"], row["subset"], row.get("view")), []).append(row)
    summary = []
    for (target, subset, view), members in groups.items():
        entry = {"target": target, "subset": subset, **({"view": view} if view is not None else {}), "n": len(members)}
        optional = [m for m in OPTIONAL_METRICS if all(m in member for member in members)]
        for metric in (*metric_names(), *optional):
            values = [float(m[metric]) for m in members]
            entry[metric] = float(np.mean(values))
            entry[f"{metric}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # NaN in: NaN out
        summary.append(entry)
    return summary


def write_reports(rows: list[dict], out_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """metrics.csv (every row) and summary.json (mean and sd per protocol, target and subset)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "summary.json"

    def _csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            fields = csv_fields()
            extra = list(dict.fromkeys(k for row in rows for k in row if k not in fields))  # e.g. a fold, a view
            writer = csv.DictWriter(handle, fieldnames=[*fields, *extra])
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(csv_path, _csv, force=force)
    summary = {protocol: summarise(rows, protocol) for protocol in dict.fromkeys(r["protocol"] for r in rows)}
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), force=force)
    return csv_path, json_path


def card_section(rows: list[dict], protocol: str = "brain") -> str:
    """A Markdown table of one protocol's per-target, per-subset scores, for a model card."""
    subjects = sorted({r["subject"] for r in rows})
    shown = shown_metrics()
    title = (f"## Evaluation on {', '.join(subjects)} ({protocol} protocol: inside the brain, "
             "volumes divided by their brain mean; SSIM/PSNR from scikit-image)")
    header = "| " + " | ".join(["target", "inputs", *(m.label for m in shown)]) + " |"
    lines = [title, "", header, "|---" * (2 + len(shown)) + "|"]
    for s in summarise(rows, protocol):
        inputs = f"{s['subset']} ({s['view']})" if s.get("view") else s["subset"]
        lines.append("| " + " | ".join([s["target"], inputs, *(format_value(m, s[m.name]) for m in shown)]) + " |")
    return "\n".join(lines)


def update_model_card(model_path: Path, rows: list[dict], protocol: str = "brain") -> Path:
    """Rewrite a model's card with an evaluation section made from these rows."""
    from ..config import ModelConfig
    from ..io.checkpoint import load_checkpoint, write_model_card

    payload = load_checkpoint(model_path)
    metadata = {**payload["metadata"], "card_sections": [*payload["metadata"].get("card_sections", []),
                                                         card_section(rows, protocol)]}
    return write_model_card(model_path, ModelConfig.from_dict(payload["config"]), metadata)
