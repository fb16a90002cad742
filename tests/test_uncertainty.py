"""synth --uncertainty / --explain and eval --uncertainty: the maps against independent computations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.errors import CheckpointError
from mrimpute.io.checkpoint import save_checkpoint
from mrimpute.io.nifti import load_volume
from mrimpute.metrics import absolute_error, shared_error_spearman, uncertainty_correlation
from mrimpute.model.network import SynthesisNet
from mrimpute.runtime.latent_maps import fusion_winner
from mrimpute.runtime.model_loading import load_model
from mrimpute.runtime.prepared_inputs import normalise_inputs
from mrimpute.runtime.synthesize import Product, synthesize, synthesize_products

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})
CPU = torch.device("cpu")


def _inputs(folder: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    paths = write_subject(folder)
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in names})
    inputs, mask = prepared.volumes, prepared.mask
    return inputs, mask


def test_uncertainty_is_the_spread_of_single_and_fused_syntheses(tmp_path: Path, live_model: Path) -> None:
    model, _ = load_model(live_model, CPU)
    inputs, mask = _inputs(tmp_path / "s", ("t1", "t2"))
    pair, target = ("t1", "t2"), "flair"
    maps = synthesize_products(model, inputs, mask, [Product("uncertainty", pair, target),
                                                     Product("uncertainty", ("t1",), target)], CPU)
    separate = synthesize_products(model, inputs, mask, [Product("synthesis", subset, target)
                                                         for subset in (("t1",), ("t2",), pair)], CPU)
    expected = np.std(np.stack(list(separate.values())), axis=0)
    assert maps[Product("uncertainty", pair, target)][mask].max() > 0
    np.testing.assert_allclose(maps[Product("uncertainty", pair, target)], expected, atol=1e-5)
    assert np.all(maps[Product("uncertainty", ("t1",), target)] == 0)  # one input: its latent is the fused one
    assert np.all(maps[Product("uncertainty", pair, target)][~mask] == 0)


def test_every_map_reuses_one_encoding_per_batch(tmp_path: Path, live_model: Path) -> None:
    model, _ = load_model(live_model, CPU)
    inputs, mask = _inputs(tmp_path / "s", ("t1", "t2", "flair"))
    calls = {m: 0 for m in model.encoders}
    for name, encoder in model.encoders.items():
        encoder.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    subset = ("t1", "t2", "flair")
    products = [Product("synthesis", subset, "t1c"), Product("uncertainty", subset, "t1c"),
                Product("uncertainty", subset, "t2"), Product("explain", subset)]
    maps = synthesize_products(model, inputs, mask, products, CPU, batch_size=64)
    assert calls == {"t1": 1, "t1c": 0, "t2": 1, "flair": 1}
    labels = maps[Product("explain", subset)]
    assert labels.dtype == np.uint8 and set(np.unique(labels[mask])) <= {1, 2, 3} and np.all(labels[~mask] == 0)


def test_fusion_winner_counts_channels() -> None:
    a = torch.zeros(1, 5, 2, 2)
    b = torch.zeros(1, 5, 2, 2)
    a[:, :3] = 1.0  # pixel-wise: a wins channels 0-2, b wins 3-4
    b[:, 3:] = 1.0
    b[:, :, 0, 0] = 2.0  # except at (0, 0), where b wins every channel
    c = torch.full((1, 5, 2, 2), -1.0)
    assert fusion_winner([a, b, c]).tolist() == [[[2, 1], [1, 1]]]
    tie_a, tie_b = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    tie_a[:, 0], tie_b[:, 1] = 1.0, 3.0  # one channel each: the larger mean latent (b) wins
    assert fusion_winner([tie_a, tie_b]).item() == 2


def test_explain_needs_max_fusion(tmp_path: Path) -> None:
    config = ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, fusion="mean")
    save_checkpoint(tmp_path / "mean.pt", config, SynthesisNet(config).state_dict(), {})
    paths = write_subject(tmp_path / "s")
    with pytest.raises(CheckpointError, match="max fusion.*'mean'"):
        synthesize({"t1": paths["t1"], "t2": paths["t2"]}, ["flair"], tmp_path / "mean.pt", "cpu", explain=True)


def test_correlation_with_the_error() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 12, 6))
    truth[2:10, 2:10, 1:5] = 1 + rng.random((8, 8, 4))
    mask = truth > 0
    prediction = np.where(mask, truth + 0.2 * rng.standard_normal(truth.shape), 0)
    scale = lambda v: np.clip(v, 0, None) / np.clip(v, 0, None)[mask].mean()  # noqa: E731 (the brain protocol)
    error = np.abs(scale(prediction) - scale(truth))
    exact = uncertainty_correlation(error, prediction, truth, mask)
    assert exact["pearson"] == pytest.approx(1.0) and exact["spearman"] == pytest.approx(1.0)
    monotone = uncertainty_correlation(error**3, prediction, truth, mask)
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["pearson"] < 0.99
    assert np.isnan(uncertainty_correlation(np.ones_like(truth), prediction, truth, mask)["pearson"])


def test_the_blurred_error_reference_tells_a_smooth_error_from_noise() -> None:
    rng = np.random.default_rng(1)
    truth = np.zeros((40, 40, 12))
    truth[4:36, 4:36, 2:10] = 1.0
    mask = truth > 0
    x = np.linspace(0, 1, 40)[:, None, None] * np.ones((40, 40, 12))
    smooth = np.where(mask, truth * (1 + 0.3 * x), 0)  # an error that grows smoothly across the brain
    noisy = np.where(mask, truth * (1 + 0.1 * rng.standard_normal(truth.shape)), 0)  # an error of pure noise
    map_ = np.ones_like(truth)
    assert uncertainty_correlation(map_, smooth, truth, mask)["blurred_error"] > 0.9
    assert abs(uncertainty_correlation(map_, noisy, truth, mask)["blurred_error"]) < 0.3


def test_the_shared_error_reference_tells_an_error_in_the_truth_from_each_synthesis_own() -> None:
    rng = np.random.default_rng(2)
    truth = np.zeros((30, 30, 10))
    truth[3:27, 3:27, 2:8] = 1.0
    mask = truth > 0
    flaw = np.where(mask, 0.3 * rng.standard_normal(truth.shape), 0)  # what no input shows: every synthesis misses
    syntheses = {k: np.where(mask, truth + 0.01 * rng.standard_normal(truth.shape), 0) for k in "abc"}
    errors = {k: absolute_error(v, truth + flaw, mask) for k, v in syntheses.items()}
    assert all(v > 0.9 for v in shared_error_spearman(errors, mask).values())
    own = {k: np.where(mask, truth + 0.3 * rng.standard_normal(truth.shape), 0) for k in "abc"}  # independent errors
    scores = shared_error_spearman({k: absolute_error(v, truth, mask) for k, v in own.items()}, mask)
    assert all(abs(v) < 0.1 for v in scores.values())
    exact = absolute_error(truth, truth, mask)  # a constant error has no ranking
    assert np.isnan(shared_error_spearman({"a": exact, "b": errors["b"]}, mask)["a"])
    assert np.isnan(shared_error_spearman({"a": errors["a"]}, mask)["a"])  # nothing to share with


def test_synth_writes_the_maps_on_the_reference_grid(tmp_path: Path, live_model: Path) -> None:
    paths = write_subject(tmp_path / "s", codes="LPS")
    args = ["synth", "--t1", str(paths["t1"]), "--t2", str(paths["t2"]), "--model", str(live_model)]
    out = ["--out", str(tmp_path / "flair.nii.gz"), "--uncertainty", str(tmp_path / "u.nii.gz"),
           "--explain", str(tmp_path / "why.nii.gz")]
    result = RUNNER.invoke(app, args + out)
    assert result.exit_code == 0, result.output
    reference = nib.load(paths["t1"])
    for name, dtype in (("u.nii.gz", np.float32), ("why.nii.gz", np.uint8)):
        written = nib.load(tmp_path / name)
        assert written.shape == reference.shape and np.array_equal(written.affine, reference.affine)
        assert written.get_data_dtype() == dtype
    labels = np.asarray(nib.load(tmp_path / "why.nii.gz").dataobj)
    sidecar = json.loads((tmp_path / "why.json").read_text())
    assert sidecar["Labels"] == {"0": "background", "1": "t1", "2": "t2"} and set(np.unique(labels)) <= {0, 1, 2}
    assert (tmp_path / "why.png").stat().st_size > 1000
    again = RUNNER.invoke(app, args + out)
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    several = RUNNER.invoke(app, args + ["--out-dir", str(tmp_path), "--uncertainty", str(tmp_path / "u2.nii.gz")])
    assert several.exit_code == 1 and "maps one target" in several.output
    assert not (tmp_path / "t1c_synth.nii.gz").exists()  # refused before any work


def test_eval_reports_uncertainty_error_correlations(tmp_path: Path, live_model: Path) -> None:
    write_subject(tmp_path / "data" / "s0")
    result = RUNNER.invoke(app, ["eval", "--model", str(live_model), "--data", str(tmp_path / "data"), "--targets",
                                 "flair", "--subsets", "t1,t2;t1", "--uncertainty", "--no-qc",
                                 "--out-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "ev" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(-1 <= float(r["unc_pearson"]) <= 1 for r in rows if r["subset"] == "t1+t2")
    assert all(r["unc_spearman"] == "nan" for r in rows if r["subset"] == "t1")  # one input: no spread
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert {"unc_pearson", "unc_spearman", "unc_shared_error"} <= set(summary["brain"][0])
    shared = [float(r["unc_shared_error"]) for r in rows if r["protocol"] == "brain"]
    assert len(shared) == 2 and shared[0] == pytest.approx(shared[1]) and -1 <= shared[0] <= 1  # each the other's
    assert "other inputs' |error| rho" in result.output
