"""The brief's command with the shipped models: `mrimpute synth --t1 a.nii --dwi b.nii --out flair.nii` (issue 16).

The default model has no diffusion encoders; without --model, synth then uses the shipped models/diffusion.pt (the
default plus dwi and adc encoders trained into its latent space, benchmarks/diffusion_encoders.sh) and says so in
one line. The 'dwi' and 'adc' inputs here are phantom volumes on the T1's grid: the test is about the command, the
header and the model choice, not about image quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.phantom import oblique_affine, phantom
from mrimpute.runtime.model_loading import MODEL_ENV, choose_shipped_model, shipped_model

RUNNER = CliRunner(env={"COLUMNS": "200"})
DIFFUSION = shipped_model("diffusion.pt")
pytestmark = pytest.mark.skipif(not DIFFUSION.is_file(), reason="models/diffusion.pt is not built")


@pytest.fixture(autouse=True)
def _no_model_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)


def _pair(folder: Path, suffix: str) -> dict[str, Path]:
    """A small co-registered T1 / 'DWI' / 'ADC' triple on an oblique grid (the phantom's t2 and flair stand in for
    the diffusion images: any volume on the T1's grid will do here)."""
    folder.mkdir(parents=True, exist_ok=True)
    volumes = phantom((32, 32, 4), seed=3)
    affine = oblique_affine("LAS")
    paths = {}
    for name, source in (("t1", "t1"), ("dwi", "t2"), ("adc", "flair")):
        image = nib.Nifti1Image(volumes[source], affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=2)
        paths[name] = folder / f"{name.upper()}{suffix}"
        nib.save(image, paths[name])
    return paths


def _invoke(args: list[str]):
    return RUNNER.invoke(app, ["synth", *args, "--device", "cpu", "--threads", "1"])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_t1_and_dwi_give_flair_on_the_t1_grid(tmp_path: Path, suffix: str) -> None:
    pair = _pair(tmp_path, suffix)
    out = tmp_path / f"flair{suffix}"
    result = _invoke(["--t1", str(pair["t1"]), "--dwi", str(pair["dwi"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "model: diffusion.pt" in result.output and "no encoder for dwi" in result.output
    reference, written = nib.load(pair["t1"]), nib.load(out)
    assert written.shape == reference.shape and np.array_equal(written.affine, reference.affine)
    for field in ("qform_code", "sform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
                  "pixdim"):
        assert np.array_equal(written.header[field], reference.header[field]), field
    data = np.asarray(written.dataobj)
    assert np.isfinite(data).all() and data.max() > 0
    assert written.header["descrip"].tobytes().startswith(b"mrimpute synthetic flair from t1+dwi")
    sidecar = json.loads(out.with_name(out.name.replace(suffix, ".json")).read_text())
    assert json.dumps(sidecar).count("diffusion.pt") >= 1


def test_adc_exists_alone_and_with_dwi(tmp_path: Path) -> None:
    pair = _pair(tmp_path, ".nii.gz")
    result = _invoke(["--dwi", str(pair["dwi"]), "--adc", str(pair["adc"]), "--out", str(tmp_path / "flair.nii.gz")])
    assert result.exit_code == 0, result.output
    assert "model: diffusion.pt" in result.output
    written = nib.load(tmp_path / "flair.nii.gz")
    assert np.array_equal(written.affine, nib.load(pair["dwi"]).affine)  # the first input given is the reference
    result = _invoke(["--adc", str(pair["adc"]), "--out", str(tmp_path / "from_one.nii.gz"), "--target", "flair"])
    assert result.exit_code == 0, result.output


def test_the_choice_of_shipped_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert choose_shipped_model(["t1", "t2"]) == (shipped_model("default.pt"), None)
    path, note = choose_shipped_model(["t1", "dwi"])
    assert path == DIFFUSION and note and "dwi" in note
    assert choose_shipped_model(["adc"])[0] == DIFFUSION
    assert choose_shipped_model(["t1", "pd"]) == (shipped_model("default.pt"), None)  # no shipped model has pd
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "mine.pt"))  # $MRIMPUTE_MODEL overrides everything
    assert choose_shipped_model(["t1", "dwi"]) == (tmp_path / "mine.pt", None)


def test_an_explicit_model_is_used_as_given(tmp_path: Path) -> None:
    pair = _pair(tmp_path, ".nii.gz")
    result = _invoke(["--t1", str(pair["t1"]), "--dwi", str(pair["dwi"]), "--out", str(tmp_path / "flair.nii.gz"),
                      "--model", str(shipped_model("default.pt"))])
    assert result.exit_code == 1 and "dwi" in result.output and "model: diffusion.pt" not in result.output


def test_diffusion_model_extends_the_shipped_default() -> None:
    """Every part of the default model is in diffusion.pt bit for bit (only the dwi and adc encoders are new). When
    the default model is retrained, rebuild diffusion.pt with benchmarks/diffusion_encoders.sh."""
    default = torch.load(shipped_model("default.pt"), map_location="cpu", weights_only=True)
    diffusion = torch.load(DIFFUSION, map_location="cpu", weights_only=True)
    assert set(diffusion["config"]["inputs"]) == set(default["config"]["inputs"]) | {"dwi", "adc"}
    assert diffusion["config"]["outputs"] == default["config"]["outputs"]
    for key, weight in default["state_dict"].items():
        assert torch.equal(diffusion["state_dict"][key], weight), (
            f"{key}: diffusion.pt was built from another default model; rerun benchmarks/diffusion_encoders.sh")
    added = [key for key in diffusion["state_dict"] if key not in default["state_dict"]]
    assert added and all(".dwi." in key or ".adc." in key for key in added), added
