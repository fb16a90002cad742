"""Training: Adam on random slice crops, validation each epoch, early stopping, best/last checkpoints, resume."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..config import SLICE_AXES, ModelConfig
from ..data.normaliser import Normaliser
from ..data.slices import SliceSampler, validation_batches
from ..data.subjects import Subject, discover_subjects, load_subject
from ..errors import CheckpointError, InputError
from ..io.checkpoint import load_checkpoint, save_checkpoint, write_model_card
from ..model.losses import SynthesisLoss
from ..model.network import SynthesisNet
from ..runtime import distributed
from ..runtime.device import choose_precision, grad_scaler
from ..runtime.distributed import World
from ..runtime.reporting import Reporter
from ..runtime.schedule import ExponentialAverage
from ..runtime.train_checks import check_output, check_settings, split_subjects
from ..runtime.train_settings import (
    TrainSettings,
    WarmStart,
    last_checkpoint_path,
    recorded_defaults,
    recorded_settings,
)
from ..runtime.train_steps import Stepper, present_contrasts, train_epoch, validate

RESUMABLE_CHANGES = {"time_limit_min", "patience", "device", "amp", "force"}  # what --resume may change


def check_resumable(last_path: Path, before: dict, settings: dict) -> None:
    """Refuse to resume when the recorded settings of the interrupted run (`before`) and this run's differ in
    anything but RESUMABLE_CHANGES (and the epochs, on a constant schedule); a setting the interrupted run did not
    record yet had its default then."""
    free = RESUMABLE_CHANGES | ({"epochs"} if settings.get("lr_schedule") == "constant" else set())  # cosine: fixed
    defaults = recorded_defaults()

    def recorded(key: str) -> object:  # a group of settings (e.g. the cost terms) may have gained a member since
        value, default = before.get(key, defaults.get(key)), defaults.get(key)
        return {**default, **value} if isinstance(value, dict) and isinstance(default, dict) else value

    changed = sorted(k for k in set(before) | set(settings) if k not in free and recorded(k) != settings.get(k))
    if changed:
        first = changed[0]
        raise CheckpointError(f"{last_path}: the interrupted run had {first} = {before.get(first)!r}, this one "
                              f"{settings.get(first)!r}; resume with the same settings ({', '.join(changed)} differ)")


def restore(last_path: Path, config: ModelConfig, model: SynthesisNet, optimiser: torch.optim.Optimizer,
            settings: dict, scaler: torch.amp.GradScaler | None = None, ema: ExponentialAverage | None = None) -> dict:
    """Load weights, optimiser (loss scaler, weight average) and training state from the rolling checkpoint for
    --resume; refuse when the model, recipe, data, seed, batch or optimiser settings differ from the interrupted run."""
    if not last_path.is_file():
        raise CheckpointError(f"{last_path}: nothing to resume from")
    payload = load_checkpoint(last_path)
    try:
        same_model = ModelConfig.from_dict(payload["config"]) == config
    except (TypeError, ValueError):
        same_model = False
    if not same_model:
        raise CheckpointError(f"{last_path}: was trained with other model settings; cannot resume")
    check_resumable(last_path, payload["metadata"].get("train_settings", {}), settings)
    model.load_state_dict(payload["state_dict"])
    optimiser.load_state_dict(payload["optimiser"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if ema is not None and payload.get("ema"):
        ema.load_state_dict(payload["ema"])
    return payload["train_state"]


def _load_samplers(settings: TrainSettings, train_subjects: list[Subject], val_subjects: list[Subject],
                   modalities: list[str], lesions: str | None, margin: int, reporter: Reporter,
                   requires: tuple[str, ...] = ()) -> tuple[SliceSampler, list]:
    """The training sampler (each subject loaded with what it has, one at a time; a subject lacking a contrast in
    `requires`, or every input or every output, is skipped) and the fixed validation crops."""
    normaliser = Normaliser(settings.normaliser)
    axis = SLICE_AXES[settings.model.slice_axis]

    def sampler(subjects: list[Subject], fraction: float, extra: int) -> SliceSampler | None:
        built = SliceSampler([], modalities, axis, settings.crop, lesion=lesions is not None, lesion_fraction=fraction,
                             targets=True, margin=extra, lesion_sampling=settings.lesion_sampling)
        for subject in subjects:
            present = [m for m in modalities if m in subject.files]
            inputs, outputs = present_contrasts(present, settings)
            lacking = [m for m in requires if m not in present]
            if not inputs or not outputs or lacking:
                reason = f"no {', '.join(lacking)}" if lacking else "none of the model's inputs or outputs"
                reporter.message(f"{subject.name}: skipped ({reason})")
                continue
            built.add(load_subject(subject, present, lesions, normaliser))
        return built if built.groups else None

    train_sampler = sampler(train_subjects, settings.lesion_fraction, margin)
    if train_sampler is None:
        raise InputError(f"{settings.data}: no training subject has brain slices with the contrasts training needs")
    val_sampler = (sampler(val_subjects, 0.0, 0) if val_subjects else None) or train_sampler
    val_data = validation_batches(val_sampler, settings.val_crops, settings.batch_size, settings.seed + 10_000)
    if val_sampler is train_sampler and margin:  # validation crops are the centre of the widened ones
        val_data = [(p, b[..., margin:-margin, margin:-margin].copy()) for p, b in val_data]
    return train_sampler, val_data


@dataclass
class _Run:
    """Everything one training run holds between epochs."""

    settings: TrainSettings
    config: ModelConfig
    model: SynthesisNet
    shipped: torch.nn.Module  # what is validated, kept as best and shipped (the weight average, when there is one)
    stepper: Stepper
    sampler: SliceSampler
    val_data: list
    objective: type
    state: dict
    metadata: dict
    reporter: Reporter
    resumed_at: float = 0.0  # the run's training seconds when this process started (0 unless --resume)

    @property
    def world(self) -> World:
        return self.stepper.world


def _prepare(settings: TrainSettings, warm_start: WarmStart | None, world: World, device: torch.device,
             reporter: Reporter) -> _Run:
    """Subjects split and loaded, the network built (or warm-started), restored with --resume, ready to step."""
    precision = choose_precision(device, settings.amp)
    config = settings.model
    train_subjects, val_subjects = split_subjects(discover_subjects(settings.data), settings)
    check_output(settings, train_subjects + val_subjects)
    validating = ', '.join(s.name for s in val_subjects) or 'training crops (no validation subject)'
    reporter.message(f"training on {', '.join(s.name for s in train_subjects)}; validating on {validating}")
    lesions = settings.lesion_source if config.lesion_channel else None
    sampler, val_data = _load_samplers(settings, train_subjects, val_subjects,
                                       list(dict.fromkeys(config.inputs + settings.targets)), lesions,
                                       settings.augmentation.margin(settings.crop), reporter,
                                       warm_start.requires if warm_start else ())
    torch.manual_seed(settings.seed)
    model = SynthesisNet(config).to(device).to(memory_format=torch.channels_last)
    if warm_start:
        warm_start.prepare(model)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    scaler = grad_scaler(device, precision)
    ema = ExponentialAverage(model, settings.ema) if settings.ema else None
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0, "history": [], "seconds": 0.0}
    recorded = recorded_settings(settings)
    if settings.resume:
        state = restore(last_checkpoint_path(settings.out), config, model, optimiser, recorded, scaler, ema)
        reporter.message(f"resumed after epoch {state['epoch']}")
    objective = warm_start.loss if warm_start and warm_start.loss else SynthesisLoss
    loss: torch.nn.Module = objective(model, settings.terms)
    if world.distributed:  # gradients averaged over the processes in backward (decoders may sit out without c3)
        loss = torch.nn.parallel.DistributedDataParallel(
            loss, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not settings.terms.c3 or len(sampler.groups) > 1)
    metadata = {
        "created": "", "normaliser": settings.normaliser, "normalisation": Normaliser(settings.normaliser).describe(),
        "training_subjects": [s.name for s in train_subjects], "validation_subjects": [s.name for s in val_subjects],
        "train_settings": recorded, "device": str(device), "precision": precision.name, "processes": world.size,
        **(warm_start.metadata if warm_start else {}),
    }
    stepper = Stepper(loss, optimiser, scaler, device, precision, world, ema)
    return _Run(settings, config, model, ema.averaged if ema else model, stepper, sampler, val_data, objective, state,
                metadata, reporter)


def _save(run: _Run, improved: bool) -> None:
    """The best checkpoint (when it improved) and the rolling one with everything --resume needs; rank 0 only."""
    if not run.world.main:
        return
    settings, stepper = run.settings, run.stepper
    if improved:
        save_checkpoint(settings.out, run.config, run.shipped.state_dict(), dict(run.metadata))
    extra = {"optimiser": stepper.optimiser.state_dict(), "train_state": run.state,
             **({"scaler": stepper.scaler.state_dict()} if stepper.scaler.is_enabled() else {}),
             **({"ema": stepper.ema.state_dict()} if stepper.ema else {})}
    save_checkpoint(last_checkpoint_path(settings.out), run.config, run.model.state_dict(), dict(run.metadata),
                    extra=extra)


def _epoch(run: _Run, started: float) -> bool:
    """One epoch, its validation and checkpoints; True when the run should stop (out of time)."""
    settings, state, stepper = run.settings, run.state, run.stepper
    epoch = state["epoch"] + 1
    running = train_epoch(stepper, run.sampler, settings, epoch, run.reporter)
    val = validate(run.shipped, run.val_data, settings, stepper.device, stepper.precision, run.world, run.objective)
    state.update(epoch=epoch, seconds=time.monotonic() - started)
    row = {"epoch": epoch, "train_loss": running["total"], "val_loss": val["total"],
           **{k: v for k, v in val.items() if k.startswith("mae_")}, "seconds": state["seconds"]}
    state["history"].append(row)
    improved = val["total"] < state["best_loss"]
    if improved:
        state.update(best_loss=val["total"], best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    run.metadata.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), epochs_run=epoch,
                        best_epoch=state["best_epoch"], training_seconds=round(state["seconds"], 1))
    if improved:
        run.metadata["validation"] = {k: round(v, 5) for k, v in val.items()}
        if run.config.fusion == "mean-max":  # the learnt share of max in each latent channel's fusion
            run.metadata["fusion_max_share"] = [round(float(v), 3)
                                                for v in torch.sigmoid(run.shipped.fusion_mix.detach())]
    _save(run, improved)
    run.reporter.table_row({**row, "best": "*" if improved else ""})
    this_process = state["seconds"] - run.resumed_at  # --time-limit counts this process's time, not the run's total
    out_of_time = bool(settings.time_limit_min) and this_process > 60 * settings.time_limit_min
    if distributed.rank0_decides(out_of_time, run.world, stepper.device):
        run.reporter.message(f"time limit of {settings.time_limit_min} min reached after epoch {epoch}")
        return True
    return False


def train(settings: TrainSettings, reporter: Reporter | None = None, warm_start: WarmStart | None = None) -> Path:
    """Train a model as the settings say (or only the unfrozen part of a warm start) and return its best checkpoint."""
    check_settings(settings)
    world, device = distributed.start(settings.distributed, settings.device)
    reporter = (reporter or Reporter()) if world.main else Reporter()  # rank 0 alone reports
    run = _prepare(settings, warm_start, world, device, reporter)
    state = run.state
    run.resumed_at = state["seconds"]
    started = time.monotonic() - state["seconds"]
    reporter.start("training", settings.epochs * settings.steps_per_epoch)
    reporter.advance(state["epoch"] * settings.steps_per_epoch)
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        if _epoch(run, started):
            break
    reporter.finish()
    if world.main:
        best = load_checkpoint(settings.out)
        best["metadata"].update(epochs_run=state["epoch"], training_seconds=round(state["seconds"], 1))
        save_checkpoint(settings.out, run.config, best["state_dict"], best["metadata"])
        write_model_card(settings.out, run.config, best["metadata"])
    distributed.stop(world)
    return Path(settings.out)
