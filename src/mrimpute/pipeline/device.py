"""Choosing the torch device and thread count."""

from __future__ import annotations

import torch

from ..errors import MrimputeError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MrimputeError("--device cuda was asked for but no CUDA GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise MrimputeError(f"unknown device '{name}': use auto, cpu or cuda")
    return torch.device(name)
