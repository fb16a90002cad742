"""Through the CLI on real scans: a tiny training run on a crop of ../shared/data, then synth and demo."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app

from conftest import SHARED_DATA

pytestmark = pytest.mark.slow
COREGISTERED = SHARED_DATA / "coregistered"
RUNNER = CliRunner(env={"COLUMNS": "200"})


def _crop_subject(source: Path, target: Path, box: tuple[slice, slice, slice]) -> None:
    target.mkdir(parents=True)
    for name in ("t1", "t2", "flair"):
        nib.save(nib.load(source / f"{name}.nii.gz").slicer[box], target / f"{name}.nii.gz")


@pytest.fixture(scope="module")
def real_crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small crops (64x64x8 voxels through the brain) of two real subjects with different orientations and dtypes."""
    root = tmp_path_factory.mktemp("real")
    _crop_subject(COREGISTERED / "ms19", root / "data" / "ms19", (slice(60, 124), slice(80, 144), slice(80, 88)))
    _crop_subject(COREGISTERED / "met00110", root / "data" / "met00110",
                  (slice(88, 152), slice(88, 152), slice(70, 78)))
    _crop_subject(COREGISTERED / "ms07", root / "ms07", (slice(60, 124), slice(80, 144), slice(80, 88)))
    return root


def test_train_then_synth_keeps_the_reference_header(real_crops: Path) -> None:
    model = real_crops / "model.pt"
    result = RUNNER.invoke(app, ["train", "--data", str(real_crops / "data"), "--inputs", "t1,t2", "--outputs", "flair",
                                 "--out", str(model), "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "4",
                                 "--crop", "32", "--width", "0.125", "--device", "cpu", "--val-subjects", "ms19"])
    assert result.exit_code == 0, result.output
    assert model.is_file() and model.with_suffix(".md").is_file() and model.with_suffix(".last.pt").is_file()
    out = real_crops / "flair_synth.nii.gz"
    result = RUNNER.invoke(app, ["synth", "--t1", str(real_crops / "ms07/t1.nii.gz"),
                                 "--t2", str(real_crops / "ms07/t2.nii.gz"),
                                 "--out", str(out), "--target", "flair", "--model", str(model)])
    assert result.exit_code == 0, result.output
    reference, written = nib.load(real_crops / "ms07/t1.nii.gz"), nib.load(out)
    assert written.shape == reference.shape and np.array_equal(written.affine, reference.affine)
    for field in ("qform_code", "sform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
                  "pixdim"):
        assert np.array_equal(written.header[field], reference.header[field]), field
    data = np.asarray(written.dataobj)
    background = np.asarray(reference.dataobj) == 0
    background &= np.asarray(nib.load(real_crops / "ms07/t2.nii.gz").dataobj) == 0
    assert np.all(data[background] == 0) and np.isfinite(data).all()


def test_demo_writes_nifti_png_and_metrics(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["demo", "--out-dir", str(tmp_path / "demo"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert set(summary["in_brain"]) >= {"ssim", "psnr", "mae", "mse"}
    assert (tmp_path / "demo" / "preview.png").stat().st_size > 10_000
    sample = nib.load(Path(__file__).resolve().parents[1] / "src/mrimpute/sample/ms07/t1.nii.gz")
    assert nib.load(tmp_path / "demo" / "flair_synth.nii.gz").shape == sample.shape
    assert "SSIM" in result.output
    again = RUNNER.invoke(app, ["demo", "--out-dir", str(tmp_path / "demo"), "--device", "cpu"])
    assert again.exit_code == 1 and "--force" in again.output
