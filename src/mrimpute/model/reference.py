"""The plain form of a described network, the oracle the fast paths are tested and timed against: each layer as its
nn.Module (per-convolution replicate padding), nn.MaxPool2d, nn.Upsample and concatenation, nothing fused."""

from __future__ import annotations

import torch
from torch import nn

from .layers import Dense, Layers, Pool, UpSkip

_POOL = nn.MaxPool2d(2)
_UPSAMPLE = nn.Upsample(scale_factor=2, mode="nearest")


def reference_forward(stack: nn.Module, layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Run the layers' steps in order on x with stack's modules (one nn.Sequential per named step)."""
    skips = []
    for step in layers.steps:
        if isinstance(step, Pool):
            skips.append(x)
            x = _POOL(x)
        elif isinstance(step, UpSkip):
            x = torch.cat([getattr(stack, step.name)(_UPSAMPLE(x)), skips.pop()], dim=1)
        elif isinstance(step, Dense):
            x = torch.cat([getattr(stack, step.name)(x), x], dim=1)
        else:  # Convs, Head
            x = getattr(stack, step.name)(x)
    return x
