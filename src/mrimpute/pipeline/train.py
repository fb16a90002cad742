"""Training: Adam on random slice crops, validation each epoch, early stopping, best/last checkpoints, resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..config import SLICE_AXES, ModelConfig
from ..data.slices import SliceSampler, validation_batches
from ..data.subjects import Subject, discover_subjects, load_subject
from ..errors import CheckpointError, InputError
from ..io.checkpoint import load_checkpoint, save_checkpoint, write_model_card
from ..model.losses import LossTerms, SynthesisLoss, synthesis_loss
from ..model.network import SynthesisNet
from . import distributed
from .device import Precision, autocast, choose_precision, grad_scaler
from .distributed import World
from .reporting import Reporter

NORMALISATION = "each volume / its mean over the brain (negatives clipped to 0, background 0)"


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


@dataclass
class WarmStart:
    """Training that starts from given weights with parts frozen (pipeline/extend.py)."""

    config: ModelConfig
    prepare: Callable[[SynthesisNet], None]  # loads the weights into the new network and freezes what stays fixed
    metadata: dict = field(default_factory=dict)  # recorded in the checkpoint (and its card)


def last_checkpoint_path(out: Path) -> Path:
    """The rolling checkpoint beside the best one, used by --resume."""
    return Path(out).with_suffix(".last.pt")


def split_subjects(subjects: list[Subject], settings: TrainSettings) -> tuple[list[Subject], list[Subject]]:
    """Split by subject into training and validation (explicit names, or a seeded fraction)."""
    names = [s.name for s in subjects]
    for wanted in settings.exclude + settings.subjects + settings.val_subjects:
        if wanted not in names:
            raise InputError(f"{settings.data}: no subject named '{wanted}' (found {', '.join(names)})")
    pool = [s for s in subjects if s.name not in settings.exclude and (not settings.subjects or s.name in settings.subjects)]
    if settings.val_subjects:
        val = [s for s in pool if s.name in settings.val_subjects]
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


LESION_PLANE = "lesion"


def _to_tensors(batch: np.ndarray, planes: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    tensor = torch.from_numpy(batch).to(device)
    return {m: tensor[i].unsqueeze(1).contiguous(memory_format=torch.channels_last) for i, m in enumerate(planes)}


def _inputs_and_targets(tensors: dict[str, torch.Tensor], settings: TrainSettings
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Encoder inputs (the lesion plane, when present, as every input's second channel) and output targets."""
    lesion = tensors.get(LESION_PLANE)
    images = {m: tensors[m] if lesion is None else
              torch.cat([tensors[m], lesion], dim=1).contiguous(memory_format=torch.channels_last)
              for m in settings.inputs}
    return images, {m: tensors[m] for m in settings.outputs}


def _step_choices(settings: TrainSettings, rng: np.random.Generator) -> tuple[dict | None, list[str] | None]:
    c1_outputs = {m: [settings.outputs[rng.integers(len(settings.outputs))]] for m in settings.inputs} \
        if settings.sample_c1_outputs else None
    fused = None
    if settings.input_dropout:
        keep = rng.random(len(settings.inputs)) < 0.5
        keep[rng.integers(len(keep))] = True
        fused = [m for m, k in zip(settings.inputs, keep) if k]
    return c1_outputs, fused


@torch.no_grad()
def validate(model: SynthesisNet, batches: list[np.ndarray], modalities: list[str], settings: TrainSettings,
             device: torch.device, precision: Precision = Precision(), world: World = World()) -> dict[str, float]:
    """Mean validation cost (all terms, every output) and the fused-latent MAE of each output (with several
    processes, each validates every world.size-th batch and the sums are shared)."""
    model.eval()
    totals = dict.fromkeys(["c1", "c2", "c3", "total"] + [f"mae_{m}" for m in settings.outputs], 0.0)
    for batch in batches[world.rank :: world.size]:
        images, targets = _inputs_and_targets(_to_tensors(batch, modalities, device), settings)
        with autocast(device, precision):
            _, parts = synthesis_loss(model, images, targets, settings.terms)
            predictions = model(images)
        for m in settings.outputs:
            parts[f"mae_{m}"] = float((predictions[m].float() - targets[m]).abs().mean())
        for key, value in parts.items():
            totals[key] += value / len(batches)
    model.train()
    return distributed.all_sum(totals, world, device)


def _restore(last_path: Path, config: ModelConfig, model: SynthesisNet, optimiser: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None = None) -> dict:
    """Load weights, optimiser (and loss scaler) and training state from the rolling checkpoint for --resume."""
    if not last_path.is_file():
        raise CheckpointError(f"{last_path}: nothing to resume from")
    payload = load_checkpoint(last_path)
    if payload["config"] != config.to_dict():
        raise CheckpointError(f"{last_path}: was trained with other model settings; cannot resume")
    model.load_state_dict(payload["state_dict"])
    optimiser.load_state_dict(payload["optimiser"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    return payload["train_state"]


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


def train_step(stepper: Stepper, sampler: SliceSampler, settings: TrainSettings, modalities: list[str],
               rng: np.random.Generator) -> dict[str, float]:
    """One step on a global batch of random crops; returns this process's share of the loss parts.

    Every process draws the whole batch from the same generator and keeps its own contiguous share, so the
    processes together see exactly the crops (and c1/dropout choices) of a single process. Each share's loss
    is weighted by its size, so the average of the processes' gradients is the gradient of the whole batch.
    """
    batch = sampler.batch(settings.batch_size, rng)
    share = distributed.share(stepper.world, settings.batch_size)
    weight = (share.stop - share.start) * stepper.world.size / settings.batch_size
    tensors = _to_tensors(np.ascontiguousarray(batch[:, share]), modalities, stepper.device)
    c1_outputs, fused = _step_choices(settings, rng)
    images, targets = _inputs_and_targets(tensors, settings)
    with autocast(stepper.device, stepper.precision):
        loss, parts = stepper.loss(images, targets, fused, c1_outputs)
    stepper.optimiser.zero_grad(set_to_none=True)
    stepper.scaler.scale(loss * weight if weight != 1.0 else loss).backward()
    stepper.scaler.step(stepper.optimiser)
    stepper.scaler.update()
    return {key: value * weight / stepper.world.size for key, value in parts.items()}


def _train_epoch(stepper: Stepper, sampler: SliceSampler, settings: TrainSettings, modalities: list[str], epoch: int,
                 reporter: Reporter) -> dict[str, float]:
    """One epoch of Adam steps; its randomness depends only on (seed, epoch), so a resumed run repeats exactly."""
    rng = np.random.default_rng([settings.seed, epoch])
    running: dict[str, float] = {}
    for _ in range(settings.steps_per_epoch):
        parts = train_step(stepper, sampler, settings, modalities, rng)
        for key, value in parts.items():
            running[key] = running.get(key, 0.0) + value / settings.steps_per_epoch
        reporter.advance()
    return distributed.all_sum(running, stepper.world, stepper.device)


def train(settings: TrainSettings, reporter: Reporter | None = None, warm_start: WarmStart | None = None) -> Path:
    """Train a model as the settings say (or only the unfrozen part of a warm start) and return its best checkpoint."""
    world, device = distributed.start(settings.distributed, settings.device)
    reporter = (reporter or Reporter()) if world.main else Reporter()  # rank 0 alone reports
    precision = choose_precision(device, settings.amp)
    config = warm_start.config if warm_start else ModelConfig(
        inputs=settings.inputs, outputs=settings.outputs, latent=settings.latent, width=settings.width,
        fusion=settings.fusion, slice_axis=settings.slice_axis, lesion_channel=settings.lesion_channel)
    modalities = list(dict.fromkeys(settings.inputs + settings.outputs))
    lesions = settings.lesion_source if config.lesion_channel else None
    planes = modalities + ([LESION_PLANE] if lesions else [])  # the sampler's planes, in order
    train_subjects, val_subjects = split_subjects(discover_subjects(settings.data), settings)
    reporter.message(f"training on {', '.join(s.name for s in train_subjects)}; "
                     f"validating on {', '.join(s.name for s in val_subjects) or 'training crops (no validation subject)'}")
    loaded = [load_subject(s, modalities, lesions) for s in train_subjects]
    axis = SLICE_AXES[settings.slice_axis]
    sampler = SliceSampler(loaded, modalities, axis, settings.crop, lesion=lesions is not None,
                           lesion_fraction=settings.lesion_fraction)
    val_sampler = SliceSampler([load_subject(s, modalities, lesions) for s in val_subjects], modalities, axis,
                               settings.crop, lesion=lesions is not None) \
        if val_subjects else sampler
    val_data = validation_batches(val_sampler, settings.val_crops, settings.batch_size, settings.seed + 10_000)

    torch.manual_seed(settings.seed)
    model = SynthesisNet(config).to(device).to(memory_format=torch.channels_last)
    if warm_start:
        warm_start.prepare(model)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    scaler = grad_scaler(device, precision)
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0, "history": [], "seconds": 0.0}
    last_path = last_checkpoint_path(settings.out)
    if settings.resume:
        state = _restore(last_path, config, model, optimiser, scaler)
        reporter.message(f"resumed after epoch {state['epoch']}")
    loss: torch.nn.Module = SynthesisLoss(model, settings.terms)
    if world.distributed:  # gradients averaged over the processes in backward (decoders may sit out without c3)
        loss = torch.nn.parallel.DistributedDataParallel(
            loss, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not settings.terms.c3)
    stepper = Stepper(loss, optimiser, scaler, device, precision, world)

    metadata = {
        "created": "", "normalisation": NORMALISATION,
        "training_subjects": [s.name for s in train_subjects], "validation_subjects": [s.name for s in val_subjects],
        "train_settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()
                           if k not in ("resume", "out", "data")},
        "device": str(device), "precision": precision.name, "processes": world.size,
        **(warm_start.metadata if warm_start else {}),
    }
    started = time.monotonic() - state["seconds"]
    reporter.start("training", settings.epochs * settings.steps_per_epoch)
    reporter.advance(state["epoch"] * settings.steps_per_epoch)
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"] + 1
        running = _train_epoch(stepper, sampler, settings, planes, epoch, reporter)
        val = validate(model, val_data, planes, settings, device, precision, world)
        state["epoch"] = epoch
        state["seconds"] = time.monotonic() - started
        row = {"epoch": epoch, "train_loss": running["total"], "val_loss": val["total"],
               **{k: v for k, v in val.items() if k.startswith("mae_")}, "seconds": state["seconds"]}
        state["history"].append(row)
        improved = val["total"] < state["best_loss"]
        if improved:
            state.update(best_loss=val["total"], best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        metadata.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), epochs_run=epoch,
                        best_epoch=state["best_epoch"], training_seconds=round(state["seconds"], 1))
        if improved:
            metadata["validation"] = {k: round(v, 5) for k, v in val.items()}
            if config.fusion == "mean-max":  # the learnt share of max in each latent channel's fusion
                metadata["fusion_max_share"] = [round(float(v), 3) for v in torch.sigmoid(model.fusion_mix.detach())]
        if world.main:  # rank 0 alone writes
            if improved:
                save_checkpoint(settings.out, config, model.state_dict(), dict(metadata))
            save_checkpoint(last_path, config, model.state_dict(), dict(metadata),
                            extra={"optimiser": optimiser.state_dict(), "train_state": state,
                                   **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})})
        reporter.table_row({**row, "best": "*" if improved else ""})
        out_of_time = bool(settings.time_limit_min) and state["seconds"] > 60 * settings.time_limit_min
        if distributed.rank0_decides(out_of_time, world, device):
            reporter.message(f"time limit of {settings.time_limit_min} min reached after epoch {epoch}")
            break
    reporter.finish()
    if world.main:
        best = load_checkpoint(settings.out)
        best["metadata"].update(epochs_run=state["epoch"], training_seconds=round(state["seconds"], 1))
        save_checkpoint(settings.out, config, best["state_dict"], best["metadata"])
        write_model_card(settings.out, config, best["metadata"])
    distributed.stop(world)
    return Path(settings.out)
