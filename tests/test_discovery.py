"""One discovery for train, eval and synth --dataset: the same phantom subjects laid out as plain folders, BIDS (with
a session and derivative lesion masks), BraTS names, an nnU-Net raw dataset and a CSV manifest are found with the
same files and masks; train and eval run on the BIDS copy; synth --dataset reads a CSV and an nnU-Net folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.data.bids import discover_dataset
from mrimpute.data.subjects import dataset_folder, discover_subjects, load_subject
from mrimpute.errors import InputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.pipeline.cohort import run_cohort

from conftest import one_line_error, write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})
SHAPE = (32, 28, 8)
CONTRASTS = ("t1", "t1c", "t2", "flair")
BIDS_NAMES = {"t1": "T1w", "t1c": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR"}
BRATS_CODES = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "lesion": "seg"}
NNUNET_CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}


def link(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source, target)
    return target


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three phantoms (a, b, c) and the same files in every layout; `names` maps phantom -> subject name."""
    root = tmp_path_factory.mktemp("layouts")
    phantoms = {key: write_subject(root / "plain" / key, seed=seed, shape=SHAPE, codes=codes)
                for key, seed, codes in (("a", 0, "RAS"), ("b", 1, "LPS"), ("c", 2, "LAS"))}
    bids = {"a": ("a", None), "b": ("b", "one"), "c": ("c", None)}
    for key, (label, session) in bids.items():
        prefix = f"sub-{label}" + (f"_ses-{session}" if session else "")
        folder = Path(f"sub-{label}", *([f"ses-{session}"] if session else []), "anat")
        for modality in CONTRASTS:
            link(phantoms[key][modality], root / "bids" / folder / f"{prefix}_{BIDS_NAMES[modality]}.nii.gz")
        link(phantoms[key]["lesion"], root / "bids/derivatives/lesions" / folder / f"{prefix}_label-lesion_mask.nii.gz")
    (root / "bids/dataset_description.json").write_text('{"Name": "phantoms", "BIDSVersion": "1.9.0"}')
    for key, phantom in phantoms.items():
        case = f"BraTS-GLI-0000{'abc'.index(key) + 1}-000"
        for modality in (*CONTRASTS, "lesion"):
            link(phantom[modality], root / "brats" / case / f"{case}-{BRATS_CODES[modality]}.nii.gz")
        for channel, name in NNUNET_CHANNELS.items():
            modality = {"T1": "t1", "T1ce": "t1c", "T2": "t2", "FLAIR": "flair"}[name]
            link(phantom[modality], root / "nnunet/imagesTr" / f"case_{key}_{int(channel):04d}.nii.gz")
        link(phantom["lesion"], root / "nnunet/labelsTr" / f"case_{key}.nii.gz")
    (root / "nnunet/dataset.json").write_text(json.dumps({"channel_names": NNUNET_CHANNELS, "file_ending": ".nii.gz",
                                                          "labels": {"background": 0, "lesion": 1}}))
    rows = [f"{key},{m},{'plain/' + key + '/' + m + '.nii.gz' if m != 't2' else phantoms[key][m]}"
            for key in phantoms for m in (*CONTRASTS, "lesion")]
    (root / "subjects.csv").write_text("subject,modality,path\n" + "\n".join(rows) + "\n")
    names = {"plain": {"a": "a", "b": "b", "c": "c"}, "bids": {"a": "sub-a", "b": "sub-b_ses-one", "c": "sub-c"},
             "brats": {k: f"BraTS-GLI-0000{i + 1}-000" for i, k in enumerate("abc")},
             "nnunet": {k: f"case_{k}" for k in "abc"}, "subjects.csv": {"a": "a", "b": "b", "c": "c"}}
    return {"root": root, "phantoms": phantoms, "names": names}


@pytest.mark.parametrize("layout", ["plain", "bids", "brats", "nnunet", "subjects.csv"])
def test_every_layout_finds_the_same_subjects_and_files(layouts: dict, layout: str) -> None:
    subjects = discover_subjects(layouts["root"] / layout)
    names = layouts["names"][layout]
    assert [s.name for s in subjects] == [names[k] for k in "abc"]
    for key, subject in zip("abc", subjects):
        phantom = {m: p.resolve() for m, p in layouts["phantoms"][key].items()}
        assert {m: p.resolve() for m, p in subject.files.items()} == {m: phantom[m] for m in CONTRASTS}
        assert {m: p.resolve() for m, p in subject.masks.items()} == {"lesion": phantom["lesion"]}
        assert subject.warnings == []


def test_a_subject_loads_the_same_from_every_layout(layouts: dict) -> None:
    loaded = {}
    for layout, names in layouts["names"].items():
        (subject,) = [s for s in discover_subjects(layouts["root"] / layout) if s.name == names["b"]]
        loaded[layout] = load_subject(subject, ["t1", "flair"], lesion_source="expert")
    plain = loaded.pop("plain")
    assert plain.lesion.any()
    for other in loaded.values():
        assert np.array_equal(other.lesion, plain.lesion) and np.array_equal(other.mask, plain.mask)
        assert all(np.array_equal(other.volumes[m], plain.volumes[m]) for m in ("t1", "flair"))


def test_bids_details(layouts: dict, tmp_path: Path) -> None:
    root = tmp_path / "bids"
    phantom = layouts["phantoms"]["a"]
    link(phantom["t1"], root / "sub-01/anat/sub-01_T1w.nii.gz")
    link(phantom["t2"], root / "sub-01/anat/sub-01_desc-preproc_T2w.nii.gz")  # a derivative name: not a scan
    link(phantom["t1"], root / "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz")
    link(phantom["t1"], root / "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz")
    for pipeline in ("manual", "auto"):  # two lesion masks for one session: the first (sorted), with a warning
        masks = root / "derivatives" / pipeline / "sub-02/ses-2/anat"
        link(phantom["lesion"], masks / "sub-02_ses-2_label-lesion_mask.nii.gz")
    subjects = {s.name: s for s in discover_subjects(root)}
    assert sorted(subjects) == ["sub-01", "sub-02_ses-1", "sub-02_ses-2"]
    assert set(subjects["sub-01"].files) == {"t1"} and subjects["sub-01"].masks == {}  # no derivatives: no mask
    assert subjects["sub-02_ses-1"].masks == {}
    assert subjects["sub-02_ses-2"].masks["lesion"].parts[-5] == "auto"
    assert "2 files for lesion" in subjects["sub-02_ses-2"].warnings[0]
    entries = {e.name: (e.subject, e.session) for e in discover_dataset(root)}
    assert entries == {"sub-01": ("01", None), "sub-02_ses-1": ("02", "1"), "sub-02_ses-2": ("02", "2")}


def test_nnunet_details(layouts: dict, tmp_path: Path) -> None:
    nnunet = layouts["root"] / "nnunet"
    assert [s.name for s in discover_subjects(nnunet / "imagesTr")] == ["case_a", "case_b", "case_c"]
    root = tmp_path / "nn"
    phantom = layouts["phantoms"]["a"]
    link(phantom["t1"], root / "imagesTs/x_0000.nii.gz")
    link(phantom["t2"], root / "imagesTs/x_0001.nii.gz")
    link(phantom["flair"], root / "imagesTs/x_0002.nii.gz")
    with pytest.raises(InputError, match=f"^{root / 'dataset.json'}: not found"):
        discover_subjects(root)
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "T1w", "1": "CT"}}))  # nnU-Net v1 key
    (subject,) = discover_subjects(root)
    assert subject.files == {"t1": root / "imagesTs/x_0000.nii.gz"} and subject.masks == {}
    assert subject.warnings == ["x_0002.nii.gz: channel 2 is not in dataset.json; ignored"]
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(InputError, match="dataset.json: no channel is a known contrast"):
        discover_subjects(root)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "file_ending": ".mha"}))
    with pytest.raises(InputError, match="dataset.json: file_ending .mha: only NIfTI"):
        discover_subjects(root)


def test_manifest_errors_name_the_file(layouts: dict, tmp_path: Path) -> None:
    t1 = layouts["phantoms"]["a"]["t1"]
    cases = {"subject,modality\n": "lacks column(s) path",
             f"subject,modality,path\ns1,swi,{t1}\n": "line 2: unknown modality 'swi'",
             f"subject,modality,path\ns1,t1,{t1}\ns1,T1w,{t1}\n": "line 3: a second t1 for subject s1",
             "subject,modality,path\ns1,t1,nowhere.nii.gz\n": "listed in"}
    for text, needle in cases.items():
        manifest = tmp_path / "m.csv"
        manifest.write_text(text)
        with pytest.raises(InputError, match=re.escape(needle)):
            discover_subjects(manifest)
    error = one_line_error(RUNNER.invoke(app, ["train", "--data", str(manifest), "--out", str(tmp_path / "m.pt")]),
                           str(tmp_path / "nowhere.nii.gz"), "listed in", "not found")
    assert error.startswith(f"error: {tmp_path / 'nowhere.nii.gz'}: ")


def test_missing_dataset_json_is_a_one_line_error(layouts: dict, random_model: Path, tmp_path: Path) -> None:
    link(layouts["phantoms"]["a"]["t1"], tmp_path / "nn/imagesTr/x_0000.nii.gz")
    for command in (["train", "--data", str(tmp_path / "nn"), "--out", str(tmp_path / "m.pt")],
                    ["eval", "--data", str(tmp_path / "nn"), "--model", str(random_model), "--device", "cpu",
                     "--out-dir", str(tmp_path / "ev")],
                    ["synth", "--dataset", str(tmp_path / "nn"), "--model", str(random_model), "--dry-run"]):
        error = one_line_error(RUNNER.invoke(app, command), "not found")
        assert error.startswith(f"error: {tmp_path / 'nn' / 'dataset.json'}: not found")


def test_train_and_eval_on_a_bids_dataset(layouts: dict, tmp_path: Path) -> None:
    bids = layouts["root"] / "bids"
    model = tmp_path / "m.pt"
    result = RUNNER.invoke(app, ["train", "--data", str(bids), "--out", str(model), "--inputs", "t1,t2",
                                 "--outputs", "t2,flair", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size",
                                 "4", "--crop", "16", "--width", "0.125", "--val-crops", "4", "--seed", "3",
                                 "--device", "cpu", "--val-subjects", "sub-b_ses-one"])
    assert result.exit_code == 0, result.output
    metadata = load_checkpoint(model)["metadata"]
    assert metadata["training_subjects"] == ["sub-a", "sub-c"]
    assert metadata["validation_subjects"] == ["sub-b_ses-one"]
    result = RUNNER.invoke(app, ["eval", "--data", str(bids), "--model", str(model), "--subjects", "sub-b_ses-one",
                                 "--subsets", "single", "--out-dir", str(tmp_path / "eval"), "--no-qc", "--device",
                                 "cpu"])
    assert result.exit_code == 0, result.output
    metrics = (tmp_path / "eval" / "metrics.csv").read_text()
    assert "sub-b_ses-one" in metrics and "sub-a" not in metrics


def test_synth_dataset_reads_a_manifest(layouts: dict, random_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "csvset"
    phantom = layouts["phantoms"]["a"]
    link(phantom["t1"], folder / "raw/one_t1.nii.gz")
    link(phantom["t2"], folder / "raw/one_t2.nii.gz")
    manifest = folder / "list.csv"
    manifest.write_text(f"subject,modality,path\nms01,t1,raw/one_t1.nii.gz\nsub-02_ses-a,t2,{phantom['t2']}\n")
    assert dataset_folder(manifest) == folder
    rows = run_cohort(manifest, model_path=random_model, device="cpu", dry_run=True)
    assert sorted((r["subject"], r["session"], r["target"]) for r in rows) == [
        ("sub-02", "a", "flair"), ("sub-02", "a", "t1"), ("sub-02", "a", "t1c"),
        ("sub-ms01", "", "flair"), ("sub-ms01", "", "t1c"), ("sub-ms01", "", "t2")]
    result = RUNNER.invoke(app, ["synth", "--dataset", str(manifest), "--model", str(random_model), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "6 done, 0 skipped, 0 failed" in result.stdout
    written = folder / "derivatives/mrimpute/sub-ms01/anat/sub-ms01_desc-synth_FLAIR.nii.gz"
    sidecar = json.loads(written.with_name("sub-ms01_desc-synth_FLAIR.json").read_text())
    assert [i["path"] for i in sidecar["Inputs"]] == ["raw/one_t1.nii.gz"]
    assert (folder / "derivatives/mrimpute/sub-02/ses-a/anat/sub-02_ses-a_desc-synth_FLAIR.nii.gz").is_file()


def test_synth_dataset_reads_an_nnunet_folder(layouts: dict, random_model: Path) -> None:
    rows = run_cohort(layouts["root"] / "nnunet", model_path=random_model, device="cpu", dry_run=True)
    assert {r["subject"] for r in rows} == {"sub-casea", "sub-caseb", "sub-casec"}
    assert {r["status"] for r in rows} == {"skipped"}  # every case has every output of the model
    assert all(r["detail"] == "has every output of the model" for r in rows)
