"""Training options shared by `train` and `train-decoder`/`-encoder`/`-uncertainty` (--device and --threads: in
options.py), and the one way a command's options become TrainSettings (also `eval --folds`').

The defaults are not written here: each option's default is its field's in TrainSettings or ModelConfig (read as
`TrainSettings.epochs`, or `default_of(...)` for a field with a default factory) where the command declares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..config import ModelConfig, default_of
from ..runtime.train_settings import TrainSettings

DEFAULT_CONTRASTS = ",".join(default_of(ModelConfig, "inputs"))

Epochs = Annotated[int, typer.Option(min=1, help="Maximum number of epochs.")]
Steps = Annotated[int, typer.Option("--steps-per-epoch", min=1, help="Optimiser steps per epoch.")]
BatchSize = Annotated[int, typer.Option(help="Slices per step.")]
Crop = Annotated[int, typer.Option(help="Training crop size in pixels (a multiple of 4).")]
Lr = Annotated[float, typer.Option(help="Adam learning rate.")]
Seed = Annotated[int, typer.Option(help="Random seed (runs with one seed are repeatable).")]
Patience = Annotated[int, typer.Option(min=1, help="Stop after this many epochs without validation improvement.")]
ValSubjects = Annotated[str, typer.Option(help="Comma-separated validation subjects (default: a seeded 20%).")]
ValCrops = Annotated[int, typer.Option(min=1, max=4096, help="Fixed validation crops scored after every epoch.")]
TimeLimit = Annotated[float, typer.Option("--time-limit", help="Stop after the epoch that passes this many minutes "
                                          "(0: no limit).")]
Resume = Annotated[bool, typer.Option(help="Continue from '<out>.last.pt' after an interruption.")]
Force = Annotated[bool, typer.Option(help="Replace an existing model at --out.")]
Split = Annotated[Optional[Path], typer.Option(help="A declared split (e.g. models/split.toml): its test subjects are "
                                              "never read, its validation subjects pick the best epoch.")]

LISTS = ("exclude", "subjects", "val_subjects")  # comma-separated subject names
COST_OPTIONS = ("no_c1", "no_c2", "no_c3", "ssim", "mse")


def _listed(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _model(values: dict[str, Any]) -> ModelConfig:
    """The network's settings among the options (a field of ModelConfig by name; modalities comma-separated)."""
    from .. import model  # noqa: F401  (registers the fusions ModelConfig checks)
    from ..modalities import parse_modality_list

    chosen = {name: parse_modality_list(values.pop(name)) for name in ("inputs", "outputs") if name in values}
    chosen.update((item.name, values.pop(item.name)) for item in fields(ModelConfig) if item.name in values)
    return ModelConfig(**chosen)


def _converted(values: dict[str, Any]) -> dict[str, Any]:
    """The options that are not a field as they are: cost-term switches, --full-c1 and --augment."""
    from ..errors import InputError
    from ..model.augment import parse_augmentations
    from ..model.losses import LossTerms

    converted: dict[str, Any] = {}
    if any(name in values for name in COST_OPTIONS):
        weights = {name: values.pop(name, None) for name in ("ssim", "mse")}
        converted["terms"] = LossTerms(c1=not values.pop("no_c1", False), c2=not values.pop("no_c2", False),
                                       c3=not values.pop("no_c3", False),
                                       **{name: w for name, w in weights.items() if w is not None})
    if "full_c1" in values:
        converted["sample_c1_outputs"] = not values.pop("full_c1")
    augment = values.pop("augment", None)
    if augment is not None:
        try:
            converted["augmentation"] = parse_augmentations(augment)
        except ValueError as exc:
            raise InputError(f"--augment: {exc}") from None
    return converted


def settings_from_options(options: Mapping[str, Any]) -> TrainSettings:
    """TrainSettings from a command's options: an option named as a field of TrainSettings or ModelConfig sets that
    field, the few others are converted (subject lists, modality lists, cost terms, augmentation), and a field no
    option names keeps its default. A setting no network can have is a one-line error (ConfigError)."""
    values = dict(options)
    values.update((name, _listed(values[name])) for name in LISTS if name in values)
    model = _model(values)
    values.update(_converted(values))
    chosen = {item.name: values[item.name] for item in fields(TrainSettings) if item.name in values}
    chosen["model"] = model  # (an option named --model is a command's parent checkpoint, never this field)
    return TrainSettings(**chosen)
