"""The `mrimpute` command: one Typer app, one small module per command."""

from __future__ import annotations

import typer

from .. import __version__
from .bench_cmd import bench_command
from .demo_cmd import demo_command
from .eval_cmd import eval_command
from .extend_cmd import train_decoder_command, train_encoder_command, train_uncertainty_command
from .lesion_cmd import add_lesion_command
from .preprocess_cmd import preprocess_command
from .synth_cmd import synth_command
from .train_cmd import train_command
from .tune_cmd import tune_uncertainty_command

# rich_markup_mode=None: plain help, wrapped at the terminal's width with every option name and default whole
# (the rich panels truncate option names at 80 columns); -h works as --help on every command
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Impute missing MRI contrasts from any subset of the available ones.")
app.command("train", short_help="Train a model on a folder of subjects or a CSV manifest.")(train_command)
app.command("synth", short_help="Synthesise the contrasts a subject (or a dataset) lacks.")(synth_command)
app.command("demo", short_help="FLAIR from T1 + T2 of the bundled subject, scored.")(demo_command)
app.command("eval", short_help="Score a model, one prediction, or compare runs.")(eval_command)
app.command("preprocess", short_help="Co-register raw scans onto one of them, with a mask.")(
    preprocess_command)
app.command("add-lesion", short_help="Draw lesions from a mask into a synthesised contrast.")(
    add_lesion_command)
app.command("train-decoder", short_help="Add an output to a trained model (the rest frozen).")(
    train_decoder_command)
app.command("train-encoder", short_help="Add an input to a trained model (the rest frozen).")(
    train_encoder_command)
app.command("train-uncertainty", short_help="Add learnt error heads for --uncertainty (the rest frozen).")(
    train_uncertainty_command)
app.command("tune-uncertainty", short_help="Choose, on validation subjects, how much each error map is blurred.")(
    tune_uncertainty_command)
app.command("bench", short_help="Time synthesis and training on this machine.")(bench_command)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mrimpute {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """Impute missing MRI contrasts from any subset of the available ones.

    Run `mrimpute COMMAND -h` for a command's options; `mrimpute demo` runs the bundled example.
    """


def main() -> None:
    """Console-script entry point."""
    app()
