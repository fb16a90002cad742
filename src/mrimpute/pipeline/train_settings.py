"""Training settings: what `mrimpute train` takes, the checks made before any data is read, the split into
training and validation subjects, and the settings' recorded form (checkpoints, --resume)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..data.normaliser import NORMALISER
from ..data.split import load_split
from ..data.subjects import Subject
from ..errors import InputError, OutputError
from ..model.augment import Augmentation
from ..model.losses import LossTerms
from ..model.network import SynthesisNet
from .schedule import LR_SCHEDULES


@dataclass
class TrainSettings:
    """Everything `mrimpute train` takes."""

    data: Path
    inputs: list[str]
    outputs: list[str]
    out: Path
    epochs: int = 100
    steps_per_epoch: int = 50
    batch_size: int = 16
    crop: int = 96
    width: float = 1.0
    latent: int = 16
    fusion: str = "max"
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    patience: int = 10
    slice_axis: str = "axial"
    exclude: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    val_crops: int = 64
    time_limit_min: float = 0.0
    terms: LossTerms = field(default_factory=LossTerms)
    sample_c1_outputs: bool = True
    input_dropout: bool = False
    lesion_channel: bool = False  # feed each subject's lesion mask to every encoder as a second channel
    lesion_source: str = "expert"  # which mask: expert (lesion), either (else lesion_predicted), predicted
    lesion_fraction: float = 1 / 3  # with lesion_channel: the share of training crops centred on a lesion voxel
    amp: bool = True  # mixed precision on CUDA (bfloat16, or float16 with loss scaling); the CPU stays float32
    distributed: bool = False  # join torchrun's process group (also when WORLD_SIZE > 1)
    augmentation: Augmentation = field(default_factory=Augmentation)
    lr_schedule: str = "constant"  # or "cosine": linear warm-up, then cosine decay to 1% over every planned step
    warmup_steps: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none); validated and shipped
    normaliser: str = NORMALISER  # how volumes become model units (a warm start keeps its parent's)
    force: bool = False  # write over an existing checkpoint
    split: Path | None = None  # a declared split (data/split.py): its test subjects excluded, validation used


@dataclass
class WarmStart:
    """Training that starts from given weights with parts frozen (pipeline/extend.py)."""

    config: ModelConfig
    prepare: Callable[[SynthesisNet], None]  # loads the weights into the new network and freezes what stays fixed
    metadata: dict = field(default_factory=dict)  # recorded in the checkpoint (and its card)
    loss: Callable[[SynthesisNet, LossTerms], torch.nn.Module] | None = None  # another objective (default: the paper's)
    requires: tuple[str, ...] = ()  # contrasts a subject must have to train the new part (e.g. its new input)


def last_checkpoint_path(out: Path) -> Path:
    """The rolling checkpoint beside the best one, used by --resume."""
    return Path(out).with_suffix(".last.pt")


MAX_CROP, MAX_BATCH, MAX_LATENT = 512, 1024, 256


def check_settings(settings: TrainSettings) -> None:
    """Refuse impossible settings with one line, before any data is read."""
    problems = [
        (not (math.isfinite(settings.lr) and settings.lr >= 0), f"--lr {settings.lr}: must be a number of 0 or more"),
        (settings.crop % 4 or not 8 <= settings.crop <= MAX_CROP, f"--crop {settings.crop}: must be a multiple of 4 "
                                                                   f"from 8 to {MAX_CROP}"),
        (not 1 <= settings.batch_size <= MAX_BATCH, f"--batch-size {settings.batch_size}: must be 1 to {MAX_BATCH}"),
        (not 1 <= settings.latent <= MAX_LATENT, f"--latent {settings.latent}: must be 1 to {MAX_LATENT}"),
        (not 0 < settings.width <= 8, f"--width {settings.width}: must be above 0 and at most 8"),
        (not (math.isfinite(settings.time_limit_min) and settings.time_limit_min >= 0),
         f"--time-limit {settings.time_limit_min}: must be 0 (none) or a positive number of minutes"),
        (not (settings.terms.c1 or settings.terms.c2 or settings.terms.c3), "no cost term left (--no-c1 --no-c2 "
                                                                            "--no-c3): nothing to train"),
        (settings.lr_schedule not in LR_SCHEDULES, f"--lr-schedule {settings.lr_schedule}: expected one of "
                                                   f"{', '.join(LR_SCHEDULES)}"),
        (settings.warmup_steps < 0, f"--warmup-steps {settings.warmup_steps}: must be 0 or more"),
        (not (settings.ema == 0 or 0 < settings.ema < 1), f"--ema {settings.ema}: must be 0 (none) or between 0 and 1"),
        (not (math.isfinite(settings.terms.ssim) and settings.terms.ssim >= 0), f"--ssim {settings.terms.ssim}: "
                                                                                "must be 0 or more"),
    ]
    for failed, message in problems:
        if failed:
            raise InputError(message)
    if Path(settings.out).suffix != ".pt":
        raise OutputError(f"{settings.out}: a model file must end in .pt")
    try:
        ModelConfig(inputs=settings.inputs, outputs=settings.outputs, latent=settings.latent, width=settings.width,
                    fusion=settings.fusion, slice_axis=settings.slice_axis, lesion_channel=settings.lesion_channel)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def check_output(settings: TrainSettings, subjects: list[Subject]) -> None:
    """The checkpoint must not be one of the training data's files (even with --force), nor an existing model
    without --force or --resume; its folder is created."""
    out = Path(os.path.realpath(settings.out))
    data_files = {os.path.realpath(p) for s in subjects for p in [*s.files.values(), *s.masks.values()]}
    for path in (out, Path(os.path.realpath(last_checkpoint_path(settings.out)))):
        if str(path) in data_files:
            raise OutputError(f"{settings.out}: refusing to overwrite a training volume")
    if out.exists() and not (settings.force or settings.resume):
        raise OutputError(f"{settings.out}: a model exists there; use --force to replace it or --resume to continue")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{settings.out}: cannot create its folder ({exc.strerror})") from None


def split_subjects(subjects: list[Subject], settings: TrainSettings) -> tuple[list[Subject], list[Subject]]:
    """Split by subject into training and validation (a declared split, explicit names, or a seeded fraction)."""
    names = [s.name for s in subjects]
    exclude, val_names = list(settings.exclude), list(settings.val_subjects)
    if settings.split is not None:
        declared = load_split(settings.split)
        exclude += [n for n in declared.test if n in names]  # never read, never selected on
        val_names = val_names or [n for n in declared.validation if n in names]
    for wanted in settings.exclude + settings.subjects + settings.val_subjects:
        if wanted not in names:
            raise InputError(f"{settings.data}: no subject named '{wanted}' (found {', '.join(names)})")
    chosen = set(settings.subjects) | set(val_names)  # named validation subjects count even beside --subjects
    pool = [s for s in subjects if s.name not in exclude and (not settings.subjects or s.name in chosen)]
    if val_names:
        val = [s for s in pool if s.name in val_names]
    elif len(pool) >= 2 and settings.val_fraction > 0:
        order = np.random.default_rng(settings.seed).permutation(len(pool))
        count = max(1, int(round(settings.val_fraction * len(pool))))
        val = [pool[i] for i in sorted(order[:count])]
    else:
        val = []
    train = [s for s in pool if s not in val]
    if not train:
        raise InputError(f"{settings.data}: no training subjects left after the split")
    return train, val



def recorded_defaults() -> dict:
    """The recorded form of every TrainSettings default."""
    values = {}
    for item in fields(TrainSettings):
        if item.default is not MISSING:
            values[item.name] = item.default
        elif item.default_factory is not MISSING:
            values[item.name] = item.default_factory()
    return {k: asdict(v) if is_dataclass(v) else (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def recorded_settings(settings: TrainSettings) -> dict:
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()
              if k not in ("resume", "out", "data")}
    values["data_folder"] = str(Path(settings.data).resolve())
    return values

