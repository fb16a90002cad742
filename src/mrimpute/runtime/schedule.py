"""Training schedule helpers: the learning rate at a step, and an exponential moving average of the weights."""

from __future__ import annotations

import math

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

LR_SCHEDULES = ("constant", "cosine")
FINAL_LR_FRACTION = 0.01  # the cosine schedule ends at this share of the peak rate


def learning_rate(peak: float, step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """The rate at a 0-based step: a linear warm-up over `warmup` steps, then constant or a cosine decay to 1% of
    the peak at `total` steps."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule '{schedule}'")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


class ExponentialAverage:
    """Polyak averaging of a network's weights (torch's AveragedModel with an EMA rule): `averaged` is the network
    to validate and ship."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError("the EMA decay must be between 0 and 1")
        self._average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._model = model

    @property
    def averaged(self) -> torch.nn.Module:
        return self._average.module

    def update(self) -> None:
        self._average.update_parameters(self._model)

    def state_dict(self) -> dict:
        return self._average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._average.load_state_dict(state)
