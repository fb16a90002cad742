"""nnU-Net raw datasets: `imagesTr/<case>_0000.nii.gz`, `<case>_0001.nii.gz` ... (and `imagesTs/`), where the
channel number is mapped to a contrast by `dataset.json` (`channel_names` in nnU-Net v2, `modality` in v1, e.g.
`{"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}`). `labelsTr/<case>.nii.gz` (`labelsTs/`), where present, is
the case's lesion mask (every non-zero label counts as lesion)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import InputError
from ..modalities import modality_from_filename
from .layouts import NIFTI_SUFFIXES, Subject, collect, modality_or_none, visible_niftis

IMAGE_FOLDERS = ("imagesTr", "imagesTs")
LABEL_FOLDERS = {"imagesTr": "labelsTr", "imagesTs": "labelsTs"}
DESCRIPTION = "dataset.json"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def is_nnunet(root: Path) -> bool:
    """Whether a folder is an nnU-Net raw dataset (it has imagesTr/ or imagesTs/)."""
    return any((Path(root) / name).is_dir() for name in IMAGE_FOLDERS)


def _channel_names(description: Path) -> dict:
    if not description.is_file():
        raise InputError(f"{description}: not found; an nnU-Net dataset needs it to tell which contrast each "
                         "channel (_0000, _0001 ...) holds")
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{description}: not readable JSON ({getattr(exc, 'strerror', None) or exc})") from None
    ending = content.get("file_ending", ".nii.gz") if isinstance(content, dict) else ".nii.gz"
    if ending not in NIFTI_SUFFIXES:
        raise InputError(f"{description}: file_ending {ending}: only NIfTI images (.nii.gz, .nii) are read")
    channels = content.get("channel_names") or content.get("modality") if isinstance(content, dict) else None
    if not isinstance(channels, dict) or not channels:
        raise InputError(f"{description}: no channel_names (nor modality) entry naming the channels")
    return channels


def channel_modalities(description: Path) -> dict[int, str | None]:
    """Channel number -> canonical modality (None: a channel that is no contrast we know, e.g. CT, a mask)."""
    mapping: dict[int, str | None] = {}
    for key, value in _channel_names(description).items():
        if not str(key).strip().isdigit():
            raise InputError(f"{description}: channel '{key}' is not a channel number")
        name = str(value)
        mapping[int(key)] = modality_or_none(name) or modality_from_filename(name)
    if not any(mapping.values()):
        named = ", ".join(str(v) for v in _channel_names(description).values())
        raise InputError(f"{description}: no channel is a known contrast ({named}); expected names such as T1, "
                         "T1ce, T2, FLAIR")
    return mapping


def _label_file(root: Path, images: str, case: str) -> Path | None:
    folder = root / LABEL_FOLDERS[images]
    return next((folder / f"{case}{s}" for s in NIFTI_SUFFIXES if (folder / f"{case}{s}").is_file()), None)


def read_nnunet(root: Path, folders: tuple[str, ...] = IMAGE_FOLDERS) -> list[Subject]:
    """Every case of the image folders (sorted by case id) with at least one known contrast."""
    root = Path(root)
    channels = channel_modalities(root / DESCRIPTION)
    found: dict[str, list[tuple[Path, str | None]]] = {}
    origin: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for images in folders:
        if not (root / images).is_dir():
            continue
        for path, stem in visible_niftis(root / images):
            if (match := CHANNEL_FILE.match(stem)) is None:
                continue  # not an nnU-Net image name
            case, channel = match.group("case"), int(match.group("channel"))
            if origin.setdefault(case, images) != images:
                raise InputError(f"{root}: case {case} is in both {origin[case]} and {images}")
            if channel not in channels:
                notes.setdefault(case, []).append(f"{path.name}: channel {channel} is not in {DESCRIPTION}; ignored")
            found.setdefault(case, []).append((path, channels.get(channel)))
    subjects = []
    for case in sorted(found):
        files, warnings = collect(found[case], case)
        if files:
            label = _label_file(root, origin[case], case)
            subjects.append(Subject(case, files, {"lesion": label} if label else {}, notes.get(case, []) + warnings))
    return subjects
