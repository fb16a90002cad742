"""`mrimpute train`: train a model on a folder of subjects or a CSV manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..config import ModelConfig
from ..runtime.train_settings import TrainSettings
from .console import console, make_table, reporting, run_guarded
from .options import Device, Threads
from .train_options import (
    DEFAULT_CONTRASTS,
    BatchSize,
    Crop,
    Epochs,
    Force,
    Lr,
    Patience,
    Resume,
    Seed,
    Split,
    Steps,
    TimeLimit,
    ValCrops,
    ValSubjects,
    settings_from_options,
)

Data = Annotated[Path, typer.Option(help="Dataset: subject folders (<subject>/<modality>.nii.gz), BIDS, BraTS-named "
                                    "folders, an nnU-Net folder (imagesTr/ + dataset.json) or a CSV manifest "
                                    "(subject,modality,path).")]
Out = Annotated[Path, typer.Option(help="Checkpoint to write (best epoch); '<out>.last.pt' holds the latest.")]
Inputs = Annotated[str, typer.Option(help="Comma-separated input modalities.")]
Outputs = Annotated[str, typer.Option(help="Comma-separated output modalities.")]
Width = Annotated[float, typer.Option(help="Channel width multiplier (1 = the paper's model).")]
Latent = Annotated[int, typer.Option(help="Latent channels.")]
Fusion = Annotated[str, typer.Option(help="Fusion: max, mean, hemis, output-mean or mean-max (learned per-channel "
                                     "mix of mean and max).")]
SliceAxis = Annotated[str, typer.Option(help="Slice axis: axial, coronal or sagittal.")]
Exclude = Annotated[str, typer.Option(help="Comma-separated subjects to leave out entirely (e.g. a test subject).")]
NoC1 = Annotated[bool, typer.Option(help="Ablation: drop cost c1 (single latents decoded).")]
NoC2 = Annotated[bool, typer.Option(help="Ablation: drop cost c2 (variance between latents).")]
NoC3 = Annotated[bool, typer.Option(help="Ablation: drop cost c3 (fused latent decoded).")]
FullC1 = Annotated[bool, typer.Option(help="Decode every single latent to every output each step (slower).")]
InputDropout = Annotated[bool, typer.Option(help="Fuse a random subset of the inputs for c3 each step.")]
LesionChannel = Annotated[bool, typer.Option(
    help="Feed each subject's lesion mask to every encoder as a second channel (a subject without a mask has no "
         "lesion); synth then takes --lesion-mask and add-lesion draws lesions.")]
LesionMasks = Annotated[str, typer.Option("--lesion-masks", help="With --lesion-channel: 'expert' (lesion.nii.gz), "
                                          "'either' (else lesion_predicted.nii.gz) or 'predicted' (lesion_predicted "
                                          "first).")]
LesionFraction = Annotated[float, typer.Option(min=0.0, max=1.0, help="With --lesion-channel: the share of training "
                                               "crops centred on a lesion voxel (the rest anywhere in the brain).")]
LesionSampling = Annotated[str, typer.Option(help="For a lesion-aware model: how a lesion crop's centre is drawn: "
                                             "'voxel' (any lesion slice, then a voxel) or 'component' (any "
                                             "connected lesion of 10 voxels or more, then a voxel: many small MS "
                                             "lesions weigh as much as they number).")]
InitFrom = Annotated[Optional[Path], typer.Option(help="Start from this trained model and train every part further "
                                                  "(its network settings and normaliser kept; with --lesion-channel "
                                                  "a lesion channel is added, its weights at zero).")]
Augment = Annotated[Optional[str], typer.Option(help="Augmentation: intensity (per input: gamma, brightness, bias "
                                                "field, noise), spatial (rotation, scaling, elastic), both "
                                                "comma-separated, or none (unset: none).")]
Ssim = Annotated[Optional[float], typer.Option(help="Weight of (1 - SSIM) beside the MAE in c1 and c3 (unset: 0, "
                                               "the paper's MAE alone).")]
Mse = Annotated[Optional[float], typer.Option(help="Weight of the mean squared error beside the MAE in c1 and c3 "
                                              "(unset: 0); the squared error fits the conditional mean, which PSNR "
                                              "rewards.")]
LrSchedule = Annotated[str, typer.Option(help="constant or cosine (decay to 1% over all planned steps).")]
WarmupSteps = Annotated[int, typer.Option(help="Linear learning-rate warm-up steps.")]
Ema = Annotated[float, typer.Option(help="Decay of an exponential moving average of the weights (e.g. 0.999), "
                                    "validated and shipped; 0: none.")]
Amp = Annotated[bool, typer.Option(help="Mixed precision on CUDA (bfloat16, or float16 with loss scaling).")]
Distributed = Annotated[bool, typer.Option(help="Data-parallel over the processes torchrun starts (also when "
                                           "WORLD_SIZE > 1): see the README.")]


def _train(options: dict[str, Any]) -> None:
    """Train as the options say (or from a trained model: --init-from, with a new lesion channel or not) and
    report."""
    from ..runtime.device import set_threads
    from ..runtime.distributed import world_from_env

    set_threads(options["threads"])
    settings = settings_from_options(options)
    init_from = options["init_from"]
    with reporting() as reporter:
        if init_from is not None:
            from ..pipeline.extend import add_lesion_channel, fine_tune

            start = add_lesion_channel if settings.model.lesion_channel else fine_tune
            path = start(init_from, settings, force=settings.resume or settings.force, reporter=reporter)
        else:
            from ..pipeline.train import train

            path = train(settings, reporter)
    if world_from_env().main:  # with torchrun, rank 0 alone prints
        console.print(make_table("training", reporter.rows))
        console.print(f"best model: {path}  (card: {path.with_suffix('.md')})")


def train_command(  # every default is TrainSettings' or ModelConfig's
    data: Data, out: Out, inputs: Inputs = DEFAULT_CONTRASTS, outputs: Outputs = DEFAULT_CONTRASTS,
    epochs: Epochs = TrainSettings.epochs, steps_per_epoch: Steps = TrainSettings.steps_per_epoch,
    batch_size: BatchSize = TrainSettings.batch_size, crop: Crop = TrainSettings.crop,
    width: Width = ModelConfig.width, latent: Latent = ModelConfig.latent, fusion: Fusion = ModelConfig.fusion,
    lr: Lr = TrainSettings.lr, seed: Seed = TrainSettings.seed, device: Device = TrainSettings.device,
    resume: Resume = TrainSettings.resume, patience: Patience = TrainSettings.patience,
    slice_axis: SliceAxis = ModelConfig.slice_axis, exclude: Exclude = "", val_subjects: ValSubjects = "",
    val_crops: ValCrops = TrainSettings.val_crops, time_limit_min: TimeLimit = TrainSettings.time_limit_min,
    no_c1: NoC1 = False, no_c2: NoC2 = False, no_c3: NoC3 = False, full_c1: FullC1 = False,
    input_dropout: InputDropout = TrainSettings.input_dropout, init_from: InitFrom = None,
    lesion_channel: LesionChannel = ModelConfig.lesion_channel,
    lesion_source: LesionMasks = TrainSettings.lesion_source,
    lesion_fraction: LesionFraction = TrainSettings.lesion_fraction,
    lesion_sampling: LesionSampling = TrainSettings.lesion_sampling,
    split: Split = TrainSettings.split, augment: Augment = None, ssim: Ssim = None, mse: Mse = None,
    lr_schedule: LrSchedule = TrainSettings.lr_schedule, warmup_steps: WarmupSteps = TrainSettings.warmup_steps,
    ema: Ema = TrainSettings.ema, force: Force = TrainSettings.force, threads: Threads = 0,
    amp: Amp = TrainSettings.amp, distributed: Distributed = TrainSettings.distributed,
) -> None:
    """Train a multi-input, multi-output synthesis model (Chartsias et al. 2018)."""
    options = locals()  # every option by name: settings_from_options makes TrainSettings of them
    run_guarded(lambda: _train(options))
