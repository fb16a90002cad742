"""The shipped benchmark scripts: benchmarks/make_bids_copy.py and benchmarks/bad_input_corpus.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest

from mrimpute.data.bids import discover_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import benchmarks/<name>.py by its path (the folder is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


corpus = _load("bad_input_corpus")
bids_copy = _load("make_bids_copy")


@pytest.fixture
def coregistered(tmp_path: Path) -> Path:
    """A tiny 'coregistered' folder: two phantom subjects whose folder names need cleaning into BIDS labels."""
    source = tmp_path / "coregistered"
    corpus.write_subject(source / "ms-07", seed=1)
    corpus.write_subject(source / "gli_00001", seed=2)
    return source


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_bids_copy_layout_and_default_drops(coregistered: Path, tmp_path: Path, capsys) -> None:
    before = corpus.checksums(coregistered)
    out = tmp_path / "bids"
    assert bids_copy.main(["--source", str(coregistered), "--out", str(out), "--seed", "0"]) == 0
    assert "2 subject(s), 2 contrast(s) dropped" in capsys.readouterr().out
    assert corpus.checksums(coregistered) == before

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["BIDSVersion"]
    dropped = json.loads((out / "code" / "dropped.json").read_text())
    assert sorted(dropped) == ["sub-gli00001", "sub-ms07"]
    assert all(len(v) == 1 for v in dropped.values())
    assert dropped["sub-gli00001"] != dropped["sub-ms07"], "each subject should lose a different contrast"

    suffix = {"t1": "T1w", "t1c": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR"}
    for folder, label in (("ms-07", "ms07"), ("gli_00001", "gli00001")):
        kept = [m for m in ("t1", "t1c", "t2", "flair") if m not in dropped[f"sub-{label}"]]
        anat = out / f"sub-{label}" / "anat"
        assert sorted(p.name for p in anat.iterdir()) == sorted(f"sub-{label}_{suffix[m]}.nii.gz" for m in kept)
        for modality in kept:
            copy = anat / f"sub-{label}_{suffix[modality]}.nii.gz"
            assert not copy.is_symlink()  # a copy: synth on the copy can never touch the source
            assert copy.read_bytes() == (coregistered / folder / f"{modality}.nii.gz").read_bytes()
    assert not any("lesion" in name for name in _tree(out))

    found = {entry.name: sorted(entry.files) for entry in discover_dataset(out)}
    assert found == {f"sub-{label}": sorted(m for m in ("t1", "t1c", "t2", "flair") if m not in dropped[f"sub-{label}"])
                     for label in ("gli00001", "ms07")}


def test_bids_copy_explicit_drops_seed_and_refusals(coregistered: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bids"
    assert bids_copy.main(["--source", str(coregistered), "--out", str(out),
                           "--drop", "ms-07:flair,ms07:t1c,gli00001:t2"]) == 0
    assert json.loads((out / "code" / "dropped.json").read_text()) == {"sub-gli00001": ["t2"],
                                                                         "sub-ms07": ["t1c", "flair"]}
    assert bids_copy.main(["--source", str(coregistered), "--out", str(out)]) == 1  # not empty: refused
    assert "not an empty folder" in capsys.readouterr().err
    assert bids_copy.main(["--source", str(coregistered), "--out", str(tmp_path / "x"), "--drop", "ms07:pd"]) == 1
    assert bids_copy.main(["--source", str(coregistered), "--out", str(tmp_path / "y"), "--drop", "none"]) == 0
    assert len(_tree(tmp_path / "y")) == 8 + 2  # 2 subjects x 4 contrasts, description, dropped.json
    names = [f"s{i}" for i in range(8)]
    assert bids_copy.default_drops(names, 0) == bids_copy.default_drops(names, 0)
    first_four = [v[0] for v in list(bids_copy.default_drops(names, 3).values())[:4]]
    assert sorted(first_four) == ["flair", "t1", "t1c", "t2"]


def test_corpus_script_runs_cases_through_the_command(tmp_path: Path, capsys) -> None:
    table = tmp_path / "corpus.csv"
    code = corpus.main(["--only", "not-nifti,disk-full,output-folder-read-only", "--csv", str(table)])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    with open(table, newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == ["disk-full", "not-nifti", "output-folder-read-only"]
    for name, row in rows.items():
        if row["ok"] == "skipped":
            assert name == "output-folder-read-only" and os.geteuid() == 0
            continue
        assert row["ok"] == "yes" and row["exit code"] == "1"
        assert row["input unchanged"] == "yes" and row["no partial output"] == "yes"
        assert row["message"].startswith("error: ") and str(tmp_path) not in row["message"]
    assert rows["disk-full"]["message"].startswith("error: flair.nii.gz: cannot write output")
    assert "not-nifti" in printed.out


def test_corpus_verdict_flags_every_kind_of_misbehaviour() -> None:
    good = dict(name="c", code=1, expected=1, message="error: x: bad")
    assert corpus.Outcome(**good).ok
    for change in [dict(code=0, expected=0), dict(code=2), dict(traceback=True), dict(one_line=False),
                   dict(names_offender=False), dict(matches_problem=False), dict(input_unchanged=False),
                   dict(no_partial_output=False)]:
        assert not corpus.Outcome(**{**good, **change}).ok, change
    assert (corpus.shorten("error: /tmp/a/b/t1.nii.gz: no (/tmp/a/c.pt)", Path("/tmp/a"))
            == "error: t1.nii.gz: no (c.pt)")


def test_every_case_has_a_unique_name() -> None:
    names = [case.name for case in corpus.CASES]
    assert len(names) == len(set(names))
    assert {"extreme-values-1e35", "disk-full", "output-folder-read-only"} <= set(names)


def test_ablations_script_runs_the_new_decoder_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/ablations.py end to end on three phantom subjects with a one-step schedule: every command it runs
    exists with the options it passes, the enlarged model is scored on its new output, the table is written, and a
    second run redoes nothing. The commands run in this process (the script starts `python -m mrimpute`)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from mrimpute.cli.app import app
    from mrimpute.phantom import write_subject

    ablations = _load("ablations")
    ran: list[list[str]] = []

    def in_process(command: list[str]) -> SimpleNamespace:
        assert command[:3] == [sys.executable, "-m", "mrimpute"]
        ran.append(command[3:])
        return SimpleNamespace(returncode=CliRunner().invoke(app, command[3:]).exit_code)

    monkeypatch.setattr(ablations.subprocess, "run", in_process)
    data = tmp_path / "data"
    for seed, name in enumerate(("a", "b", "test")):
        write_subject(data / name, seed=seed, shape=(24, 24, 8))
    out = tmp_path / "runs"
    argv = ["--data", str(data), "--out", str(out), "--test", "test", "--val", "b", "--experiments", "decoder",
            "--width", "0.125", "--crop", "16", "--batch-size", "2", "--epochs", "1", "--steps", "1"]
    ablations.main(argv)
    log = json.loads((out / "ablations.json").read_text())
    assert [entry["command"].split()[1] for entry in log] == ["train", "eval", "train", "train-decoder", "eval", "eval",
                                                              "eval"]
    assert all(entry["exit"] == 0 for entry in log)
    with open(out / "compare" / "decoder" / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["target"] for row in rows} == {"t1c"}
    before = (out / "ablations.json").read_text()
    ablations.main(argv)  # resumable: everything is done already
    assert (out / "ablations.json").read_text() == before
    # a training whose checkpoint exists but which never finished (the log lacks it) is continued with --resume
    interrupted = log[2]["command"]
    (out / "ablations.json").write_text(json.dumps([e for e in log if e["command"] != interrupted]))
    ran.clear()
    ablations.main(argv)
    assert ran == [[*shlex.split(interrupted)[1:], "--resume"]]
    assert json.loads((out / "ablations.json").read_text())[-1] == {**log[2], "seconds": ANY}
    with pytest.raises(SystemExit):
        ablations.main([*argv[:4], "--experiments", "nonsense"])


def test_lesion_contrast_judges_each_case_against_the_real_lesions(tmp_path: Path) -> None:
    """benchmarks/lesion_contrast.py reads add-lesion's report (a case whose report exists is not rerun), gives the
    synthetic contrast relative to the real one and the 15% verdict, and writes Markdown, CSV and JSON tables."""
    contrast = _load("lesion_contrast")
    cases = contrast.cases(tmp_path / "data")
    assert {c["case"].split()[0] for c in cases} == {"ms07", "brats18-tcia02-370", "brats18-cbica-aqo"}
    assert [c["ref"] is not None for c in cases].count(True) == 1  # only the atlas case moves the mask
    (tmp_path / "split.toml").write_text('name = "t"\ntest = ["a"]\nvalidation = ["v1", "v2"]\n')
    for name in ("a", "v1", "v2"):
        (tmp_path / "data" / "coregistered" / name).mkdir(parents=True)
    (tmp_path / "data" / "coregistered" / "v2" / "lesion.nii.gz").write_bytes(b"")
    chosen = contrast.validation_cases(tmp_path / "data", tmp_path / "split.toml")
    assert [c["case"] for c in chosen] == ["v2 own mask, flair from t1+t1c+t2"]  # validation, with a mask
    rows = []
    for case, synthetic in zip(cases[:2], (1.30, 1.10)):
        slug = case["case"].split(",")[0].replace(" ", "-") + "-" + "+".join(case["inputs"])
        (tmp_path / f"{slug}.json").write_text(json.dumps({"synthetic_lesion_to_nawm": synthetic,
                                                           "real_lesion_to_nawm": 1.40,
                                                           "dice_hyperintensities_vs_mask": 0.5}))
        rows.append(contrast.measure(case, Path("never-run.pt"), tmp_path, threads=1, force=False))
    assert [r["relative"] for r in rows] == [round(1.30 / 1.40 - 1, 4), round(1.10 / 1.40 - 1, 4)]
    assert [r["within 15%"] for r in rows] == [True, False]
    written = contrast.write(rows, tmp_path, Path("models/lesion.pt"))
    assert [p.name for p in written] == ["lesion_contrast.md", "lesion_contrast.csv", "lesion_contrast.json"]
    assert json.loads(written[2].read_text())["rows"] == rows
