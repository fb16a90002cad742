"""Lesion-aware models end to end on phantoms: train --lesion-channel (from scratch and from a trained model),
synth --lesion-mask, and add-lesion with a mask from another grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.io.checkpoint import load_checkpoint

from conftest import write_subject

TINY = ["--epochs", "1", "--steps-per-epoch", "1", "--width", "0.125", "--crop", "16", "--batch-size", "2",
        "--device", "cpu", "--inputs", "t1,t2", "--outputs", "t1,t2,flair"]


def _run(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lesion_data")
    for i in range(2):
        write_subject(root / f"s{i}", seed=i)  # each with lesion.nii.gz
    return root


@pytest.fixture(scope="module")
def plain_model(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "plain.pt"
    _run("train", "--data", str(data), *TINY, "--out", str(out))
    return out


def test_lesion_channel_training_records_it_and_synth_draws_the_mask(data: Path, tmp_path: Path) -> None:
    model = tmp_path / "lesion.pt"
    _run("train", "--data", str(data), *TINY, "--lesion-channel", "--out", str(model))
    assert load_checkpoint(model)["config"]["lesion_channel"] is True
    subject = data / "s0"
    _run("synth", "--t1", str(subject / "t1.nii.gz"), "--t2", str(subject / "t2.nii.gz"), "--model", str(model),
         "--out", str(tmp_path / "without.nii.gz"), "--target", "flair")
    _run("synth", "--t1", str(subject / "t1.nii.gz"), "--t2", str(subject / "t2.nii.gz"), "--model", str(model),
         "--lesion-mask", str(subject / "lesion.nii.gz"), "--out", str(tmp_path / "with.nii.gz"), "--target", "flair")
    without = np.asarray(nib.load(tmp_path / "without.nii.gz").dataobj)
    drawn = np.asarray(nib.load(tmp_path / "with.nii.gz").dataobj)
    lesion = np.asarray(nib.load(subject / "lesion.nii.gz").dataobj) > 0
    assert not np.allclose(without[lesion], drawn[lesion])  # the mask channel changes the synthesis


def test_a_plain_model_refuses_a_lesion_mask(plain_model: Path, data: Path) -> None:
    subject = data / "s0"
    result = CliRunner().invoke(app, ["synth", "--t1", str(subject / "t1.nii.gz"), "--model", str(plain_model),
                                      "--lesion-mask", str(subject / "lesion.nii.gz"), "--out", "x.nii.gz",
                                      "--target", "flair"])
    assert result.exit_code == 1 and "no lesion channel" in result.output


def test_init_from_starts_exactly_at_the_parent(live_model: Path, data: Path, tmp_path: Path) -> None:
    child = tmp_path / "child.pt"
    _run("train", "--data", str(data), *TINY, "--inputs", "t1,t1c,t2,flair", "--outputs", "t1,t1c,t2,flair",
         "--lesion-channel", "--init-from", str(live_model), "--lr", "0", "--out", str(child))
    payload = load_checkpoint(child)
    assert payload["config"]["lesion_channel"] and payload["metadata"]["extension"]["added"] == "lesion channel"
    subject = data / "s1"
    outputs = {}
    for model, name in ((live_model, "parent"), (child, "child")):
        _run("synth", "--t1", str(subject / "t1.nii.gz"), "--t2", str(subject / "t2.nii.gz"), "--model", str(model),
             "--out", str(tmp_path / f"{name}.nii.gz"), "--target", "flair")
        outputs[name] = np.asarray(nib.load(tmp_path / f"{name}.nii.gz").dataobj)
    assert outputs["parent"].std() > 0  # a live model, so the equality below means something
    assert np.allclose(outputs["parent"], outputs["child"], atol=1e-5)


def test_add_lesion_registers_a_mask_from_another_grid_and_measures_it(data: Path, tmp_path: Path) -> None:
    model = tmp_path / "lesion.pt"
    _run("train", "--data", str(data), *TINY, "--lesion-channel", "--out", str(model))
    donor = tmp_path / "donor"
    donor.mkdir()
    for name in ("t1", "lesion"):  # the donor's scans on another grid: padded and shifted by a few mm
        image = nib.load(data / "s1" / f"{name}.nii.gz")
        affine = image.affine.copy()
        affine[:3, 3] += np.array([4.0, -3.0, 2.0]) - affine[:3, :3] @ np.full(3, 2)
        nib.save(nib.Nifti1Image(np.pad(np.asarray(image.dataobj), 2), affine), donor / f"{name}.nii.gz")
    out = tmp_path / "flair_with_lesions.nii.gz"
    output = _run("add-lesion", "--t1", str(data / "s0" / "t1.nii.gz"), "--t2", str(data / "s0" / "t2.nii.gz"),
                  "--lesion-mask", str(donor / "lesion.nii.gz"), "--lesion-ref", str(donor / "t1.nii.gz"),
                  "--source-subject", str(data / "s1"), "--model", str(model), "--out", str(out),
                  "--mask-out", str(tmp_path / "mask.nii.gz"), "--preview", str(tmp_path / "lesions.png"),
                  "--report", str(tmp_path / "report.json"), "--device", "cpu")
    assert "registered t1.nii.gz onto t1.nii.gz" in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"synthetic_lesion_to_nawm", "real_lesion_to_nawm", "dice_hyperintensities_vs_mask"} <= set(report)
    assert report["lesion_voxels"] > 0 and report["real_lesion_to_nawm"] > 0
    assert (tmp_path / "lesions.png").stat().st_size > 0
    reference = nib.load(data / "s0" / "t1.nii.gz")
    written = nib.load(out)
    assert written.shape == reference.shape and np.allclose(written.affine, reference.affine)
    mask = np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj) > 0
    truth = np.asarray(nib.load(data / "s0" / "lesion.nii.gz").dataobj) > 0  # same phantom: same lesion place
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.7
    again = CliRunner().invoke(app, ["add-lesion", "--t1", str(data / "s0" / "t1.nii.gz"), "--lesion-mask",
                                     str(donor / "lesion.nii.gz"), "--model", str(model), "--out", str(out)])
    assert again.exit_code == 1 and "output exists" in again.output  # never clobbered without --force
    other = CliRunner().invoke(app, ["add-lesion", "--t1", str(data / "s0" / "t1.nii.gz"), "--lesion-mask",
                                     str(donor / "lesion.nii.gz"), "--model", str(model), "--out",
                                     str(tmp_path / "new.nii.gz")])
    assert other.exit_code == 1 and "give --lesion-ref" in other.output  # another grid and no reference


def test_the_shipped_lesion_model_draws_a_lesion_where_it_is_told(tmp_path: Path) -> None:
    """add-lesion with the shipped models/lesion.pt (the default) on 12 slices of the bundled subject: a FLAIR
    drawn with a white-matter blob in the mask is brighter there than the same synthesis with the blob in the
    other hemisphere."""
    from mrimpute.pipeline.demo import SAMPLE_DIR
    from mrimpute.runtime.model_loading import lesion_model_path

    assert load_checkpoint(lesion_model_path())["config"]["lesion_channel"] is True
    inputs = {}
    for name in ("t1", "t2"):
        image = nib.load(SAMPLE_DIR / f"{name}.nii.gz")
        inputs[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, 70:82], image.affine, image.header), inputs[name])
    shape = nib.load(inputs["t1"]).shape
    blob = np.zeros(shape, np.uint8)
    grid = np.indices(shape)
    smooth_t1 = ndimage.uniform_filter(np.asarray(nib.load(inputs["t1"]).dataobj, dtype=np.float32)[:, :, 6], 11)
    half = shape[0] // 2
    for mask, rows in ((blob, slice(half + 8, None)), (elsewhere := np.zeros(shape, np.uint8), slice(0, half - 8))):
        x, y = np.unravel_index(np.argmax(smooth_t1[rows]), smooth_t1[rows].shape)  # white matter, each hemisphere
        centre = (x + rows.indices(shape[0])[0], y, 6)
        mask[sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 5 ** 2] = 1
    means = []
    for name, mask in (("with", blob), ("without", elsewhere)):
        mask_path = tmp_path / f"mask_{name}.nii.gz"
        nib.save(nib.Nifti1Image(mask, nib.load(inputs["t1"]).affine), mask_path)
        out = tmp_path / f"flair_{name}.nii.gz"
        _run("add-lesion", "--t1", str(inputs["t1"]), "--t2", str(inputs["t2"]), "--lesion-mask", str(mask_path),
             "--target", "flair", "--out", str(out))
        means.append(float(np.asarray(nib.load(out).dataobj)[blob > 0].mean()))
    assert means[0] > 1.15 * means[1], means
