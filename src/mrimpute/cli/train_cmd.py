"""`mrimpute train`: train a model on a folder of subjects or a CSV manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded


def train_command(
    data: Path = typer.Option(..., help="Dataset: subject folders (<subject>/<modality>.nii.gz), BIDS, BraTS-named "
                              "folders, an nnU-Net folder (imagesTr/ + dataset.json) or a CSV manifest "
                              "(subject,modality,path)."),
    inputs: str = typer.Option("t1,t1c,t2,flair", help="Comma-separated input modalities."),
    outputs: str = typer.Option("t1,t1c,t2,flair", help="Comma-separated output modalities."),
    out: Path = typer.Option(..., help="Checkpoint to write (best epoch); '<out>.last.pt' holds the latest."),
    epochs: int = typer.Option(100, min=1, help="Maximum number of epochs."),
    steps_per_epoch: int = typer.Option(50, min=1, help="Optimiser steps per epoch."),
    batch_size: int = typer.Option(16, help="Slices per step."),
    crop: int = typer.Option(96, help="Training crop size in pixels (a multiple of 4)."),
    width: float = typer.Option(1.0, help="Channel width multiplier (1 = the paper's model)."),
    latent: int = typer.Option(16, help="Latent channels."),
    fusion: str = typer.Option("max", help="Fusion: max, mean, hemis, output-mean or mean-max (learned per-channel "
                                           "mix of mean and max)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Random seed (runs with one seed are repeatable)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue from '<out>.last.pt' after an interruption."),
    patience: int = typer.Option(10, min=1, help="Stop after this many epochs without validation improvement."),
    slice_axis: str = typer.Option("axial", help="Slice axis: axial, coronal or sagittal."),
    exclude: str = typer.Option("", help="Comma-separated subjects to leave out entirely (e.g. a test subject)."),
    val_subjects: str = typer.Option("", help="Comma-separated validation subjects (default: a seeded 20%)."),
    val_crops: int = typer.Option(64, min=1, max=4096, help="Fixed validation crops scored after every epoch."),
    time_limit: float = typer.Option(0.0, help="Stop after the epoch that passes this many minutes (0: no limit)."),
    no_c1: bool = typer.Option(False, help="Ablation: drop cost c1 (single latents decoded)."),
    no_c2: bool = typer.Option(False, help="Ablation: drop cost c2 (variance between latents)."),
    no_c3: bool = typer.Option(False, help="Ablation: drop cost c3 (fused latent decoded)."),
    full_c1: bool = typer.Option(False, help="Decode every single latent to every output each step (slower)."),
    input_dropout: bool = typer.Option(False, help="Fuse a random subset of the inputs for c3 each step."),
    lesion_channel: bool = typer.Option(False, help="Feed each subject's lesion mask to every encoder as a second "
                                        "channel (a subject without a mask has no lesion); synth then takes "
                                        "--lesion-mask and add-lesion draws lesions."),
    lesion_masks: str = typer.Option("expert", help="With --lesion-channel: 'expert' (lesion.nii.gz), 'either' "
                                     "(else lesion_predicted.nii.gz) or 'predicted' (lesion_predicted first)."),
    lesion_fraction: float = typer.Option(1 / 3, min=0.0, max=1.0, help="With --lesion-channel: the share of "
                                          "training crops centred on a lesion voxel (the rest anywhere in the brain)."),
    init_from: Optional[Path] = typer.Option(None, help="With --lesion-channel: start from this trained model (the "
                                             "new channel's weights at zero), fine-tuning every part."),
    split: Optional[Path] = typer.Option(None, help="A declared split (e.g. models/split.toml): its test subjects are "
                                         "never read, its validation subjects pick the best epoch."),
    augment: str = typer.Option("none", help="Augmentation: intensity (per input: gamma, brightness, bias field, "
                                "noise), spatial (rotation, scaling, elastic), both comma-separated, or none."),
    ssim: float = typer.Option(0.0, help="Weight of (1 - SSIM) beside the MAE in c1 and c3 (0: the paper's MAE)."),
    lr_schedule: str = typer.Option("constant", help="constant or cosine (decay to 1% over all planned steps)."),
    warmup_steps: int = typer.Option(0, help="Linear learning-rate warm-up steps."),
    ema: float = typer.Option(0.0, help="Decay of an exponential moving average of the weights (e.g. 0.999), "
                              "validated and shipped; 0: none."),
    force: bool = typer.Option(False, help="Replace an existing model at --out."),
    threads: int = typer.Option(0, help="CPU threads (0: torch's default)."),
    amp: bool = typer.Option(True, help="Mixed precision on CUDA (bfloat16, or float16 with loss scaling)."),
    distributed: bool = typer.Option(False, help="Data-parallel over the processes torchrun starts "
                                                 "(also when WORLD_SIZE > 1): see the README."),
) -> None:
    """Train a multi-input, multi-output synthesis model (Chartsias et al. 2018)."""

    def job() -> None:
        from ..config import FUSIONS
        from ..errors import InputError
        from ..modalities import parse_modality_list
        from ..model.augment import parse_augmentations
        from ..model.losses import LossTerms
        from ..pipeline.device import set_threads
        from ..pipeline.distributed import world_from_env
        from ..pipeline.train import TrainSettings, train

        set_threads(threads)
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion '{fusion}': expected one of {', '.join(FUSIONS)}")
        try:
            augmentation = parse_augmentations(augment)
        except ValueError as exc:
            raise InputError(f"--augment: {exc}") from None
        listed = lambda text: [p.strip() for p in text.split(",") if p.strip()]  # noqa: E731
        settings = TrainSettings(
            data=data, inputs=parse_modality_list(inputs), outputs=parse_modality_list(outputs), out=out,
            epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop, width=width,
            latent=latent, fusion=fusion, lr=lr, seed=seed, device=device, resume=resume, patience=patience,
            slice_axis=slice_axis, exclude=listed(exclude), val_subjects=listed(val_subjects),
            time_limit_min=time_limit, val_crops=val_crops,
            terms=LossTerms(c1=not no_c1, c2=not no_c2, c3=not no_c3, ssim=ssim), sample_c1_outputs=not full_c1,
            input_dropout=input_dropout, amp=amp, distributed=distributed, lesion_channel=lesion_channel,
            lesion_source=lesion_masks, lesion_fraction=lesion_fraction, split=split, augmentation=augmentation,
            lr_schedule=lr_schedule, warmup_steps=warmup_steps, ema=ema, force=force)
        if init_from is not None and not lesion_channel:
            raise InputError("--init-from applies with --lesion-channel (to add a decoder or an encoder, use "
                             "train-decoder or train-encoder)")
        with reporting() as reporter:
            if init_from is not None:
                from ..pipeline.extend import add_lesion_channel

                path = add_lesion_channel(init_from, settings, force=resume or force, reporter=reporter)
            else:
                path = train(settings, reporter)
        if world_from_env().main:  # with torchrun, rank 0 alone prints
            console.print(make_table("training", reporter.rows))
            console.print(f"best model: {path}  (card: {path.with_suffix('.md')})")

    run_guarded(job)
