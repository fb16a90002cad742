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
