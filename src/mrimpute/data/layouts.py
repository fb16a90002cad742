"""What discovery returns (`Subject`) and the readers of the simple layouts: plain and BraTS-named subject folders
and a CSV manifest. BIDS is read in `bids.py`, nnU-Net raw folders in `nnunet.py`; `subjects.discover_subjects`
picks the reader.

File names are matched against the modality table (`modalities`): a plain file is named by a modality or an alias
(`t1.nii.gz`, `T2w.nii`, `t1ce.nii.gz`), a BraTS 2023 file by its code (`BraTS-GLI-00001-000-t1n.nii.gz`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import modalities
from ..errors import InputError
from ..modalities import canonical_modality

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MASK_NAMES = ("brainmask", "lesion", "lesion_predicted")
SKIPPED_FOLDERS = {"derivatives", "sourcedata", "code"}
MANIFEST_COLUMNS = ("subject", "modality", "path")
BIDS_LIKE_NAME = re.compile(r"^sub-(?P<label>[A-Za-z0-9]+)(?:_ses-(?P<session>[A-Za-z0-9]+))?$")


@dataclass
class Subject:
    """One subject (or one session of one) found in a dataset: its files by canonical modality, its masks
    ("brainmask", "lesion", "lesion_predicted"), and where it came from.

    `name` is the dataset's own: the folder name (plain, BraTS), `sub-X` or `sub-X_ses-Y` (BIDS), the case id
    (nnU-Net) or the manifest's `subject` column (CSV). `label`/`session` are the BIDS labels where the dataset
    gives them; `folder` is the dataset's top-level folder that holds only this subject (None: CSV, nnU-Net)."""

    name: str
    files: dict[str, Path]
    masks: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    folder: Path | None = None
    label: str | None = None
    session: str | None = None


def nifti_stem(name: str) -> str | None:
    """A NIfTI file name without .nii or .nii.gz; None for other files."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def visible_niftis(folder: Path) -> list[tuple[Path, str]]:
    """(path, stem) of the NIfTI files of a folder, hidden files left out, in sorted order."""
    files = []
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is not None and not path.name.startswith(".") and path.is_file():
            files.append((path, stem))
    return files


def collect(files: list[tuple[Path, str | None]], label: str) -> tuple[dict[str, Path], list[str]]:
    """Files by kind (None: not ours); where one kind has several files, the first in sorted order, with a warning."""
    chosen: dict[str, Path] = {}
    extra: dict[str, list[Path]] = {}
    for path, kind in sorted(files, key=lambda item: str(item[0])):
        if kind is None:
            continue
        if kind in chosen:
            extra.setdefault(kind, []).append(path)
        else:
            chosen[kind] = path
    warnings = [f"{label}: {len(paths) + 1} files for {kind}; using {chosen[kind].name}, ignoring "
                f"{', '.join(p.name for p in paths)}" for kind, paths in extra.items()]
    return chosen, warnings


def modality_or_none(name: str) -> str | None:
    """The canonical modality of a name or alias, or None (masks, segmentations, maps that are not ours)."""
    try:
        return canonical_modality(name)
    except InputError:
        return None


def _brats_name() -> re.Pattern:
    codes = "|".join(re.escape(m.brats) for m in modalities.table() if m.brats)
    return re.compile(rf"^.+-(?P<code>{codes}|seg)$", re.IGNORECASE)


def plain_kind(stem: str) -> str | None:
    """What a plain or BraTS file holds: a canonical modality (`t1`, `T2w`, `...-t1n`), a mask name (`brainmask`,
    `lesion`, `lesion_predicted`; a BraTS `...-seg` label map is the lesion mask), or None."""
    if stem in MASK_NAMES:
        return stem
    match = _brats_name().match(stem)
    if match and match.group("code").lower() == "seg":
        return "lesion"
    return modality_or_none(match.group("code") if match else stem)


def plain_modality(stem: str) -> str | None:
    """The canonical modality of a plain (`t1`, `flair`, `T2w` ...) or BraTS (`...-t1n`) file name, or None."""
    kind = plain_kind(stem)
    return None if kind is None or kind in MASK_NAMES else kind


def plain_subject(folder: Path) -> Subject | None:
    """A plain (`<subject>/t1.nii.gz`, `lesion.nii.gz` ...) or BraTS-named subject folder; None without a contrast."""
    kinds = [(path, plain_kind(stem)) for path, stem in visible_niftis(folder)]
    files, warnings = collect([(p, k) for p, k in kinds if k not in MASK_NAMES], folder.name)
    masks, mask_warnings = collect([(p, k) for p, k in kinds if k in MASK_NAMES], folder.name)
    if not files:
        return None
    return Subject(folder.name, files, masks, warnings + mask_warnings, folder=folder)


def _manifest_rows(manifest: Path) -> list[dict[str, str]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in MANIFEST_COLUMNS if c not in reader.fieldnames]
            if missing:
                raise InputError(f"{manifest}: manifest lacks column(s) {', '.join(missing)} "
                                 f"(expected {','.join(MANIFEST_COLUMNS)})")
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{manifest}: cannot read the manifest ({getattr(exc, 'strerror', None) or exc})") from None


def _manifest_kind(manifest: Path, line: int, text: str) -> str:
    kind = text.lower()
    if kind in MASK_NAMES:
        return kind
    if (modality := modality_or_none(kind)) is None:
        raise InputError(f"{manifest}: line {line}: unknown modality '{text}' (expected one of "
                         f"{', '.join(modalities.names())}, or a mask: {', '.join(MASK_NAMES)})")
    return modality


def read_manifest(manifest: Path) -> list[Subject]:
    """CSV with columns subject, modality, path (a modality name or alias, or a mask name; relative paths are taken
    from the manifest's folder), in the manifest's order. A subject named like `sub-X[_ses-Y]` keeps those labels."""
    by_name: dict[str, Subject] = {}
    for line, row in enumerate(_manifest_rows(manifest), start=2):
        if not any(row.values()):
            continue
        if not row["subject"] or not row["path"]:
            raise InputError(f"{manifest}: line {line}: empty subject or path")
        kind = _manifest_kind(manifest, line, row["modality"])
        path = Path(row["path"]).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise InputError(f"{path}: listed in {manifest} (line {line}) but not found")
        subject = by_name.setdefault(row["subject"], Subject(row["subject"], {}))
        if (match := BIDS_LIKE_NAME.match(subject.name)) is not None:
            subject.label, subject.session = match.group("label"), match.group("session")
        listed = subject.masks if kind in MASK_NAMES else subject.files
        if kind in listed:
            raise InputError(f"{manifest}: line {line}: a second {kind} for subject {subject.name}")
        listed[kind] = path
    return [s for s in by_name.values() if s.files]
