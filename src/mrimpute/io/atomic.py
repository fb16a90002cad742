"""Atomic file writing: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError

STALE_TEMPORARY_SECONDS = 300  # a hidden temporary file older than this is a killed write's, not a running one's
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LINK_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def output_exists(path: Path) -> bool:
    """An output path is taken by anything there, a dangling symlink included."""
    return os.path.lexists(path)


def check_output_extension(path: Path) -> None:
    """Refuse a NIfTI output whose name does not end in .nii or .nii.gz (call before any work)."""
    name = Path(path).name.lower()
    if not name.endswith(NIFTI_SUFFIXES):
        got = "".join(Path(path).suffixes[-2:]) or "no extension"
        raise OutputError(f"{path}: output must be a .nii or .nii.gz file (got {got})")


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output without force, and an output folder that does not exist or is not writable."""
    if output_exists(path) and not force:
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
        if output_exists(Path(path)) and not force:
            raise OutputError(f"{path}: output exists; use --force to overwrite it")


def _temporary_suffix(path: Path) -> str:
    return ".tmp" + ("".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix)


def _temporary_pattern(path: Path) -> re.Pattern:
    """Names tempfile.mkstemp gives the temporary files of path: .<name>.<8 random characters>.tmp<suffix>"""
    return re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}" + re.escape(_temporary_suffix(path)) + "$")


def remove_stale_temporaries(path: Path, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Remove the hidden temporary files of path left by killed writes (older than max_age seconds; a younger
    one may belong to a write still running); returns what was removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = _temporary_pattern(path)
    removed = []
    try:
        names = [name for name in os.listdir(folder) if pattern.match(name)]
    except OSError:
        return removed
    for name in names:
        candidate = folder / name
        with contextlib.suppress(OSError):
            if time.time() - os.lstat(candidate).st_mtime > max_age and candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_temporary_suffix(path))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def _link_exclusively(tmp: Path, path: Path) -> None:
    """Give tmp the name path only if nothing has it yet (a hard link; an exclusive create where links fail)."""
    try:
        os.link(tmp, path, follow_symlinks=False)
        return
    except FileExistsError:
        raise OutputError(f"{path}: output exists (another run wrote it meanwhile); use --force to overwrite it") \
            from None
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise OutputError(f"{path}: output exists (another run wrote it meanwhile); use --force to overwrite it") \
            from None
    os.replace(tmp, path)


def _commit(tmp: Path, path: Path, exclusive: bool = False) -> None:
    """Move a finished temporary file onto its final path: one rename, or without force an exclusive link that
    fails if another run took the path meanwhile (the bad-input corpus patches this function)."""
    os.chmod(tmp, 0o666 & ~_current_umask())
    if exclusive:
        _link_exclusively(tmp, path)
    else:
        os.replace(tmp, path)


def write_atomically(path: Path, writer: Callable[[Path], None], force: bool = False) -> None:
    """Call writer(tmp_path) and rename the result onto path; nothing partial is ever left at path. Without force
    the commit never replaces a file another run wrote meanwhile; stale temporary files of killed writes of this
    path are removed first."""
    path = Path(path)
    check_writable(path, force)
    remove_stale_temporaries(path)
    try:
        with _temporary_beside(path) as tmp:
            writer(tmp)
            _commit(tmp, path, exclusive=not force)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None
