"""`synth --dataset` beside BIDS-Apps habits: `--participant-label 01 02` (with or without `sub-`), BIDS URIs in
the sidecars' `Sources` with the raw dataset linked from `dataset_description.json` (`DatasetLinks`,
`SourceDatasets`), the dataset's `ce-` label kept in a synthetic T1c's name, and nnU-Net `_0000` datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.io.checksum import sha256_file

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})
SHAPE = (24, 20, 4)


def place(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """sub-01 (T1w, T2w), sub-02 (T1w, ce-gadolinium T1w), sub-03 (T1w, FLAIR): the dataset names its T1c
    `ce-gadolinium`, not mrimpute's default `ce-gd`."""
    root = tmp_path / "study"
    a = write_subject(tmp_path / "phantoms" / "a", seed=1, shape=SHAPE)
    b = write_subject(tmp_path / "phantoms" / "b", seed=2, shape=SHAPE)
    place(a["t1"], root / "sub-01/anat/sub-01_T1w.nii.gz")
    place(a["t2"], root / "sub-01/anat/sub-01_T2w.nii.gz")
    place(b["t1"], root / "sub-02/anat/sub-02_T1w.nii.gz")
    place(b["t1c"], root / "sub-02/anat/sub-02_ce-gadolinium_T1w.nii.gz")
    place(a["t1"], root / "sub-03/anat/sub-03_T1w.nii.gz")
    place(a["flair"], root / "sub-03/anat/sub-03_FLAIR.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "study", "BIDSVersion": "1.9.0", '
                                                   '"DatasetDOI": "doi:10.0000/example"}')
    return root


def synth(*args) -> object:
    result = RUNNER.invoke(app, ["synth", *(str(a) for a in args), "--device", "cpu", "--threads", "1"])
    assert "Traceback" not in result.output
    return result


def test_participant_label_bids_apps_style(dataset: Path, random_model: Path) -> None:
    deriv = dataset / "derivatives" / "mrimpute"
    result = synth("--dataset", dataset, "--model", random_model, "--participant-label", "01", "sub-03")
    assert result.exit_code == 0, result.output
    made = sorted(p.relative_to(deriv).as_posix() for p in deriv.rglob("*.nii.gz"))
    assert made and {p.split("/")[0] for p in made} == {"sub-01", "sub-03"}  # sub-02 left alone
    # the repeated form and a session-free label select the same subjects; the plan names only sub-02
    plan = synth("--dataset", dataset, "--model", random_model, "--dry-run", "--participant-label", "02")
    assert plan.exit_code == 0, plan.output
    assert "sub-02" in plan.stdout and "sub-01" not in plan.stdout and "sub-03" not in plan.stdout


def test_participant_label_errors_are_one_line(dataset: Path, random_model: Path) -> None:
    unknown = synth("--dataset", dataset, "--model", random_model, "--participant-label", "01", "07")
    assert unknown.exit_code == 1
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {dataset}: no subject sub-07")
    assert "sub-01" in lines[0]  # the labels there are
    stray = synth("--dataset", dataset, "--model", random_model, "01")
    assert stray.exit_code == 1 and stray.stderr.strip().splitlines() == [
        "error: 01: unexpected argument (synth takes options only; subject labels follow --participant-label)"]
    single = synth("--t1", dataset / "sub-01/anat/sub-01_T1w.nii.gz", "--out-dir", dataset.parent / "o",
                   "--participant-label", "01")
    assert single.exit_code == 1 and single.stderr.strip().startswith("error: ") \
        and "--participant-label" in single.stderr and len(single.stderr.strip().splitlines()) == 1
    assert not (dataset / "derivatives").exists() and not (dataset.parent / "o").exists()


def test_sources_dataset_links_and_ce_label(dataset: Path, random_model: Path) -> None:
    deriv = dataset / "derivatives" / "mrimpute"
    result = synth("--dataset", dataset, "--model", random_model)
    assert result.exit_code == 0, result.output
    # a synthetic T1c is named with the dataset's own ce- label
    t1c = deriv / "sub-01/anat/sub-01_ce-gadolinium_desc-synth_T1w.nii.gz"
    assert t1c.is_file() and not list(deriv.rglob("*ce-gd*"))
    sidecar = json.loads(t1c.with_name(t1c.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz", "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    # the checksums a rerun compares stay beside the URIs
    assert [i["sha256"] for i in sidecar["Inputs"]] == [sha256_file(dataset / "sub-01/anat" / name)
                                                        for name in ("sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz")]
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["DatasetLinks"] == {"raw": "../.."}
    assert (deriv / description["DatasetLinks"]["raw"]).resolve() == dataset.resolve()
    assert description["SourceDatasets"] == [{"URL": dataset.resolve().as_uri(), "DOI": "doi:10.0000/example"}]
    # every Sources URI resolves, through DatasetLinks, to an input
    for path in deriv.rglob("*_desc-synth_*.json"):
        for uri in json.loads(path.read_text())["Sources"]:
            name, relative = uri.split(":")[1:]
            assert (deriv / description["DatasetLinks"][name] / relative).is_file(), uri
    rerun = synth("--dataset", dataset, "--model", random_model)
    assert rerun.exit_code == 0 and "0 done" in rerun.stdout  # Inputs' sha256s still make the rerun a no-op


def test_ce_label_of_the_subject_wins(tmp_path: Path, random_model: Path) -> None:
    """A subject with a T1c in one session keeps its label for the synthetic T1c of another session."""
    root = tmp_path / "study"
    a = write_subject(tmp_path / "phantoms" / "a", seed=1, shape=SHAPE)
    place(a["t1"], root / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    place(a["t1c"], root / "sub-01/ses-1/anat/sub-01_ses-1_ce-Gd_T1w.nii.gz")
    place(a["t1"], root / "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz")
    place(a["t1"], root / "sub-02/anat/sub-02_T1w.nii.gz")
    place(a["t1c"], root / "sub-02/anat/sub-02_ce-gadobutrol_T1w.nii.gz")
    place(a["t1"], root / "sub-03/anat/sub-03_T1w.nii.gz")
    place(a["t1c"], root / "sub-04/anat/sub-04_ce-gadobutrol_T1w.nii.gz")
    result = synth("--dataset", root, "--model", random_model, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "sub-01_ses-2_ce-Gd_desc-synth_T1w" in result.stdout
    assert "sub-03_ce-gadobutrol_desc-synth_T1w" in result.stdout  # the dataset's most common label


def test_nnunet_dataset_in_dataset_mode(tmp_path: Path, random_model: Path) -> None:
    """An nnU-Net raw dataset (`imagesTr/<case>_0000.nii.gz`, channels named by dataset.json) is a dataset too."""
    root = tmp_path / "Dataset001_MS"
    a = write_subject(tmp_path / "phantoms" / "a", seed=1, shape=SHAPE)
    place(a["t1"], root / "imagesTr/ms01_0000.nii.gz")
    place(a["flair"], root / "imagesTr/ms01_0001.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "FLAIR"},
                                                   "labels": {"background": 0, "lesion": 1},
                                                   "numTraining": 1, "file_ending": ".nii.gz"}))
    result = synth("--dataset", root, "--model", random_model, "--participant-label", "ms01")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((root / "derivatives/mrimpute/sub-ms01/anat/sub-ms01_desc-synth_T2w.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:imagesTr/ms01_0000.nii.gz", "bids:raw:imagesTr/ms01_0001.nii.gz"]
