"""Checkpoints: weights plus plain-typed metadata in one file (loads with weights_only=True), and a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import ModelConfig
from ..errors import CheckpointError
from .atomic import write_atomically

FORMAT_VERSION = 1
INTENDED_USE = """## Intended use
For research: imputing missing contrasts in studies and exploring multimodal synthesis. Not for diagnosis or any
clinical decision. The model learnt from the few subjects listed above; on scans unlike them (other scanners,
sequences, pathologies, ages) it can fail without warning. A synthetic image can miss a lesion that is there or draw
one that is not: never read a synthetic contrast as if it had been acquired."""


def save_checkpoint(path: Path, config: ModelConfig, state_dict: dict, metadata: dict,
                    extra: dict | None = None) -> None:
    """Write weights, the network's config and metadata (and any training state) atomically."""
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": config.to_dict(),
        "metadata": metadata,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    if extra:
        payload.update(extra)
    write_atomically(Path(path), lambda tmp: torch.save(payload, tmp), force=True)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely (weights_only) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: not a readable mrimpute model ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or "format_version" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not an mrimpute model file")
    check_payload(path, payload)
    return payload


def _kind(value: object) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def check_payload(path: Path, payload: dict) -> None:
    """Refuse malformed metadata of a checkpoint with one line: format version, config, metadata, weights."""
    version = payload["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: malformed model file (format_version is {_kind(version)}, not an integer)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: model format {version} is newer than this mrimpute supports")
    for key in ("config", "metadata", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: malformed model file ({key} is {_kind(payload.get(key))}, "
                                  "not a mapping)")


def card_path(model_path: Path) -> Path:
    """Where the human-readable model card of a checkpoint lives: beside it, with .md."""
    return Path(model_path).with_suffix(".md")


def write_model_card(model_path: Path, config: ModelConfig, metadata: dict) -> Path:
    """Write a Markdown model card beside the checkpoint from its config and metadata."""
    lines = [
        f"# mrimpute model `{Path(model_path).name}`",
        "",
        "Multimodal MR synthesis with a modality-invariant latent (Chartsias et al., IEEE TMI 2018).",
        "",
        "| setting | value |",
        "|---|---|",
        f"| inputs | {', '.join(config.inputs)} |",
        f"| outputs | {', '.join(config.outputs)} |",
        f"| latent channels | {config.latent} |",
        f"| width multiplier | {config.width} |",
        f"| fusion | {config.fusion} |",
        f"| slice axis | {config.slice_axis} |",
        f"| lesion channel | {config.lesion_channel} |",
    ]
    for key in ("package_version", "created", "normalisation", "training_subjects", "validation_subjects",
                "train_settings", "epochs_run", "best_epoch", "training_seconds", "device", "validation",
                "fusion_max_share"):
        if key in metadata:
            lines.append(f"| {key.replace('_', ' ')} | {metadata[key]} |")
    for section in metadata.get("card_sections", []):
        lines += ["", section]
    lines += ["", INTENDED_USE]
    text = "\n".join(lines) + "\n"
    path = card_path(model_path)
    write_atomically(path, lambda tmp: tmp.write_text(text), force=True)
    return path
