"""Shared console output: rich progress bars and tables behind the pipelines' Reporter interface."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import MrimputeError
from ..pipeline.reporting import Reporter

console = Console()
error_console = Console(stderr=True)
T = TypeVar("T")


def run_guarded(job: Callable[[], T]) -> T:
    """Run a job; a user error becomes one red line on stderr and exit code 1, never a traceback."""
    try:
        return job()
    except MrimputeError as exc:
        error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        error_console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None


def _format(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def make_table(title: str, rows: list[dict]) -> Table:
    """A rich table with one column per key of the rows."""
    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(str(key), justify="right", overflow="fold")  # fold long paths, never elide them
    for row in rows:
        table.add_row(*(_format(v) for v in row.values()))
    return table


class RichReporter(Reporter):
    """Shows progress as a rich bar, messages as lines, and table rows as they come."""

    def __init__(self, row_title: str = "") -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.task: int | None = None
        self.row_title = row_title
        self.rows: list[dict] = []

    def start(self, description: str, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)

    def finish(self) -> None:
        self.progress.stop()
        self.task = None

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def table_row(self, row: dict) -> None:
        self.rows.append(row)
        self.progress.console.print("  ".join(f"{k}={_format(v)}" for k, v in row.items()), highlight=False)


@contextlib.contextmanager
def reporting(row_title: str = "") -> Iterator[RichReporter]:
    """A RichReporter whose progress bar is stopped however the job ends."""
    reporter = RichReporter(row_title)
    try:
        yield reporter
    finally:
        reporter.progress.stop()
