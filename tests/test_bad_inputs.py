"""`mrimpute synth` faced with bad inputs and outputs: one clear error line, exit 1, nothing written or changed.

Each bad case builds its input in tmp_path and runs
`synth --t1 <bad or good> --t2 <good> --out <tmp>/out/flair.nii.gz --model <random model>` (or a variant);
then checks the exit code, that stderr is one `error:` line naming the offending file and the problem, that no
traceback happened, and that no file under tmp_path (nor the model) was created, removed or changed.
The positive tests check voxel types, orientations, --out-dir and --force.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import oblique_affine, phantom, write_subject
from mrimpute.cli.app import app
from mrimpute.errors import InputError
from mrimpute.io.nifti import load_volume

RUNNER = CliRunner(env={"COLUMNS": "200"})
HEADER_FIELDS = ("dim", "pixdim", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                 "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z")


# --------------------------------------------------------------------------------------------- helpers


def run_synth(*args: object) -> tuple[int, str, object]:
    """Run `mrimpute synth ARGS`; returns (exit code, stderr text, the exception that ended it, if not an exit)."""
    result = RUNNER.invoke(app, ["synth", *(str(a) for a in args)])
    crashed = result.exception if not isinstance(result.exception, (SystemExit, type(None))) else None
    return result.exit_code, result.stderr, crashed


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(*roots: Path) -> dict[str, str]:
    """Every entry under the roots (symlinks not followed): sha256 of files, the target of links, '<dir>' of folders."""
    entries: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            entries[str(root)] = sha256(root)
            continue
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                path = Path(folder) / name
                if path.is_symlink():
                    entries[str(path)] = "-> " + os.readlink(path)
                elif path.is_dir():
                    entries[str(path)] = "<dir>"
                else:
                    entries[str(path)] = sha256(path)
    return entries


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write data as NIfTI with qform code 1 and sform code 2 (as the conftest phantom does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = oblique_affine() if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, path)
    return path


def t1_data() -> np.ndarray:
    return phantom()["t1"]


# --------------------------------------------------------------------------------------------- bad cases


@dataclass
class Bad:
    """What a case runs and what the error must say."""

    args: list[object]  # everything after `synth` except --model
    offender: Path  # the file (or folder, or model) the message must name
    problem: str  # regex (case-insensitive) the message must match once paths are removed


@dataclass
class Case:
    name: str
    build: Callable[[Path, dict[str, Path], Path], Bad]
    code: int = 1
    marks: list = field(default_factory=list)


def _standard(root: Path, subject: dict[str, Path], t1: Path | None = None, t2: Path | None = None,
              offender: Path | None = None, problem: str = "", extra: list[object] | None = None) -> Bad:
    t1 = subject["t1"] if t1 is None else t1
    t2 = subject["t2"] if t2 is None else t2
    out = root / "out" / "flair.nii.gz"
    return Bad(["--t1", t1, "--t2", t2, "--out", out, *(extra or [])], offender or t1, problem)


def truncated_gzip(root, subject, model):
    data = subject["t1"].read_bytes()
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2])
    return _standard(root, subject, t1=bad, problem=r"truncated|corrupt")


def not_nifti(root, subject, model):
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.write_text("this is a text file, not a NIfTI image\n" * 20)
    return _standard(root, subject, t1=bad, problem=r"nifti")


def empty_file(root, subject, model):
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.touch()
    return _standard(root, subject, t1=bad, problem=r"empty")


def image_2d(root, subject, model):
    bad = save_nifti(root / "bad" / "t1.nii.gz", t1_data()[:, :, 6])
    return _standard(root, subject, t1=bad, problem=r"3d")


def image_4d(root, subject, model):
    volume = t1_data()
    bad = save_nifti(root / "bad" / "t1.nii.gz", np.stack([volume, volume, volume], axis=-1))
    return _standard(root, subject, t1=bad, problem=r"3d")


def nan_voxels(root, subject, model):
    volume = t1_data()
    volume[20, 18, 3:9] = np.nan
    bad = save_nifti(root / "bad" / "t1.nii.gz", volume)
    return _standard(root, subject, t1=bad, problem=r"\bnan\b")


def inf_voxels(root, subject, model):
    volume = t1_data()
    volume[20, 18, 6] = np.inf
    volume[21, 18, 6] = -np.inf
    bad = save_nifti(root / "bad" / "t1.nii.gz", volume)
    return _standard(root, subject, t1=bad, problem=r"\binf\b")


def all_zero(root, subject, model):
    bad = save_nifti(root / "bad" / "t1.nii.gz", np.zeros_like(t1_data()))
    return _standard(root, subject, t1=bad, problem=r"empty|zero")


def zero_affine(root, subject, model):
    image = nib.Nifti1Image(t1_data(), None)
    image.header.set_sform(np.zeros((4, 4)), code=2)
    image.header.set_qform(None, code=0)
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    nib.save(image, bad)
    assert not np.linalg.det(nib.load(bad).affine[:3, :3])  # the case is what it says
    return _standard(root, subject, t1=bad, problem=r"singular")


def other_shape(root, subject, model):
    bad = write_subject(root / "other", shape=(40, 36, 10))["t2"]
    return _standard(root, subject, t2=bad, offender=bad, problem=r"grid|shape")


def shifted_affine(root, subject, model):
    affine = oblique_affine()
    affine[:3, 3] += [5.0, 0.0, 0.0]
    bad = save_nifti(root / "bad" / "t2.nii.gz", phantom()["t2"], affine)
    return _standard(root, subject, t2=bad, offender=bad, problem=r"affine|grid")


def missing_file(root, subject, model):
    return _standard(root, subject, t1=root / "nowhere" / "t1.nii.gz", problem=r"not found|no such file|missing")


def modality_the_model_lacks(root, subject, model):
    return _standard(root, subject, offender=model, problem=r"\bpd\b", extra=["--pd", subject["t2"]])


def existing_output(root, subject, model):
    (root / "out" / "flair.nii.gz").write_bytes(b"an earlier result the user wants to keep")
    return _standard(root, subject, offender=root / "out" / "flair.nii.gz", problem=r"exists|--force")


def output_folder_missing(root, subject, model):
    out = root / "nowhere" / "flair.nii.gz"
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out", out], out, r"does not exist|no such")


def out_dir_missing(root, subject, model):
    out_dir = root / "nowhere"
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out-dir", out_dir], out_dir, r"does not exist|no such")


def output_folder_read_only(root, subject, model):
    folder = root / "out"
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions
        folder.chmod(0o755)
        pytest.skip("running with privileges that can write to a read-only folder")
    return _standard(root, subject, offender=folder / "flair.nii.gz", problem=r"not writable|permission|read-only")


def output_is_an_input(root, subject, model):
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out", subject["t2"], "--target", "flair", "--force"],
               subject["t2"], r"input")


def symlink_loop(root, subject, model):
    loop = root / "bad" / "t1.nii.gz"
    loop.parent.mkdir()
    os.symlink(loop, loop)
    return _standard(root, subject, t1=loop, problem=r"loop|symbolic link")



CASES = [
    Case("truncated-gzip", truncated_gzip),
    Case("not-nifti", not_nifti),
    Case("empty-file", empty_file),
    Case("2d-image", image_2d),
    Case("4d-image-3-volumes", image_4d),
    Case("nan-voxels", nan_voxels),
    Case("inf-voxels", inf_voxels),
    Case("all-zero-volume", all_zero),
    Case("zero-affine", zero_affine),
    Case("grid-shape-differs", other_shape),
    Case("grid-affine-shifted", shifted_affine),
    Case("missing-file", missing_file),
    Case("modality-model-lacks", modality_the_model_lacks),
    Case("existing-output-no-force", existing_output),
    Case("output-folder-missing", output_folder_missing),
    Case("out-dir-missing", out_dir_missing),
    Case("output-folder-read-only", output_folder_read_only),
    Case("output-is-an-input", output_is_an_input),
    Case("symlink-loop", symlink_loop),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    try:
        bad = case.build(tmp_path, subject, random_model)
        before = checksums(tmp_path, random_model)
        out_before = sorted(os.listdir(tmp_path / "out"))
        code, stderr, crash = run_synth(*bad.args, "--model", random_model)
        after = checksums(tmp_path, random_model)
    finally:
        (tmp_path / "out").chmod(0o755)

    assert crash is None, f"uncaught {type(crash).__name__}: {crash} (the CLI would print a traceback)"
    assert code == case.code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"the error should be one line:\n{stderr}"
    message = lines[0]
    assert message.startswith("error: "), message
    assert message.startswith(f"error: {bad.offender}: "), f"the message should name {bad.offender} first: {message}"
    scrubbed = message.replace(str(bad.offender), "<file>").replace(str(tmp_path), "<tmp>")
    scrubbed = scrubbed.replace(str(random_model), "<model>")
    assert re.search(bad.problem, scrubbed, re.IGNORECASE), f"expected /{bad.problem}/ in: {message}"
    assert after == before, "files were created, removed or changed (inputs, an existing output, the model)"
    assert sorted(os.listdir(tmp_path / "out")) == out_before, "an output or temporary file was left behind"


def test_symlink_loop_is_not_reported_as_missing(tmp_path: Path) -> None:
    loop = tmp_path / "t1.nii.gz"
    os.symlink(loop, loop)
    with pytest.raises(InputError) as error:
        load_volume(loop)
    assert "not found" not in str(error.value) and re.search(r"loop|symbolic link", str(error.value), re.IGNORECASE)


# --------------------------------------------------------------------------------------------- good inputs


def assert_same_grid_header(written: nib.Nifti1Image, reference: nib.Nifti1Image) -> None:
    assert written.shape == reference.shape
    assert np.array_equal(written.affine, reference.affine)
    assert np.array_equal(written.get_qform(), reference.get_qform())
    assert np.array_equal(written.get_sform(), reference.get_sform())
    for name in HEADER_FIELDS:
        assert np.array_equal(written.header[name], reference.header[name]), name


def write_typed(folder: Path, kind: str) -> dict[str, Path]:
    """t1 and t2 of the phantom stored as `kind`: int8, uint16, float64, or int16 with a scl_slope."""
    volumes, paths = phantom(), {}
    for name in ("t1", "t2"):
        data = volumes[name]
        if kind == "int8":
            data = np.round(data / data.max() * 120).astype(np.int8)
        elif kind == "uint16":
            data = np.round(data / data.max() * 4000).astype(np.uint16)
        elif kind == "float64":
            data = data.astype(np.float64)
        image = nib.Nifti1Image(data * (100 if kind == "int16-scaled" else 1), oblique_affine())
        if kind == "int16-scaled":  # beyond int16's range, so nibabel stores int16 with a slope
            image.set_data_dtype(np.int16)
        image.set_qform(oblique_affine(), code=1)
        image.set_sform(oblique_affine(), code=2)
        paths[name] = folder / f"{name}.nii.gz"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(image, paths[name])
    return paths


@pytest.mark.parametrize("kind", ["int8", "uint16", "float64", "int16-scaled"])
def test_voxel_types_are_read(kind: str, random_model: Path, tmp_path: Path) -> None:
    inputs = write_typed(tmp_path / "subject", kind)
    reference = nib.load(inputs["t1"])
    expected = {"int8": np.int8, "uint16": np.uint16, "float64": np.float64, "int16-scaled": np.int16}[kind]
    assert reference.get_data_dtype() == expected
    if kind == "int16-scaled":
        assert reference.dataobj.slope not in (0.0, 1.0)
    out = tmp_path / "out" / "flair.nii.gz"
    out.parent.mkdir()
    code, stderr, crash = run_synth("--t1", inputs["t1"], "--t2", inputs["t2"], "--out", out, "--model", random_model)
    assert crash is None and code == 0, stderr
    written = nib.load(out)
    assert written.get_data_dtype() == np.float32
    assert np.asanyarray(written.dataobj).dtype == np.float32
    assert_same_grid_header(written, reference)
    assert np.isfinite(written.get_fdata()).all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["flair.nii.gz"]


@pytest.mark.parametrize("codes", ["LPS", "RAS", "LAS"])
def test_output_keeps_the_first_inputs_header(codes: str, random_model: Path, tmp_path: Path) -> None:
    inputs = write_subject(tmp_path / "subject", codes=codes)
    reference = nib.load(inputs["t1"])
    assert "".join(nib.aff2axcodes(reference.affine)) == codes
    # t1c: the seeded random model's flair decoder outputs all zeros (ReLU head), which would hide a background bug
    out = tmp_path / "out" / "t1c.nii.gz"
    out.parent.mkdir()
    before = checksums(tmp_path / "subject")
    code, stderr, crash = run_synth("--t1", inputs["t1"], "--t2", inputs["t2"], "--out", out, "--model", random_model)
    assert crash is None and code == 0, stderr
    assert checksums(tmp_path / "subject") == before
    written = nib.load(out)
    assert_same_grid_header(written, reference)
    data = np.asanyarray(written.dataobj)
    background = (np.asanyarray(reference.dataobj) == 0) & (np.asanyarray(nib.load(inputs["t2"]).dataobj) == 0)
    assert background.any() and (~background).any()
    assert np.all(data[background] == 0)
    assert np.isfinite(data).all()
    assert np.any(data[~background] != 0), "an all-zero output cannot show whether the background is kept"


def test_out_dir_writes_every_missing_contrast(subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "synth"
    out_dir.mkdir()
    code, stderr, crash = run_synth("--t1", subject["t1"], "--t2", subject["t2"], "--out-dir", out_dir,
                                    "--model", random_model)
    assert crash is None and code == 0, stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["flair.nii.gz", "t1c.nii.gz"]
    reference = nib.load(subject["t1"])
    for path in out_dir.iterdir():
        written = nib.load(path)
        assert written.get_data_dtype() == np.float32
        assert_same_grid_header(written, reference)


def test_force_overwrites_an_existing_output(subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "flair.nii.gz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    inputs_before = checksums(tmp_path / "subject")
    code, stderr, crash = run_synth("--t1", subject["t1"], "--t2", subject["t2"], "--out", out,
                                    "--model", random_model, "--force")
    assert crash is None and code == 0, stderr
    assert checksums(tmp_path / "subject") == inputs_before
    assert sorted(p.name for p in out.parent.iterdir()) == ["flair.nii.gz"]
    written = nib.load(out)
    assert written.get_data_dtype() == np.float32
    assert_same_grid_header(written, nib.load(subject["t1"]))
