"""Training: Adam on random slice crops, validation each epoch, early stopping, best/last checkpoints, resume."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..config import SLICE_AXES, ModelConfig
from ..data.normaliser import NORMALISER, Normaliser
from ..data.split import load_split
from ..data.slices import LESION_PLANE, TARGET_PREFIX, SliceSampler, validation_batches
from ..data.subjects import Subject, discover_subjects, load_subject
from ..errors import CheckpointError, InputError, OutputError
from ..io.checkpoint import load_checkpoint, save_checkpoint, write_model_card
from ..model.augment import Augmentation, augment
from ..model.losses import LossTerms, SynthesisLoss, synthesis_loss
from ..model.network import SynthesisNet
from . import distributed
from .device import Precision, autocast, choose_precision, grad_scaler
from .distributed import World
from .reporting import Reporter
from .schedule import LR_SCHEDULES, ExponentialAverage, learning_rate


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
    pool = [s for s in subjects if s.name not in exclude and (not settings.subjects or s.name in settings.subjects)]
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


def _to_tensors(batch: np.ndarray | torch.Tensor, planes: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    tensor = torch.as_tensor(batch).to(device)
    return {m: tensor[i].unsqueeze(1).contiguous(memory_format=torch.channels_last) for i, m in enumerate(planes)}


def _present(planes: list[str], settings: TrainSettings) -> tuple[list[str], list[str]]:
    """The inputs and outputs a batch's planes hold (a subject lacking a contrast trains what it has)."""
    return [m for m in settings.inputs if m in planes], [m for m in settings.outputs if m in planes]


def _inputs_and_targets(tensors: dict[str, torch.Tensor], settings: TrainSettings
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Encoder inputs (the lesion plane, when present, as every input's second channel) and output targets."""
    inputs, outputs = _present(list(tensors), settings)
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
             device: torch.device, precision: Precision = Precision(), world: World = World()) -> dict[str, float]:
    """Mean validation cost (all terms, every output) and the fused-latent MAE of each output (with several
    processes, each validates every world.size-th batch and the sums are shared)."""
    was_training = model.training
    model.eval()
    totals = dict.fromkeys(["c1", "c2", "c3", "total"], 0.0)
    counts = dict.fromkeys(settings.outputs, 0)
    for planes, _ in batches:
        for m in _present(planes, settings)[1]:
            counts[m] += 1
    for planes, batch in batches[world.rank :: world.size]:
        images, targets = _inputs_and_targets(_to_tensors(batch, planes, device), settings)
        with autocast(device, precision):
            _, parts = synthesis_loss(model, images, targets, settings.terms)
            predictions = model(images)
        for m in targets:
            parts[f"mae_{m}"] = float((predictions[m].float() - targets[m]).abs().mean()) * len(batches) / counts[m]
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value / len(batches)
    model.train(was_training)
    totals.update({f"mae_{m}": totals.get(f"mae_{m}", 0.0) for m in settings.outputs if counts[m]})
    return distributed.all_sum(totals, world, device)


RESUMABLE_CHANGES = {"time_limit_min", "patience", "device", "amp", "force"}  # what --resume may change


def _restore(last_path: Path, config: ModelConfig, model: SynthesisNet, optimiser: torch.optim.Optimizer,
             settings: dict, scaler: torch.amp.GradScaler | None = None, ema: ExponentialAverage | None = None) -> dict:
    """Load weights, optimiser (loss scaler, weight average) and training state from the rolling checkpoint for
    --resume; refuse when the model, recipe, data, seed, batch or optimiser settings differ from the interrupted run."""
    if not last_path.is_file():
        raise CheckpointError(f"{last_path}: nothing to resume from")
    payload = load_checkpoint(last_path)
    if payload["config"] != config.to_dict():
        raise CheckpointError(f"{last_path}: was trained with other model settings; cannot resume")
    before = payload["metadata"].get("train_settings", {})
    free = RESUMABLE_CHANGES | ({"epochs"} if settings.get("lr_schedule") == "constant" else set())  # cosine: fixed
    changed = sorted(k for k in set(before) | set(settings) if k not in free and before.get(k) != settings.get(k))
    if changed:
        first = changed[0]
        raise CheckpointError(f"{last_path}: the interrupted run had {first} = {before.get(first)!r}, this one "
                              f"{settings.get(first)!r}; resume with the same settings ({', '.join(changed)} differ)")
    model.load_state_dict(payload["state_dict"])
    optimiser.load_state_dict(payload["optimiser"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if ema is not None and payload.get("ema"):
        ema.load_state_dict(payload["ema"])
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
    inputs, outputs = _present(planes, settings)
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


def _train_epoch(stepper: Stepper, sampler: SliceSampler, settings: TrainSettings, epoch: int,
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


def _load_samplers(settings: TrainSettings, train_subjects: list[Subject], val_subjects: list[Subject],
                   modalities: list[str], lesions: str | None, margin: int, reporter: Reporter
                   ) -> tuple[SliceSampler, list]:
    """The training sampler (each subject loaded with what it has, one at a time) and the fixed validation crops."""
    normaliser = Normaliser(settings.normaliser)
    axis = SLICE_AXES[settings.slice_axis]

    def sampler(subjects: list[Subject], fraction: float, extra: int) -> SliceSampler:
        built = SliceSampler([], modalities, axis, settings.crop, lesion=lesions is not None, lesion_fraction=fraction,
                             targets=True, margin=extra)
        for subject in subjects:
            present = [m for m in modalities if m in subject.files]
            inputs, outputs = _present(present, settings)
            if not inputs or not outputs:
                reporter.message(f"{subject.name}: skipped (has none of the model's inputs or outputs)")
                continue
            built.add(load_subject(subject, present, lesions, normaliser))
        if not built.groups:
            raise InputError(f"{settings.data}: no training subject has brain slices with the model's contrasts")
        return built

    train_sampler = sampler(train_subjects, settings.lesion_fraction, margin)
    val_sampler = sampler(val_subjects, 0.0, 0) if val_subjects else train_sampler
    val_data = validation_batches(val_sampler, settings.val_crops, settings.batch_size, settings.seed + 10_000)
    if val_sampler is train_sampler and margin:  # validation crops are the centre of the widened ones
        val_data = [(p, b[..., margin:-margin, margin:-margin].copy()) for p, b in val_data]
    return train_sampler, val_data


def _recorded_settings(settings: TrainSettings) -> dict:
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()
              if k not in ("resume", "out", "data")}
    values["data_folder"] = str(Path(settings.data).resolve())
    return values


def train(settings: TrainSettings, reporter: Reporter | None = None, warm_start: WarmStart | None = None) -> Path:
    """Train a model as the settings say (or only the unfrozen part of a warm start) and return its best checkpoint."""
    check_settings(settings)
    world, device = distributed.start(settings.distributed, settings.device)
    reporter = (reporter or Reporter()) if world.main else Reporter()  # rank 0 alone reports
    precision = choose_precision(device, settings.amp)
    config = warm_start.config if warm_start else ModelConfig(
        inputs=settings.inputs, outputs=settings.outputs, latent=settings.latent, width=settings.width,
        fusion=settings.fusion, slice_axis=settings.slice_axis, lesion_channel=settings.lesion_channel)
    modalities = list(dict.fromkeys(settings.inputs + settings.outputs))
    lesions = settings.lesion_source if config.lesion_channel else None
    train_subjects, val_subjects = split_subjects(discover_subjects(settings.data), settings)
    check_output(settings, train_subjects + val_subjects)
    reporter.message(f"training on {', '.join(s.name for s in train_subjects)}; "
                     f"validating on {', '.join(s.name for s in val_subjects) or 'training crops (no validation subject)'}")
    sampler, val_data = _load_samplers(settings, train_subjects, val_subjects, modalities, lesions,
                                       settings.augmentation.margin(settings.crop), reporter)

    torch.manual_seed(settings.seed)
    model = SynthesisNet(config).to(device).to(memory_format=torch.channels_last)
    if warm_start:
        warm_start.prepare(model)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    scaler = grad_scaler(device, precision)
    ema = ExponentialAverage(model, settings.ema) if settings.ema else None
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0, "history": [], "seconds": 0.0}
    last_path = last_checkpoint_path(settings.out)
    recorded = _recorded_settings(settings)
    if settings.resume:
        state = _restore(last_path, config, model, optimiser, recorded, scaler, ema)
        reporter.message(f"resumed after epoch {state['epoch']}")
    loss: torch.nn.Module = SynthesisLoss(model, settings.terms)
    if world.distributed:  # gradients averaged over the processes in backward (decoders may sit out without c3)
        loss = torch.nn.parallel.DistributedDataParallel(
            loss, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not settings.terms.c3 or len(sampler.groups) > 1)
    stepper = Stepper(loss, optimiser, scaler, device, precision, world, ema)
    shipped = ema.averaged if ema else model  # what is validated, kept as best and shipped

    metadata = {
        "created": "", "normaliser": settings.normaliser, "normalisation": Normaliser(settings.normaliser).describe(),
        "training_subjects": [s.name for s in train_subjects], "validation_subjects": [s.name for s in val_subjects],
        "train_settings": recorded, "device": str(device), "precision": precision.name, "processes": world.size,
        **(warm_start.metadata if warm_start else {}),
    }
    started = time.monotonic() - state["seconds"]
    reporter.start("training", settings.epochs * settings.steps_per_epoch)
    reporter.advance(state["epoch"] * settings.steps_per_epoch)
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = state["epoch"] + 1
        running = _train_epoch(stepper, sampler, settings, epoch, reporter)
        val = validate(shipped, val_data, settings, device, precision, world)
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
                metadata["fusion_max_share"] = [round(float(v), 3) for v in torch.sigmoid(shipped.fusion_mix.detach())]
        if world.main:  # rank 0 alone writes
            if improved:
                save_checkpoint(settings.out, config, shipped.state_dict(), dict(metadata))
            save_checkpoint(last_path, config, model.state_dict(), dict(metadata),
                            extra={"optimiser": optimiser.state_dict(), "train_state": state,
                                   **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
                                   **({"ema": ema.state_dict()} if ema else {})})
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
