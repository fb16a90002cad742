"""One training step and one validation pass over batches of crops whose planes name their contrasts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.slices import LESION_PLANE, TARGET_PREFIX, SliceSampler
from ..model.augment import augment
from ..model.losses import LossTerms, SynthesisLoss
from ..model.network import SynthesisNet
from . import distributed
from .device import Precision, autocast
from .distributed import World
from .reporting import Reporter
from .schedule import ExponentialAverage, learning_rate
from .train_settings import TrainSettings


def _to_tensors(batch: np.ndarray | torch.Tensor, planes: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    tensor = torch.as_tensor(batch).to(device)
    return {m: tensor[i].unsqueeze(1).contiguous(memory_format=torch.channels_last) for i, m in enumerate(planes)}


def present_contrasts(planes: list[str], settings: TrainSettings) -> tuple[list[str], list[str]]:
    """The inputs and outputs a batch's planes hold (a subject lacking a contrast trains what it has)."""
    return [m for m in settings.model.inputs if m in planes], [m for m in settings.targets if m in planes]


def _inputs_and_targets(tensors: dict[str, torch.Tensor], settings: TrainSettings
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Encoder inputs (the lesion plane, when present, as every input's second channel) and output targets."""
    inputs, outputs = present_contrasts(list(tensors), settings)
    lesion = tensors.get(LESION_PLANE)
    images = {m: tensors[m] if lesion is None else
              torch.cat([tensors[m], lesion], dim=1).contiguous(memory_format=torch.channels_last)
              for m in inputs}
    return images, {m: tensors.get(TARGET_PREFIX + m, tensors[m]) for m in outputs}


def _step_choices(inputs: list[str], outputs: list[str], settings: TrainSettings, rng: np.random.Generator
                  ) -> tuple[dict | None, list[str] | None]:
    c1_outputs = {m: [outputs[rng.integers(len(outputs))]] for m in inputs} if settings.sample_c1_outputs else None
    fused = None
    if settings.input_dropout:
        keep = rng.random(len(inputs)) < 0.5
        keep[rng.integers(len(keep))] = True
        fused = [m for m, k in zip(inputs, keep) if k]
    return c1_outputs, fused


@torch.no_grad()
def validate(model: SynthesisNet, batches: list[tuple[list[str], np.ndarray]], settings: TrainSettings,
             device: torch.device, precision: Precision = Precision(), world: World = World(),
             objective: Callable[[SynthesisNet, LossTerms], torch.nn.Module] = SynthesisLoss) -> dict[str, float]:
    """Mean validation cost (the training objective with every term and output) and the fused-latent MAE of each
    output (with several processes, each validates every world.size-th batch and the sums are shared)."""
    cost = objective(model, settings.terms)
    was_training = model.training
    model.eval()
    totals = dict.fromkeys(["c1", "c2", "c3", "total"], 0.0)
    counts = dict.fromkeys(settings.targets, 0)
    for planes, _ in batches:
        for m in present_contrasts(planes, settings)[1]:
            counts[m] += 1
    for planes, batch in batches[world.rank :: world.size]:
        images, targets = _inputs_and_targets(_to_tensors(batch, planes, device), settings)
        with autocast(device, precision):
            _, parts = cost(images, targets)
            predictions = model(images)
        for m in targets:
            parts[f"mae_{m}"] = float((predictions[m].float() - targets[m]).abs().mean()) * len(batches) / counts[m]
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value / len(batches)
    model.train(was_training)
    totals.update({f"mae_{m}": totals.get(f"mae_{m}", 0.0) for m in settings.targets if counts[m]})
    return distributed.all_sum(totals, world, device)



@dataclass
class Stepper:
    """What one optimiser step needs: the loss module (DistributedDataParallel-wrapped with several processes),
    the optimiser, the loss scaler, the device and its precision, and this process's place."""

    loss: torch.nn.Module
    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: Precision = Precision()
    world: World = World()
    ema: ExponentialAverage | None = None


def train_step(stepper: Stepper, sampler: SliceSampler, settings: TrainSettings, rng: np.random.Generator
               ) -> dict[str, float]:
    """One step on a global batch of random crops; returns this process's share of the loss parts.

    Every process draws the whole batch (and its augmentation) from the same generator and keeps its own
    contiguous share, so the processes together see exactly the crops (and c1/dropout choices) of a single
    process. Each share's loss is weighted by its size, so the average of the processes' gradients is the
    gradient of the whole batch.
    """
    planes, batch = sampler.batch_with_planes(settings.batch_size, rng)
    inputs, outputs = present_contrasts(planes, settings)
    batch = torch.from_numpy(batch)
    if settings.augmentation.active or batch.shape[-1] != settings.crop:
        batch = augment(settings.augmentation, batch, planes, inputs, settings.crop, rng)
    share = distributed.share(stepper.world, settings.batch_size)
    weight = (share.stop - share.start) * stepper.world.size / settings.batch_size
    tensors = _to_tensors(batch[:, share], planes, stepper.device)
    c1_outputs, fused = _step_choices(inputs, outputs, settings, rng)
    images, targets = _inputs_and_targets(tensors, settings)
    with autocast(stepper.device, stepper.precision):
        loss, parts = stepper.loss(images, targets, fused, c1_outputs)
    stepper.optimiser.zero_grad(set_to_none=True)
    stepper.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
    stepper.scaler.step(stepper.optimiser)
    stepper.scaler.update()
    if stepper.ema is not None:
        stepper.ema.update()
    return {key: value * weight / stepper.world.size for key, value in parts.items()}


def train_epoch(stepper: Stepper, sampler: SliceSampler, settings: TrainSettings, epoch: int,
                 reporter: Reporter) -> dict[str, float]:
    """One epoch of Adam steps; its randomness depends only on (seed, epoch), so a resumed run repeats exactly."""
    rng = np.random.default_rng([settings.seed, epoch])
    running: dict[str, float] = {}
    for step in range(settings.steps_per_epoch):
        done = (epoch - 1) * settings.steps_per_epoch + step
        for group in stepper.optimiser.param_groups:
            group["lr"] = learning_rate(settings.lr, done, settings.epochs * settings.steps_per_epoch,
                                        settings.lr_schedule, settings.warmup_steps)
        parts = train_step(stepper, sampler, settings, rng)
        for key, value in parts.items():
            running[key] = running.get(key, 0.0) + value / settings.steps_per_epoch
        reporter.advance()
    return distributed.all_sum(running, stepper.world, stepper.device)

