"""How pipelines report progress: a small interface the CLI implements with rich, and a silent default."""

from __future__ import annotations


class Reporter:
    """Progress callbacks; the default does nothing (tests and library use)."""

    def start(self, description: str, total: int) -> None:
        """A task of `total` steps begins."""

    def advance(self, steps: int = 1, note: str = "") -> None:
        """Steps of the current task are done; `note` says what (e.g. a subject and its outcome), shown as a line
        where there is no live progress bar (a log file)."""

    def finish(self) -> None:
        """The current task is done."""

    def message(self, text: str) -> None:
        """A line of information for the user."""

    def table_row(self, row: dict) -> None:
        """One row of a results table (e.g. one epoch)."""
