"""`mrimpute train-decoder` / `train-encoder` / `train-uncertainty`: add an output, an input or error heads to a
trained model, the rest frozen."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..runtime.train_settings import EXTENSION_EPOCHS, TrainSettings
from . import train_options as opt
from .console import console, make_table, reporting, run_guarded
from .options import Device, Threads

# options of all three commands (the defaults are TrainSettings', the epochs EXTENSION_EPOCHS)
Model = Annotated[Path, typer.Option(help="Trained model to extend (only read; the enlarged model is a new "
                                     "checkpoint).")]
Data = Annotated[Path, typer.Option(help="Folder of subject folders or a CSV manifest with the new contrast and the "
                                    "model's.")]
Out = Annotated[Path, typer.Option(help="New checkpoint (best epoch); '<out>.last.pt' holds the latest, '<out>.md' "
                                   "the card.")]
Exclude = Annotated[str, typer.Option(help="Comma-separated subjects to leave out (e.g. a test subject). Subjects the "
                                      "parent model neither trained nor validated on (its held-out ones) are left out "
                                      "already.")]
Subjects = Annotated[str, typer.Option(help="Comma-separated training subjects (default: every subject of --data the "
                                       "parent trained or validated on); list a subject the parent held out here to "
                                       "train on it.")]


def _extend(kind: str, modality: str, options: dict[str, Any]) -> None:
    """Train the new part as the options say (the parent is options['model']) and report; `modality` is the new
    contrast (for error heads: their --error-loss)."""
    from ..io.folders import ensure_parent_folders
    from ..pipeline.extend import add_decoder, add_encoder, add_error_heads
    from ..runtime.device import set_threads
    from ..runtime.train_checks import check_settings

    set_threads(options["threads"])
    settings = opt.settings_from_options(options)
    check_settings(settings)  # before any folder is made
    model, force = options["model"], settings.force
    ensure_parent_folders([settings.out])  # a missing output folder is created
    with reporting() as reporter:
        if kind == "error heads":
            path = add_error_heads(model, settings, force, reporter, error_loss=modality)
        else:
            path = (add_decoder if kind == "decoder" else add_encoder)(model, modality, settings, force, reporter)
    console.print(make_table(f"training the new {kind} ({modality or 'every output'})", reporter.rows))
    console.print(f"extended model: {path}  (card: {path.with_suffix('.md')}); {model} is unchanged")


def _options(
    model: Model, data: Data, out: Out, epochs: opt.Epochs = EXTENSION_EPOCHS,
    steps_per_epoch: opt.Steps = TrainSettings.steps_per_epoch, batch_size: opt.BatchSize = TrainSettings.batch_size,
    crop: opt.Crop = TrainSettings.crop, lr: opt.Lr = TrainSettings.lr, seed: opt.Seed = TrainSettings.seed,
    device: Device = TrainSettings.device, patience: opt.Patience = TrainSettings.patience, exclude: Exclude = "",
    val_subjects: opt.ValSubjects = "", time_limit_min: opt.TimeLimit = TrainSettings.time_limit_min,
    threads: Threads = 0, resume: opt.Resume = TrainSettings.resume, force: opt.Force = TrainSettings.force,
    subjects: Subjects = "", split: opt.Split = TrainSettings.split,
) -> None:
    """The options all three commands take (their signature; never called)."""


def _command(kind: str, new: inspect.Parameter | None, doc: str) -> Callable[..., None]:
    """A command: the shared options (and the new contrast's, after --model; or its own option, last), training the
    new `kind` of part."""
    shared = inspect.signature(_options, eval_str=True)
    parameters = list(shared.parameters.values())
    if new is not None and new.default is inspect.Parameter.empty:  # the new contrast: right after --model
        parameters.insert(1, new)
    elif new is not None:  # an option with a default goes last
        parameters.append(new)

    def command(**options: Any) -> None:
        run_guarded(lambda: _extend(kind, options[new.name] if new else "", options))

    command.__signature__ = shared.replace(parameters=parameters)  # type: ignore[attr-defined]  (typer reads it)
    command.__doc__ = doc
    return command


def _contrast(name: str, flag: str, help_text: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             annotation=Annotated[str, typer.Option(flag, help=help_text)])


train_decoder_command = _command(
    "decoder", _contrast("output", "--output", "The new output contrast (e.g. t1c)."),
    "Add a decoder for a new output to a trained model; every encoder and decoder it has stays frozen (paper VI-E).")
train_encoder_command = _command(
    "encoder", _contrast("modality", "--input", "The new input contrast (e.g. pd)."),
    "Add an encoder for a new input, trained into the frozen latent space (c1 through the frozen decoders + c2 "
    "against the frozen encoders' latents).")
train_uncertainty_command = _command(
    "error heads", inspect.Parameter(
        "error_loss", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="l1",
        annotation=Annotated[str, typer.Option(help="Fit of the heads: l1 (the median absolute error) or laplace "
                                                    "(its mean, by a Laplace likelihood).")]),
    "Add learnt error heads: per output, the expected absolute error of the synthesis (synth --uncertainty maps it); "
    "every other part stays frozen.")
