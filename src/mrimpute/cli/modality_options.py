"""One `--<modality> FILE` option per row of the modality table, added to a command when typer builds it.

A command function takes `inputs: dict[str, Path]` (the modalities given, in table order) where its per-modality
options go; `with_modality_options` puts one option per table row there instead. The options are made each time
typer builds the command (every `app()` and every test runner call), from the table as it is then: a row added to
`modalities.MODALITIES` shows up in `synth`, `preprocess` and `add-lesion` without touching them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from .. import modalities

INPUTS = "inputs"


class ModalityCommand:
    """A command callable whose signature is the function's with `inputs` replaced by one option per modality."""

    def __init__(self, function: Callable, help_text: str) -> None:
        self.function = function
        self.help_text = help_text  # formatted with {name} (the row's label)
        self.__name__ = function.__name__
        self.__qualname__ = function.__qualname__
        self.__module__ = function.__module__
        self.__doc__ = function.__doc__

    def _own(self) -> tuple[inspect.Signature, dict]:
        return inspect.signature(self.function), typing.get_type_hints(self.function, include_extras=True)

    @property
    def __signature__(self) -> inspect.Signature:
        signature, hints = self._own()
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()]
        taken = {p.name for p in own}
        rows = modalities.table()
        clash = [m.name for m in rows if m.name in taken]
        if clash:
            raise RuntimeError(f"modality {clash[0]} clashes with an option of {self.__name__}")
        options = [inspect.Parameter(m.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                     default=typer.Option(None, m.option, help=self.help_text.format(name=m.label),
                                                          show_default=False))
                   for m in rows]
        at = [p.name for p in own].index(INPUTS)
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[:at] + options + own[at + 1:]]
        return inspect.Signature(parameters)

    @property
    def __annotations__(self) -> dict:  # typing.get_type_hints reads this
        return {name: p.annotation for name, p in self.__signature__.parameters.items()}

    def __call__(self, **values):
        given = {m.name: values.pop(m.name) for m in modalities.table() if values.get(m.name) is not None}
        for m in modalities.table():
            values.pop(m.name, None)
        return self.function(**{INPUTS: given}, **values)


def with_modality_options(help_text: str) -> Callable[[Callable], ModalityCommand]:
    """Decorator: the command gets `--<modality> FILE` for every row of the table (help: help_text with {name})."""
    return lambda function: ModalityCommand(function, help_text)
