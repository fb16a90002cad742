"""QC montages: labelled grids of slices (inputs, truth, synthesis, absolute error) written as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .io.atomic import write_atomically

LABEL_HEIGHT = 14


def _to_uint8(image: np.ndarray, high: float) -> np.ndarray:
    return (np.clip(image / high, 0.0, 1.0) * 255).astype(np.uint8) if high > 0 else np.zeros(image.shape, np.uint8)


def preview_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """Axial slice indices spread over the middle of the brain (RAS+ arrays: axis 2)."""
    present = np.flatnonzero(mask.any(axis=(0, 1)))
    if present.size == 0:
        return [mask.shape[2] // 2]
    lo, hi = present[0], present[-1]
    return [int(lo + (hi - lo) * f) for f in np.linspace(0.35, 0.65, count)]


def montage(columns: dict[str, np.ndarray], mask: np.ndarray, window: float,
            error_columns: tuple[str, ...] = ()) -> np.ndarray:
    """A grid: one column per named RAS+ volume, one row per slice; error columns use half the window."""
    rows = []
    for index in preview_slices(mask):
        tiles = []
        for name, volume in columns.items():
            high = window / 2 if name in error_columns else window
            tiles.append(_to_uint8(np.rot90(volume[:, :, index]), high))  # anterior up, patient left on the left
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    labelled = np.zeros((grid.shape[0] + LABEL_HEIGHT, grid.shape[1]), dtype=np.uint8)
    labelled[LABEL_HEIGHT:] = grid
    return labelled


def save_montage(path: Path, columns: dict[str, np.ndarray], mask: np.ndarray, error_columns: tuple[str, ...] = (),
                 force: bool = False) -> Path:
    """Write a labelled montage; the window is the 99.5th percentile of the brain across the non-error columns."""
    window = float(np.percentile(np.concatenate([v[mask] for k, v in columns.items() if k not in error_columns]), 99.5))
    grid = montage(columns, mask, window, error_columns)
    image = Image.fromarray(grid, mode="L")
    draw = ImageDraw.Draw(image)
    tile_width = grid.shape[1] // len(columns)
    for i, name in enumerate(columns):
        suffix = " (x2)" if name in error_columns else ""
        draw.text((i * tile_width + 3, 1), f"{name}{suffix}", fill=255)
    write_atomically(Path(path), lambda tmp: image.save(tmp, format="PNG"), force=force)
    return Path(path)


def qc_columns(inputs: dict[str, np.ndarray], truth: np.ndarray, synthesis: np.ndarray, brain: np.ndarray,
               target: str, subset: tuple[str, ...] | list[str] | None = None) -> dict[str, np.ndarray]:
    """The QC montage's columns: the inputs of the synthesis (only those: `subset`, default every given input),
    the true and the synthetic target (its label names the subset it came from) and the absolute error."""
    subset = tuple(subset) if subset else tuple(inputs)
    missing = [m for m in subset if m not in inputs]
    if missing:
        raise ValueError(f"the QC montage needs the inputs of its subset; missing {', '.join(missing)}")
    true = np.clip(truth, 0, None) / float(np.clip(truth, 0, None)[brain].mean())
    return {**{m: inputs[m] for m in subset}, f"true {target}": true,
            f"synthetic {target} from {'+'.join(subset)}": synthesis, "|error|": np.abs(synthesis - true) * brain}


def save_qc(path: Path, inputs: dict[str, np.ndarray], truth: np.ndarray, synthesis: np.ndarray, brain: np.ndarray,
            target: str, force: bool = False, subset: tuple[str, ...] | list[str] | None = None) -> Path:
    """The QC montage: the synthesis's inputs, true and synthetic target (brain-mean units), and absolute error,
    same slices (see qc_columns)."""
    columns = qc_columns(inputs, truth, synthesis, brain, target, subset)
    return save_montage(path, columns, brain, error_columns=("|error|",), force=force)


LABEL_COLOURS = ((230, 60, 60), (60, 200, 80), (70, 120, 255), (240, 200, 40), (220, 80, 220), (60, 210, 220))


def save_label_montage(path: Path, image: np.ndarray, labels: np.ndarray, names: list[str], mask: np.ndarray,
                       force: bool = False) -> Path:
    """A PNG of a label volume (1 = names[0], ...; 0 = background): per preview slice, the RAS+ image in grey and
    the labels coloured over it, with a colour legend."""
    window = float(np.percentile(image[mask], 99.5)) if mask.any() else 1.0
    palette = np.array([(0, 0, 0), *LABEL_COLOURS[: len(names)]], dtype=np.float32)
    rows = []
    for index in preview_slices(mask):
        grey = np.repeat(_to_uint8(np.rot90(image[:, :, index]), window)[..., None], 3, axis=2).astype(np.float32)
        label = np.rot90(labels[:, :, index]).astype(np.intp)
        coloured = np.where(label[..., None] > 0, 0.35 * grey + 0.65 * palette[np.clip(label, 0, len(names))], grey)
        rows.append(np.concatenate([grey, coloured], axis=1).astype(np.uint8))
    grid = np.concatenate(rows, axis=0)
    canvas = np.zeros((grid.shape[0] + LABEL_HEIGHT, grid.shape[1], 3), dtype=np.uint8)
    canvas[LABEL_HEIGHT:] = grid
    picture = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(picture)
    draw.text((3, 1), "reference", fill=(255, 255, 255))
    x = grid.shape[1] // 2 + 3
    for name, colour in zip(names, LABEL_COLOURS):
        draw.text((x, 1), name, fill=colour)
        x += 8 * len(name) + 8
    write_atomically(Path(path), lambda tmp: picture.save(tmp, format="PNG"), force=force)
    return Path(path)
