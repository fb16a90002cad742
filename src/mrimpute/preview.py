"""QC montages: labelled grids of slices (inputs, truth, synthesis, absolute error) written as PNG.

Every picture is readable at a glance: text sized to the image (pillow's scalable default font where pillow has it,
>= 10.1), a title naming what was synthesised from which inputs, each row's axial slice named, L and R on the first
tile (neurological convention: patient left on the left), colour-mapped error or uncertainty columns with a
colour bar and its range, and lesion masks drawn as outlines where there are any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io.atomic import write_atomically

# an inferno-like colour map (black, purple, red, orange, pale yellow) for |error| and uncertainty
COLOUR_MAP = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], np.float32)
CONTOUR_COLOUR = (0, 255, 128)  # lesion outlines
LABEL_COLOURS = ((230, 60, 60), (60, 200, 80), (70, 120, 255), (240, 200, 40), (220, 80, 220), (60, 210, 220))
WHITE, GREY = (255, 255, 255), (170, 170, 170)


def _to_uint8(image: np.ndarray, high: float) -> np.ndarray:
    return (np.clip(image / high, 0.0, 1.0) * 255).astype(np.uint8) if high > 0 else np.zeros(image.shape, np.uint8)


def preview_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """Axial slice indices spread over the middle of the brain (RAS+ arrays: axis 2)."""
    present = np.flatnonzero(mask.any(axis=(0, 1)))
    if present.size == 0:
        return [mask.shape[2] // 2]
    lo, hi = present[0], present[-1]
    return [int(lo + (hi - lo) * f) for f in np.linspace(0.35, 0.65, count)]


def _titled_canvas(grid: np.ndarray, header: int, footer: int, title_lines: list[str], size: int, pad: int
                   ) -> tuple[Image.Image, _Writer, int]:
    """The tiles under a header of `header` pixels (the title written there) and above a footer; returns the
    picture, its writer and the height the next header line starts at."""
    canvas = np.zeros((header + grid.shape[0] + footer, grid.shape[1], 3), np.uint8)
    canvas[header:header + grid.shape[0]] = grid
    picture = Image.fromarray(canvas, mode="RGB")
    writer = _Writer(picture, size)
    y = pad // 2
    for line in title_lines:
        writer.text((pad, y), line)
        y += writer.line
    return picture, writer, y


def busiest_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """Axial slices through a small mask (lesions): in each of `count` equal parts of its axial extent, the slice
    holding the most of it."""
    area = mask.sum(axis=(0, 1))
    present = np.flatnonzero(area)
    if present.size == 0:
        return preview_slices(mask, count)
    parts = np.array_split(np.arange(present[0], present[-1] + 1), min(count, present.size))
    return sorted({int(part[np.argmax(area[part])]) for part in parts if area[part].any()})


def font_size(tile_width: int, tile_height: int) -> int:
    """Text height in pixels for tiles of this size: about a ninth of the tile, at least 9 and at most 32."""
    return int(np.clip(round(min(tile_width, tile_height) / 9), 9, 32))


def load_font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at `size` px (pillow >= 10.1 scales it), else its small fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):  # older pillow, or pillow without FreeType
        return ImageFont.load_default()


def colour_mapped(values: np.ndarray, high: float) -> np.ndarray:
    """RGB uint8 of values in [0, high] through COLOUR_MAP (0 black, high pale yellow)."""
    fraction = np.clip(values / high, 0.0, 1.0) if high > 0 else np.zeros(values.shape, np.float32)
    position = fraction * (len(COLOUR_MAP) - 1)
    anchors = np.arange(len(COLOUR_MAP))
    return np.stack([np.interp(position, anchors, COLOUR_MAP[:, c]) for c in range(3)], axis=-1).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2D mask (in the mask, with a 4-neighbour outside it)."""
    mask = mask.astype(bool)
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


class _Writer:
    """Text on a picture: one font for the picture, with wrapping and a dark outline for text over images."""

    def __init__(self, picture: Image.Image, size: int) -> None:
        self.draw = ImageDraw.Draw(picture)
        self.font = load_font(size)
        box = self.draw.textbbox((0, 0), "Ag|", font=self.font)
        self.line = box[3] - min(box[1], 0) + max(2, size // 5)
        self.stroke = max(1, size // 9)

    def width(self, text: str) -> float:
        box = self.draw.textbbox((0, 0), text, font=self.font)
        return box[2] - box[0]

    def wrap(self, text: str, width: int) -> list[str]:
        lines: list[str] = []
        for word in text.split(" "):
            if lines and self.width(f"{lines[-1]} {word}") <= width:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        return lines or [""]

    def text(self, xy: tuple[float, float], text: str, fill=WHITE, over_image: bool = False) -> None:
        if over_image:
            try:
                self.draw.text(xy, text, font=self.font, fill=fill, stroke_width=self.stroke, stroke_fill=(0, 0, 0))
                return
            except (TypeError, ValueError):  # a bitmap font without strokes
                pass
        self.draw.text(xy, text, font=self.font, fill=fill)


def _tiles(columns: dict[str, np.ndarray], indices: list[int], window: float, coloured: dict[str, float],
           contours: dict[str, np.ndarray]) -> np.ndarray:
    """The RGB grid: one row per slice, one tile per column (anterior up, patient left on the left)."""
    rows = []
    for index in indices:
        tiles = []
        for name, volume in columns.items():
            plane = np.rot90(volume[:, :, index])
            if name in coloured:
                tile = colour_mapped(plane, coloured[name])
            else:
                tile = np.repeat(_to_uint8(plane, window)[..., None], 3, axis=2)
            if name in contours:
                tile[outline(np.rot90(contours[name][:, :, index]) > 0)] = CONTOUR_COLOUR
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_montage(path: Path, columns: dict[str, np.ndarray], mask: np.ndarray, error_columns: tuple[str, ...] = (),
                 force: bool = False, title: str | None = None, contours: dict[str, np.ndarray] | None = None,
                 slice_mask: np.ndarray | None = None, ranges: dict[str, float] | None = None) -> Path:
    """Write a labelled montage of RAS+ volumes: one column each, one row per axial slice (spread over the brain
    `mask`, or through the most of `slice_mask`). The grey window is the 99.5th percentile over `mask` of the
    non-error columns; error columns are colour-mapped from 0 to half that window (or `ranges[name]`) with a
    colour bar under them; `contours` outlines a mask on the named columns; `title` heads the picture."""
    contours = {k: v for k, v in (contours or {}).items() if k in columns and np.asarray(v).any()}
    plain = [v[mask] for k, v in columns.items() if k not in error_columns]
    window = float(np.percentile(np.concatenate(plain), 99.5)) if plain and mask.any() else 1.0
    coloured = {name: float((ranges or {}).get(name, window / 2)) for name in error_columns if name in columns}
    indices = busiest_slices(slice_mask) if slice_mask is not None and slice_mask.any() else preview_slices(mask)
    grid = _tiles(columns, indices, window, coloured, contours)
    tile_h, tile_w = grid.shape[0] // len(indices), grid.shape[1] // len(columns)
    size = font_size(tile_w, tile_h)
    probe = _Writer(Image.new("RGB", (1, 1)), size)
    pad = max(2, size // 4)
    title_lines = probe.wrap(title, grid.shape[1] - 2 * pad) if title else []
    legend = "outline: lesion mask" if contours else ""
    labels = {name: probe.wrap(name, tile_w - 2 * pad) for name in columns}
    header = pad + probe.line * (len(title_lines) + bool(legend) + max(len(v) for v in labels.values()))
    bar = max(4, size // 2)
    footer = 2 * pad + bar + probe.line if coloured else 0
    picture, writer, y = _titled_canvas(grid, header, footer, title_lines, size, pad)
    if legend:
        writer.text((pad, y), legend, fill=CONTOUR_COLOUR)
        y += writer.line
    for i, name in enumerate(columns):
        for j, line in enumerate(labels[name]):
            writer.text((i * tile_w + pad, y + j * writer.line), line)
    for r, index in enumerate(indices):  # each row's slice, bottom left of its first tile
        writer.text((pad, header + (r + 1) * tile_h - writer.line - pad // 2), f"z {index}", fill=WHITE,
                    over_image=True)
    writer.text((pad, header + pad // 2), "L", fill=(255, 230, 0), over_image=True)
    writer.text((tile_w - pad - writer.width("R"), header + pad // 2), "R", fill=(255, 230, 0), over_image=True)
    for name, high in coloured.items():
        _colour_bar(picture, writer, list(columns).index(name) * tile_w, header + grid.shape[0] + pad, tile_w, bar,
                    high, pad)
    write_atomically(Path(path), lambda tmp: picture.save(tmp, format="PNG"), force=force)
    return Path(path)


def _colour_bar(picture: Image.Image, writer: _Writer, x: int, y: int, width: int, height: int, high: float,
                pad: int) -> None:
    """A horizontal colour bar under a colour-mapped column, labelled 0 and its top value."""
    inner = max(1, width - 2 * pad)
    strip = colour_mapped(np.tile(np.linspace(0, high, inner, dtype=np.float32), (height, 1)), high)
    picture.paste(Image.fromarray(strip, mode="RGB"), (x + pad, y))
    top = f"{high:.2g}"
    writer.text((x + pad, y + height + 1), "0", fill=GREY)
    writer.text((x + width - pad - writer.width(top), y + height + 1), top, fill=GREY)


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
            target: str, force: bool = False, subset: tuple[str, ...] | list[str] | None = None,
            lesion: np.ndarray | None = None, subject: str | None = None) -> Path:
    """The QC montage: the synthesis's inputs, true and synthetic target (brain-mean units), and absolute error,
    same slices (see qc_columns); a lesion mask is outlined on the true and synthetic target, and the slices then
    pass through the lesions."""
    columns = qc_columns(inputs, truth, synthesis, brain, target, subset)
    names = list(columns)
    chosen = "+".join(tuple(subset) if subset else tuple(inputs))
    title = f"{subject + ': ' if subject else ''}{target} synthesised from the subset {chosen}; axial slices; " \
            "intensities in brain-mean units"
    lesion = None if lesion is None else (np.asarray(lesion) > 0) & brain
    contours = {names[-3]: lesion, names[-2]: lesion} if lesion is not None and lesion.any() else None
    return save_montage(path, columns, brain, error_columns=("|error|",), force=force, title=title,
                        contours=contours, slice_mask=lesion if contours else None)


def save_label_montage(path: Path, image: np.ndarray, labels: np.ndarray, names: list[str], mask: np.ndarray,
                       force: bool = False, title: str | None = None) -> Path:
    """A PNG of a label volume (1 = names[0], ...; 0 = background): per preview slice, the RAS+ image in grey and
    the labels coloured over it, with a colour legend."""
    window = float(np.percentile(image[mask], 99.5)) if mask.any() else 1.0
    palette = np.array([(0, 0, 0), *LABEL_COLOURS[: len(names)]], dtype=np.float32)
    indices = preview_slices(mask)
    rows = []
    for index in indices:
        grey = np.repeat(_to_uint8(np.rot90(image[:, :, index]), window)[..., None], 3, axis=2).astype(np.float32)
        label = np.rot90(labels[:, :, index]).astype(np.intp)
        coloured = np.where(label[..., None] > 0, 0.35 * grey + 0.65 * palette[np.clip(label, 0, len(names))], grey)
        rows.append(np.concatenate([grey, coloured], axis=1).astype(np.uint8))
    grid = np.concatenate(rows, axis=0)
    tile_h, tile_w = grid.shape[0] // len(indices), grid.shape[1] // 2
    size = font_size(tile_w, tile_h)
    probe = _Writer(Image.new("RGB", (1, 1)), size)
    pad = max(2, size // 4)
    title_lines = probe.wrap(title or "which input wins the fusion, per voxel", grid.shape[1] - 2 * pad)
    legend: list[list[str]] = [[]]
    for name in names:  # the legend wraps under the right-hand tile
        if legend[-1] and probe.width("   ".join([*legend[-1], name])) > tile_w - 2 * pad:
            legend.append([])
        legend[-1].append(name)
    header = pad + probe.line * (len(title_lines) + len(legend))
    picture, writer, y = _titled_canvas(grid, header, 0, title_lines, size, pad)
    writer.text((pad, y), "reference")
    colours = dict(zip(names, LABEL_COLOURS))
    for k, line in enumerate(legend):
        x = tile_w + pad
        for name in line:
            writer.text((x, y + k * writer.line), name, fill=colours[name])
            x += writer.width(name + "   ")
    for r, index in enumerate(indices):
        writer.text((pad, header + (r + 1) * tile_h - writer.line - pad // 2), f"z {index}", over_image=True)
    writer.text((pad, header + pad // 2), "L", fill=(255, 230, 0), over_image=True)
    writer.text((tile_w - pad - writer.width("R"), header + pad // 2), "R", fill=(255, 230, 0), over_image=True)
    write_atomically(Path(path), lambda tmp: picture.save(tmp, format="PNG"), force=force)
    return Path(path)
