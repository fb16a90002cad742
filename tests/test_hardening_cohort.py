"""Issue 17 hardening of dataset mode: a rerun with another model keeps outputs unless --force, --dry-run decides
as a real run does, a derivative folder inside a subject's raw data is refused, and folders without a recognised
scan are counted in a warning."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.errors import OutputError
from mrimpute.pipeline.cohort import run_cohort
from mrimpute.runtime.reporting import Reporter

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})
SHAPE = (24, 20, 4)


class Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two plain subjects with t1 and t2 (the model also makes t1c and flair)."""
    root = tmp_path / "study"
    for seed, name in ((1, "ms01"), (2, "ms02")):
        phantom = write_subject(tmp_path / "phantoms" / name, seed=seed, shape=SHAPE)
        (root / name).mkdir(parents=True)
        for modality in ("t1", "t2"):
            shutil.copyfile(phantom[modality], root / name / f"{modality}.nii.gz")
    return root


def statuses(rows: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((r["subject"], r["target"], r["status"]) for r in rows)


def test_another_model_keeps_outputs_unless_forced(dataset: Path, random_model: Path, live_model: Path) -> None:
    first = run_cohort(dataset, model_path=random_model, device="cpu")
    assert {r["status"] for r in first} == {"done"} and len(first) == 4
    deriv = dataset / "derivatives" / "mrimpute"
    before = tree(deriv)

    for dry_run in (True, False):
        rows = run_cohort(dataset, model_path=live_model, device="cpu", dry_run=dry_run)
        assert {r["status"] for r in rows} == {"skipped"}
        assert {r["detail"] for r in rows} == {"made by another model (random.pt); --force replaces it"}
        assert tree(deriv) == before

    planned = run_cohort(dataset, model_path=live_model, device="cpu", dry_run=True, force=True)
    assert {r["status"] for r in planned} == {"planned"} and tree(deriv) == before
    forced = run_cohort(dataset, model_path=live_model, device="cpu", force=True)
    assert statuses(forced) == [(s, t, "done") for s, t, _ in statuses(planned)]
    sidecar = json.loads((deriv / "sub-ms01/anat/sub-ms01_desc-synth_FLAIR.json").read_text())
    assert sidecar["Model"]["file"] == live_model.name


def test_dry_run_makes_the_decisions_of_a_real_run(dataset: Path, random_model: Path) -> None:
    assert {r["status"] for r in run_cohort(dataset, model_path=random_model, dry_run=True)} == {"planned"}
    run_cohort(dataset, model_path=random_model, device="cpu")
    rows = run_cohort(dataset, model_path=random_model, dry_run=True)
    assert {(r["status"], r["detail"]) for r in rows} == {("skipped", "up to date")}

    deriv = dataset / "derivatives" / "mrimpute"
    (deriv / "sub-ms02/anat/sub-ms02_desc-synth_FLAIR.json").unlink()  # as a killed run leaves it
    (dataset / "ms01" / "t2.nii.gz").write_bytes((dataset / "ms02" / "t2.nii.gz").read_bytes())  # an input changed
    planned = run_cohort(dataset, model_path=random_model, dry_run=True)
    done = run_cohort(dataset, model_path=random_model, device="cpu")
    expected = [("sub-ms01", "flair"), ("sub-ms01", "t1c"), ("sub-ms02", "flair")]
    assert sorted((r["subject"], r["target"]) for r in planned if r["status"] == "planned") == expected
    assert sorted((r["subject"], r["target"]) for r in done if r["status"] == "done") == expected
    assert [r["status"] for r in planned if r["status"] != "planned"] == ["skipped"]


@pytest.mark.parametrize("inside", ["ms01", "ms01/derivatives", "ms02/a/b"])
def test_derivative_folder_inside_a_subject_is_refused(dataset: Path, random_model: Path, inside: str) -> None:
    before = tree(dataset)
    out = dataset / inside
    for dry_run in (True, False):
        with pytest.raises(OutputError) as error:
            run_cohort(dataset, out, random_model, device="cpu", dry_run=dry_run)
        folder = dataset / inside.split("/")[0]
        assert str(error.value).startswith(f"{out}: the derivative folder is inside subject folder {folder}")
    result = RUNNER.invoke(app, ["synth", "--dataset", str(dataset), "--out", str(out), "--model", str(random_model),
                                 "--threads", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {out}: the derivative folder is inside subject folder "
                                                  f"{dataset / inside.split('/')[0]}; choose --out outside the "
                                                  "subjects' raw data"]
    assert tree(dataset) == before and not (dataset / "ms02" / "a").exists()


def test_derivative_folder_beside_the_subjects_is_allowed(dataset: Path, random_model: Path) -> None:
    rows = run_cohort(dataset, dataset / "mrimpute-out", random_model, device="cpu", dry_run=True)
    assert {r["status"] for r in rows} == {"planned"} and len(rows) == 4


def test_folders_without_scans_are_counted_in_a_warning(dataset: Path, random_model: Path) -> None:
    for index in range(7):
        (dataset / f"empty{index:02d}").mkdir()
    (dataset / "notes").mkdir()
    (dataset / "notes" / "readme.txt").write_text("no scans here")
    (dataset / ".hidden").mkdir()
    (dataset / "derivatives" / "other").mkdir(parents=True)
    reporter = Messages()
    rows = run_cohort(dataset, model_path=random_model, dry_run=True, reporter=reporter)
    assert len(rows) == 4
    assert reporter.lines == [f"warning: {dataset}: 8 subject folder(s) hold no recognised scan and were skipped: "
                              "empty00, empty01, empty02, empty03, empty04 and 3 more"]
    quiet = Messages()
    for folder in [dataset / f"empty{index:02d}" for index in range(7)] + [dataset / "notes"]:
        shutil.rmtree(folder)
    run_cohort(dataset, model_path=random_model, dry_run=True, reporter=quiet)
    assert quiet.lines == []
