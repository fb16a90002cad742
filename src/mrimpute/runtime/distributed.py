"""Data-parallel training across processes launched by torchrun: the process group, each rank's share of a
global batch, and the few values the ranks must agree on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError
from .device import resolve_device

LAUNCH_HINT = "torchrun --nproc_per_node N -m mrimpute train ... --distributed"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process, rank 0, when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints and model cards and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: Mapping[str, str] = os.environ) -> World:
    """The rank and world size torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); one process when they are absent."""
    try:
        return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise InputError(f"RANK/WORLD_SIZE/LOCAL_RANK are not integers; launch with {LAUNCH_HINT}") from None


def start(requested: bool, device_name: str) -> tuple[World, torch.device]:
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA, one GPU per local rank) when asked to
    (--distributed) or when launched with WORLD_SIZE > 1; otherwise one process on the chosen device."""
    world = world_from_env()
    if requested and "WORLD_SIZE" not in os.environ:
        raise InputError(f"--distributed needs a launcher that starts the processes: {LAUNCH_HINT}")
    device = resolve_device(device_name)
    if not (requested or world.distributed):
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def stop(world: World) -> None:
    """Leave the process group (after every rank has finished)."""
    if dist.is_initialized():
        if world.distributed:
            dist.barrier()
        dist.destroy_process_group()


def share(world: World, total: int) -> slice:
    """This rank's contiguous part of a global batch of `total` items (sizes differ by at most one)."""
    if total < world.size:
        raise InputError(f"--batch-size {total} is smaller than the {world.size} training processes")
    base, extra = divmod(total, world.size)
    first = world.rank * base + min(world.rank, extra)
    return slice(first, first + base + (1 if world.rank < extra else 0))


def all_sum(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """The sum over the ranks of each value (the values themselves with one process)."""
    if not world.distributed:
        return dict(values)
    keys = list(values)  # the same order on every rank
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))


def rank0_decides(flag: bool, world: World, device: torch.device) -> bool:
    """Rank 0's flag on every rank (a decision such as stopping must be the same everywhere)."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())
