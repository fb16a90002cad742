"""`mrimpute tune-uncertainty`: per target, how much to blur the error heads' maps. The heads predict the error
voxel by voxel; the error itself is spatially coherent (a lesion, a mis-drawn fold), so a map blurred inside the
brain can rank it better. On validation subjects, for each sigma of a grid, the in-brain Spearman correlation of the
blurred map with the absolute error is averaged over every subject and input subset; each target keeps its best
sigma (0: no blur), written into a copy of the model (ModelConfig.error_map_blur), which synth and eval then apply."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..data.intensity import foreground_mask
from ..data.subjects import discover_subjects
from ..errors import InputError
from ..io.checkpoint import load_checkpoint, save_checkpoint, write_model_card
from ..metrics import blurred_map_spearman
from ..runtime.reporting import Reporter
from ..runtime.session import SynthesisSession
from ..runtime.synthesize import Product
from .evaluate import EvalSettings, check_held_out, subject_requests

DEFAULT_SIGMAS = (0.0, 1.0, 2.0, 3.0, 5.0)
PAYLOAD_KEYS = ("format_version", "package_version", "config", "metadata", "state_dict")


@dataclass
class BlurTuning:
    """Per row (subject, target, subset) the Spearman of each sigma; per target the mean and the chosen sigma."""

    rows: list[dict]
    means: dict[str, dict[float, float]]
    chosen: dict[str, float]


def measure_blurs(model: Path, data: Path, subjects: list[str], subsets: str = "single+rest",
                  sigmas: tuple[float, ...] = DEFAULT_SIGMAS, device: str = "cpu",
                  reporter: Reporter | None = None) -> BlurTuning:
    """Score each blur of the model's unblurred error maps on `subjects` of `data` (a split's validation part)."""
    reporter = reporter or Reporter()
    session = SynthesisSession.open(model, device)
    config = session.config
    if not config.error_heads:
        raise InputError(f"{model}: the model has no error heads to tune (train-uncertainty adds them)")
    check_held_out(subjects, session.model.metadata, "validation", model)
    known = {s.name: s for s in discover_subjects(data)}
    unknown = sorted(set(subjects) - set(known))
    if unknown:
        raise InputError(f"{data}: no subject named {', '.join(unknown)}")
    config.error_map_blur = {}  # score the heads' own maps; this session is ours alone
    settings = EvalSettings(data=data, targets=list(config.error_heads), subsets=subsets)
    rows = []
    for name in subjects:
        for target, chosen, inputs, mask, volumes in subject_requests(known[name], session, settings, reporter):
            products = [Product(kind, subset, target) for subset in chosen for kind in ("synthesis", "uncertainty")]
            maps = session.products(inputs, mask, products, reporter=reporter)
            truth = volumes[target].data
            brain = foreground_mask(truth)
            for subset in chosen:
                scores = blurred_map_spearman(maps[Product("uncertainty", subset, target)],
                                              maps[Product("synthesis", subset, target)], truth, brain, sigmas)
                rows.append({"subject": name, "target": target, "subset": "+".join(subset), **scores})
    if not rows:
        raise InputError(f"{data}: nothing to tune on (no subject has a target with an error head and an input)")
    return summarise_blurs(rows, sigmas)


def summarise_blurs(rows: list[dict], sigmas: tuple[float, ...]) -> BlurTuning:
    """Mean Spearman per target and sigma (rows whose map is constant are left out); the best sigma per target."""
    means: dict[str, dict[float, float]] = {}
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        means[target] = {s: float(np.nanmean([r[s] for r in mine])) if any(np.isfinite(r[s]) for r in mine)
                         else float("nan") for s in sigmas}
    chosen = {t: max(sigmas, key=lambda s, m=m: m[s] if np.isfinite(m[s]) else -np.inf) for t, m in means.items()}
    return BlurTuning(rows, means, chosen)


def write_tuned(model: Path, out: Path, tuning: BlurTuning, subjects: list[str], force: bool = False) -> Path:
    """A copy of the model whose error maps are blurred as chosen (weights unchanged), with a card beside it."""
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to overwrite)")
    if out.resolve() == Path(model).resolve():
        raise InputError(f"{out}: is the model being tuned; write the tuned copy elsewhere")
    payload = load_checkpoint(model)
    config = replace(ModelConfig.from_dict(payload["config"]), error_map_blur={
        t: float(s) for t, s in tuning.chosen.items() if s > 0})
    metadata = {**payload["metadata"], "error_map_blur": {
        "sigma_voxels": dict(tuning.chosen), "tuned_on": list(subjects),
        "mean_spearman": {t: {str(s): round(v, 4) for s, v in m.items()} for t, m in tuning.means.items()}}}
    extra = {k: v for k, v in payload.items() if k not in PAYLOAD_KEYS}
    save_checkpoint(out, config, payload["state_dict"], metadata, extra)
    write_model_card(out, config, metadata)
    return out
