"""Issue 18, "a newcomer's first hour": output folders created, targets inferred from names, synthetic outputs named
as synthetic and never written over a real scan, readable help, progress in logs, arguments checked before the work,
and extensions that keep the parent's held-out subjects out."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from mrimpute import __version__
from mrimpute.cli import console as console_module
from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.errors import InputError, OutputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.io.folders import ensure_folder
from mrimpute.modalities import modality_from_filename
from mrimpute.pipeline.evaluate import EvalSettings, evaluate
from mrimpute.pipeline.extend import add_decoder, hold_out_like_parent
from mrimpute.pipeline.train import TrainSettings, train
from mrimpute.preview import qc_columns

from conftest import one_line_error, write_subject

ROOT = Path(__file__).resolve().parents[1]
RUNNER = CliRunner(env={"COLUMNS": "200"})


def invoke(*args: object, columns: int = 200):
    runner = RUNNER if columns == 200 else CliRunner(env={"COLUMNS": str(columns)})
    return runner.invoke(app, [str(a) for a in args])




# ------------------------------------------------------------------------------------------ 1, 13: the README


def test_readme_says_where_the_command_is_and_what_the_models_are_for() -> None:
    text = (ROOT / "README.md").read_text()
    setup = text[text.index("## Set-up"):text.index("## Commands")]
    assert "source .venv/bin/activate" in setup and ".venv/bin/mrimpute" in setup
    intended = text[text.index("## Intended use"):]
    intended = intended[:intended.index("\n## ", 4)]
    for claim in ("research", "not for diagnosis", "missed", "invented", "ms07"):
        assert claim in intended, claim


# ------------------------------------------------------------------------------------------ 2: output folders


def test_missing_output_folders_are_created(subject: dict[str, Path], random_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "flair_synth.nii.gz"
    result = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out", out, "--model", random_model,
                    "--threads", "1")
    assert result.exit_code == 0, result.output
    assert nib.load(out).shape == nib.load(subject["t1"]).shape
    out_dir = tmp_path / "imputed" / "sub"
    result = invoke("synth", "--t1", subject["t1"], "--out-dir", out_dir, "--model", random_model, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.glob("*.nii.gz")) == ["flair_synth.nii.gz", "t1c_synth.nii.gz",
                                                                "t2_synth.nii.gz"]


def test_a_folder_that_cannot_be_created_is_one_line(subject: dict[str, Path], random_model: Path,
                                                     tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke("synth", "--t1", subject["t1"], "--out-dir", blocker / "x", "--model", random_model)
    one_line_error(result, str(blocker / "x"), "is a file")
    with pytest.raises(OutputError, match="is a file"):
        ensure_folder(blocker / "x" / "y")
    assert ensure_folder(tmp_path / "p" / "q").is_dir()


# ------------------------------------------------------------------------------------------ 3: target from the name


@pytest.mark.parametrize("name, expected", [
    ("flair_synth.nii.gz", "flair"), ("sub-01_FLAIR.nii.gz", "flair"), ("sub-01_desc-synth_FLAIR.nii.gz", "flair"),
    ("sub-01_ses-2_ce-gd_T1w.nii.gz", "t1c"), ("sub-01_ce-gadolinium_desc-synth_T1w.nii", "t1c"),
    ("sub-01_T1w.nii.gz", "t1"), ("sub-01_desc-synth_T2w.nii.gz", "t2"), ("sub-01_PDw.nii.gz", "pd"),
    ("t1ce_synth.nii.gz", "t1c"), ("myflair.nii.gz", "flair"), ("BraTS-GLI-00001-000-t2f.nii.gz", "flair"),
    ("out/T2.nii", "t2"), ("x.nii.gz", None), ("t1_to_flair.nii.gz", None), ("result.nii.gz", None)])
def test_target_is_inferred_from_output_names(name: str, expected: str | None) -> None:
    assert modality_from_filename(name) == expected


def test_synth_infers_the_target_from_a_bids_name(subject: dict[str, Path], random_model: Path,
                                                  tmp_path: Path) -> None:
    for name in ("sub-01_desc-synth_FLAIR.nii.gz", "sub-01_ce-gd_T1w.nii.gz"):  # two contrasts missing: no guess
        result = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out", tmp_path / name,
                        "--model", random_model, "--threads", "1")
        assert result.exit_code == 0, result.output
        assert ("t1c" if "ce-gd" in name else "flair") in result.output
    result = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out", tmp_path / "result.nii.gz",
                    "--model", random_model)
    one_line_error(result, "result.nii.gz", "--target")


# ------------------------------------------------------------------------------------------ 4: never over a real scan


def test_out_dir_never_replaces_the_subjects_real_contrasts(subject: dict[str, Path], random_model: Path) -> None:
    folder = subject["t1"].parent
    real = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out-dir", folder, "--force",
                    "--model", random_model, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in real} == real  # flair.nii.gz untouched
    assert sorted(set(p.name for p in folder.glob("*.nii.gz")) - set(real)) == ["flair_synth.nii.gz",
                                                                                "t1c_synth.nii.gz"]
    again = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out-dir", folder, "--force",
                   "--model", random_model, "--threads", "1")
    assert again.exit_code == 0, again.output  # our own synthetic outputs may be redone with --force


def test_out_refuses_a_real_scan_even_with_force(subject: dict[str, Path], random_model: Path) -> None:
    real = subject["flair"]
    before = real.read_bytes()
    result = invoke("synth", "--t1", subject["t1"], "--t2", subject["t2"], "--out", real, "--force",
                    "--model", random_model)
    one_line_error(result, str(real), "real flair", "even with --force")
    assert real.read_bytes() == before


# ------------------------------------------------------------------------------------------ 5: a given contrast


def test_a_contrast_that_was_given_is_not_resynthesised(subject: dict[str, Path], random_model: Path,
                                                        tmp_path: Path) -> None:
    result = invoke("synth", "--t1", subject["t1"], "--flair", subject["flair"], "--target", "t1", "--out",
                    tmp_path / "x.nii.gz", "--model", random_model)
    one_line_error(result, "error: --target: t1 was given as an input", "leave --t1 out")
    result = invoke("synth", "--t1", subject["t1"], "--flair", subject["flair"], "--out", tmp_path / "t1_synth.nii.gz",
                    "--model", random_model)
    one_line_error(result, f"error: {tmp_path / 't1_synth.nii.gz'}: t1 was given as an input")
    assert not list(tmp_path.glob("*.nii.gz"))


# ------------------------------------------------------------------------------------------ 6: eval


def test_eval_pair_writes_its_reports_into_out_dir(subject: dict[str, Path], tmp_path: Path) -> None:
    reports = tmp_path / "new" / "pair"
    args = ["eval", "--pred", subject["t1c"], "--truth", subject["t1"], "--out-dir", reports, "--threads", "1"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads((reports / "pair_metrics.json").read_text())
    assert summary["pred"] == str(subject["t1c"]) and set(summary["scores"]) == {"paper", "brain", "brasyn"}
    lines = (reports / "pair_metrics.csv").read_text().splitlines()
    assert lines[0].startswith("protocol,") and len(lines) == 4
    one_line_error(invoke(*args), "pair_metrics.csv", "--force")
    assert invoke(*args, "--force").exit_code == 0
    alone = invoke("eval", "--pred", subject["t1c"], "--truth", subject["t1"])  # no --out-dir: the table only
    assert alone.exit_code == 0 and "wrote" not in alone.output


def test_qc_montage_shows_only_the_synthesis_inputs(tmp_path: Path, random_model: Path) -> None:
    write_subject(tmp_path / "data" / "s0")
    qc = tmp_path / "qc"
    evaluate(EvalSettings(data=tmp_path / "data", model=random_model, targets=["flair"], subsets="t1;t1,t2",
                          device="cpu", qc_dir=qc))
    width = Image.open(qc / "s0_flair.png").size[0]
    assert width == 5 * 40  # t1, t2, true, synthetic, |error| (the phantom's axial slices are 40 voxels wide)
    volume = np.ones((4, 4, 3), np.float32)
    columns = qc_columns({"t1": volume, "t1c": volume, "t2": volume}, volume, volume, volume > 0, "flair",
                         ("t1", "t2"))
    assert list(columns) == ["t1", "t2", "true flair", "synthetic flair from t1+t2", "|error|"]


# ------------------------------------------------------------------------------------------ 7: help, version, threads


def test_version_and_short_help() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"mrimpute {__version__}"
    for args in (["-h"], ["synth", "-h"], ["train-decoder", "-h"]):
        result = invoke(*args)
        assert result.exit_code == 0 and result.output.startswith("Usage: "), args
        assert "Options:" in result.output and "-h, --help" in result.output, args


@pytest.mark.parametrize("command", ["add-lesion", "eval", "demo", "synth", "train", "train-decoder"])
def test_help_at_80_columns_keeps_every_option_whole(command: str) -> None:
    result = invoke(command, "--help", columns=80)
    assert result.exit_code == 0
    assert "…" not in result.output and max(len(line) for line in result.output.splitlines()) <= 80
    names = set(re.findall(r"--[a-z0-9][a-z0-9-]*", result.output))
    assert "--threads" in names
    expected = {"train": {"--steps-per-epoch", "--lesion-channel", "--lesion-fraction", "--val-subjects"},
                "add-lesion": {"--source-subject", "--lesion-ref", "--mask-out"}}.get(command, set())
    assert expected <= names


def test_tables_do_not_cut_words_on_a_narrow_console(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    monkeypatch.setattr(console_module, "console", narrow)
    rows = [{"subject": "sub-0001", "target": "flair", "status": "done",
             "detail": "derivatives/mrimpute/sub-0001/anat/sub-0001_desc-synth_FLAIR.nii.gz"}]
    narrow.print(console_module.make_table("dataset synthesis", rows))
    text = narrow.export_text()
    assert "status: done" in text and "target: flair" in text  # words whole, not folded in a narrow column
    assert "derivatives/mrimpute/sub-0001/anat/sub-0001_desc-synth_FLAIR.nii.gz" in text.replace("\n", "")
    wide = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    monkeypatch.setattr(console_module, "console", wide)
    wide.print(console_module.make_table("dataset synthesis", rows))
    assert "┃" in wide.export_text() or "│" in wide.export_text()  # a real table where it fits


def test_threads_is_taken_by_eval(subject: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    result = invoke("eval", "--pred", subject["t1c"], "--truth", subject["t1"], "--threads", "1")
    assert result.exit_code == 0, result.output
    assert seen == [1]


# ------------------------------------------------------------------------------------------ 8: progress in logs


def test_dataset_mode_prints_a_line_per_subject_in_a_log(tmp_path: Path, random_model: Path) -> None:
    root = tmp_path / "bids"
    phantom = write_subject(tmp_path / "phantom", shape=(24, 20, 4))
    for subject in ("01", "02"):
        (root / f"sub-{subject}" / "anat").mkdir(parents=True)
        shutil.copyfile(phantom["t1"], root / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
    result = invoke("synth", "--dataset", root, "--model", random_model, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for subject in ("01", "02"):
        assert any(re.match(rf"subjects \d/2 \(\d+:\d\d\): sub-{subject}: t1c done, t2 done, flair done$", line)
                   for line in lines), result.stdout


# ------------------------------------------------------------------------------------------ 9: add-lesion checks first


def test_add_lesion_checks_the_source_subject_before_synthesising(tmp_path: Path) -> None:
    files = write_subject(tmp_path / "recipient")
    mask = np.zeros(nib.load(files["t1"]).shape, np.uint8)
    mask[18:22, 16:20, 5:7] = 1
    nib.save(nib.Nifti1Image(mask, nib.load(files["t1"]).affine), tmp_path / "lesion.nii.gz")
    out = tmp_path / "out" / "flair_lesions.nii.gz"
    base = ["add-lesion", "--t1", files["t1"], "--t2", files["t2"], "--lesion-mask", tmp_path / "lesion.nii.gz",
            "--out", out, "--report", tmp_path / "out" / "report.json", "--threads", "1"]
    one_line_error(invoke(*base, "--source-subject", tmp_path / "nowhere"), str(tmp_path / "nowhere"),
                   "--source-subject")
    donor = write_subject(tmp_path / "donors" / "d1")
    donor["flair"].unlink()  # a subject folder without the target
    one_line_error(invoke(*base, "--source-subject", donor["t1"].parent), str(donor["t1"].parent), "no flair")
    donor["lesion"].unlink()
    shutil.copyfile(files["flair"], donor["flair"])  # with the target, but without lesion.nii.gz
    one_line_error(invoke(*base, "--source-subject", donor["t1"].parent), str(donor["t1"].parent),
                   "no expert lesion mask")
    one_line_error(invoke(*base, "--flair", files["flair"]), "--target: flair was given as an input")
    assert not out.exists() and not (tmp_path / "out" / "report.json").exists()


# ------------------------------------------------------------------------------------------ 10: held-out subjects


def _tiny(data: Path, out: Path, **overrides) -> TrainSettings:
    values = dict(data=data, model=ModelConfig(inputs=["t1", "t2"], outputs=["t2"], width=0.125), out=out, epochs=1,
                  steps_per_epoch=1, batch_size=2, crop=16, val_crops=2, seed=0, device="cpu")
    values.update(overrides)
    return TrainSettings(**values)


def test_extensions_hold_out_what_the_parent_held_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(4):
        write_subject(data / f"s{i}", seed=i, shape=(24, 20, 4))
    parent = train(_tiny(data, tmp_path / "parent.pt", exclude=["s3"], val_subjects=["s2"]))
    payload = load_checkpoint(parent)
    assert payload["metadata"]["training_subjects"] == ["s0", "s1"]

    settings, held = hold_out_like_parent(parent, payload, _tiny(data, tmp_path / "x.pt"))
    assert held == ["s3"] and settings.exclude == ["s3"]
    settings, held = hold_out_like_parent(parent, payload, _tiny(data, tmp_path / "x.pt", subjects=["s0", "s3"]))
    assert held == [] and settings.exclude == []  # listed explicitly: the user's choice
    settings, held = hold_out_like_parent(parent, payload, _tiny(data, tmp_path / "x.pt", val_subjects=["s3"]))
    assert held == []
    other = tmp_path / "other"
    write_subject(other / "z0", shape=(24, 20, 4))
    with pytest.raises(InputError, match="all are held out by default; name the ones to train on with --subjects"):
        hold_out_like_parent(parent, payload, _tiny(other, tmp_path / "x.pt"))

    new = add_decoder(parent, "flair", _tiny(data, tmp_path / "dec.pt", val_subjects=["s2"]))
    metadata = load_checkpoint(new)["metadata"]
    assert "s3" not in metadata["training_subjects"] + metadata["validation_subjects"]
    assert metadata["extension"]["held_out_like_parent"] == ["s3"]
