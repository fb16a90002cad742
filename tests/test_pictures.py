"""The PNG pictures (QC montage, add-lesion preview, --explain and --uncertainty previews) are readable at a glance:
text sized to the image, the subset and the slices named, L/R on the first tile, a colour bar with its range under
|error| and uncertainty, lesion masks outlined on the synthesis, and a preview beside `synth --uncertainty`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont
from typer.testing import CliRunner

from mrimpute import preview
from mrimpute.cli.app import app
from mrimpute.phantom import phantom
from mrimpute.pipeline.evaluate import EvalSettings, evaluate
from mrimpute.preview import CONTOUR_COLOUR, busiest_slices, colour_mapped, save_qc

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})


def qc_inputs(shape=(40, 36, 12)) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    volumes = phantom(shape, seed=3)
    brain = volumes["t1"] > 0
    inputs = {m: volumes[m] / volumes[m][brain].mean() for m in ("t1", "t2")}
    synthesis = volumes["flair"] / volumes["flair"][brain].mean() * 0.9
    return inputs, volumes["flair"], synthesis, brain, volumes["lesion"].astype(bool)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def first_text_line_height(picture: np.ndarray) -> int:
    """Rows of the first run of rows (from the top) that hold bright text pixels."""
    bright = (picture.max(axis=2) > 128).any(axis=1)
    start = int(np.argmax(bright))
    end = start + int(np.argmax(~bright[start:]))
    return end - start


def colour_bar_rows(picture: np.ndarray, x0: int, width: int, high: float = 1.0) -> list[int]:
    """Rows holding exactly the colour bar of a colour-mapped column starting at x0 (any bar length)."""
    found = []
    for y in range(picture.shape[0]):
        row = picture[y, x0:x0 + width]
        lit = np.flatnonzero(row.sum(axis=1) > 0)
        if lit.size < width // 2:
            continue
        segment = row[lit[0]:lit[-1] + 1]
        expected = colour_mapped(np.linspace(0, high, len(segment), dtype=np.float32), high).astype(int)
        if np.abs(segment - expected).max() <= 1 and lit[0] < width // 4:
            found.append(y)
    return found


def test_text_scales_with_the_image(tmp_path: Path) -> None:
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    inputs, truth, synthesis, brain, _ = qc_inputs()
    save_qc(small, inputs, truth, synthesis, brain, "flair")
    inputs, truth, synthesis, brain, _ = qc_inputs((200, 180, 12))
    save_qc(large, inputs, truth, synthesis, brain, "flair")
    assert Image.open(small).size[0] == 5 * 40 and Image.open(large).size[0] == 5 * 200
    assert preview.font_size(200, 180) >= 18 and preview.font_size(40, 36) == 9
    # pillow's default bitmap font is about 11 px tall; the large picture's title is at least 16 px
    assert first_text_line_height(pixels(large)) >= 16
    assert first_text_line_height(pixels(large)) > first_text_line_height(pixels(small))


def test_l_r_markers_and_error_colour_bar(tmp_path: Path) -> None:
    inputs, truth, synthesis, brain, _ = qc_inputs((120, 100, 12))
    path = save_qc(tmp_path / "qc.png", inputs, truth, synthesis, brain, "flair", subset=("t1", "t2"))
    picture = pixels(path)
    tile = 120
    yellow = (picture[..., 0] > 200) & (picture[..., 1] > 200) & (picture[..., 2] < 60)
    ys, xs = np.nonzero(yellow)
    assert xs.size and xs.max() < tile  # only on the first tile
    assert (xs < tile // 4).any() and (xs > 3 * tile // 4).any()  # L on the left, R on the right
    assert ys.max() < picture.shape[0] // 2  # at the top
    # a colour bar (0 to half the window) under the |error| column, and nowhere else
    error_x = 4 * tile
    assert colour_bar_rows(picture, error_x, tile, high=1.0)
    assert all(not colour_bar_rows(picture, i * tile, tile) for i in range(4))
    bar_bottom = max(colour_bar_rows(picture, error_x, tile))
    labels = picture[bar_bottom + 1:, error_x:error_x + tile].max(axis=2) > 100
    assert labels[:, : tile // 4].any() and labels[:, 3 * tile // 4:].any()  # "0" and the top value


def test_the_error_column_is_colour_mapped(tmp_path: Path) -> None:
    inputs, truth, synthesis, brain, _ = qc_inputs()
    picture = pixels(save_qc(tmp_path / "qc.png", inputs, truth, synthesis, brain, "flair"))
    error = picture[:, 4 * 40:]
    assert (np.abs(error[..., 0] - error[..., 2]) > 40).any()  # coloured
    assert (picture[:, : 4 * 40][..., 0] != picture[:, : 4 * 40][..., 1]).sum() < 0.05 * 4 * 40 * picture.shape[0]


def test_lesions_are_outlined_on_the_true_and_synthetic_target(tmp_path: Path) -> None:
    inputs, truth, synthesis, brain, lesion = qc_inputs()
    picture = pixels(save_qc(tmp_path / "qc.png", inputs, truth, synthesis, brain, "flair", lesion=lesion))
    contour = (picture == np.array(CONTOUR_COLOUR)).all(axis=2)
    body_top = picture.shape[0] - 3 * 36 - 30  # 3 slices of 36 rows, the colour bar's footer, a few label rows
    greenish = (picture[..., 0] < 60) & (picture[..., 1] > 150) & (picture[..., 2] > 60)  # antialiased text
    assert greenish[:body_top].sum() > 20  # the legend "outline: lesion mask", in the outline's colour, on top
    per_column = [int(contour[body_top:, i * 40:(i + 1) * 40].sum()) for i in range(5)]
    assert per_column[2] > 0 and per_column[3] > 0, per_column  # true and synthetic flair
    assert per_column[0] == per_column[1] == per_column[4] == 0, per_column
    without = pixels(save_qc(tmp_path / "plain.png", inputs, truth, synthesis, brain, "flair"))
    assert not (without == np.array(CONTOUR_COLOUR)).all(axis=2).any()


def test_lesion_slices_pass_through_the_lesions() -> None:
    mask = np.zeros((10, 10, 30), bool)
    mask[4:6, 4:6, 3] = True
    mask[2:8, 2:8, 20] = True  # the largest
    mask[5, 5, 27] = True
    chosen = busiest_slices(mask)
    assert all(mask[:, :, z].any() for z in chosen) and 20 in chosen


def test_bitmap_font_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pillow without scalable default font (< 10.1, or no FreeType) still writes the picture."""
    original = ImageFont.load_default

    def old_pillow(*args, **kwargs):
        if args or kwargs:
            raise TypeError("load_default() takes no arguments")
        return original()

    monkeypatch.setattr(preview.ImageFont, "load_default", old_pillow)
    inputs, truth, synthesis, brain, lesion = qc_inputs()
    path = save_qc(tmp_path / "qc.png", inputs, truth, synthesis, brain, "flair", lesion=lesion)
    assert Image.open(path).size[0] == 5 * 40


def test_eval_qc_outlines_the_subjects_lesions(tmp_path: Path, random_model: Path) -> None:
    write_subject(tmp_path / "data" / "s0")  # the phantom has a lesion.nii.gz
    qc = tmp_path / "qc"
    evaluate(EvalSettings(data=tmp_path / "data", model=random_model, targets=["flair"], subsets="t1,t2",
                          device="cpu", qc_dir=qc))
    picture = pixels(qc / "s0_flair.png")
    assert picture.shape[1] == 5 * 40
    contour = (picture == np.array(CONTOUR_COLOUR)).all(axis=2)
    assert contour[:, 3 * 40:4 * 40].sum() > 10  # on the synthesis


def test_synth_uncertainty_writes_a_preview(tmp_path: Path, live_model: Path) -> None:
    files = write_subject(tmp_path / "s")
    out, sd = tmp_path / "o" / "flair_synth.nii.gz", tmp_path / "o" / "flair_sd.nii.gz"
    args = ["synth", "--t1", str(files["t1"]), "--t2", str(files["t2"]), "--out", str(out), "--uncertainty",
            str(sd), "--model", str(live_model), "--device", "cpu", "--threads", "1"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    png = tmp_path / "o" / "flair_sd.png"
    picture = pixels(png)
    assert picture.shape[1] == 3 * 40  # reference input, synthesis, uncertainty
    assert "flair_sd.png" in result.stdout.replace("\n", "")  # named in the table (a long path may fold)
    assert colour_bar_rows(picture, 2 * 40, 40)  # its colour bar
    # an existing preview is kept unless --force, refused in one line before anything is written
    out.unlink()
    sd.unlink()
    again = RUNNER.invoke(app, args)
    assert again.exit_code == 1 and not out.exists() and not sd.exists()
    assert again.stderr.strip().startswith(f"error: {png}") and len(again.stderr.strip().splitlines()) == 1
