"""Metrics under each protocol against scikit-image and hand computation; evaluation tables and comparisons."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrimpute.metrics import PROTOCOLS, Metric, compare
from mrimpute.pipeline.compare import compare_many
from mrimpute.pipeline.evaluate import CSV_FIELDS, EvalSettings, evaluate, parse_subsets, write_reports

from conftest import write_subject


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.zeros((24, 20, 16))
    truth[4:20, 3:17, 2:14] = 1 + rng.random((16, 14, 12))
    pred = np.where(truth > 0, truth + 0.1 * rng.standard_normal(truth.shape), 0)
    return pred, truth, truth > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_identical_volumes_are_perfect(protocol: str) -> None:
    _, truth, mask = _pair()
    scores = compare(truth, truth, mask, protocol)
    assert scores["mse"] == 0 and scores["mae"] == 0 and scores["psnr"] == float("inf")
    assert scores["ssim"] == pytest.approx(1.0)


def test_paper_protocol_matches_scikit_image_on_the_whole_volume() -> None:
    pred, truth, mask = _pair()
    pred_n, true_n = np.clip(pred, 0, None) / np.clip(pred, 0, None).mean(), truth / truth.mean()
    scores = compare(pred, truth, mask, "paper")
    assert scores["data_range"] == pytest.approx(true_n.max())
    assert scores["mse"] == pytest.approx(np.mean((pred_n - true_n) ** 2))
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(true_n, pred_n, data_range=true_n.max()))
    assert scores["ssim"] == pytest.approx(structural_similarity(true_n, pred_n, data_range=true_n.max()))


def test_brain_protocol_by_hand() -> None:
    pred, truth, mask = _pair()
    p, t = pred / pred[mask].mean(), truth / truth[mask].mean()
    scores = compare(pred, truth, mask, "brain")
    data_range = t[mask].max() - t[mask].min()
    assert scores["data_range"] == pytest.approx(data_range)
    assert scores["mae"] == pytest.approx(np.abs(p - t)[mask].mean())
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(t[mask], p[mask], data_range=data_range))
    _, ssim_map = structural_similarity(t, p, data_range=data_range, full=True)
    # the map is computed on the brain's box grown by 4 voxels; away from the box's edge it equals the full map
    inner = np.zeros_like(mask)
    inner[8:16, 7:13, 6:10] = True
    _, ours = structural_similarity(t[0:24, 0:20, 0:16], p[0:24, 0:20, 0:16], data_range=data_range, full=True)
    assert np.allclose(ours[inner], ssim_map[inner])
    assert 0 < scores["ssim"] < 1


def test_brasyn_protocol_clips_and_scales() -> None:
    pred, truth, mask = _pair()
    truth = truth.copy()
    truth[10, 10, 8] = 1000.0  # an outlier the 99.5th percentile clips away
    scores = compare(pred, truth, mask, "brasyn")
    assert scores["data_range"] == 1.0
    low, high = np.percentile(truth[mask], [0.5, 99.5])
    t = (np.clip(truth, low, high) - low) / (high - low)
    lo_p, hi_p = np.percentile(pred[mask], [0.5, 99.5])
    p = (np.clip(pred, lo_p, hi_p) - lo_p) / (hi_p - lo_p)
    assert scores["mse"] == pytest.approx(np.mean((p - t)[mask] ** 2))
    assert scores["psnr"] == pytest.approx(10 * np.log10(1 / scores["mse"]))


def test_region_restricts_scores() -> None:
    pred, truth, mask = _pair()
    lesion = np.zeros_like(mask)
    lesion[10:12, 8:10, 5:7] = True
    inside = compare(pred, truth, mask, "brain", region=lesion)
    p, t = pred / pred[mask].mean(), truth / truth[mask].mean()
    assert inside["mae"] == pytest.approx(np.abs(p - t)[lesion].mean())
    with pytest.raises(ValueError):
        compare(pred, truth, np.zeros_like(mask), "brain")


def test_calibration_slope_says_how_much_of_the_contrast_the_truth_follows() -> None:
    _, truth, mask = _pair()
    t = truth / truth[mask].mean()
    assert compare(truth, truth, mask, "brain")["slope"] == pytest.approx(1.0)
    doubled = np.where(mask, 1 + 2 * (t - 1), 0)  # contrasts twice the truth's about the brain mean (mean still 1)
    assert compare(doubled, truth, mask, "brain")["slope"] == pytest.approx(0.5)
    # by hand, on a noisy prediction: the least-squares slope, and shrinking by it lowers the squared error the most
    pred, truth, mask = _pair(seed=3)
    p, t = pred / pred[mask].mean(), truth / truth[mask].mean()
    slope = compare(pred, truth, mask, "brain")["slope"]
    assert slope == pytest.approx(np.polyfit(p[mask], t[mask], 1)[0])
    errors = {k: np.mean((1 + k * (p[mask] - 1) - t[mask]) ** 2) for k in (slope - 0.1, slope, slope + 0.1)}
    assert min(errors, key=errors.get) == slope
    assert np.isnan(compare(mask.astype(float), truth, mask, "brain")["slope"])


def test_a_headline_metric_needs_a_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        Metric("closeness", "closeness", lambda pair: 0.0, higher_is_better=None, decimals=2)


def test_parse_subsets() -> None:
    assert len(parse_subsets("all", ["t1", "t2", "flair"])) == 7
    assert parse_subsets("single+rest", ["t1", "t2"]) == [("t1",), ("t2",), ("t1", "t2")]
    assert parse_subsets("t2,t1;t1;pd", ["t1", "t2"]) == [("t1", "t2"), ("t1",)]


def test_evaluate_rows_csv_json_and_qc(tmp_path: Path, random_model: Path) -> None:
    write_subject(tmp_path / "data" / "a", codes="LPS")
    write_subject(tmp_path / "data" / "b", seed=2)
    settings = EvalSettings(data=tmp_path / "data", model=random_model, targets=["flair", "t2"], subsets="all",
                            device="cpu", qc_dir=tmp_path / "out" / "qc")
    rows = evaluate(settings)
    # 2 subjects x 2 targets x 7 subsets of the other 3 inputs x (3 protocols + 3 in-lesion)
    assert len(rows) == 2 * 2 * 7 * 6
    assert {r["protocol"] for r in rows} == {"paper", "brain", "brasyn",
                                             "paper@lesion", "brain@lesion", "brasyn@lesion"}
    csv_path, json_path = write_reports(rows, tmp_path / "out")
    with csv_path.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_FIELDS
        assert len(list(reader)) == len(rows)
    summary = json.loads(json_path.read_text())
    assert len(summary["brain"]) == 2 * 7 and summary["brain"][0]["n"] == 2
    assert {"mse", "mse_sd", "psnr", "ssim", "ssim_sd"} <= set(summary["brain"][0])
    assert sorted(p.name for p in (tmp_path / "out" / "qc").iterdir()) == ["a_flair.png", "a_t2.png",
                                                                           "b_flair.png", "b_t2.png"]


def test_compare_marks_consistent_differences() -> None:
    rng = np.random.default_rng(0)
    base = [{"subject": f"s{i}", "target": "flair", "subset": "t1", "protocol": "brain",
             "mse": 0.1 + 0.01 * rng.random(), "psnr": 25.0 + rng.random(), "ssim": 0.8 + 0.01 * rng.random()}
            for i in range(10)]
    better = [{**r, "mse": r["mse"] - 0.05 + 0.001 * rng.random(), "psnr": r["psnr"] + 2 + 0.1 * rng.random(),
               "ssim": r["ssim"]} for r in base]
    results = {r["metric"]: r for r in compare_many([("A", better), ("B", base)])[1]}
    assert results["psnr"]["significant"] == "*" and results["psnr"]["t_test_p"] < 0.05
    assert results["ssim"]["significant"] == ""  # identical values: no test, no mark
    assert results["psnr"]["n"] == 10


def test_cross_validation_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mrimpute.cli.app import app

    for i in range(3):
        write_subject(tmp_path / "data" / f"s{i}", seed=i)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "eval", "--data", str(tmp_path / "data"), "--folds", "3", "--train-inputs", "t1,t2", "--train-outputs", "flair",
        "--train-epochs", "1", "--train-steps", "1", "--train-width", "0.125", "--train-crop", "16",
        "--train-batch-size", "2", "--subsets", "single+rest", "--out-dir", str(tmp_path / "cv"), "--no-qc",
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with (tmp_path / "cv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # every subject is scored once, by the model of the fold that held it out
    assert len({(r["subject"], r["fold"]) for r in rows}) == 3
    assert sorted({r["subject"] for r in rows}) == ["s0", "s1", "s2"] and {r["fold"] for r in rows} == {"1", "2", "3"}
    assert len(rows) == 3 * 3 * 6  # subjects x (t1, t2, t1+t2) x (3 protocols + 3 in-lesion)
    assert all((tmp_path / "cv" / f"fold{i}.pt").is_file() for i in (1, 2, 3))


def test_replica_baseline_is_scored_like_a_model(tmp_path: Path) -> None:
    import torch

    from mrimpute.config import ModelConfig
    from mrimpute.io.checkpoint import save_checkpoint
    from mrimpute.model.network import SynthesisNet

    for name, seed in (("train1", 1), ("train2", 2), ("test", 3)):
        write_subject(tmp_path / "data" / name, seed=seed, shape=(24, 20, 8))
    config = ModelConfig(inputs=["t1", "t2", "flair"], outputs=["flair"], width=0.125)
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    save_checkpoint(model, config, SynthesisNet(config).state_dict(), {"training_subjects": ["train1", "train2"]})
    settings = EvalSettings(data=tmp_path / "data", model=model, subjects=["test"], subsets="t1;t1,t2", device="cpu",
                            baseline="replica")
    rows = [r for r in evaluate(settings) if r["protocol"] == "brain"]
    assert [r["subset"] for r in rows] == ["t1", "t1+t2"]
    # the phantom's FLAIR is a function of its tissue classes, which T1 and T2 reveal: the forest learns it
    assert all(r["ssim"] > 0.5 and r["mae"] < 0.2 for r in rows), rows


def _eval_rows(subjects: int, subsets: list[str], shift: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"subject": f"s{i}", "target": "flair", "subset": subset, "protocol": "brain",
             "mse": 0.1 + 0.01 * rng.random(), "psnr": 25.0 + shift + 0.1 * rng.random(),
             "ssim": 0.8 + 0.01 * rng.random()}
            for i in range(subjects) for subset in subsets]


def test_compare_many_reports_each_run_against_the_first_with_pooled_rows(tmp_path: Path) -> None:
    from mrimpute.pipeline.compare import compare_many, read_rows

    model = _eval_rows(4, ["t1", "t2", "t1+t2"], 0.0, 0)
    baseline = _eval_rows(4, ["t1", "t2", "t1+t2"], -2.0, 1)  # clearly worse PSNR everywhere
    dedicated = _eval_rows(4, ["t1+t2"], 0.0, 2)               # one subset only
    # a run may be a folder of evaluations: one metrics.csv per dedicated model
    folder = tmp_path / "dedicated" / "t1-t2"
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dedicated[0]))
        writer.writeheader()
        writer.writerows(dedicated)
    wide, long = compare_many([("model", model), ("replica", baseline),
                               ("dedicated", read_rows(tmp_path / "dedicated"))])
    rows = {(r["target"], r["inputs"]): r for r in wide}
    # a pooled row per run that shares several subsets with the first: the dedicated models share one, so none
    assert list(rows) == [("flair", "t1"), ("flair", "t2"), ("flair", "t1+t2"), ("flair", "pooled (replica)")]
    assert rows[("flair", "t1")]["psnr dedicated"] == "-"       # not scored by that run
    assert float(rows[("flair", "t1+t2")]["psnr dedicated"].rstrip("*")) > 24.9
    pooled = rows[("flair", "pooled (replica)")]
    assert pooled["n"] == 12 and pooled["psnr dedicated"] == "-" and pooled["psnr replica"].endswith("*")
    assert {r["run"] for r in long if r["subset"] == "t1"} == {"replica"}


def test_compare_many_pools_over_subsets_and_marks_significance() -> None:
    from mrimpute.pipeline.compare import compare_many

    model = _eval_rows(4, ["t1", "t2", "t1+t2"], 0.0, 0)
    baseline = _eval_rows(4, ["t1", "t2", "t1+t2"], -2.0, 1)
    wide, long = compare_many([("model", model), ("replica", baseline)])
    pooled = [r for r in wide if r["inputs"] == "pooled"]
    assert len(pooled) == 1 and pooled[0]["n"] == 12
    # 4 subjects: Wilcoxon cannot reach 5% per subset (min p = 0.125), the pool of 12 pairs can
    assert all(not r["psnr replica"].endswith("*") for r in wide if r["inputs"] != "pooled")
    assert (pooled[0]["psnr replica"].endswith("*")
            and float(pooled[0]["psnr replica"][:-1]) < float(pooled[0]["psnr model"]))
    assert {r["run"] for r in long} == {"replica"} and len(long) == 4 * 3


def test_compare_many_pools_over_every_target_when_several_are_scored() -> None:
    from mrimpute.pipeline.compare import compare_many

    def rows(shift: float, seed: int) -> list[dict]:
        return [{**r, "target": target} for target in ("flair", "t2")
                for r in _eval_rows(2, ["t1", "t1c"], shift, seed)]

    wide, _ = compare_many([("model", rows(0.0, 0)), ("other", rows(-2.0, 1))])
    assert [(r["target"], r["inputs"]) for r in wide][-1] == ("all", "pooled")
    everything = wide[-1]
    # per target 4 pairs: no Wilcoxon test can reach 5%; over both targets 8 pairs can
    assert everything["n"] == 8 and everything["psnr other"].endswith("*")
    assert not any(r["psnr other"].endswith("*") for r in wide[:-1])


def test_compare_through_the_cli_writes_both_tables(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mrimpute.cli.app import app

    paths = []
    for name, shift, seed in (("model", 0.0, 0), ("replica", -2.0, 1)):
        rows = _eval_rows(4, ["t1", "t2"], shift, seed)
        (tmp_path / name).mkdir()
        paths += ["--compare", str(tmp_path / name / "metrics.csv")]
        with (tmp_path / name / "metrics.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["eval", *paths, "--out-dir", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "cmp" / "comparison.csv").open() as handle:
        wide = list(csv.DictReader(handle))
    assert [r["inputs"] for r in wide] == ["t1", "t2", "pooled"] and "psnr replica" in wide[0]
    assert (tmp_path / "cmp" / "comparison_tests.csv").is_file()
    markdown = (tmp_path / "cmp" / "comparison.md").read_text().splitlines()
    assert markdown[2].startswith("| target | inputs | n | ") and len(markdown) == 4 + len(wide)
    assert markdown[-1].startswith(f"| {wide[-1]['target']} | pooled | {wide[-1]['n']} | ")
    again = CliRunner().invoke(app, ["eval", *paths, "--out-dir", str(tmp_path / "cmp")])
    assert again.exit_code == 1 and "comparison.csv" in again.output  # no silent overwrite


def test_a_run_scored_twice_is_refused(tmp_path: Path) -> None:
    from mrimpute.errors import InputError
    from mrimpute.pipeline.compare import read_rows

    rows = _eval_rows(2, ["t1"], 0.0, 0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with (tmp_path / name / "metrics.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with pytest.raises(InputError, match="again"):
        read_rows(tmp_path)


def test_ssim_of_a_thin_slab_uses_a_window_that_fits() -> None:
    from mrimpute.metrics import Pair, _ssim

    rng = np.random.default_rng(0)
    for depth in (1, 2, 5, 6):
        truth = rng.random((40, 36, depth)).astype(np.float32)
        region = np.ones(truth.shape, dtype=bool)
        assert _ssim(Pair(truth.copy(), truth, region, 1.0)) == pytest.approx(1.0)
        assert _ssim(Pair(rng.random(truth.shape).astype(np.float32), truth, region, 1.0)) < 0.2  # unrelated


def test_the_forest_baseline_resumes_from_its_kept_predictions(tmp_path: Path, monkeypatch) -> None:
    import torch

    from mrimpute.baselines.replica import ReplicaRegressor
    from mrimpute.config import ModelConfig
    from mrimpute.io.checkpoint import save_checkpoint
    from mrimpute.model.network import SynthesisNet

    for name, seed in (("train1", 1), ("test1", 3), ("test2", 4)):
        write_subject(tmp_path / "data" / name, seed=seed, shape=(24, 20, 8))
    config = ModelConfig(inputs=["t1", "t2", "flair"], outputs=["flair", "t2"], width=0.125)
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    save_checkpoint(model, config, SynthesisNet(config).state_dict(), {"training_subjects": ["train1"]})
    settings = EvalSettings(data=tmp_path / "data", model=model, subjects=["test1", "test2"], subsets="t1;t1,t2",
                            device="cpu", baseline="replica", baseline_cache=tmp_path / "cache")
    fits = []
    fit = ReplicaRegressor.fit
    monkeypatch.setattr(ReplicaRegressor, "fit", lambda self, subjects: fits.append(1) or fit(self, subjects))
    first = evaluate(settings)
    # forest by forest: flair from t1, flair from t1+t2, t2 from t1 (t1+t2 has no t2 input) — each fitted once
    assert len(fits) == 3 and len(list((tmp_path / "cache").glob("*.npy"))) == 3 * 2
    monkeypatch.setattr(ReplicaRegressor, "fit", lambda self, subjects: pytest.fail("refitted a kept forest"))
    assert evaluate(settings) == first
    next(iter((tmp_path / "cache").glob("flair-from-t1-*.npy"))).unlink()  # one prediction lost: its forest again
    monkeypatch.setattr(ReplicaRegressor, "fit", lambda self, subjects: fits.append(1) or fit(self, subjects))
    assert evaluate(settings) == first and len(fits) == 4


def test_a_summary_with_an_undefined_correlation_is_written(tmp_path: Path) -> None:
    """A constant uncertainty map has no Spearman correlation (NaN); the summary keeps it as NaN for its group
    instead of failing after every volume was synthesised (statistics.stdev raised on NaN)."""
    import json

    from mrimpute.metrics import metric_names
    from mrimpute.pipeline.evaluate import summarise, write_reports

    rows = []
    for i, rho in enumerate((0.4, float("nan"), 0.2)):
        row = {"subject": f"s{i}", "target": "t1c", "subset": "t1", "n_inputs": 1, "protocol": "brain",
               **{m: 0.5 + i for m in metric_names()}, "unc_pearson": rho, "unc_spearman": rho}
        rows.append(row)
    (entry,) = summarise(rows)
    assert np.isnan(entry["unc_spearman"]) and np.isnan(entry["unc_spearman_sd"])
    assert entry["ssim"] == pytest.approx(1.5) and entry["ssim_sd"] == pytest.approx(1.0)
    _, summary = write_reports(rows, tmp_path)
    assert json.loads(summary.read_text())["brain"][0]["n"] == 3
