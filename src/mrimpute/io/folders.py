"""Output folders: created when missing (as nnU-Net and most command-line tools do), with one-line errors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError


def ensure_folder(folder: Path | str) -> Path:
    """Create `folder` and its missing parents; refuse (OutputError) when a part of it is a file or it cannot be
    created."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise OutputError(f"{folder}: cannot create the output folder: {part} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    return folder


def ensure_parent_folders(paths: Iterable[Path | str | None]) -> None:
    """Create the folder of every output file given (None entries are skipped)."""
    for path in paths:
        if path is not None:
            parent = Path(path).parent
            ensure_folder(parent if str(parent) else Path("."))
