"""Brain extraction (`preprocess --skull-strip`, `synth --skull-strip`, deepbet): refused without a T1-weighted
input, measured against an independent mask, and applied to every input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.io.nifti import load_volume
from mrimpute.phantom import write_subject
from mrimpute.preprocess.skullstrip import apply_mask, choose_source

from conftest import SHARED_DATA

RUNNER = CliRunner(env={"COLUMNS": "300"})
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RAW = SHARED_DATA / "raw" / "mslong01"
ATLAS = SHARED_DATA / "atlas" / "icbm2009a"


def invoke(*args) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_synth_skull_strip_needs_a_t1(tmp_path, random_model):
    files = write_subject(tmp_path / "s")
    code, _, stderr = invoke("synth", "--t2", files["t2"], "--out", tmp_path / "p" / "flair_synth.nii.gz", "--model",
                             random_model, "--skull-strip", "--threads", "1")
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {files['t2']}: --skull-strip needs a T1-weighted input")
    assert not (tmp_path / "p").exists()


def test_preprocess_skull_strip_needs_a_t1(tmp_path):
    files = write_subject(tmp_path / "s")
    code, _, stderr = invoke("preprocess", "--out-dir", tmp_path / "pp", "--ref", f"flair={files['flair']}",
                             "--t2", files["t2"], "--skull-strip", "--threads", "1")
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {files['flair']}: --skull-strip needs a T1-weighted")
    assert not (tmp_path / "pp").exists()


def test_source_prefers_t1_then_t1c():
    assert choose_source({"t2": 1, "t1c": 2, "t1": 3}) == "t1"
    assert choose_source({"t2": 1, "t1c": 2}) == "t1c"


def test_mask_keeps_a_negative_background_lowest():
    data = np.array([[-2.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    mask = np.array([[True, True], [False, True]])
    assert apply_mask(data, mask).tolist() == [[-2.0, 1.0], [-2.0, 4.0]]
    assert apply_mask(np.abs(data), mask).tolist() == [[2.0, 1.0], [0.0, 4.0]]


@pytest.mark.slow
def test_dice_against_atlas_tissue_maps():
    """deepbet's mask of the ICBM 2009a T1 against the atlas's own GM+WM > 0.3 (holes filled): Dice >= 0.90."""
    sys.path.insert(0, str(BENCHMARKS))
    from brain_extraction import measure

    result = measure(ATLAS)
    assert result["dice"] >= 0.90, result
    assert 1000 < result["mask_ml"] < 2200, result


@pytest.mark.slow
def test_preprocess_and_synth_skull_strip_on_a_raw_head(tmp_path, random_model):
    """A raw head: preprocess --skull-strip writes deepbet's brain mask (an adult brain's volume) and zero outside
    it; synth --skull-strip on the unstripped heads zeroes the synthesis outside the same kind of mask."""
    head, stripped = tmp_path / "head", tmp_path / "stripped"
    common = ["--ref", f"flair={RAW / 'study1_FLAIR.nii.gz'}", "--t1", RAW / "study1_T1W.nii.gz",
              "--spacing", "2", "--threads", "1"]
    code, _, stderr = invoke("preprocess", "--out-dir", stripped, *common, "--skull-strip")
    assert code == 0, stderr
    manifest = json.loads((stripped / "manifest.json").read_text())
    assert manifest["mask"]["method"].startswith("deepbet") and "skull-strip (deepbet)" in manifest["steps"]
    mask = load_volume(stripped / "brainmask.nii.gz")
    brain_ml = float(mask.data.sum()) * 8.0 / 1000.0
    assert 1000 < brain_ml < 1800, brain_ml
    for name in ("t1", "flair"):
        data = load_volume(stripped / f"{name}.nii.gz").data
        assert not data[mask.data < 0.5].any() and data[mask.data > 0.5].mean() > 0
    code, _, stderr = invoke("preprocess", "--out-dir", head, *common)
    assert code == 0, stderr
    head_t1 = load_volume(head / "t1.nii.gz").data
    assert (head_t1[mask.data < 0.5] > 0).sum() > 0.2 * (mask.data > 0.5).sum()  # a head: much outside the brain
    out = tmp_path / "flair_synth.nii.gz"
    code, _, stderr = invoke("synth", "--t1", head / "t1.nii.gz", "--out", out, "--model", random_model,
                             "--skull-strip", "--threads", "1", "--device", "cpu")
    assert code == 0, stderr
    assert "looks like a head" not in stderr
    sidecar = json.loads(out.with_name("flair_synth.json").read_text())
    assert sidecar["BrainExtraction"].startswith("deepbet")
    synthetic = load_volume(out).data
    outside = synthetic[mask.data < 0.5]
    assert (outside != 0).sum() < 0.02 * (mask.data > 0.5).sum()  # zero outside the brain (same method, same grid)
