"""Shared console output: rich progress bars and tables behind the pipelines' Reporter interface."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import typer
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..errors import MrimputeError
from ..runtime.reporting import Reporter

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


def _narrowest_width(rows: list[dict]) -> int:
    """The width of a table of these rows with every column as narrow as its longest word (header or cell), with
    the cell padding and the borders: narrower, rich would cut words in two."""
    words = [[str(key), *(_format(row[key]) for row in rows if key in row)] for key in rows[0]]
    widest = [max((cell_len(word) for text in column for word in text.split() or [""]), default=0)
              for column in words]
    return sum(widest) + 3 * len(widest) + 1


def make_table(title: str, rows: list[dict]) -> RenderableType:
    """A rich table with one column per key of the rows; where the console is too narrow for its longest words
    (a log, an 80-column terminal), the rows as `key: value` lines instead, wrapped between words (only a word
    longer than the console's width, e.g. a long path, is folded)."""
    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(str(key), justify="right", overflow="fold")  # fold long paths, never elide them
    for row in rows:
        table.add_row(*(_format(v) for v in row.values()))
    if not rows or _narrowest_width(rows) <= console.width:
        return table
    lines = [Text(title, style="italic")]
    for row in rows:
        lines.append(Text("  ".join(f"{k}: {_format(v)}" for k, v in row.items()), no_wrap=False, overflow="fold"))
    return Group(*lines)


class RichReporter(Reporter):
    """Shows progress as a rich bar, messages as lines, and table rows as they come. Where the output is not a
    terminal (a log file, a pipe) there is no bar: each step with a note (e.g. one per subject) is a line, and
    otherwise a line every LOG_INTERVAL_S seconds tells how far the task is."""

    LOG_INTERVAL_S = 15.0

    def __init__(self, row_title: str = "") -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.task: int | None = None
        self.row_title = row_title
        self.rows: list[dict] = []
        self.description = ""
        self.total = 0
        self.done = 0
        self.started = self.last_line = 0.0

    @property
    def live(self) -> bool:
        """Whether the output is a terminal that shows the progress bar."""
        return self.progress.console.is_terminal

    def start(self, description: str, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(description, total=total)
        self.description, self.total, self.done = description, total, 0
        self.started = self.last_line = time.monotonic()

    def advance(self, steps: int = 1, note: str = "") -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)
        self.done += steps
        if self.live:
            return
        now = time.monotonic()
        if note or now - self.last_line >= self.LOG_INTERVAL_S:
            self.last_line = now
            elapsed = int(now - self.started)
            self.progress.console.print(f"{self.description} {self.done}/{self.total} "
                                        f"({elapsed // 60}:{elapsed % 60:02d})"
                                        + (f": {note}" if note else ""), highlight=False, soft_wrap=True)

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
