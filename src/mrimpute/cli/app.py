"""The `mrimpute` command: one Typer app, one small module per command."""

from __future__ import annotations

import typer

from .bench_cmd import bench_command
from .demo_cmd import demo_command
from .eval_cmd import eval_command
from .extend_cmd import train_decoder_command, train_encoder_command
from .lesion_cmd import add_lesion_command
from .preprocess_cmd import preprocess_command
from .synth_cmd import synth_command
from .train_cmd import train_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Impute missing MRI contrasts from any subset of the available ones.")
app.command("train")(train_command)
app.command("synth")(synth_command)
app.command("demo")(demo_command)
app.command("eval")(eval_command)
app.command("preprocess")(preprocess_command)
app.command("add-lesion")(add_lesion_command)
app.command("train-decoder")(train_decoder_command)
app.command("train-encoder")(train_encoder_command)
app.command("bench")(bench_command)


@app.callback()
def _root() -> None:
    """Impute missing MRI contrasts from any subset of the available ones."""


def main() -> None:
    """Console-script entry point."""
    app()
