"""`mrimpute synth --dataset ROOT`: discovery of BIDS / plain / BraTS subjects, the plan, BIDS-derivative outputs with
provenance sidecars, tolerance of a failing subject, resumability, and inputs left unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute import __version__
from mrimpute.cli.app import app
from mrimpute.data.bids import discover_dataset
from mrimpute.errors import InputError
from mrimpute.pipeline.cohort import run_cohort

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})
SHAPE = (24, 20, 4)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_sums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def place(phantom: dict[str, Path], modality: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(phantom[modality], target)
    return target


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """sub-01 (T1w in two runs, T2w), sub-02/ses-a (T1w, ce-gd T1w, FLAIR, dwi), sub-03 (corrupt T1w, T2w),
    sub-04 (dwi only), plus a derivatives/ and a hidden folder that must be ignored."""
    root = tmp_path / "bids"
    a = write_subject(tmp_path / "phantoms" / "a", seed=1, shape=SHAPE)
    b = write_subject(tmp_path / "phantoms" / "b", seed=2, shape=SHAPE)
    place(a, "t1", root / "sub-01/anat/sub-01_run-1_T1w.nii.gz")
    place(a, "t1", root / "sub-01/anat/sub-01_run-2_T1w.nii.gz")
    place(a, "t2", root / "sub-01/anat/sub-01_T2w.nii.gz")
    (root / "sub-01/anat/sub-01_T2w.json").write_text("{}")
    place(b, "t1", root / "sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz")
    place(b, "t1c", root / "sub-02/ses-a/anat/sub-02_ses-a_ce-gd_T1w.nii.gz")
    place(b, "flair", root / "sub-02/ses-a/anat/sub-02_ses-a_FLAIR.nii.gz")
    place(b, "t2", root / "sub-02/ses-a/dwi/sub-02_ses-a_dwi.nii.gz")
    corrupt = root / "sub-03/anat/sub-03_T1w.nii.gz"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(a["t1"].read_bytes()[:200])  # truncated gzip
    place(a, "t2", root / "sub-03/anat/sub-03_T2w.nii.gz")
    place(a, "t2", root / "sub-04/dwi/sub-04_dwi.nii.gz")
    place(a, "t2", root / "derivatives/other/sub-99/anat/sub-99_T2w.nii.gz")
    place(a, "t2", root / ".git/sub-98/anat/sub-98_T2w.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.9.0"}')
    return root


def test_discovery_of_a_bids_dataset(dataset: Path) -> None:
    entries = {e.name: e for e in discover_dataset(dataset)}
    assert sorted(entries) == ["sub-01", "sub-02_ses-a", "sub-03", "sub-04"]
    assert entries["sub-01"].files == {"t1": dataset / "sub-01/anat/sub-01_run-1_T1w.nii.gz",
                                       "t2": dataset / "sub-01/anat/sub-01_T2w.nii.gz"}
    assert len(entries["sub-01"].warnings) == 1 and "run-2" in entries["sub-01"].warnings[0]
    session = entries["sub-02_ses-a"]
    assert (session.subject, session.session) == ("02", "a")
    assert set(session.files) == {"t1", "t1c", "flair", "dwi"}
    assert session.files["t1c"].name == "sub-02_ses-a_ce-gd_T1w.nii.gz"
    assert set(entries["sub-04"].files) == {"dwi"}


def test_discovery_of_plain_and_brats_folders(tmp_path: Path) -> None:
    for name in ("ms01/t1.nii.gz", "ms01/T2w.nii.gz", "ms01/lesion.nii.gz", "ms01/brainmask.nii",
                 "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz",
                 "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz",
                 "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2w.nii.gz",
                 "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii.gz",
                 "BraTS-GLI-00001-000/BraTS-GLI-00001-000-seg.nii.gz", "empty/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    entries = {e.subject: e for e in discover_dataset(tmp_path)}
    assert sorted(entries) == ["BraTSGLI00001000", "ms01"]
    assert set(entries["ms01"].files) == {"t1", "t2"}
    assert {m: p.name[-10:] for m, p in entries["BraTSGLI00001000"].files.items()} == {
        "t1": "t1n.nii.gz", "t1c": "t1c.nii.gz", "t2": "t2w.nii.gz", "flair": "t2f.nii.gz"}
    with pytest.raises(InputError, match="^" + str(tmp_path / "nope")):
        discover_dataset(tmp_path / "nope")
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="^" + str(tmp_path / "none") + ": no subjects found"):
        run_cohort(tmp_path / "none", dry_run=True)


def test_dry_run_writes_nothing(dataset: Path, random_model: Path) -> None:
    before = tree_sums(dataset)
    result = RUNNER.invoke(app, ["synth", "--dataset", str(dataset), "--model", str(random_model), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "5 planned, 1 skipped; nothing written" in result.stdout
    assert "planned" in result.stdout  # the table (cells may fold at the console's width)
    assert tree_sums(dataset) == before
    rows = run_cohort(dataset, model_path=random_model, device="cpu", dry_run=True)
    assert any(r["detail"].endswith("sub-01_ce-gd_desc-synth_T1w.nii.gz from t1+t2") for r in rows)
    assert sorted((r["subject"], r["session"], r["target"]) for r in rows if r["status"] == "planned") == [
        ("sub-01", "", "flair"), ("sub-01", "", "t1c"), ("sub-02", "a", "t2"),
        ("sub-03", "", "flair"), ("sub-03", "", "t1c")]
    assert tree_sums(dataset) == before


def test_dataset_run_writes_derivatives_and_resumes(dataset: Path, random_model: Path) -> None:
    inputs_before = tree_sums(dataset)
    result = RUNNER.invoke(app, ["synth", "--dataset", str(dataset), "--model", str(random_model),
                                 "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "3 done, 1 skipped, 2 failed" in result.stdout
    assert "Traceback" not in result.output
    deriv = dataset / "derivatives" / "mrimpute"
    outputs = [deriv / "sub-01/anat/sub-01_ce-gd_desc-synth_T1w.nii.gz",
               deriv / "sub-01/anat/sub-01_desc-synth_FLAIR.nii.gz",
               deriv / "sub-02/ses-a/anat/sub-02_ses-a_desc-synth_T2w.nii.gz"]
    for path in outputs:
        assert path.is_file()
        assert path.with_name(path.name.replace(".nii.gz", ".json")).is_file()
    assert not (deriv / "sub-03").exists() or not list((deriv / "sub-03").rglob("*.nii.gz"))
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"] == "1.9.0"
    assert description["GeneratedBy"] == [{"Name": "mrimpute", "Version": __version__}]
    sidecar = json.loads((deriv / "sub-02/ses-a/anat/sub-02_ses-a_desc-synth_T2w.json").read_text())
    assert {i["path"] for i in sidecar["Inputs"]} == {"sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz",
                                                      "sub-02/ses-a/anat/sub-02_ses-a_ce-gd_T1w.nii.gz",
                                                      "sub-02/ses-a/anat/sub-02_ses-a_FLAIR.nii.gz"}
    assert all(i["sha256"] == inputs_before[i["path"]] for i in sidecar["Inputs"])
    assert sidecar["Model"]["file"] == random_model.name and sidecar["Model"]["sha256"] == sha256(random_model)
    assert sidecar["MrimputeVersion"] == __version__ and sidecar["Normalisation"] == "mean over brain = 1"
    assert sidecar["GeneratedAt"].endswith("+00:00")

    # the corrupt subject is reported, one line naming the file
    rows = run_cohort(dataset, model_path=random_model, device="cpu")
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["target"] for r in failed} == {"t1c", "flair"} and {r["subject"] for r in failed} == {"sub-03"}
    assert all(r["detail"].startswith(str(dataset / "sub-03/anat/sub-03_T1w.nii.gz")) for r in failed)
    # second run: everything up to date, nothing rewritten
    assert [r["detail"] for r in rows if r["status"] == "skipped" and r["target"] != "-"] == ["up to date"] * 3
    assert not [r for r in rows if r["status"] == "done"]
    mtimes = {p: os.stat(p).st_mtime_ns for p in outputs}

    # a killed run (NIfTI without sidecar) is redone, and only that output
    sidecar_path = outputs[1].with_name(outputs[1].name.replace(".nii.gz", ".json"))
    sidecar_path.unlink()
    rows = run_cohort(dataset, model_path=random_model, device="cpu")
    assert [(r["subject"], r["target"]) for r in rows if r["status"] == "done"] == [("sub-01", "flair")]
    assert sidecar_path.is_file()
    assert os.stat(outputs[0]).st_mtime_ns == mtimes[outputs[0]]
    assert os.stat(outputs[2]).st_mtime_ns == mtimes[outputs[2]]

    # --force redoes everything that can be done
    rows = run_cohort(dataset, model_path=random_model, device="cpu", force=True)
    assert sum(r["status"] == "done" for r in rows) == 3

    # the inputs never changed
    after = tree_sums(dataset)
    assert {k: v for k, v in after.items() if not k.startswith("derivatives/mrimpute")} == inputs_before


def test_parallel_jobs_give_the_same_outputs(dataset: Path, random_model: Path, tmp_path: Path) -> None:
    shutil.rmtree(dataset / "sub-03")
    serial = run_cohort(dataset, tmp_path / "serial", random_model, device="cpu")
    parallel = run_cohort(dataset, tmp_path / "parallel", random_model, device="cpu", jobs=2)
    assert [(r["subject"], r["target"], r["status"]) for r in serial] == \
           [(r["subject"], r["target"], r["status"]) for r in parallel]
    for path in (tmp_path / "serial").rglob("*.nii.gz"):
        twin = tmp_path / "parallel" / path.relative_to(tmp_path / "serial")
        assert np.allclose(nib.load(path).get_fdata(), nib.load(twin).get_fdata(), atol=1e-5)


@pytest.mark.parametrize("extra", [["--t1", "x.nii.gz"], ["--out-dir", "somewhere"], ["--target", "flair"]])
def test_dataset_refuses_single_subject_options(dataset: Path, random_model: Path, extra: list[str]) -> None:
    result = RUNNER.invoke(app, ["synth", "--dataset", str(dataset), "--model", str(random_model), *extra])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {dataset}: --dataset") and extra[0] in result.stderr
    assert not (dataset / "derivatives" / "mrimpute").exists()


def test_dry_run_without_dataset_is_refused(random_model: Path, subject: dict[str, Path], tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["synth", "--t1", str(subject["t1"]), "--out", str(tmp_path / "flair.nii.gz"),
                                 "--model", str(random_model), "--dry-run"])
    assert result.exit_code == 1 and "--dataset" in result.stderr


def test_each_subject_gets_the_shipped_model_its_inputs_call_for(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --model, dataset mode chooses like single-subject synth: the default model, or models/diffusion.pt
    for a subject with dwi (which the default has no encoder for); each checkpoint is read once, and the plan,
    the per-subject line and the sidecars name the model."""
    from mrimpute.runtime import model_loading

    if not model_loading.shipped_model("diffusion.pt").is_file():
        pytest.skip("models/diffusion.pt is not built")
    monkeypatch.delenv(model_loading.MODEL_ENV, raising=False)
    root = tmp_path / "bids"
    phantom = write_subject(tmp_path / "phantom", seed=4, shape=SHAPE)
    place(phantom, "t1", root / "sub-01/anat/sub-01_T1w.nii.gz")
    place(phantom, "t2", root / "sub-01/dwi/sub-01_dwi.nii.gz")  # any volume on the T1's grid stands for a DWI
    place(phantom, "t1", root / "sub-02/anat/sub-02_T1w.nii.gz")
    place(phantom, "t2", root / "sub-02/anat/sub-02_T2w.nii.gz")
    rows = run_cohort(root, device="cpu", dry_run=True)
    assert {(r["subject"], r["model"]) for r in rows} == {("sub-01", "diffusion.pt"), ("sub-02", "default.pt")}
    assert {r["detail"].split(" from ")[-1] for r in rows if r["subject"] == "sub-01"} == {"t1+dwi"}
    assert {r["status"] for r in rows} == {"planned"}

    reads = []
    real = model_loading.load_model
    monkeypatch.setattr(model_loading, "load_model", lambda *args: reads.append(args[0]) or real(*args))
    result = RUNNER.invoke(app, ["synth", "--dataset", str(root), "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(Path(p).name for p in reads) == ["default.pt", "diffusion.pt"]  # once each, for both subjects
    lines = result.stdout.splitlines()
    assert any(re.search(r"sub-01: .*flair done; model diffusion\.pt$", line) for line in lines), result.stdout
    assert any(re.search(r"sub-02: .*flair done$", line) for line in lines), result.stdout
    deriv = root / "derivatives" / "mrimpute"
    for subject, model, inputs in (("01", "diffusion.pt", {"t1", "dwi"}), ("02", "default.pt", {"t1", "t2"})):
        sidecar = json.loads((deriv / f"sub-{subject}/anat/sub-{subject}_desc-synth_FLAIR.json").read_text())
        assert sidecar["Model"]["file"] == model
        assert {i["modality"] for i in sidecar["Inputs"]} == inputs
