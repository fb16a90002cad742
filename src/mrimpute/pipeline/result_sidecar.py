"""The sidecar of one synthesised target, from a synthesis result (io/sidecar.py writes it)."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..data.normaliser import DESCRIPTION
from ..io.checkpoint import card_path
from ..io.sidecar import synthesis_sidecar
from .synthesize import SynthesisResult


def result_sidecar(target: str, result: SynthesisResult, inputs: list[dict], model_path: Path, model_sum: str) -> dict:
    """The sidecar of one synthesised target: inputs, model, normaliser, scalings, warnings, brain extraction."""
    card = card_path(model_path)
    warnings = [f"{path}: {message}" for path, messages in result.findings.items() for message in messages]
    return synthesis_sidecar(
        target, inputs, {"file": Path(model_path).name, "sha256": model_sum,
                         "card": str(card) if card.is_file() else None},
        __version__, result.normaliser, DESCRIPTION.get(result.normaliser, ""),
        {m: s.as_dict() for m, s in result.scalings.items()}, warnings,
        result.brain_extraction or None)
