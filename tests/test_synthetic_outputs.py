"""Outputs that say what they are: descrip 'mrimpute synthetic <contrast> from <inputs>', cal_min/cal_max the
written image's own range (synthesis, uncertainty, explain), and single-file synth's JSON sidecar (the same as
dataset mode's, plus Synthetic, normaliser, input scalings and warnings)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.io.checksum import sha256_file
from mrimpute.io.nifti import DESCRIP_BYTES, fit_descrip, load_volume, save_like
from mrimpute.io.sidecar import sidecar_path, synthetic_descrip
from mrimpute.phantom import write_subject

RUNNER = CliRunner(env={"COLUMNS": "300"})
SIDECAR_KEYS = {"Description", "Synthetic", "Inputs", "Sources", "Model", "MrimputeVersion", "Normalisation",
                "Normaliser", "InputScaling", "BrainExtraction", "Views", "Mirror", "Warnings", "GeneratedAt"}


def synth(*args) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["synth", *(str(a) for a in args), "--threads", "1", "--device", "cpu"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def header_of(path: Path) -> tuple[bytes, float, float, np.ndarray]:
    image = nib.load(str(path))
    header = image.header
    return bytes(header["descrip"]).rstrip(b"\0"), float(header["cal_min"]), float(header["cal_max"]), \
        np.asanyarray(image.dataobj)


def with_display_window(path: Path, low: float = -51.0, high: float = 1337.0) -> None:
    """Give an input a display window and description of its own (which outputs must not inherit)."""
    image = nib.load(str(path))
    image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
    image.header["cal_min"], image.header["cal_max"] = low, high
    image.header["descrip"] = b"scanner T1 MPRAGE"
    nib.save(image, str(path))


def test_single_file_header_and_sidecar(tmp_path, live_model):
    files = write_subject(tmp_path / "s")
    with_display_window(files["t1"])
    out = tmp_path / "out" / "flair_synth.nii.gz"
    code, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", out, "--model", live_model)
    assert code == 0, stderr
    descrip, cal_min, cal_max, data = header_of(out)
    assert descrip == b"mrimpute synthetic flair from t1+t2"
    assert data.max() > 0 and (cal_min, cal_max) == (float(data.min()), float(data.max()))
    assert (cal_min, cal_max) != (-51.0, 1337.0)
    sidecar = json.loads((tmp_path / "out" / "flair_synth.json").read_text())
    assert set(sidecar) == SIDECAR_KEYS
    assert sidecar["Synthetic"] is True
    assert [(i["modality"], i["path"], i["sha256"]) for i in sidecar["Inputs"]] == \
        [(m, str(files[m]), sha256_file(files[m])) for m in ("t1", "t2")]
    assert sidecar["Sources"] == [files[m].absolute().as_uri() for m in ("t1", "t2")]  # BIDS Sources: URIs
    assert sidecar["Model"]["sha256"] == sha256_file(live_model) and sidecar["Model"]["file"] == live_model.name
    assert sidecar["Normaliser"]["name"] and sidecar["Normaliser"]["description"]
    assert set(sidecar["InputScaling"]) == {"t1", "t2"}
    assert {"zero", "limit", "scale", "target_scale", "clipped", "peak"} <= set(sidecar["InputScaling"]["t1"])
    assert sidecar["Warnings"] == [] and sidecar["BrainExtraction"] is None


def test_out_dir_every_output_has_header_and_sidecar(tmp_path, live_model):
    files = write_subject(tmp_path / "s")
    code, stderr = synth("--t1", files["t1"], "--t1c", files["t1c"], "--out-dir", tmp_path / "o", "--model", live_model)
    assert code == 0, stderr
    for target in ("t2", "flair"):
        nifti = tmp_path / "o" / f"{target}_synth.nii.gz"
        descrip, cal_min, cal_max, data = header_of(nifti)
        assert descrip == f"mrimpute synthetic {target} from t1+t1c".encode()
        assert (cal_min, cal_max) == (float(data.min()), float(data.max()))
        sidecar = json.loads(sidecar_path(nifti).read_text())
        assert sidecar["Synthetic"] is True and sidecar["Description"].startswith(target)


def test_maps_have_their_own_range_and_description(tmp_path, live_model):
    files = write_subject(tmp_path / "s")
    with_display_window(files["t1"])
    code, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", tmp_path / "flair_synth.nii.gz",
                         "--uncertainty", tmp_path / "sd.nii.gz", "--explain", tmp_path / "winner.nii.gz",
                         "--model", live_model)
    assert code == 0, stderr
    for name, words in (("sd.nii.gz", b"uncertainty"), ("winner.nii.gz", b"fusion winner")):
        descrip, cal_min, cal_max, data = header_of(tmp_path / name)
        assert descrip.startswith(b"mrimpute ") and words in descrip and descrip.endswith(b"from t1+t2")
        assert (cal_min, cal_max) == (float(data.min()), float(data.max()))


def test_sidecar_may_not_be_another_output(tmp_path, live_model):
    files = write_subject(tmp_path / "s")
    code, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", tmp_path / "a.nii.gz", "--target", "flair",
                         "--explain", tmp_path / "a.nii", "--model", live_model)
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'a.json'}: would be written twice"), stderr
    assert not (tmp_path / "a.nii.gz").exists()


def test_descrip_is_cut_to_the_field(tmp_path):
    text = synthetic_descrip("flair", ["t1", "t1c", "t2"] * 10) + " é"
    fitted = fit_descrip(text)
    assert len(fitted) == DESCRIP_BYTES and fitted == text.encode("ascii", "replace")[:DESCRIP_BYTES]
    files = write_subject(tmp_path / "s")
    reference = load_volume(files["t1"])
    out = save_like(reference.data * 2, reference, tmp_path / "x.nii.gz", descrip=text)
    descrip, cal_min, cal_max, _ = header_of(out)
    assert descrip == fitted
    assert cal_max == float(reference.data.max() * 2) and cal_min == 0.0


def test_dataset_sidecar_matches_single_file_sidecar(tmp_path, live_model):
    for i, name in enumerate(("s01", "s02")):
        files = write_subject(tmp_path / "ds" / name, seed=i)
        files["flair"].unlink()
        files["lesion"].unlink()
    code, stderr = synth("--dataset", tmp_path / "ds", "--out", tmp_path / "deriv", "--model", live_model)
    assert code == 0, stderr
    niftis = sorted((tmp_path / "deriv").rglob("*_desc-synth_FLAIR.nii.gz"))
    assert len(niftis) == 2
    for nifti in niftis:
        sidecar = json.loads(sidecar_path(nifti).read_text())
        assert set(sidecar) == SIDECAR_KEYS and sidecar["Synthetic"] is True
        assert {i["modality"] for i in sidecar["Inputs"]} == {"t1", "t1c", "t2"}
        descrip, cal_min, cal_max, data = header_of(nifti)
        assert descrip == b"mrimpute synthetic flair from t1+t1c+t2"
        assert (cal_min, cal_max) == (float(data.min()), float(data.max()))
    # a rerun finds them up to date (the shared sidecar keeps what the skip check reads)
    result = RUNNER.invoke(app, ["synth", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "deriv"),
                                 "--model", str(live_model), "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 0 and "up to date" in result.stdout
