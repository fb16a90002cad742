"""Finding training subjects on disk (a folder of subject folders, or a CSV manifest) and loading them."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.nifti import Volume, check_same_grid, load_volume
from ..modalities import canonical_modality
from .lesions import lesion_file, load_lesion_mask
from .normaliser import Normaliser, Scaling, as_input, as_target

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MASK_NAMES = ("brainmask", "lesion", "lesion_predicted")


@dataclass
class Subject:
    """One subject's files by canonical modality name, plus optional masks."""

    name: str
    files: dict[str, Path]
    masks: dict[str, Path] = field(default_factory=dict)  # "brainmask", "lesion", "lesion_predicted"


@dataclass
class LoadedSubject:
    """A subject's volumes (RAS+) normalised as encoder inputs and as decoder targets, its brain mask, and how each
    contrast was scaled."""

    name: str
    volumes: dict[str, np.ndarray]  # encoder-input units
    mask: np.ndarray
    scalings: dict[str, Scaling]
    reference: Volume
    lesion: np.ndarray | None = None  # binary, when lesion masks were asked for (all False: no lesion)
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # decoder-target (paper) units


def nifti_stem(name: str) -> str | None:
    """A NIfTI file name without .nii or .nii.gz; None for other files."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _modality_or_none(name: str) -> str | None:
    try:
        return canonical_modality(name)
    except InputError:
        return None  # other files in a subject folder (e.g. an ADC map) are not ours to use


def _subject_from_folder(folder: Path) -> Subject:
    subject = Subject(name=folder.name, files={})
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is None:
            continue
        if stem in MASK_NAMES:
            subject.masks[stem] = path
        elif (modality := _modality_or_none(stem)) is not None:
            subject.files[modality] = path
    return subject


def _subjects_from_manifest(manifest: Path) -> list[Subject]:
    """CSV with columns subject, modality, path (relative paths are taken from the manifest's folder)."""
    by_name: dict[str, Subject] = {}
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"subject", "modality", "path"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{manifest}: manifest lacks column(s) {', '.join(sorted(missing))}")
        for row in reader:
            path = Path(row["path"])
            path = path if path.is_absolute() else manifest.parent / path
            subject = by_name.setdefault(row["subject"], Subject(name=row["subject"], files={}))
            kind = row["modality"].strip().lower()
            if kind in MASK_NAMES:
                subject.masks[kind] = path
            else:
                subject.files[canonical_modality(kind)] = path
    return list(by_name.values())


def discover_subjects(data: str | Path) -> list[Subject]:
    """Subjects of a training set: a folder of `<subject>/<modality>.nii.gz` folders, or a CSV manifest."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        subjects = _subjects_from_manifest(data)
    elif data.is_dir():
        subjects = [_subject_from_folder(p) for p in sorted(data.iterdir()) if p.is_dir()]
        subjects = [s for s in subjects if s.files]
    else:
        raise InputError(f"{data}: not a folder of subjects nor a CSV manifest")
    if not subjects:
        raise InputError(f"{data}: no subjects with NIfTI volumes found")
    return subjects


def load_subject(subject: Subject, modalities: list[str], lesion_source: str | None = None,
                 normaliser: Normaliser = Normaliser()) -> LoadedSubject:
    """Load, grid-check and normalise the given modalities of a subject (all must be present); with a lesion
    source ('expert', 'either', 'predicted'), also its lesion mask (none found: no lesion)."""
    missing = [m for m in modalities if m not in subject.files]
    if missing:
        raise InputError(f"subject {subject.name}: no {', '.join(missing)} volume")
    volumes = {m: load_volume(subject.files[m]) for m in modalities}
    check_same_grid(list(volumes.values()))
    if "brainmask" in subject.masks:
        mask_volume = load_volume(subject.masks["brainmask"])
        check_same_grid([next(iter(volumes.values())), mask_volume])
        mask = mask_volume.data > 0.5
    foregrounds = {m: normaliser.foreground(v.data) for m, v in volumes.items()}
    if "brainmask" not in subject.masks:
        mask = np.logical_or.reduce(list(foregrounds.values()))
    inputs, targets, scalings = {}, {}, {}
    for m, volume in volumes.items():
        brain = mask & foregrounds[m]
        try:
            scalings[m] = normaliser.scaling(volume.data, brain)
        except ValueError as exc:
            raise InputError(f"{volume.path}: {exc}") from None
        inputs[m] = as_input(volume.data, brain, scalings[m])
        targets[m] = as_target(volume.data, brain, scalings[m])
    reference = next(iter(volumes.values()))
    lesion = None
    if lesion_source is not None:
        path = lesion_file(subject.masks, lesion_source)
        lesion = load_lesion_mask(path, reference) if path else np.zeros(reference.shape, dtype=bool)
    return LoadedSubject(subject.name, inputs, mask, scalings, reference, lesion, targets)
