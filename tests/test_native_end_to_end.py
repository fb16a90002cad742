"""Raw scans on their own grids -> `mrimpute preprocess` -> `mrimpute synth --native-ref` with the shipped model ->
the synthesis on one raw scan's grid, with that scan's header; and every refusal of --native-ref."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_preprocess import _moved_and_resampled
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.io.checksum import sha256_file
from mrimpute.phantom import write_subject

from conftest import one_line_error

RUNNER = CliRunner(env={"COLUMNS": "200"})
SHAPE = (48, 44, 16)
NOT_COMPARED = {"datatype", "bitpix", "scl_slope", "scl_inter", "vox_offset",  # the voxel type may change
                "cal_min", "cal_max", "descrip"}  # a synthesis states its own display range and what it is


def _motion_t2() -> np.ndarray:
    """Another rigid motion (RAS): a rotation about the S axis and a shift."""
    angle = np.deg2rad(-5.0)
    motion = np.eye(4)
    motion[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    motion[:3, 3] = [-3.0, 2.0, -1.5]
    return motion


def _as_a_scanner_wrote_it(path: Path) -> None:
    """Header fields a scanner's converter sets and nibabel would not: unused pixdim 0, a description."""
    image = nib.load(path)
    header = image.header.copy()
    header["pixdim"][4:] = 0
    header["descrip"] = b"raw scan"
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), None, header), path)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A raw session: FLAIR on the phantom's oblique grid, T1 (int16, stored LPS, qform/sform codes 2/1, a scanner's
    header fields) and T2 on other grids and displaced by known motions; preprocessed onto the FLAIR with the CLI."""
    root = tmp_path_factory.mktemp("native")
    phantom = write_subject(root / "phantom", shape=SHAPE)
    raw = root / "raw"
    raw.mkdir()
    shutil.copy(phantom["flair"], raw / "flair.nii.gz")
    _moved_and_resampled(phantom["t1"], raw / "t1.nii.gz", lps=True, dtype=np.int16, codes=(2, 1))
    _as_a_scanner_wrote_it(raw / "t1.nii.gz")
    _moved_and_resampled(phantom["t2"], raw / "t2.nii.gz", voxel_mm=(0.9, 1.0, 2.2), motion=_motion_t2())
    result = RUNNER.invoke(app, ["preprocess", "--ref", f"flair={raw / 'flair.nii.gz'}", "--t1", str(raw / "t1.nii.gz"),
                                 "--t2", str(raw / "t2.nii.gz"), "--out-dir", str(root / "pre"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    return {"root": root, "phantom": phantom, "raw": raw, "pre": root / "pre"}


def _assert_same_header(path: Path, native_path: Path) -> None:
    image, native = nib.load(path), nib.load(native_path)
    assert image.shape == native.shape
    assert np.array_equal(image.affine, native.affine)
    assert np.array_equal(image.get_qform(), native.get_qform())
    assert np.array_equal(image.get_sform(), native.get_sform())
    assert nib.aff2axcodes(image.affine) == nib.aff2axcodes(native.affine)
    for key in native.header:
        if key not in NOT_COMPARED:
            assert np.array_equal(np.asarray(image.header[key]), np.asarray(native.header[key])), key
    assert image.get_data_dtype() == np.float32


def _synth(session: dict, *extra: str) -> object:
    pre = session["pre"]
    return RUNNER.invoke(app, ["synth", "--t1", str(pre / "t1.nii.gz"), "--t2", str(pre / "t2.nii.gz"),
                               "--threads", "1", *extra])


def test_synth_on_the_native_grid_of_a_raw_input(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "flair_on_t1.nii.gz"
    result = _synth(session, "--out", str(out), "--target", "flair", "--native-ref", "t1")
    assert result.exit_code == 0, result.output
    _assert_same_header(out, session["raw"] / "t1.nii.gz")
    # the same synthesis on the preprocessed (FLAIR) grid, moved onto the raw T1 grid with the KNOWN motion
    on_grid = tmp_path / "flair_on_grid.nii.gz"
    assert _synth(session, "--out", str(on_grid), "--target", "flair").exit_code == 0
    expected_path = tmp_path / "expected.nii.gz"
    _moved_and_resampled(on_grid, expected_path, lps=True)
    native, expected = nib.load(out).get_fdata(), nib.load(expected_path).get_fdata()
    assert native.shape == expected.shape
    both = (native > 0) & (expected > 0)
    assert both.sum() > 0.8 * (expected > 0).sum()
    assert np.corrcoef(native[both], expected[both])[0, 1] > 0.9
    # nothing on the preprocessed grid was left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.nii.gz", "flair_on_grid.json",
                                                          "flair_on_grid.nii.gz", "flair_on_t1.json",
                                                          "flair_on_t1.nii.gz"]  # each synthesis has its sidecar


def test_out_dir_reference_modality_and_overwrite_rules(session: dict, tmp_path: Path) -> None:
    raw_before = {p.name: sha256_file(p) for p in session["raw"].iterdir()}
    args = ("--out-dir", str(tmp_path), "--native-ref", "t2", "--manifest", str(session["pre"] / "manifest.json"))
    result = _synth(session, *args)
    assert result.exit_code == 0, result.output
    for name in ("t1c", "flair"):
        _assert_same_header(tmp_path / f"{name}_synth.nii.gz", session["raw"] / "t2.nii.gz")
    again = _synth(session, *args)
    assert again.exit_code == 1 and "use --force" in again.output and "Traceback" not in again.output
    assert _synth(session, *args, "--force").exit_code == 0
    # the reference modality (identity transform) works too
    out = tmp_path / "on_flair.nii.gz"
    assert _synth(session, "--out", str(out), "--target", "flair", "--native-ref", "flair").exit_code == 0
    _assert_same_header(out, session["raw"] / "flair.nii.gz")
    assert {p.name: sha256_file(p) for p in session["raw"].iterdir()} == raw_before



def test_missing_and_unreadable_manifest(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    one_line_error(_synth(session, "--out", str(out), "--native-ref", "t1", "--manifest", str(tmp_path / "no.json")),
                    "no.json", "manifest not found")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line_error(_synth(session, "--out", str(out), "--native-ref", "t1", "--manifest", str(bad)),
                    "bad.json", "not a readable preprocess manifest")
    bad.write_text("[1, 2]")
    one_line_error(_synth(session, "--out", str(out), "--native-ref", "t1", "--manifest", str(bad)),
                    "bad.json", "not a preprocess manifest")
    assert not out.exists()


def test_modality_not_in_manifest(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    one_line_error(_synth(session, "--out", str(out), "--native-ref", "t1c"), "manifest.json", "has no input 't1c'")
    assert not out.exists()


def test_raw_scan_changed_since_preprocessing(session: dict, tmp_path: Path) -> None:
    pre = tmp_path / "pre"
    shutil.copytree(session["pre"], pre)
    raw_copy = tmp_path / "t1_raw.nii.gz"
    shutil.copy(session["raw"] / "t1.nii.gz", raw_copy)
    manifest = json.loads((pre / "manifest.json").read_text())
    manifest["inputs"]["t1"].update(path=str(raw_copy), sha256=sha256_file(raw_copy))
    (pre / "manifest.json").write_text(json.dumps(manifest))
    image = nib.load(raw_copy)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[::-1].copy(), image.affine, image.header), raw_copy)
    out = tmp_path / "flair.nii.gz"
    result = RUNNER.invoke(app, ["synth", "--t1", str(pre / "t1.nii.gz"), "--t2", str(pre / "t2.nii.gz"),
                                 "--out", str(out), "--native-ref", "t1", "--threads", "1"])
    one_line_error(result, "t1_raw.nii.gz", "changed since it was preprocessed")
    assert not out.exists()


def test_inputs_that_were_not_preprocessed(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    phantom = session["phantom"]
    manifest = session["pre"] / "manifest.json"
    result = RUNNER.invoke(app, ["synth", "--t1", str(phantom["t1"]), "--t2", str(phantom["t2"]), "--out", str(out),
                                 "--native-ref", "t1", "--manifest", str(manifest)])
    one_line_error(result, "t1.nii.gz", "not an output of the preprocessing")
    # without --manifest the default (manifest.json beside the first input) does not exist
    result = RUNNER.invoke(app, ["synth", "--t1", str(phantom["t1"]), "--out", str(out), "--native-ref", "t1"])
    one_line_error(result, "manifest.json", "manifest not found")
    assert not out.exists()


def test_option_combinations_refused(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    manifest = str(session["pre"] / "manifest.json")
    one_line_error(_synth(session, "--out", str(out), "--manifest", manifest), "--manifest applies only with")
    one_line_error(_synth(session, "--out", str(out), "--native-ref", "t1", "--uncertainty",
                           str(tmp_path / "sd.nii.gz")), "--native-ref t1", "--uncertainty")
    result = RUNNER.invoke(app, ["synth", "--dataset", str(tmp_path), "--native-ref", "t1"])
    one_line_error(result, "--native-ref")
    assert not out.exists()
