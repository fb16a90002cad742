"""`mrimpute synth` faced with bad inputs and outputs: one clear error line, exit 1, nothing written or changed.

Each bad case builds its input in tmp_path and runs
`synth --t1 <bad or good> --t2 <good> --out <tmp>/out/flair.nii.gz --model <random model>` (or a variant);
then checks the exit code, that stderr is one `error:` line naming the offending file and the problem, that no
traceback happened, and that no file under tmp_path (nor the model) was created, removed or changed.
The cases themselves (builders, phantom, checksums) live in benchmarks/bad_input_corpus.py, which the shipped
corpus script (`python benchmarks/bad_input_corpus.py`) runs through the real command for the release note.
The positive tests check voxel types, orientations, --out-dir and --force.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

# The case builders live in benchmarks/bad_input_corpus.py, which the shipped corpus script runs too: one definition.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bad_input_corpus import CASES, Case, Skip, checksums, oblique_affine, phantom, release_folder, simulate_full_disk  # noqa: E402

from mrimpute.cli.app import app  # noqa: E402
from mrimpute.errors import InputError  # noqa: E402
from mrimpute.io.nifti import load_volume  # noqa: E402

from conftest import assert_same_header, write_subject  # noqa: E402

RUNNER = CliRunner(env={"COLUMNS": "200"})


# --------------------------------------------------------------------------------------------- helpers


def run_synth(*args: object) -> tuple[int, str, object]:
    """Run `mrimpute synth ARGS`; returns (exit code, stderr text, the exception that ended it, if not an exit)."""
    result = RUNNER.invoke(app, ["synth", *(str(a) for a in args)])
    crashed = result.exception if not isinstance(result.exception, (SystemExit, type(None))) else None
    return result.exit_code, result.stderr, crashed


# --------------------------------------------------------------------------------------------- bad cases


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    try:
        try:
            bad = case.build(tmp_path, subject, random_model)
        except Skip as reason:
            pytest.skip(str(reason))
        before = checksums(tmp_path, random_model)
        out_before = sorted(os.listdir(tmp_path / "out"))
        with pytest.MonkeyPatch.context() as patch:
            if bad.full_disk:
                simulate_full_disk(patch.setattr)
            code, stderr, crash = run_synth(*bad.args, "--model", bad.model or random_model)
        after = checksums(tmp_path, random_model)
    finally:
        release_folder(tmp_path / "out")  # chattr -i (if root made it immutable) and chmod 755

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


def test_disk_full_simulation_writes_before_failing(subject: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """The simulated ENOSPC comes after a temporary file was really written, so 'nothing left behind' is tested."""
    from mrimpute.errors import OutputError
    from mrimpute.io import atomic

    written: list[int] = []
    simulate_full_disk(monkeypatch.setattr)
    target = tmp_path / "out.txt"
    with pytest.raises(OutputError, match="No space left on device"):
        atomic.write_atomically(target, lambda tmp: written.append(tmp.write_text("partial")))
    assert written == [7] and not target.exists() and sorted(os.listdir(tmp_path)) == ["subject"]


def test_symlink_loop_is_not_reported_as_missing(tmp_path: Path) -> None:
    loop = tmp_path / "t1.nii.gz"
    os.symlink(loop, loop)
    with pytest.raises(InputError) as error:
        load_volume(loop)
    assert "not found" not in str(error.value) and re.search(r"loop|symbolic link", str(error.value), re.IGNORECASE)


# --------------------------------------------------------------------------------------------- good inputs


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
    assert_same_header(written, reference)
    assert np.isfinite(written.get_fdata()).all()
    # the output and its sidecar, nothing partial
    assert sorted(p.name for p in out.parent.iterdir()) == ["flair.json", "flair.nii.gz"]


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
    assert_same_header(written, reference)
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
    # named as synthetic, never as a real scan (issue 18)
    assert sorted(p.name for p in out_dir.glob("*.nii.gz")) == ["flair_synth.nii.gz", "t1c_synth.nii.gz"]
    reference = nib.load(subject["t1"])
    for path in out_dir.glob("*.nii.gz"):
        written = nib.load(path)
        assert written.get_data_dtype() == np.float32
        assert_same_header(written, reference)


def test_force_overwrites_an_existing_output(subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "flair.nii.gz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    inputs_before = checksums(tmp_path / "subject")
    code, stderr, crash = run_synth("--t1", subject["t1"], "--t2", subject["t2"], "--out", out,
                                    "--model", random_model, "--force")
    assert crash is None and code == 0, stderr
    assert checksums(tmp_path / "subject") == inputs_before
    # the output and its sidecar, nothing partial
    assert sorted(p.name for p in out.parent.iterdir()) == ["flair.json", "flair.nii.gz"]
    written = nib.load(out)
    assert written.get_data_dtype() == np.float32
    assert_same_header(written, nib.load(subject["t1"]))
