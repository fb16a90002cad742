"""The `mrimpute` command: one Typer app, one small module per command."""

from __future__ import annotations

import typer

from .demo_cmd import demo_command
from .eval_cmd import eval_command
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


@app.callback()
def _root() -> None:
    """Impute missing MRI contrasts from any subset of the available ones."""


def main() -> None:
    """Console-script entry point."""
    app()
