"""Views (paper VI-I): which slice axes a 2D model is applied along, and merging the volumes of several views."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import numpy as np

from ..config import SLICE_AXES
from ..errors import InputError

MERGES: tuple[str, ...] = ("mean", "median")
K = TypeVar("K", bound=Hashable)


def parse_axis(name: str) -> str:
    """A slice axis name (axial, coronal or sagittal), checked."""
    axis = name.strip().lower()
    if axis not in SLICE_AXES:
        raise InputError(f"unknown slice axis '{name}': expected one of {', '.join(SLICE_AXES)}")
    return axis


def parse_views(axis: str | None = None, views: str | None = None, merge: str = "mean") -> list[str] | None:
    """The slice axes to synthesise along: --axis NAME (one), --views a,b,c (merged), or None (the model's own)."""
    if merge not in MERGES:
        raise InputError(f"unknown merge '{merge}': expected one of {', '.join(MERGES)}")
    if axis and views:
        raise InputError("give --axis (one view) or --views (several, merged), not both")
    if axis:
        return [parse_axis(axis)]
    if not views:
        return None
    names = [parse_axis(part) for part in views.split(",") if part.strip()]
    if not names:
        raise InputError("--views: empty list of slice axes")
    if len(set(names)) != len(names):
        raise InputError(f"--views: slice axis listed twice in '{views}'")
    return names


def merged_label(views: list[str], merge: str) -> str:
    """How a merged view is named in tables, e.g. 'mean(axial,coronal,sagittal)'."""
    return f"{merge}({','.join(views)})"


def merge_volumes(volumes: list[np.ndarray], merge: str = "mean") -> np.ndarray:
    """Voxel-wise mean or median of float volumes; integer (label) volumes take the most frequent label, ties
    going to the smallest label."""
    stack = np.stack(volumes)
    if np.issubdtype(stack.dtype, np.integer):
        counts = np.stack([(stack == label).sum(axis=0) for label in range(int(stack.max()) + 1)])
        return counts.argmax(axis=0).astype(stack.dtype)
    if merge == "median":
        return np.median(stack, axis=0).astype(stack.dtype)
    if merge == "mean":
        return stack.mean(axis=0, dtype=np.float64).astype(stack.dtype)
    raise InputError(f"unknown merge '{merge}': expected one of {', '.join(MERGES)}")


def merge_views(per_view: list[dict[K, np.ndarray]], merge: str = "mean") -> dict[K, np.ndarray]:
    """Merge same-keyed results of several views volume by volume (one view: returned as it is)."""
    if len(per_view) == 1:
        return per_view[0]
    return {key: merge_volumes([view[key] for view in per_view], merge) for key in per_view[0]}
