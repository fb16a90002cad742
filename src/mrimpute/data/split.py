"""A declared split of a data folder into test, validation and training subjects (a small TOML file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

from ..errors import InputError

PARTS = ("test", "validation")


@dataclass(frozen=True)
class Split:
    """Test subjects are never trained on nor used for model selection; validation subjects pick the best epoch;
    every other subject trains."""

    name: str
    test: tuple[str, ...]
    validation: tuple[str, ...]
    path: Path

    def part(self, name: str) -> tuple[str, ...]:
        if name not in PARTS:
            raise InputError(f"{self.path}: no part '{name}' (expected {' or '.join(PARTS)})")
        return getattr(self, name)


def load_split(path: str | Path) -> Split:
    """Read a split file: `name`, `test` and `validation` lists of subject names (one-line errors)."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable split file ({exc})") from None
    lists = {}
    for key in PARTS:
        names = values.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: '{key}' must be a list of subject names")
        lists[key] = tuple(names)
    overlap = set(lists["test"]) & set(lists["validation"])
    if overlap:
        raise InputError(f"{path}: {', '.join(sorted(overlap))} both test and validation")
    return Split(str(values.get("name", path.stem)), lists["test"], lists["validation"], path)
