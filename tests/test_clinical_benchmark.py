"""benchmarks/clinical_benchmark.py's plan (issue 16): which model and which forest training each row gets under
cross-fitting on the two subjects with diffusion, the `n/a` rows, and the tables it writes."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


plan = _load("clinical_bench_plan")
MODEL, DIFFUSION, CROSSFIT = Path("models/default.pt"), Path("models/diffusion.pt"), Path("out/isles22-diffusion.pt")
HAS = {"clinical01": {"t1", "t1c", "t2", "flair", "dwi", "adc"}, "isles22-0009": {"dwi", "adc", "flair"}}
TRAINING = ("bratscase", "du7294")


def _row(subject: str, *inputs: str):
    return next(r for r in plan.ROWS if r.subject == subject and r.inputs == inputs)


def test_the_rows_the_issue_asks_for() -> None:
    assert [("+".join(r.inputs), r.subject) for r in plan.ROWS] == [
        ("t1+t2", "clinical01"), ("t1+t2+dwi", "clinical01"), ("dwi", "clinical01"), ("t1", "clinical01"),
        ("dwi+adc", "isles22-0009"), ("dwi", "isles22-0009"), ("adc", "isles22-0009")]


def test_no_row_is_scored_by_a_model_that_learnt_its_diffusion_encoders_on_that_subject() -> None:
    for row in plan.ROWS:
        choice = plan.model_for(row, MODEL, DIFFUSION, CROSSFIT)
        if not row.diffusion:
            assert choice.path == MODEL
        else:
            assert row.subject not in choice.subjects  # the encoders' training subjects
            assert choice.path == (CROSSFIT if row.subject == "clinical01" else DIFFUSION)


def test_forests_learn_from_other_subjects_or_are_not_available() -> None:
    coregistered, bench = Path("coregistered"), Path("bench")
    for row in plan.ROWS:
        choice = plan.forest_for(row, TRAINING, coregistered, bench, HAS)
        assert row.subject not in choice.subjects
        if not row.diffusion:
            assert choice.subjects == TRAINING and choice.data == coregistered
    assert plan.forest_for(_row("clinical01", "dwi"), TRAINING, coregistered, bench, HAS).subjects == \
        ("isles22-0009",)
    assert plan.forest_for(_row("isles22-0009", "dwi", "adc"), TRAINING, coregistered, bench, HAS).subjects == \
        ("clinical01",)
    missing = plan.forest_for(_row("clinical01", "t1", "t2", "dwi"), TRAINING, coregistered, bench, HAS)
    assert missing.path is None and missing.note.startswith("n/a: no subject besides clinical01 has t1+t2+dwi")
    assert "isles22-0009 has adc, dwi, flair" in missing.note


def test_tables_mark_pending_and_missing_rows(tmp_path: Path) -> None:
    row = _row("isles22-0009", "dwi")
    scores = {"brain": {"ssim": 0.61234, "psnr": 22.456}, "brain@lesion": {"ssim": 0.3, "psnr": 15.0}}
    lines = [plan.table_row(row, "model", "diffusion.pt", scores, None),
             plan.table_row(row, "forest", "n/a: reason", None, None, na=True)]
    written = plan.write_tables(lines, "# title", tmp_path)
    assert [p.name for p in written] == ["clinical_benchmark.md", "clinical_benchmark.csv", "clinical_benchmark.json"]
    text = written[0].read_text()
    assert "| isles22-0009 | dwi | model | diffusion.pt | 0.6123 | 22.46 | pending | pending | 0.3000 | 15.00 |" in text
    assert "| n/a | n/a |" in text
    with written[1].open() as handle:
        assert list(csv.DictReader(handle))[0]["SSIM native"] == "0.6123"
    assert json.loads(written[2].read_text())["rows"][1]["SSIM grid"] == "n/a"
