"""`mrimpute bench --quick`: the table and the JSON report, a case in its own process, no overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.errors import OutputError
from mrimpute.pipeline.bench.job import _run_isolated, plan_cases, quick_settings, run_bench


def test_quick_bench_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--no-isolate", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "training" in result.output
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["unit"], r["path"]) for r in rows] == [
        *[("s/volume", p) for p in ("reference", "fast", "tight crop")] * 2,  # 3 -> 1, 3 -> 4
        ("slices/s", "reference"), ("slices/s", "fast, full c1"), ("slices/s", "fast")]
    for row in rows:
        assert row["median"] > 0 and row["speed-up"] > 0 and row["speed-up CPU"] > 0
        assert row["peak MB"] > 50  # python and torch at least
    for row in rows[:6]:
        assert (row["max |diff|"] is None) == (row["path"] == "reference")
        if row["path"] == "fast":  # the crop grown by the receptive radius changes nothing
            assert row["max |diff|"] < 1e-4
    assert all(len(c["measured"]["seconds"]) == 2 for c in report["cases"])  # --quick: two timed runs each
    again = CliRunner().invoke(app, ["bench", "--quick", "--no-isolate", "--json", str(out)])
    assert again.exit_code == 1 and "--force" in again.output  # an existing report is kept


def test_refuses_existing_json_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    out.write_text("{}")
    with pytest.raises(OutputError, match="output exists"):
        run_bench(quick_settings(isolate=False), json_path=out)
    assert out.read_text() == "{}"


def test_a_case_in_its_own_process_reports_its_peak_memory(tmp_path: Path) -> None:
    case = next(c for c in plan_cases(quick_settings(threads=1), tmp_path)
                if c["kind"] == "synthesis" and c["path"] == "fast" and c["request"] == "3->1")
    measured = _run_isolated(case)
    assert len(measured["seconds"]) == 2 and measured["threads"] == 1
    assert 50 < measured["peak_rss_mb"] < 4000 and measured["max_abs_diff"] >= 0


def test_only_chooses_the_kinds_of_case(tmp_path: Path) -> None:
    training = plan_cases(quick_settings(kinds=("training",)), tmp_path)
    assert [c["path"] for c in training] == ["reference", "full-c1", "fast"]
    assert {c["kind"] for c in plan_cases(quick_settings(kinds=("synthesis",)), tmp_path)} == {"synthesis"}
    flair_only = plan_cases(quick_settings(kinds=("synthesis",), requests=("3->1",)), tmp_path)
    assert {c["request"] for c in flair_only} == {"3->1"}
    result = CliRunner().invoke(app, ["bench", "--quick", "--no-isolate", "--only", "inference"])
    assert result.exit_code == 1 and "--only inference" in result.output
    result = CliRunner().invoke(app, ["bench", "--quick", "--no-isolate", "--requests", "2->1"])
    assert result.exit_code == 1 and "--requests 2->1" in result.output


def test_profile_shows_where_the_fast_synthesis_spends_its_time() -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["bench", "--quick", "--profile", "--threads", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "in this process" in text and "operators by CPU time" in text and "convolution" in text
    refused = CliRunner().invoke(app, ["bench", "--quick", "--profile", "--only", "training"])
    assert refused.exit_code == 1 and "--profile profiles a synthesis case" in refused.output
