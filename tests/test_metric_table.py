"""The metric table (metrics.METRICS): metrics.csv keeps its columns, and a metric added to the table (one entry, in a
test) is scored and shows up in the rows, metrics.csv, summary.json, the model card, the console table and
eval --compare, without any other change."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mrimpute import metrics
from mrimpute.cli.eval_cmd import _format_summary
from mrimpute.metrics import Metric, Pair
from mrimpute.pipeline.compare import compare_many, read_rows
from mrimpute.pipeline.evaluate import CSV_FIELDS, card_section, score_all, summarise, write_reports

TODAY = ("subject", "target", "subset", "n_inputs", "protocol", "mse", "mae", "psnr", "ssim", "slope", "data_range")


def _max_error(pair: Pair) -> float:
    return float(np.abs(pair.diff).max())


MAX_ERROR = Metric("max_error", "max |error|", _max_error, higher_is_better=False, decimals=3)


@pytest.fixture
def with_max_error(monkeypatch: pytest.MonkeyPatch) -> Metric:
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, MAX_ERROR))
    return MAX_ERROR


def _volumes(seed: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = 1 + rng.random((16, 14, 10))
    mask = np.zeros(truth.shape, dtype=bool)
    mask[2:14, 2:12, 2:8] = True
    return truth + noise * rng.standard_normal(truth.shape), truth, mask


def _rows(noise: float, subjects: int = 6) -> list[dict]:
    rows = []
    for i in range(subjects):
        prediction, truth, mask = _volumes(i, noise)
        for protocol, scores in score_all(prediction, truth, mask).items():
            rows.append({"subject": f"s{i}", "target": "flair", "subset": "t1", "n_inputs": 1, "protocol": protocol,
                         **scores})
    return rows


def test_metrics_csv_keeps_todays_columns_in_order(tmp_path: Path) -> None:
    assert CSV_FIELDS == TODAY
    csv_path, _ = write_reports(_rows(0.1, 2), tmp_path)
    with csv_path.open() as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == TODAY


def test_a_metric_added_to_the_table_reaches_every_report(with_max_error: Metric, tmp_path: Path) -> None:
    prediction, truth, mask = _volumes(0, 0.1)
    scores = metrics.compare(prediction, truth, mask, "brain")
    # scored: the brain protocol's units are each volume over its brain mean (negatives clipped)
    pred_units = np.clip(prediction, 0, None) / np.clip(prediction, 0, None)[mask].mean()
    true_units = truth / truth[mask].mean()
    assert scores["max_error"] == pytest.approx(np.abs(pred_units - true_units)[mask].max())

    rows = _rows(0.1)
    assert all("max_error" in r for r in rows)
    csv_path, json_path = write_reports(rows, tmp_path)
    with csv_path.open() as handle:  # after today's metrics, before the data range
        assert tuple(csv.DictReader(handle).fieldnames) == (*TODAY[:-1], "max_error", "data_range")
    brain = json.loads(json_path.read_text())["brain"][0]
    values = [r["max_error"] for r in rows if r["protocol"] == "brain"]
    assert brain["max_error"] == pytest.approx(np.mean(values)) and brain["max_error_sd"] > 0

    card = card_section(rows)
    assert "| max |error| |" in card and f"| {np.mean(values):.3f} |" in card

    console_row = _format_summary(summarise(rows))[0]
    assert console_row["max |error|"] == f"{np.mean(values):.3f} ± {brain['max_error_sd']:.3f}"

    # compare: an evaluation with twice the noise, read back from its metrics.csv
    worse = tmp_path / "worse"
    write_reports(_rows(0.2), worse)
    wide, long = compare_many([("A", read_rows(csv_path)), ("B", read_rows(worse))])
    assert [k for k in wide[0] if k.startswith("max_error")] == ["max_error A", "max_error B"]
    tests = {r["metric"]: r for r in long}
    assert tests["max_error"]["mean_b"] > tests["max_error"]["mean_a"]
    # lower is better for it, higher for PSNR: the noisier run B is the worse one by both
    assert tests["max_error"]["significant"] == "*" and tests["max_error"]["better"] == "A"
    assert tests["psnr"]["significant"] == "*" and tests["psnr"]["better"] == "A"


def test_an_older_metrics_csv_without_a_new_metric_is_still_compared(with_max_error: Metric, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"  # written before the metric existed: today's columns only
    rows = _rows(0.2)
    with old.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TODAY, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    wide, long = compare_many([("new", _rows(0.1)), ("old", read_rows(old))])
    assert {r["metric"] for r in long} == {"ssim", "psnr", "mse"}  # the headline metrics both have
    assert not any(k.startswith("max_error") for k in wide[0])


def test_the_tables_show_the_headline_metrics_ssim_first() -> None:
    rows = _rows(0.1, 2)
    assert list(_format_summary(summarise(rows))[0])[3:] == ["SSIM", "PSNR (dB)", "MSE"]
    assert "| target | inputs | SSIM | PSNR (dB) | MAE | MSE |" in card_section(rows)
    wide, _ = compare_many([("A", rows), ("B", _rows(0.2, 2))])
    assert [k.split()[0] for k in wide[0]][3::2] == ["ssim", "psnr", "mse"]
