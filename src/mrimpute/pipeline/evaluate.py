"""Evaluation: for every subject, target and input subset, synthesise and score under every protocol."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.intensity import foreground_mask
from ..data.subjects import discover_subjects
from ..errors import InputError
from ..io.atomic import write_atomically
from ..io.nifti import Volume, check_same_grid, load_volume
from ..metrics import PROTOCOLS, compare
from ..modalities import all_subsets, canonical_modality
from ..preview import save_qc
from .device import resolve_device
from .model_loading import load_model
from .reporting import Reporter
from .synthesize import normalise_inputs, synthesize_subsets

CSV_FIELDS = ("subject", "target", "subset", "n_inputs", "protocol", "mse", "mae", "psnr", "ssim", "data_range")


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
    """One row per subject x target x subset x protocol."""
    reporter = reporter or Reporter()
    device = resolve_device(settings.device)
    model, payload = load_model(settings.model, device)
    config = model.config
    subjects = discover_subjects(settings.data)
    if settings.subjects:
        unknown = set(settings.subjects) - {s.name for s in subjects}
        if unknown:
            raise InputError(f"{settings.data}: no subject named {', '.join(sorted(unknown))}")
        subjects = [s for s in subjects if s.name in settings.subjects]
    predict = _model_predictor(model, device, reporter)
    if settings.baseline == "replica":
        from .baseline import ReplicaPredictor

        training = payload["metadata"].get("training_subjects", [])
        modalities = list(dict.fromkeys(config.inputs + config.outputs))
        predict = ReplicaPredictor(settings.baseline_data or settings.data, training, modalities, reporter=reporter)
    elif settings.baseline:
        raise InputError(f"unknown baseline '{settings.baseline}': expected replica")
    rows: list[dict] = []
    for subject in subjects:
        present = [m for m in dict.fromkeys(config.inputs + config.outputs) if m in subject.files]
        volumes = {m: load_volume(subject.files[m]) for m in present}
        check_same_grid(list(volumes.values()))
        for target in [t for t in (settings.targets or config.outputs) if t in volumes]:
            available = [m for m in config.inputs if m in volumes and m != target]
            subsets = parse_subsets(settings.subsets, available)
            if not subsets:
                continue
            inputs, mask, _ = normalise_inputs({m: volumes[m].data for m in available})
            reporter.message(f"{subject.name}: {target} from {len(subsets)} input subset(s)")
            results = predict(inputs, mask, subsets, target)
            truth = volumes[target].data
            brain = foreground_mask(truth)
            lesion = _lesion_mask(subject, volumes[target])
            for subset in subsets:
                for protocol, scores in score_all(results[subset], truth, brain, lesion).items():
                    rows.append({"subject": subject.name, "target": target, "subset": "+".join(subset),
                                 "n_inputs": len(subset), "protocol": protocol, **scores})
            if settings.qc_dir is not None:
                settings.qc_dir.mkdir(parents=True, exist_ok=True)
                save_qc(settings.qc_dir / f"{subject.name}_{target}.png", {m: inputs[m] for m in available}, truth,
                        results[max(subsets, key=len)], brain, target, force=True)
    if not rows:
        raise InputError(f"{settings.data}: nothing to evaluate (no subject has a target and another input)")
    return rows


def _model_predictor(model, device, reporter: Reporter):
    """Synthesis of one target from several input subsets, each input encoded once per batch of slices."""

    def predict(inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                target: str) -> dict[tuple[str, ...], np.ndarray]:
        results = synthesize_subsets(model, inputs, mask, [(s, target) for s in subsets], device, reporter=reporter)
        return {subset: results[(subset, target)] for subset in subsets}

    return predict


def _lesion_mask(subject, reference: Volume) -> np.ndarray | None:
    """The subject's expert lesion mask on the reference grid, if it has one with any lesion voxel."""
    if "lesion" not in subject.masks:
        return None
    lesion = load_volume(subject.masks["lesion"])
    check_same_grid([reference, lesion])
    mask = lesion.data > 0.5
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
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["protocol"] == protocol:
            groups.setdefault((row["target"], row["subset"]), []).append(row)
    summary = []
    for (target, subset), members in groups.items():
        entry = {"target": target, "subset": subset, "n": len(members)}
        for metric in ("mse", "mae", "psnr", "ssim"):
            values = [float(m[metric]) for m in members]
            entry[metric] = float(np.mean(values))
            entry[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def write_reports(rows: list[dict], out_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """metrics.csv (every row) and summary.json (mean and sd per protocol, target and subset)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "summary.json"

    def _csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            extra = [k for k in rows[0] if k not in CSV_FIELDS]  # e.g. the fold of a cross-validation
            writer = csv.DictWriter(handle, fieldnames=[*CSV_FIELDS, *extra])
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(csv_path, _csv, force=force)
    summary = {protocol: summarise(rows, protocol) for protocol in dict.fromkeys(r["protocol"] for r in rows)}
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), force=force)
    return csv_path, json_path


def card_section(rows: list[dict], protocol: str = "brain") -> str:
    """A Markdown table of one protocol's per-target, per-subset scores, for a model card."""
    subjects = sorted({r["subject"] for r in rows})
    lines = [f"## Evaluation on {', '.join(subjects)} ({protocol} protocol: inside the brain, "
             "volumes divided by their brain mean; SSIM/PSNR from scikit-image)", "",
             "| target | inputs | SSIM | PSNR (dB) | MAE | MSE |", "|---|---|---|---|---|---|"]
    for s in summarise(rows, protocol):
        lines.append(f"| {s['target']} | {s['subset']} | {s['ssim']:.4f} | {s['psnr']:.2f} | {s['mae']:.4f} | {s['mse']:.4f} |")
    return "\n".join(lines)


def update_model_card(model_path: Path, rows: list[dict], protocol: str = "brain") -> Path:
    """Rewrite a model's card with an evaluation section made from these rows."""
    from ..config import ModelConfig
    from ..io.checkpoint import load_checkpoint, write_model_card

    payload = load_checkpoint(model_path)
    metadata = {**payload["metadata"], "card_sections": [*payload["metadata"].get("card_sections", []),
                                                         card_section(rows, protocol)]}
    return write_model_card(model_path, ModelConfig.from_dict(payload["config"]), metadata)
