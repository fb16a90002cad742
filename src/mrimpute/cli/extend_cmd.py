"""`mrimpute train-decoder` / `train-encoder` / `train-uncertainty`: add an output, an input or error heads to a
trained model, the rest frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded

# options shared by both commands
MODEL = typer.Option(..., help="Trained model to extend (only read; the enlarged model is a new checkpoint).")
DATA = typer.Option(..., help="Folder of subject folders or a CSV manifest with the new contrast and the model's.")
OUT = typer.Option(..., help="New checkpoint (best epoch); '<out>.last.pt' holds the latest, '<out>.md' the card.")
EPOCHS = typer.Option(20, min=1, help="Maximum number of epochs.")
STEPS = typer.Option(50, min=1, help="Optimiser steps per epoch.")
BATCH = typer.Option(16, min=1, help="Slices per step.")
CROP = typer.Option(96, min=8, help="Training crop size in pixels (a multiple of 4).")
LR = typer.Option(1e-3, help="Adam learning rate.")
SEED = typer.Option(0, help="Random seed.")
DEVICE = typer.Option("auto", help="auto, cpu or cuda.")
PATIENCE = typer.Option(10, min=1, help="Stop after this many epochs without validation improvement.")
EXCLUDE = typer.Option("", help="Comma-separated subjects to leave out (e.g. a test subject). Subjects the parent "
                        "model neither trained nor validated on (its held-out ones) are left out already.")
SUBJECTS = typer.Option("", help="Comma-separated training subjects (default: every subject of --data the parent "
                         "trained or validated on); list a subject the parent held out here to train on it.")
VAL = typer.Option("", help="Comma-separated validation subjects (default: a seeded 20%).")
TIME_LIMIT = typer.Option(0.0, help="Stop after the epoch that passes this many minutes (0: no limit).")
THREADS = typer.Option(0, help="CPU threads (0: torch's default).")
RESUME = typer.Option(False, help="Continue from '<out>.last.pt' after an interruption.")
FORCE = typer.Option(False, help="Overwrite an existing --out.")
SPLIT = typer.Option(None, help="A declared split (e.g. models/split.toml): its test subjects are never read, its "
                     "validation subjects pick the best epoch.")


def _extend(kind: str, model: Path, modality: str, data: Path, out: Path, epochs: int, steps_per_epoch: int,
            batch_size: int, crop: int, lr: float, seed: int, device: str, patience: int, exclude: str,
            val_subjects: str, time_limit: float, threads: int, resume: bool, force: bool, subjects: str = "",
            split: Optional[Path] = None) -> None:
    from ..errors import InputError
    from ..pipeline.extend import add_decoder, add_encoder, add_error_heads
    from ..pipeline.train import TrainSettings

    if threads:
        from ..pipeline.device import set_threads

        set_threads(threads)
    if crop % 4:
        raise InputError(f"--crop {crop} is not a multiple of 4")
    listed = lambda text: [p.strip() for p in text.split(",") if p.strip()]  # noqa: E731
    settings = TrainSettings(data=data, inputs=[], outputs=[], out=out, epochs=epochs, steps_per_epoch=steps_per_epoch,
                             batch_size=batch_size, crop=crop, lr=lr, seed=seed, device=device, resume=resume,
                             patience=patience, exclude=listed(exclude), val_subjects=listed(val_subjects),
                             subjects=listed(subjects), time_limit_min=time_limit, split=split)
    from ..io.folders import ensure_parent_folders

    ensure_parent_folders([out])  # a missing output folder is created
    with reporting() as reporter:
        if kind == "error heads":
            path = add_error_heads(model, settings, force, reporter)
        else:
            path = (add_decoder if kind == "decoder" else add_encoder)(model, modality, settings, force, reporter)
    console.print(make_table(f"training the new {kind} ({modality or 'every output'})", reporter.rows))
    console.print(f"extended model: {path}  (card: {path.with_suffix('.md')}); {model} is unchanged")


def train_decoder_command(
    model: Path = MODEL, output: str = typer.Option(..., help="The new output contrast (e.g. t1c)."),
    data: Path = DATA, out: Path = OUT, epochs: int = EPOCHS, steps_per_epoch: int = STEPS, batch_size: int = BATCH,
    crop: int = CROP, lr: float = LR, seed: int = SEED, device: str = DEVICE, patience: int = PATIENCE,
    exclude: str = EXCLUDE, val_subjects: str = VAL, time_limit: float = TIME_LIMIT, threads: int = THREADS,
    resume: bool = RESUME, force: bool = FORCE, subjects: str = SUBJECTS, split: Optional[Path] = SPLIT,
) -> None:
    """Add a decoder for a new output to a trained model; every encoder and decoder it has stays frozen (paper VI-E)."""
    run_guarded(lambda: _extend("decoder", model, output, data, out, epochs, steps_per_epoch, batch_size, crop, lr,
                                seed, device, patience, exclude, val_subjects, time_limit, threads, resume, force,
                                subjects, split))


def train_encoder_command(
    model: Path = MODEL, modality: str = typer.Option(..., "--input", help="The new input contrast (e.g. pd)."),
    data: Path = DATA, out: Path = OUT, epochs: int = EPOCHS, steps_per_epoch: int = STEPS, batch_size: int = BATCH,
    crop: int = CROP, lr: float = LR, seed: int = SEED, device: str = DEVICE, patience: int = PATIENCE,
    exclude: str = EXCLUDE, val_subjects: str = VAL, time_limit: float = TIME_LIMIT, threads: int = THREADS,
    resume: bool = RESUME, force: bool = FORCE, subjects: str = SUBJECTS, split: Optional[Path] = SPLIT,
) -> None:
    """Add an encoder for a new input, trained into the frozen latent space (c1 through the frozen decoders + c2
    against the frozen encoders' latents)."""
    run_guarded(lambda: _extend("encoder", model, modality, data, out, epochs, steps_per_epoch, batch_size, crop, lr,
                                seed, device, patience, exclude, val_subjects, time_limit, threads, resume, force,
                                subjects, split))


def train_uncertainty_command(
    model: Path = MODEL, data: Path = DATA, out: Path = OUT, epochs: int = EPOCHS, steps_per_epoch: int = STEPS,
    batch_size: int = BATCH, crop: int = CROP, lr: float = LR, seed: int = SEED, device: str = DEVICE,
    patience: int = PATIENCE, exclude: str = EXCLUDE, val_subjects: str = VAL, time_limit: float = TIME_LIMIT,
    threads: int = THREADS, resume: bool = RESUME, force: bool = FORCE, subjects: str = SUBJECTS,
    split: Optional[Path] = SPLIT,
) -> None:
    """Add learnt error heads: per output, the expected absolute error of the synthesis (synth --uncertainty maps
    it); every other part stays frozen."""
    run_guarded(lambda: _extend("error heads", model, "", data, out, epochs, steps_per_epoch, batch_size, crop, lr,
                                seed, device, patience, exclude, val_subjects, time_limit, threads, resume, force,
                                subjects, split))
