"""The sidecar of one synthesised target, from a synthesis result (io/sidecar.py writes it)."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..data.normaliser import DESCRIPTION
from ..io.checkpoint import card_path
from ..io.sidecar import synthesis_sidecar
from .synthesize import SynthesisResult


def result_sidecar(target: str, result: SynthesisResult, inputs: list[dict], model_path: Path, model_sum: str,
                   extra: dict | None = None) -> dict:
    """The sidecar of one synthesised target: inputs, model, normaliser, scalings, warnings, brain extraction, the
    slice axes and the mirror pass (synth --views, --mirror), and `extra` fields (dataset mode: `Sources` as BIDS
    URIs)."""
    card = card_path(model_path)
    return synthesis_sidecar(
        target, inputs, {"file": Path(model_path).name, "sha256": model_sum,
                         "card": str(card) if card.is_file() else None},
        __version__, result.normaliser, DESCRIPTION.get(result.normaliser, ""),
        {m: s.as_dict() for m, s in result.scalings.items()}, result.warnings,
        result.brain_extraction or None, {"Views": result.views, "Mirror": result.mirror, **(extra or {})})
