"""Canonical modality names, their aliases, and input subsets."""

from __future__ import annotations

from itertools import combinations

from .errors import InputError

KNOWN_MODALITIES: tuple[str, ...] = ("t1", "t1c", "t2", "flair", "pd", "dwi")

ALIASES: dict[str, str] = {
    "t1w": "t1", "t1n": "t1", "t1ce": "t1c", "t1gd": "t1c", "ce-t1w": "t1c",
    "t2w": "t2", "t2f": "flair", "pdw": "pd",
}


def canonical_modality(name: str) -> str:
    """Return the canonical name of a modality, accepting common aliases (case-insensitive)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in KNOWN_MODALITIES:
        raise InputError(f"unknown modality '{name}': expected one of {', '.join(KNOWN_MODALITIES)}")
    return key


def parse_modality_list(text: str) -> list[str]:
    """Parse a comma-separated list of modality names into canonical names, without duplicates."""
    names = [canonical_modality(part) for part in text.split(",") if part.strip()]
    if not names:
        raise InputError("empty modality list")
    if len(set(names)) != len(names):
        raise InputError(f"modality listed twice in '{text}'")
    return names


def all_subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the given modalities, smallest first (2^n - 1 of them)."""
    return [subset for size in range(1, len(modalities) + 1) for subset in combinations(modalities, size)]


# a BIDS suffix (the last `_` part of the name) -> modality; T1w with a `ce-<label>` entity is T1c
BIDS_SUFFIXES: dict[str, str] = {"t1w": "t1", "t2w": "t2", "flair": "flair", "pdw": "pd", "dwi": "dwi"}
SYNTHETIC_MARKERS = ("synth",)  # a name holding one of these is a synthetic contrast, never a real scan


def nifti_basename(name: str) -> str:
    """A file name without its NIfTI extension (.nii.gz, .nii) and without any folder."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    for extension in (".nii.gz", ".nii"):
        if base.lower().endswith(extension):
            return base[: -len(extension)]
    return base.split(".")[0]


def modality_from_filename(name: str) -> str | None:
    """The contrast a file name says it holds, or None when it says none or several.

    Recognised: a plain modality name or alias (`flair.nii.gz`, `t1ce.nii.gz`), one such word among the name's
    `_`/`-`/`.` separated parts (`flair_synth.nii.gz`, `BraTS-GLI-00001-000-t2f.nii.gz`), BIDS suffixes
    (`sub-01_FLAIR`, `sub-01_desc-synth_T2w`, `_PDw`, `_dwi`; `T1w` with a `ce-<label>` entity is T1c), and
    `flair` anywhere in the name (`myflair.nii.gz`).
    """
    stem = nifti_basename(name)
    lowered = stem.lower()
    if not lowered:
        return None
    if lowered in KNOWN_MODALITIES or lowered in ALIASES:
        return ALIASES.get(lowered, lowered)
    parts = lowered.split("_")
    if len(parts) > 1 and parts[-1] in BIDS_SUFFIXES and any("-" in p for p in parts[:-1]):
        modality = BIDS_SUFFIXES[parts[-1]]
        if modality == "t1" and any(p.startswith("ce-") for p in parts[:-1]):
            return "t1c"
        return modality
    words = [w for w in lowered.replace("-", "_").replace(".", "_").split("_") if w]
    found = {ALIASES.get(w, w) for w in words if w in KNOWN_MODALITIES or w in ALIASES}
    if "flair" in lowered:
        found.add("flair")
    return found.pop() if len(found) == 1 else None


def is_synthetic_name(name: str) -> bool:
    """Whether a file name marks its content as synthetic (e.g. `flair_synth.nii.gz`, `..._desc-synth_FLAIR`)."""
    return any(marker in nifti_basename(name).lower() for marker in SYNTHETIC_MARKERS)
