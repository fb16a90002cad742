"""synth says what it sees: one `warning: <file>: <message>` line on stderr per finding (z-scored input, a head,
clipped outliers), recorded in the sidecar; --strict turns them into a one-line error before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.data.normaliser import NORMALISER
from mrimpute.io.checkpoint import save_checkpoint
from mrimpute.model.network import SynthesisNet
from mrimpute.phantom import oblique_affine, phantom, write_subject

RUNNER = CliRunner(env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def robust_model(tmp_path_factory) -> Path:
    """A small random model trained (so its metadata says) with the robust normaliser, which reports findings."""
    torch.manual_seed(0)
    config = ModelConfig(inputs=["t1", "t1c", "t2", "flair"], outputs=["t1", "t1c", "t2", "flair"], width=0.125)
    path = tmp_path_factory.mktemp("model") / "robust.pt"
    save_checkpoint(path, config, SynthesisNet(config).state_dict(), {"normaliser": NORMALISER})
    return path


def _rewrite(path: Path, transform) -> Path:
    image = nib.load(str(path))
    data = transform(np.asanyarray(image.dataobj).astype(np.float64))
    nib.save(nib.Nifti1Image(data.astype(np.float32), image.affine, image.header), str(path))
    return path


def zscore(data: np.ndarray) -> np.ndarray:
    brain = data > 0
    return np.where(brain, (data - data[brain].mean()) / data[brain].std(), -5.0)


def saturate(data: np.ndarray, count: int = 3) -> np.ndarray:
    out = data.copy().ravel()
    out[np.random.default_rng(0).choice(np.flatnonzero(out > 0), count, replace=False)] = 32767
    return out.reshape(data.shape)


def synth(*args) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, ["synth", *(str(a) for a in args), "--threads", "1", "--device", "cpu"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def test_zscored_input_warns_once_on_stderr_and_in_sidecar(tmp_path, robust_model):
    files = write_subject(tmp_path / "s")
    _rewrite(files["t1"], zscore)
    code, stdout, stderr = synth("--t1", files["t1"], "--t2", files["t2"],
                                 "--out", tmp_path / "o" / "flair_synth.nii.gz", "--model", robust_model)
    assert code == 0, stderr
    lines = warning_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"warning: {files['t1']}: looks z-scored"), lines
    assert "warning" not in stdout
    sidecar = json.loads((tmp_path / "o" / "flair_synth.json").read_text())
    assert sidecar["Warnings"] == [lines[0].removeprefix("warning: ")]


def test_outliers_warn(tmp_path, robust_model):
    files = write_subject(tmp_path / "s")
    _rewrite(files["t2"], saturate)
    code, _, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", tmp_path / "flair_synth.nii.gz",
                            "--model", robust_model)
    assert code == 0, stderr
    lines = warning_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith(f"warning: {files['t2']}: 3 outlier voxel(s)"), stderr
    assert "clipped" in lines[0]


def _head_subject(folder: Path) -> dict[str, Path]:
    """The phantom on voxels 7x larger per axis: its foreground holds several litres, as a head does."""
    folder.mkdir(parents=True)
    affine = oblique_affine()
    affine[:3, :3] *= 7.0
    paths = {}
    for name, data in phantom().items():
        if name in ("t1", "t2", "flair"):
            paths[name] = folder / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(data, affine), str(paths[name]))
    return paths


def test_head_warns(tmp_path, robust_model):
    files = _head_subject(tmp_path / "head")
    code, _, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", tmp_path / "flair_synth.nii.gz",
                            "--model", robust_model)
    assert code == 0, stderr
    lines = warning_lines(stderr)
    assert {line.split(": ")[1] for line in lines} == {str(files["t1"]), str(files["t2"])}, stderr
    assert all("looks like a head" in line and "--skull-strip" in line for line in lines), lines


def test_clean_input_prints_no_warning(tmp_path, robust_model):
    files = write_subject(tmp_path / "s")
    code, _, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", tmp_path / "flair_synth.nii.gz",
                            "--model", robust_model)
    assert code == 0 and warning_lines(stderr) == [], stderr


def test_strict_refuses_in_one_line_before_writing(tmp_path, robust_model):
    files = write_subject(tmp_path / "s")
    _rewrite(files["t1"], zscore)
    out = tmp_path / "new" / "deeper" / "flair_synth.nii.gz"
    code, _, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", out, "--model", robust_model,
                            "--strict")
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {files['t1']}: looks z-scored"), stderr
    assert "--strict" in lines[0] and "Traceback" not in stderr
    assert not (tmp_path / "new").exists()  # not even the output folders made for it


def test_strict_passes_clean_input(tmp_path, robust_model):
    files = write_subject(tmp_path / "s")
    out = tmp_path / "flair_synth.nii.gz"
    code, _, stderr = synth("--t1", files["t1"], "--t2", files["t2"], "--out", out, "--model", robust_model,
                            "--strict")
    assert code == 0 and out.is_file() and stderr.strip() == "", stderr


def _dataset(root: Path) -> dict[str, dict[str, Path]]:
    subjects = {}
    for i, name in enumerate(("s01", "s02")):
        files = write_subject(root / name, seed=i)
        files["flair"].unlink()
        files["lesion"].unlink()
        subjects[name] = files
    _rewrite(subjects["s02"]["t1"], zscore)
    return subjects


def test_dataset_mode_warns_per_subject_and_records(tmp_path, robust_model):
    subjects = _dataset(tmp_path / "ds")
    out = tmp_path / "deriv"
    code, _, stderr = synth("--dataset", tmp_path / "ds", "--out", out, "--model", robust_model)
    assert code == 0, stderr
    lines = warning_lines(stderr)
    assert lines and all(line.startswith(f"warning: {subjects['s02']['t1']}: looks z-scored") for line in lines), stderr
    sidecars = {p.parent.parent.name: json.loads(p.read_text()) for p in out.rglob("*_desc-synth_FLAIR.json")}
    assert sidecars["sub-s01"]["Warnings"] == []
    assert sidecars["sub-s02"]["Warnings"] and "looks z-scored" in sidecars["sub-s02"]["Warnings"][0]


def test_dataset_mode_strict_fails_that_subject_only(tmp_path, robust_model):
    _dataset(tmp_path / "ds")
    out = tmp_path / "deriv"
    code, stdout, stderr = synth("--dataset", tmp_path / "ds", "--out", out, "--model", robust_model, "--strict")
    assert code == 1
    written = {p.parent.parent.name for p in out.rglob("*_desc-synth_FLAIR.nii.gz")}
    assert written == {"sub-s01"}
    assert "looks z-scored" in stdout and "--strict" in stdout  # the failed row's reason
