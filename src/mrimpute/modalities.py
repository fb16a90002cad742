"""The modality table: every contrast the project knows, as one row each, and what is derived from it.

Each row gives a contrast's canonical name (also its CLI option `--<name>` and its file name `<name>.nii.gz`), the
words that describe it in help texts, its aliases, its BIDS suffix, entities and folder, and its BraTS 2023 name
code. The CLI options of `synth`, `preprocess` and `add-lesion`, BIDS discovery and naming, the BraTS and plain
file-name rules are all read from here, at the time they are used: adding a contrast is adding one row (and a model
with an encoder or decoder for it). Read the rows through `table()` / `row()`, never through a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .errors import InputError


@dataclass(frozen=True)
class Modality:
    """One contrast."""

    name: str                        # canonical: lower case, a Python identifier (the CLI option --<name>)
    label: str                       # for help texts: "Input volume (<label>) ..."
    aliases: tuple[str, ...] = ()    # other names accepted for it (lower case), e.g. t1w, t1ce
    bids_suffix: str | None = None   # the BIDS suffix, as BIDS spells it (T1w, FLAIR, dwi ...)
    bids_entities: str = ""          # entities that set it apart from a row with the same suffix ("ce-gd"): in
    #                                  discovery only the keys count (any `ce-<label>`), in naming they are written
    bids_folder: str = "anat"        # the BIDS datatype folder
    brats: str | None = None         # the BraTS 2023 file-name code (`BraTS-GLI-00001-000-t1n.nii.gz`)
    registers_via: str | None = None  # preprocess: on the same grid as this modality, reuse its registration
    brain_only: bool = False         # shows little besides the brain (fat-suppressed EPI): preprocess's same-subject
    #                                  check then asks its head mask to lie inside the reference's, not to match it

    @property
    def option(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def entity_keys(self) -> frozenset[str]:
        return frozenset(part.split("-", 1)[0] for part in self.bids_entities.split("_") if "-" in part)


MODALITIES: tuple[Modality, ...] = (
    Modality("t1", "T1-weighted", ("t1w", "t1n"), "T1w", brats="t1n"),
    Modality("t1c", "contrast-enhanced T1", ("t1ce", "t1gd", "ce-t1w"), "T1w", "ce-gd", brats="t1c"),
    Modality("t2", "T2-weighted", ("t2w",), "T2w", brats="t2w"),
    Modality("flair", "FLAIR", ("t2f",), "FLAIR", brats="t2f"),
    Modality("pd", "proton density", ("pdw",), "PDw"),
    Modality("dwi", "diffusion-weighted trace", (), "dwi", bids_folder="dwi", brain_only=True),
    # BIDS has no official suffix for an ADC map: `_ADC` in the dwi folder is the convention of the diffusion
    # derivatives (BEP016 / dwiprep-style outputs), used here for raw datasets as well. An ADC map is registered
    # through the DWI image when both lie on one grid (its contrast drives mutual information poorly).
    Modality("adc", "ADC map", (), "ADC", bids_folder="dwi", registers_via="dwi", brain_only=True),
)


def table() -> tuple[Modality, ...]:
    """The rows, as they are now."""
    return MODALITIES


def names() -> tuple[str, ...]:
    """Every canonical modality name, in table order."""
    return tuple(m.name for m in MODALITIES)


def row(name: str) -> Modality:
    """The row of a modality (any alias, case-insensitive)."""
    key = canonical_modality(name)
    return next(m for m in MODALITIES if m.name == key)


def aliases() -> dict[str, str]:
    """Alias (and BraTS code) -> canonical name."""
    found: dict[str, str] = {}
    for modality in MODALITIES:
        for alias in (*modality.aliases, *((modality.brats,) if modality.brats else ())):
            if alias != modality.name:
                found[alias.lower()] = modality.name
    return found


def canonical_modality(name: str) -> str:
    """Return the canonical name of a modality, accepting common aliases (case-insensitive)."""
    key = name.strip().lower()
    key = aliases().get(key, key)
    if key not in names():
        raise InputError(f"unknown modality '{name}': expected one of {', '.join(names())}")
    return key


def parse_modality_list(text: str) -> list[str]:
    """Parse a comma-separated list of modality names into canonical names, without duplicates."""
    chosen = [canonical_modality(part) for part in text.split(",") if part.strip()]
    if not chosen:
        raise InputError("empty modality list")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"modality listed twice in '{text}'")
    return chosen


def all_subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the given modalities, smallest first (2^n - 1 of them)."""
    return [subset for size in range(1, len(modalities) + 1) for subset in combinations(modalities, size)]


def bids_modality(suffix: str, entity_keys: set[str] | frozenset[str], case_sensitive: bool = True) -> str | None:
    """The modality of a BIDS suffix with these entity keys (`ce`, `run` ...), or None.

    Among the rows with that suffix, the one whose entity keys are all present and the most numerous wins (T1w with
    `ce-<label>` is T1c, T1w without it T1)."""
    same = (lambda m: m.bids_suffix == suffix) if case_sensitive else \
        (lambda m: (m.bids_suffix or "").lower() == suffix.lower())
    fitting = [m for m in MODALITIES if m.bids_suffix and same(m) and m.entity_keys <= set(entity_keys)]
    return max(fitting, key=lambda m: len(m.entity_keys)).name if fitting else None


def bids_name(name: str, prefix: str, desc: str | None = None) -> str:
    """A BIDS file name (without extension): `<prefix>[_<entities>][_desc-<desc>]_<suffix>`."""
    modality = row(name)
    if modality.bids_suffix is None:
        raise InputError(f"modality {name} has no BIDS suffix")
    parts = [prefix, modality.bids_entities, f"desc-{desc}" if desc else ""]
    return "_".join(p for p in parts if p) + f"_{modality.bids_suffix}"


def bids_folders() -> tuple[str, ...]:
    """The BIDS datatype folders that hold modalities of the table (anat, dwi)."""
    return tuple(dict.fromkeys(m.bids_folder for m in MODALITIES))


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
    (`sub-01_FLAIR`, `sub-01_desc-synth_T2w`, `_PDw`, `_dwi`, `_ADC`; `T1w` with a `ce-<label>` entity is
    T1c), and `flair` anywhere in the name (`myflair.nii.gz`).
    """
    stem = nifti_basename(name)
    lowered = stem.lower()
    if not lowered:
        return None
    known = aliases()
    if lowered in names() or lowered in known:
        return known.get(lowered, lowered)
    parts = lowered.split("_")
    if len(parts) > 1 and any("-" in p for p in parts[:-1]):
        keys = {p.split("-", 1)[0] for p in parts[:-1] if "-" in p}
        modality = bids_modality(parts[-1], keys, case_sensitive=False)
        if modality is not None:
            return modality
    words = [w for w in lowered.replace("-", "_").replace(".", "_").split("_") if w]
    found = {known.get(w, w) for w in words if w in names() or w in known}
    if "flair" in lowered:
        found.add("flair")
    return found.pop() if len(found) == 1 else None


def is_synthetic_name(name: str) -> bool:
    """Whether a file name marks its content as synthetic (e.g. `flair_synth.nii.gz`, `..._desc-synth_FLAIR`)."""
    return any(marker in nifti_basename(name).lower() for marker in SYNTHETIC_MARKERS)
