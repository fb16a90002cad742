"""Finding the subjects of a dataset (one discovery for train, eval and synth --dataset) and loading them.

`discover_subjects` reads, by what the path is:
- a CSV manifest (`subject,modality,path`; `layouts.read_manifest`);
- an nnU-Net raw dataset, a folder with `imagesTr/` or `imagesTs/` (or one of those folders) and `dataset.json`
  (`nnunet.read_nnunet`);
- any other folder: `sub-*` folders as BIDS (one subject per session: `sub-X`, `sub-X_ses-Y`), the others as plain
  (`<subject>/<modality>.nii.gz`, masks `brainmask`, `lesion`, `lesion_predicted`) or BraTS-named
  (`<case>/<case>-t1n.nii.gz`, `-seg` the lesion mask) subject folders (`bids.read_folders`).
Every reader returns `Subject`s: a name, files by canonical modality, masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.nifti import Volume, check_same_grid, load_volume
from ..lesions.masks import lesion_file, load_lesion_mask
from .bids import read_folders
from .layouts import MASK_NAMES, NIFTI_SUFFIXES, Subject, nifti_stem, read_manifest
from .nnunet import IMAGE_FOLDERS, is_nnunet, read_nnunet
from .normaliser import Normaliser, Scaling, as_input, as_target

__all__ = ["MASK_NAMES", "NIFTI_SUFFIXES", "LoadedSubject", "Subject", "dataset_folder", "dataset_layout",
           "discover_subjects", "load_subject", "nifti_stem", "read_dataset"]
LAYOUTS_HELP = ("a folder of subject folders (<subject>/<modality>.nii.gz, BIDS sub-*/[ses-*/]anat, BraTS names), "
                "an nnU-Net folder (imagesTr/ with dataset.json) or a CSV manifest (subject,modality,path)")


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


def dataset_layout(data: str | Path) -> str:
    """How a dataset is laid out: "csv", "nnunet" or "folders" (BIDS, plain and BraTS subject folders)."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise InputError(f"{data}: not a dataset; expected {LAYOUTS_HELP}")
        return "csv"
    if not data.is_dir():
        raise InputError(f"{data}: dataset not found (no such folder or CSV manifest)")
    if is_nnunet(data) or (data.name in IMAGE_FOLDERS and is_nnunet(data.parent)):
        return "nnunet"
    return "folders"


def dataset_folder(data: str | Path) -> Path:
    """The folder a dataset's relative paths and its derivatives start from: the manifest's folder for a CSV, the
    nnU-Net dataset folder when given its imagesTr/ or imagesTs/, else the dataset folder itself."""
    data = Path(data)
    layout = dataset_layout(data)
    if layout == "csv" or (layout == "nnunet" and not is_nnunet(data)):
        return data.parent
    return data


def read_dataset(data: str | Path, exclude: list[Path] | None = None) -> list[Subject]:
    """Every subject of a dataset, in any layout (see the module); maybe none. `exclude`: folders not to read."""
    data = Path(data)
    layout = dataset_layout(data)
    if layout == "csv":
        return read_manifest(data)
    if layout == "nnunet":
        return read_nnunet(data) if is_nnunet(data) else read_nnunet(data.parent, (data.name,))
    return read_folders(data, exclude)


def discover_subjects(data: str | Path) -> list[Subject]:
    """The subjects of a dataset (train, eval): at least one, else a one-line error."""
    subjects = read_dataset(data)
    if not subjects:
        raise InputError(f"{data}: no subjects with NIfTI volumes found; expected {LAYOUTS_HELP}")
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
