"""Training settings: what `mrimpute train` takes (each default once, here or in ModelConfig: the CLI reads them),
and their recorded form (checkpoints, --resume). Light to import (no torch, no numpy), so the CLI can read the
defaults when it builds its options; the checks and the subject split are in train_checks.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig, field_default

if TYPE_CHECKING:
    import torch

    from ..model.augment import Augmentation
    from ..model.losses import LossTerms
    from ..model.network import SynthesisNet


def _paper_terms() -> LossTerms:
    from ..model.losses import LossTerms

    return LossTerms()


def _no_augmentation() -> Augmentation:
    from ..model.augment import Augmentation

    return Augmentation()


def _current_normaliser() -> str:
    from ..data.normaliser import NORMALISER

    return NORMALISER


@dataclass
class TrainSettings:
    """Everything `mrimpute train` takes: the network (`model`) and how to train it."""

    data: Path
    out: Path
    model: ModelConfig = field(default_factory=ModelConfig)  # the network trained (a warm start: the enlarged one)
    train_outputs: list[str] = field(default_factory=list)  # outputs trained (empty: all; train-decoder: the new one)
    epochs: int = 100
    steps_per_epoch: int = 50
    batch_size: int = 16
    crop: int = 96
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    patience: int = 10
    exclude: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    val_crops: int = 64
    time_limit_min: float = 0.0
    terms: LossTerms = field(default_factory=_paper_terms)
    sample_c1_outputs: bool = True
    input_dropout: bool = False
    lesion_source: str = "expert"  # with a lesion channel: expert (lesion), either (else lesion_predicted), predicted
    lesion_fraction: float = 1 / 3  # with a lesion channel: the share of training crops centred on a lesion voxel
    lesion_sampling: str = "voxel"  # how a lesion crop's centre is drawn: "voxel" or "component" (data/slices.py)
    amp: bool = True  # mixed precision on CUDA (bfloat16, or float16 with loss scaling); the CPU stays float32
    distributed: bool = False  # join torchrun's process group (also when WORLD_SIZE > 1)
    augmentation: Augmentation = field(default_factory=_no_augmentation)
    lr_schedule: str = "constant"  # or "cosine": linear warm-up, then cosine decay to 1% over every planned step
    warmup_steps: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none); validated and shipped
    normaliser: str = field(default_factory=_current_normaliser)  # volumes -> model units (a warm start: its parent's)
    force: bool = False  # write over an existing checkpoint
    split: Path | None = None  # a declared split (data/split.py): its test subjects excluded, validation used

    @property
    def targets(self) -> list[str]:
        """The outputs this run trains: train_outputs, or else every output of the model."""
        return list(self.train_outputs or self.model.outputs)


EXTENSION_EPOCHS = 20  # train-decoder/-encoder/-uncertainty's default: the new part alone learns, the rest frozen


@dataclass
class WarmStart:
    """Training that starts from given weights with parts frozen (pipeline/extend.py); the enlarged network is the
    settings' model."""

    prepare: Callable[[SynthesisNet], None]  # loads the weights into the new network and freezes what stays fixed
    metadata: dict = field(default_factory=dict)  # recorded in the checkpoint (and its card)
    loss: Callable[[SynthesisNet, LossTerms], torch.nn.Module] | None = None  # another objective (default: the paper's)
    requires: tuple[str, ...] = ()  # contrasts a subject must have to train the new part (e.g. its new input)


def last_checkpoint_path(out: Path) -> Path:
    """The rolling checkpoint beside the best one, used by --resume."""
    return Path(out).with_suffix(".last.pt")


# The recorded form is flat, as it was before the settings held a ModelConfig: these model fields sit beside the
# training ones (the checkpoint's config holds the whole network), so old checkpoints compare as they are.
RECORDED_MODEL_FIELDS = ("inputs", "outputs", "latent", "width", "fusion", "slice_axis", "lesion_channel")
NOT_RECORDED = ("data", "out", "resume", "model", "train_outputs")


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else (str(value) if isinstance(value, Path) else value)


def _flat(model: ModelConfig, targets: list[str], training: dict[str, Any]) -> dict[str, Any]:
    values = {name: getattr(model, name) for name in RECORDED_MODEL_FIELDS}
    values["outputs"] = targets
    values.update((k, v) for k, v in training.items() if k not in NOT_RECORDED)
    return {k: _plain(v) for k, v in values.items()}


def recorded_defaults() -> dict:
    """The recorded form of every default (a setting added since a run started had its default then)."""
    defaults = {item.name: field_default(item) for item in fields(TrainSettings)}
    model = ModelConfig()
    return _flat(model, model.outputs, {k: v for k, v in defaults.items() if v is not MISSING})


def recorded_settings(settings: TrainSettings) -> dict:
    """The settings as a checkpoint records them and --resume compares them: flat, plain types, the data folder
    resolved."""
    values = _flat(settings.model, settings.targets, {item.name: getattr(settings, item.name)
                                                      for item in fields(settings)})
    values["data_folder"] = str(Path(settings.data).resolve())
    return values
