"""Atomic file writing: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output without force, and an output folder that does not exist or is not writable."""
    if path.exists() and not force:
        raise OutputError(f"{path}: output exists; use --force to overwrite it")
    if path.is_dir():
        raise OutputError(f"{path}: output is a folder")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_overwrite(paths: list[Path], inputs: list[Path], force: bool) -> None:
    """Refuse any output that is an input (inputs are never modified) and, without force, any existing output.

    Paths are compared by os.path.realpath, which follows symlinks and, unlike Path.resolve, never raises on a loop.
    """
    resolved_inputs = {os.path.realpath(p) for p in inputs}
    for path in paths:
        if os.path.realpath(path) in resolved_inputs:
            raise OutputError(f"{path}: refusing to overwrite an input")
        if Path(path).exists() and not force:
            raise OutputError(f"{path}: output exists; use --force to overwrite it")


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def _commit(tmp: Path, path: Path) -> None:
    """Move a finished temporary file onto its final path (one rename; the bad-input corpus patches it)."""
    os.chmod(tmp, 0o666 & ~_current_umask())
    os.replace(tmp, path)


def write_atomically(path: Path, writer: Callable[[Path], None], force: bool = False) -> None:
    """Call writer(tmp_path) and rename the result onto path; nothing partial is ever left at path."""
    path = Path(path)
    check_writable(path, force)
    try:
        with _temporary_beside(path) as tmp:
            writer(tmp)
            _commit(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
