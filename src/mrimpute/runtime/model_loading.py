"""Rebuilding a network from a checkpoint and finding the shipped default model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path

import torch

from ..config import ModelConfig
from ..data.normaliser import Normaliser, normaliser_for
from ..errors import CheckpointError
from ..io.checkpoint import load_checkpoint
from ..io.checksum import sha256_file
from ..model.network import SynthesisNet
from .device import resolve_device

MODEL_ENV = "MRIMPUTE_MODEL"
LESION_MODEL_ENV = "MRIMPUTE_LESION_MODEL"


def shipped_model(name: str) -> Path:
    """A model shipped with the package (in the wheel, or the source tree's models/ through src/mrimpute/models)."""
    return Path(str(files("mrimpute").joinpath("models", name)))


def default_model_path() -> Path:
    """The shipped model: $MRIMPUTE_MODEL if set, else the package's models/default.pt."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    return shipped_model("default.pt")


def lesion_model_path() -> Path:
    """The shipped lesion-aware model: $MRIMPUTE_LESION_MODEL if set, else the package's models/lesion.pt."""
    if os.environ.get(LESION_MODEL_ENV):
        return Path(os.environ[LESION_MODEL_ENV])
    return shipped_model("lesion.pt")


def check_finite_weights(path: Path, state_dict: dict) -> None:
    """Refuse a checkpoint whose weights hold NaN or Inf, naming the first bad tensor."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(f"{path}: corrupt weights: tensor '{name}' holds {bad} NaN or Inf values")


def load_model(path: str | Path | None, device: torch.device) -> tuple[SynthesisNet, dict]:
    """Rebuild the network a checkpoint describes, load its weights, and return it in eval mode with its payload."""
    path = Path(path) if path else default_model_path()
    payload = load_checkpoint(path)
    check_finite_weights(path, payload["state_dict"])
    try:
        config = ModelConfig.from_dict(payload["config"])
        model = SynthesisNet(config)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the stored model settings "
                              f"({type(exc).__name__})") from None
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return model, payload


@dataclass(frozen=True)
class OpenModel:
    """A checkpoint read once: the network (eval mode, on its device), its metadata and file; what synthesis,
    planning and provenance all read, so a command loads its model one time."""

    path: Path
    network: SynthesisNet
    metadata: dict
    device: torch.device

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @property
    def normaliser(self) -> Normaliser:
        return normaliser_for(self.metadata)

    @cached_property
    def sha256(self) -> str:
        """The checkpoint file's sha256 (provenance, up-to-date checks), computed once."""
        return sha256_file(self.path)


def open_model(model: str | Path | OpenModel | None, device: str | torch.device = "cpu") -> OpenModel:
    """The model at a path (default: the shipped one) read once; an OpenModel is returned as it is."""
    if isinstance(model, OpenModel):
        return model
    path = Path(model) if model else default_model_path()
    torch_device = resolve_device(device) if isinstance(device, str) else device
    network, payload = load_model(path, torch_device)
    return OpenModel(path, network, payload["metadata"], torch_device)


# shipped models that synth may pick by the inputs given, after the default (issue 16: diffusion inputs)
SHIPPED_ALTERNATIVES = ("diffusion.pt",)


def _model_inputs(path: Path) -> list[str] | None:
    """The input contrasts a checkpoint has encoders for (None when it cannot be read)."""
    try:
        return list(ModelConfig.from_dict(load_checkpoint(path)["config"]).inputs)
    except (CheckpointError, TypeError, ValueError, KeyError):
        return None


def _pick(given: list[str], candidates: list[tuple[Path, list[str] | None]], partial: bool
          ) -> tuple[Path, str | None]:
    """The first candidate (the default) when it encodes every given input; else the first alternative that
    encodes them all, or with `partial` the one that encodes the most of them (more than the default); else the
    default. The note says why an alternative was chosen."""
    (default, default_inputs), alternatives = candidates[0], candidates[1:]
    if default_inputs is None:
        return default, None  # unreadable: opening it says why
    covered = sum(name in default_inputs for name in given)
    best: tuple[int, Path, list[str]] | None = None
    for path, inputs in alternatives:
        if inputs is None:
            continue
        count = sum(name in inputs for name in given)
        if count == len(given) or (partial and count > max(covered, best[0] if best else 0)):
            best = (count, path, inputs)
            if count == len(given):
                break
    if covered == len(given) or best is None or (not partial and best[0] < len(given)):
        return default, None
    added = [name for name in given if name not in default_inputs and name in best[2]]
    return best[1], (f"model: {best[1].name} (shipped; chosen because the default model has no encoder for "
                     f"{', '.join(added)})")


def choose_shipped_model(given_inputs, partial: bool = False) -> tuple[Path, str | None]:
    """The model synth uses when no --model is given, and a one-line note when it is not the default.

    $MRIMPUTE_MODEL overrides everything; else the shipped default model when it has an encoder for every given
    input; else the first shipped alternative (models/diffusion.pt: the default plus dwi and adc encoders) that
    has encoders for all of them (with `partial`, as dataset mode chooses: the alternative with encoders for the
    most of them, more than the default has); else the default (which then refuses the input it lacks, naming
    it)."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV]), None
    candidates = [shipped_model("default.pt"), *(shipped_model(name) for name in SHIPPED_ALTERNATIVES)]
    return _pick(list(given_inputs), [(path, _model_inputs(path) if path.is_file() or i == 0 else None)
                                      for i, path in enumerate(candidates)], partial)


class ModelShelf:
    """The models of one command, each checkpoint read once on first use: the one given (--model), else the
    shipped ones, chosen by each subject's inputs (choose_shipped_model's rule)."""

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto") -> None:
        self.given = Path(model) if model else (Path(os.environ[MODEL_ENV]) if os.environ.get(MODEL_ENV) else None)
        self.device = device
        self.opened: dict[str, OpenModel] = {}

    def open(self, path: str | Path) -> OpenModel:
        """The model at `path`, read on the first call only."""
        key = os.path.realpath(path)
        if key not in self.opened:
            self.opened[key] = open_model(Path(path), self.device)
        return self.opened[key]

    def _inputs(self, path: Path, required: bool) -> list[str] | None:
        if not required and not path.is_file():
            return None
        try:
            return list(self.open(path).config.inputs)
        except CheckpointError:
            if required:
                raise
            return None  # an unreadable alternative is passed over

    def choose(self, given_inputs, partial: bool = False) -> tuple[OpenModel, str | None]:
        """The model for these inputs (the given one, else a shipped one) and a note when it is not the default."""
        if self.given is not None:
            return self.open(self.given), None
        default = shipped_model("default.pt")
        candidates = [(default, self._inputs(default, required=True))]
        candidates += [(shipped_model(name), self._inputs(shipped_model(name), required=False))
                       for name in SHIPPED_ALTERNATIVES]
        path, note = _pick(list(given_inputs), candidates, partial)
        return self.open(path), note
