"""Finding subjects (and sessions) in a dataset: BIDS (`sub-X/[ses-Y/]anat/..._T1w.nii.gz`), plain subject folders
(`<subject>/t1.nii.gz`) and BraTS-style names (`BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .. import modalities
from ..modalities import canonical_modality
from .subjects import nifti_stem

SKIPPED_FOLDERS = {"derivatives", "sourcedata", "code"}
# BIDS suffixes, entities, datatype folders and BraTS codes come from the modality table (modalities.MODALITIES)


def _brats_name() -> re.Pattern:
    codes = "|".join(re.escape(m.brats) for m in modalities.table() if m.brats)
    return re.compile(rf"^.+-(?P<code>{codes})$", re.IGNORECASE)


@dataclass
class DatasetSubject:
    """One subject (or one session of it): its BIDS label, session label, and files by canonical modality."""

    subject: str
    session: str | None
    files: dict[str, Path]
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """sub-X or sub-X_ses-Y."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _visible_niftis(folder: Path) -> list[tuple[Path, str]]:
    files = []
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is not None and not path.name.startswith(".") and path.is_file():
            files.append((path, stem))
    return files


def bids_modality(stem: str) -> str | None:
    """The canonical modality of a BIDS file name without extension, or None (not ours, or a derivative)."""
    parts = stem.split("_")
    suffix, entities = parts[-1], parts[:-1]
    keys = {part.split("-", 1)[0] for part in entities if "-" in part}
    return None if "desc" in keys else modalities.bids_modality(suffix, keys)


def plain_modality(stem: str) -> str | None:
    """The canonical modality of a plain (`t1`, `flair`, `T2w` ...) or BraTS (`...-t1n`) file name, or None."""
    match = _brats_name().match(stem)
    candidate = match.group("code") if match else stem
    try:
        return canonical_modality(candidate)
    except InputError:
        return None  # masks, segmentations, other maps: not ours to use


def _collect(files: list[tuple[Path, str | None]], label: str) -> tuple[dict[str, Path], list[str]]:
    """Files by modality; where one modality has several files, the first in sorted order, with a warning."""
    chosen: dict[str, Path] = {}
    extra: dict[str, list[Path]] = {}
    for path, modality in sorted(files, key=lambda item: str(item[0])):
        if modality is None:
            continue
        if modality in chosen:
            extra.setdefault(modality, []).append(path)
        else:
            chosen[modality] = path
    warnings = [f"{label}: {len(paths) + 1} files for {modality}; using {chosen[modality].name}, ignoring "
                f"{', '.join(p.name for p in paths)}" for modality, paths in extra.items()]
    return chosen, warnings


def _bids_session(folder: Path, subject: str, session: str | None) -> DatasetSubject | None:
    files = [(path, bids_modality(stem)) for kind in modalities.bids_folders() if (folder / kind).is_dir()
             for path, stem in _visible_niftis(folder / kind)]
    entry = DatasetSubject(subject, session, {})
    entry.files, entry.warnings = _collect(files, entry.name)
    return entry if entry.files else None


def _bids_subject(folder: Path) -> list[DatasetSubject]:
    subject = folder.name[len("sub-"):]
    entries = []
    if (entry := _bids_session(folder, subject, None)) is not None:
        entries.append(entry)
    sessions = [s for s in _visible_folders(folder) if s.name.startswith("ses-")]
    for session in sessions:
        if (entry := _bids_session(session, subject, session.name[len("ses-"):])) is not None:
            entries.append(entry)
    return entries


def bids_label(name: str) -> str:
    """A folder name made into a BIDS label (letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]", "", name) or "unnamed"


def _plain_subject(folder: Path) -> DatasetSubject | None:
    entry = DatasetSubject(bids_label(folder.name), None, {})
    files = [(path, plain_modality(stem)) for path, stem in _visible_niftis(folder)]
    entry.files, entry.warnings = _collect(files, folder.name)
    return entry if entry.files else None


def discover_dataset(root: Path, exclude: list[Path] | None = None) -> list[DatasetSubject]:
    """Every subject/session of a dataset with at least one recognised contrast, in sorted order.

    `sub-*` folders are read as BIDS, other folders as plain or BraTS subject folders; `derivatives/`,
    `sourcedata/`, `code/`, hidden folders and the folders in `exclude` are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    excluded = {p.resolve() for p in exclude or []}
    entries: list[DatasetSubject] = []
    try:
        folders = _visible_folders(root)
        for folder in folders:
            if folder.name in SKIPPED_FOLDERS or folder.resolve() in excluded:
                continue
            if folder.name.startswith("sub-"):
                entries.extend(_bids_subject(folder))
            elif (entry := _plain_subject(folder)) is not None:
                entries.append(entry)
    except OSError as exc:
        raise InputError(f"{root}: cannot read the dataset ({exc.strerror or exc})") from None
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{root}: several folders map to the same subject label ({', '.join(duplicated)})")
    return entries
