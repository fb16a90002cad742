"""Choosing the torch device and thread count, and mixed precision on CUDA."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import InputError, MrimputeError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MrimputeError("--device cuda was asked for but no CUDA GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise MrimputeError(f"unknown device '{name}': use auto, cpu or cuda")
    return torch.device(name)


MAX_THREADS = 256


def check_threads(threads: int) -> None:
    """Refuse a thread count below 0 or above MAX_THREADS (thousands of threads crawl or abort OpenBLAS)."""
    if threads < 0:
        raise InputError(f"--threads {threads}: give 0 (the default) or a positive count")
    if threads > MAX_THREADS:
        raise InputError(f"--threads {threads}: at most {MAX_THREADS} threads are supported")


def set_threads(threads: int) -> None:
    """Use this many CPU threads for torch's operators (0 keeps torch's default: one per core)."""
    check_threads(threads)
    if threads:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Precision:
    """How a device computes: autocast to `dtype` (None: float32 throughout) and whether losses need scaling
    (float16 gradients underflow without a GradScaler; bfloat16 has float32's range)."""

    dtype: torch.dtype | None = None
    scale_loss: bool = False

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bfloat16 autocast", torch.float16: "float16 autocast"}[self.dtype]


def choose_precision(device: torch.device, amp: bool = True, bf16_supported: bool | None = None) -> Precision:
    """Mixed precision on CUDA (bfloat16 where the GPU has it, else float16 with loss scaling); float32 on the
    CPU (without native bfloat16 units, autocast there is slower) or with amp off."""
    if not amp or device.type != "cuda":
        return Precision()
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return Precision(torch.bfloat16) if bf16_supported else Precision(torch.float16, scale_loss=True)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context for a precision (a no-op one for float32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """A GradScaler that scales float16 losses and passes everything else through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=precision.scale_loss)
