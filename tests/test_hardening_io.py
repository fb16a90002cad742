"""Issue 17 hardening of reading, writing and model loading: header checks before any voxel is read, NIfTI-1
pairs, small volumes and brains, stale temporary files, exclusive commits, malformed checkpoints, NaN weights and
the thread bound. The synth-level cases (one error line, exit 1, nothing changed) are in the bad-input corpus."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.errors import CheckpointError, InputError, OutputError
from mrimpute.io import atomic
from mrimpute.io.atomic import (
    STALE_TEMPORARY_SECONDS,
    check_output_extension,
    check_writable,
    refuse_overwrite,
    remove_stale_temporaries,
    write_atomically,
)
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.io.nifti import MIN_BRAIN_VOXELS, load_volume, require_brain, require_finite
from mrimpute.runtime.device import MAX_THREADS, check_threads, set_threads
from mrimpute.runtime.model_loading import load_model

from conftest import oblique_affine, phantom

RUNNER = CliRunner(env={"COLUMNS": "200"})


def save(path: Path, data: np.ndarray, klass: type = nib.Nifti1Image) -> Path:
    image = klass(data, oblique_affine())
    if hasattr(image, "set_qform"):
        image.set_qform(oblique_affine(), code=1)
        image.set_sform(oblique_affine(), code=2)
    nib.save(image, path)
    return path


# --------------------------------------------------------------------------------------------- reading


def test_nifti1_pair_is_read_and_synthesised_from(random_model: Path, tmp_path: Path) -> None:
    volumes = phantom()
    t1 = save(tmp_path / "t1.img", volumes["t1"], nib.Nifti1Pair)
    t2 = save(tmp_path / "t2.nii.gz", volumes["t2"])
    single = load_volume(save(tmp_path / "single" / "t1.nii.gz", volumes["t1"]) if (tmp_path / "single").mkdir()
                         is None else None)
    assert (tmp_path / "t1.hdr").is_file()
    for given in (t1, tmp_path / "t1.hdr"):
        volume = load_volume(given)
        assert np.array_equal(volume.data, single.data) and np.array_equal(volume.affine, single.affine)
    out = tmp_path / "out" / "flair.nii.gz"
    out.parent.mkdir()
    result = RUNNER.invoke(app, ["synth", "--t1", str(t1), "--t2", str(t2), "--out", str(out),
                                 "--model", str(random_model), "--threads", "1"])
    assert result.exit_code == 0, result.output
    written, reference = nib.load(out), nib.load(t1)
    assert isinstance(written, nib.Nifti1Image) and written.header["magic"] == b"n+1"
    assert np.array_equal(written.affine, reference.affine)
    assert np.array_equal(written.get_sform(coded=True)[0], reference.get_sform(coded=True)[0])
    assert sorted(p.name for p in out.parent.iterdir()) == ["flair.json", "flair.nii.gz"]  # the output and its sidecar


def test_analyze_image_without_nifti_magic_is_refused(tmp_path: Path) -> None:
    bad = save(tmp_path / "t1.img", phantom()["t1"], nib.AnalyzeImage)
    with pytest.raises(InputError, match=r"not a NIfTI file \(\w*AnalyzeImage\)"):
        load_volume(bad)


def test_header_errors_are_one_line_and_nibabel_stays_quiet(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = save(tmp_path / "t1.nii", phantom()["t1"])
    content = bytearray(path.read_bytes())
    content[70:72] = (9999).to_bytes(2, "little")
    path.write_bytes(bytes(content))
    with pytest.raises(InputError) as error:
        load_volume(path)
    assert str(error.value).startswith(f"{path}: malformed NIfTI header") and "\n" not in str(error.value)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    import logging
    assert not logging.getLogger("nibabel.global").disabled  # restored after the read


def test_header_size_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header declaring too much is refused without touching the voxel data."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.float32)
    header.set_data_offset(352)
    path = tmp_path / "bomb.nii"
    path.write_bytes(header.binaryblock + bytes(4))
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__",
                        lambda *a, **k: pytest.fail("voxel data was read"))
    with pytest.raises(InputError, match=r"536870912 voxels; at most 268435456"):
        load_volume(path)


@pytest.mark.parametrize("shape", [(40, 36, 1), (40, 36, 3), (16, 16, 2)])
def test_thin_slabs_are_volumes(shape: tuple[int, ...], tmp_path: Path) -> None:
    data = np.ones(shape, dtype=np.float32)
    assert load_volume(save(tmp_path / "slab.nii.gz", data)).shape == shape


@pytest.mark.parametrize("shape", [(40, 15, 15), (2, 2, 2), (1, 1, 1), (15, 300, 3)])
def test_volumes_under_16_voxels_on_two_axes_are_refused(shape: tuple[int, ...], tmp_path: Path) -> None:
    path = save(tmp_path / "small.nii.gz", np.ones(shape, dtype=np.float32))
    with pytest.raises(InputError, match="too small"):
        load_volume(path)


def test_uncompressed_file_length_is_checked(tmp_path: Path) -> None:
    whole = save(tmp_path / "whole.nii", phantom()["t1"])
    assert load_volume(whole).shape == (40, 36, 12)
    pair = save(tmp_path / "pair.img", phantom()["t1"], nib.Nifti1Pair)
    pair.write_bytes(pair.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"pair\.img: file is shorter \(69116 bytes\) than its header declares "
                                         r"\(69120 bytes\)"):
        load_volume(tmp_path / "pair.hdr")


def test_integer_range_and_negative_slope(tmp_path: Path) -> None:
    data = np.full((20, 20, 20), 2**31, dtype=np.int64)
    image = nib.Nifti1Image(data, np.eye(4), dtype=np.int64)
    nib.save(image, tmp_path / "big.nii.gz")
    with pytest.raises(InputError, match=r"integer voxel value 2147483648 is outside the 32-bit range"):
        load_volume(tmp_path / "big.nii.gz")
    data[:] = -(2**31)
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=np.int64), tmp_path / "low.nii.gz")
    assert load_volume(tmp_path / "low.nii.gz").data.min() == -(2**31)
    data[:] = 2**31 - 1
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=np.int64), tmp_path / "fits.nii.gz")
    assert load_volume(tmp_path / "fits.nii.gz").data.max() > 2e9
    scaled = nib.Nifti1Image(np.ones((20, 20, 20), dtype=np.int16), np.eye(4))
    scaled.header.set_slope_inter(-2.0, 0.0)
    nib.save(scaled, tmp_path / "negative.nii")
    with pytest.raises(InputError, match=r"negative scl_slope \(-2\)"):
        load_volume(tmp_path / "negative.nii")


def test_special_files_are_not_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "t1.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"not a regular file"):
        load_volume(fifo)  # never blocks on opening the FIFO
    with pytest.raises(InputError, match=r"^/dev/zero: not a regular file"):
        load_volume("/dev/zero")


def test_brain_size_and_finite_outputs(tmp_path: Path) -> None:
    data = np.zeros((20, 20, 20), dtype=np.float32)
    volume = load_volume(save(tmp_path / "empty.nii.gz", data))
    with pytest.raises(InputError, match="every voxel is zero"):
        require_brain(volume)
    data.reshape(-1)[:MIN_BRAIN_VOXELS - 1] = 1.0
    with pytest.raises(InputError, match=r"only 63 nonzero voxels; a brain needs at least 64"):
        require_brain(load_volume(save(tmp_path / "small.nii.gz", data)))
    data.reshape(-1)[:MIN_BRAIN_VOXELS] = 1.0
    require_brain(load_volume(save(tmp_path / "enough.nii.gz", data)))
    require_finite(data, tmp_path / "out.nii.gz")
    data[0, 0, 0] = np.nan
    with pytest.raises(OutputError, match=r"out\.nii\.gz: the result has 1 NaN or Inf voxels"):
        require_finite(data, tmp_path / "out.nii.gz")


# --------------------------------------------------------------------------------------------- writing


def _temporary(path: Path, age: float) -> Path:
    tmp = path.parent / f".{path.name}.ab12cd_9.tmp.nii.gz"
    tmp.write_bytes(b"partial")
    os.utime(tmp, (time.time() - age, time.time() - age))
    return tmp


def test_stale_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    stale = _temporary(out, STALE_TEMPORARY_SECONDS + 60)
    other = tmp_path / ".t1.nii.gz.ab12cd_9.tmp.nii.gz"  # another output's: left alone
    other.write_bytes(b"x")
    os.utime(other, (0, 0))
    write_atomically(out, lambda tmp: tmp.write_bytes(b"done"))
    assert out.read_bytes() == b"done" and not stale.exists() and other.exists()
    fresh = _temporary(out, 10)  # a write still running: kept
    assert remove_stale_temporaries(out) == [] and fresh.exists()


def test_a_killed_write_leaves_a_temporary_that_a_later_write_removes(tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    script = ("import sys, time; from pathlib import Path; from mrimpute.io.atomic import write_atomically\n"
              "def writer(tmp):\n    tmp.write_bytes(b'partial'); print('writing', flush=True); time.sleep(60)\n"
              f"write_atomically(Path({str(out)!r}), writer)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".flair.nii.gz.") and not out.exists()
    write_atomically(out, lambda tmp: tmp.write_bytes(b"done"))
    assert left[0].exists()  # young: could be a concurrent write
    os.utime(left[0], (time.time() - STALE_TEMPORARY_SECONDS - 1,) * 2)
    write_atomically(out, lambda tmp: tmp.write_bytes(b"again"), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.nii.gz"] and out.read_bytes() == b"again"


@pytest.mark.parametrize("links", [True, False])
def test_concurrent_writer_cannot_be_overwritten_without_force(links: bool, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not links:  # a file system without hard links: the exclusive create takes over
        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(atomic.os, "link", no_link)
    out = tmp_path / "flair.nii.gz"

    def racing_writer(tmp: Path) -> None:
        tmp.write_bytes(b"second run")
        out.write_bytes(b"first run")  # the other run commits while this one writes

    with pytest.raises(OutputError, match=r"output exists \(another run wrote it meanwhile\)"):
        write_atomically(out, racing_writer)
    assert out.read_bytes() == b"first run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.nii.gz"]
    write_atomically(out, lambda tmp: tmp.write_bytes(b"forced"), force=True)
    assert out.read_bytes() == b"forced"


def test_dangling_symlink_counts_as_an_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "flair.nii.gz"
    os.symlink(tmp_path / "nowhere.nii.gz", out)
    with pytest.raises(OutputError, match="output exists"):
        check_writable(out, force=False)
    with pytest.raises(OutputError, match="output exists"):
        refuse_overwrite([out], [], force=False)
    write_atomically(out, lambda tmp: tmp.write_bytes(b"forced"), force=True)
    assert not out.is_symlink() and out.read_bytes() == b"forced"
    assert not (tmp_path / "nowhere.nii.gz").exists()


@pytest.mark.parametrize("name", ["flair.nii", "flair.nii.gz", "FLAIR.NII.GZ", "sub.x.nii.gz"])
def test_nifti_extensions_are_accepted(name: str) -> None:
    check_output_extension(Path("/out") / name)


@pytest.mark.parametrize("name, got", [("flair.txt", ".txt"), ("flair", "no extension"), ("flair.img", ".img"),
                                       ("flair.hdr", ".hdr"), ("flair.mgz", ".mgz"), ("flair.nii.bz2", ".nii.bz2")])
def test_other_extensions_are_refused(name: str, got: str) -> None:
    with pytest.raises(OutputError) as error:
        check_output_extension(Path("/out") / name)
    assert str(error.value) == f"/out/{name}: output must be a .nii or .nii.gz file (got {got})"


# --------------------------------------------------------------------------------------------- models


def _edited(random_model: Path, tmp_path: Path, edit) -> Path:
    payload = torch.load(random_model, map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(format_version="1"), "format_version is a str, not an integer"),
    (lambda p: p.update(format_version=True), "format_version is a bool, not an integer"),
    (lambda p: p.pop("config"), "config is missing, not a mapping"),
    (lambda p: p.update(config="t1->flair"), "config is a str, not a mapping"),
    (lambda p: p.update(metadata=["x"]), "metadata is a list, not a mapping"),
    (lambda p: p.update(state_dict=[1, 2]), "state_dict is a list, not a mapping"),
])
def test_malformed_checkpoint_metadata_is_one_line(edit, message: str, random_model: Path, tmp_path: Path) -> None:
    path = _edited(random_model, tmp_path, edit)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == f"{path}: malformed model file ({message})"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_name_the_first_bad_tensor(value: float, random_model: Path, tmp_path: Path) -> None:
    names = list(torch.load(random_model, map_location="cpu", weights_only=True)["state_dict"])

    def poison(payload: dict) -> None:
        for name in names[3:5]:
            payload["state_dict"][name].view(-1)[0] = value

    path = _edited(random_model, tmp_path, poison)
    with pytest.raises(CheckpointError) as error:
        load_model(path, torch.device("cpu"))
    assert str(error.value) == f"{path}: corrupt weights: tensor '{names[3]}' holds 1 NaN or Inf values"
    load_model(random_model, torch.device("cpu"))  # the untouched model loads


def test_thread_count_is_bounded() -> None:
    check_threads(0)
    check_threads(MAX_THREADS)
    with pytest.raises(InputError, match=r"^--threads 257: at most 256 threads"):
        check_threads(MAX_THREADS + 1)
    with pytest.raises(InputError, match=r"^--threads 10000: at most 256"):
        set_threads(10000)
    with pytest.raises(InputError, match=r"^--threads -1: give 0"):
        set_threads(-1)
    assert torch.get_num_threads() <= MAX_THREADS
