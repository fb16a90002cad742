"""Checks made before training reads any data, and the split into training and validation subjects."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..data.slices import LESION_SAMPLINGS
from ..data.split import load_split
from ..data.subjects import Subject
from ..errors import InputError, OutputError
from .schedule import LR_SCHEDULES
from .train_settings import TrainSettings, last_checkpoint_path

MAX_CROP, MAX_BATCH, MAX_LATENT = 512, 1024, 256


def check_settings(settings: TrainSettings) -> None:
    """Refuse impossible settings with one line, before any data is read (the network's own settings were checked
    when its ModelConfig was made)."""
    terms, latent, width = settings.terms, settings.model.latent, settings.model.width
    problems = [
        (not (math.isfinite(settings.lr) and settings.lr >= 0), f"--lr {settings.lr}: must be a number of 0 or more"),
        (settings.crop % 4 or not 8 <= settings.crop <= MAX_CROP, f"--crop {settings.crop}: must be a multiple of 4 "
                                                                   f"from 8 to {MAX_CROP}"),
        (not 1 <= settings.batch_size <= MAX_BATCH, f"--batch-size {settings.batch_size}: must be 1 to {MAX_BATCH}"),
        (not 1 <= latent <= MAX_LATENT, f"--latent {latent}: must be 1 to {MAX_LATENT}"),
        (not 0 < width <= 8, f"--width {width}: must be above 0 and at most 8"),
        (not (math.isfinite(settings.time_limit_min) and settings.time_limit_min >= 0),
         f"--time-limit {settings.time_limit_min}: must be 0 (none) or a positive number of minutes"),
        (not (terms.c1 or terms.c2 or terms.c3), "no cost term left (--no-c1 --no-c2 --no-c3): nothing to train"),
        (settings.lr_schedule not in LR_SCHEDULES, f"--lr-schedule {settings.lr_schedule}: expected one of "
                                                   f"{', '.join(LR_SCHEDULES)}"),
        (settings.warmup_steps < 0, f"--warmup-steps {settings.warmup_steps}: must be 0 or more"),
        (not (settings.ema == 0 or 0 < settings.ema < 1), f"--ema {settings.ema}: must be 0 (none) or between 0 and 1"),
        (not (math.isfinite(terms.ssim) and terms.ssim >= 0), f"--ssim {terms.ssim}: must be 0 or more"),
        (not (math.isfinite(terms.mse) and terms.mse >= 0), f"--mse {terms.mse}: must be 0 or more"),
        (settings.lesion_sampling not in LESION_SAMPLINGS, f"--lesion-sampling {settings.lesion_sampling}: expected "
                                                           f"{' or '.join(LESION_SAMPLINGS)}"),
    ]
    for failed, message in problems:
        if failed:
            raise InputError(message)
    if Path(settings.out).suffix != ".pt":
        raise OutputError(f"{settings.out}: a model file must end in .pt")


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
