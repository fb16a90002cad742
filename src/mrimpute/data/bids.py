"""BIDS datasets (`sub-X/[ses-Y/]anat/..._T1w.nii.gz`, `dwi/..._dwi.nii.gz`), read as one subject per session
(`sub-X` or `sub-X_ses-Y`), and folder datasets that mix BIDS `sub-*` folders with plain and BraTS-named subject
folders. `DatasetSubject` and `discover_dataset` are the view of `synth --dataset` (BIDS labels for every subject).

Suffixes, entities and datatype folders come from the modality table (`modalities`): `T1w` (with a `ce-<label>`
entity: T1c), `T2w`, `FLAIR`, `PDw`, `dwi` ...; files with a `desc-` entity are derivatives, not scans.

Lesion masks: `derivatives/<pipeline>/sub-X/[ses-Y/]anat/*_label-lesion*_mask.nii.gz` where present (the first in
sorted order, with a warning when there are several); otherwise the subject has none. Brain masks are not read
from BIDS (the foreground is used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import modalities
from ..errors import InputError
from .layouts import (
    SKIPPED_FOLDERS,
    Subject,
    collect,
    nifti_stem,
    plain_modality,
    plain_subject,
    visible_folders,
    visible_niftis,
)

__all__ = ["SKIPPED_FOLDERS", "DatasetSubject", "bids_label", "bids_modality", "discover_dataset",
           "plain_modality", "read_folders"]
LESION_MASK_GLOB = "*_label-lesion*_mask.nii*"


@dataclass
class DatasetSubject:
    """One subject (or one session of it) as dataset mode names it: its BIDS label, session label, and files by
    canonical modality; `folder` is the dataset's top-level folder holding it (None: CSV and nnU-Net datasets)."""

    subject: str
    session: str | None
    files: dict[str, Path]
    warnings: list[str] = field(default_factory=list)
    folder: Path | None = None

    @property
    def name(self) -> str:
        """sub-X or sub-X_ses-Y."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @classmethod
    def of(cls, subject: Subject) -> DatasetSubject:
        """The view of a discovered subject: its BIDS labels, or its name made into one."""
        return cls(subject.label or bids_label(subject.name), subject.session, subject.files, subject.warnings,
                   subject.folder)


def bids_modality(stem: str) -> str | None:
    """The canonical modality of a BIDS file name without extension, or None (not ours, or a derivative)."""
    parts = stem.split("_")
    suffix, entities = parts[-1], parts[:-1]
    keys = {part.split("-", 1)[0] for part in entities if "-" in part}
    return None if "desc" in keys else modalities.bids_modality(suffix, keys)


def bids_label(name: str) -> str:
    """A folder name made into a BIDS label (letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]", "", name) or "unnamed"


def _lesion_masks(root: Path, subject: str, session: str | None) -> list[Path]:
    derivatives = root / "derivatives"
    if not derivatives.is_dir():
        return []
    relative = Path(f"sub-{subject}", *([f"ses-{session}"] if session else []), "anat")
    return sorted(path for pipeline in visible_folders(derivatives)
                  for path in (pipeline / relative).glob(LESION_MASK_GLOB)
                  if nifti_stem(path.name) is not None and path.is_file() and not path.name.startswith("."))


def _bids_session(folder: Path, top: Path, subject: str, session: str | None) -> Subject | None:
    files = [(path, bids_modality(stem)) for kind in modalities.bids_folders() if (folder / kind).is_dir()
             for path, stem in visible_niftis(folder / kind)]
    entry = Subject(f"sub-{subject}" + (f"_ses-{session}" if session else ""), {}, folder=top, label=subject,
                    session=session)
    entry.files, entry.warnings = collect(files, entry.name)
    if not entry.files:
        return None
    masks, warnings = collect([(p, "lesion") for p in _lesion_masks(top.parent, subject, session)], entry.name)
    entry.masks, entry.warnings = masks, entry.warnings + warnings
    return entry


def bids_subject(folder: Path) -> list[Subject]:
    """A `sub-X` folder: the subject itself (files right under it) and each `ses-Y` with a recognised contrast."""
    subject = folder.name[len("sub-"):]
    entries = [_bids_session(folder, folder, subject, None)]
    entries += [_bids_session(s, folder, subject, s.name[len("ses-"):])
                for s in visible_folders(folder) if s.name.startswith("ses-")]
    return [entry for entry in entries if entry is not None]


def read_folders(root: Path, exclude: list[Path] | None = None) -> list[Subject]:
    """Every subject/session of a folder dataset with at least one recognised contrast, in sorted order.

    `sub-*` folders are read as BIDS, other folders as plain or BraTS subject folders; `derivatives/`,
    `sourcedata/`, `code/`, hidden folders and the folders in `exclude` are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    excluded = {p.resolve() for p in exclude or []}
    entries: list[Subject] = []
    try:
        for folder in visible_folders(root):
            if folder.name in SKIPPED_FOLDERS or folder.resolve() in excluded:
                continue
            if folder.name.startswith("sub-"):
                entries.extend(bids_subject(folder))
            elif (entry := plain_subject(folder)) is not None:
                entries.append(entry)
    except OSError as exc:
        raise InputError(f"{root}: cannot read the dataset ({exc.strerror or exc})") from None
    return entries


def discover_dataset(root: Path, exclude: list[Path] | None = None) -> list[DatasetSubject]:
    """Every subject/session of a dataset (any layout `subjects.read_dataset` reads), with BIDS labels; two
    subjects whose names make the same label are refused."""
    from .subjects import read_dataset  # the one discovery; imported here as it reads BIDS through this module

    entries = [DatasetSubject.of(subject) for subject in read_dataset(root, exclude)]
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{root}: several folders map to the same subject label ({', '.join(duplicated)})")
    return entries
