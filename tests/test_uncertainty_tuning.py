"""tune-uncertainty: the blur of each error head's map chosen on validation subjects, and applied by synthesis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ConfigError, ModelConfig
from mrimpute.data.intensity import blur_inside
from mrimpute.io.checkpoint import load_checkpoint, save_checkpoint
from mrimpute.io.nifti import load_volume
from mrimpute.metrics import blurred_map_spearman, uncertainty_correlation
from mrimpute.model.network import SynthesisNet
from mrimpute.pipeline.uncertainty_tuning import summarise_blurs
from mrimpute.runtime.model_loading import load_model
from mrimpute.runtime.prepared_inputs import normalise_inputs
from mrimpute.runtime.synthesize import Product, synthesize_products

from conftest import MODALITIES, write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def heads_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random model with an error head per output, trained (says its metadata) on subject 'seen'."""
    torch.manual_seed(0)
    config = ModelConfig(inputs=list(MODALITIES), outputs=list(MODALITIES), width=0.125,
                         error_heads=list(MODALITIES))
    network = SynthesisNet(config)
    for decoder in network.decoders.values():
        torch.nn.init.constant_(decoder.head[0].bias, 1.0)
    path = tmp_path_factory.mktemp("model") / "heads.pt"
    save_checkpoint(path, config, network.state_dict(), {"training_subjects": ["seen"]})
    return path


def test_blurred_map_spearman_at_sigma_zero_is_the_plain_correlation() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.5, 1.5, (20, 20, 8))
    prediction = truth + rng.normal(0, 0.2, truth.shape)
    mask = np.ones(truth.shape, bool)
    map_ = np.abs(prediction - truth) + rng.normal(0, 0.05, truth.shape)
    scores = blurred_map_spearman(map_, prediction, truth, mask, (0.0, 2.0))
    assert scores[0.0] == pytest.approx(uncertainty_correlation(map_, prediction, truth, mask)["spearman"])
    assert scores[2.0] < scores[0.0]  # the error is noise: blurring its map only loses it
    assert np.isnan(blurred_map_spearman(np.ones_like(truth), prediction, truth, mask, (0.0,))[0.0])


def test_summarise_blurs_keeps_each_targets_best_sigma() -> None:
    rows = [{"subject": "a", "target": "t1", "subset": "t2", 0.0: 0.2, 2.0: 0.3},
            {"subject": "b", "target": "t1", "subset": "t2", 0.0: 0.2, 2.0: 0.25},
            {"subject": "a", "target": "t2", "subset": "t1", 0.0: 0.5, 2.0: 0.4},
            {"subject": "a", "target": "flair", "subset": "t1", 0.0: float("nan"), 2.0: float("nan")}]
    tuning = summarise_blurs(rows, (0.0, 2.0))
    assert tuning.means["t1"] == {0.0: pytest.approx(0.2), 2.0: pytest.approx(0.275)}
    assert tuning.chosen == {"t1": 2.0, "t2": 0.0, "flair": 0.0}  # undefined everywhere: no blur


def test_a_blur_needs_an_error_head() -> None:
    with pytest.raises(ConfigError, match="error head"):
        ModelConfig(error_map_blur={"t1": 2.0})
    with pytest.raises(ConfigError, match="sigma"):
        ModelConfig(error_heads=["t1"], error_map_blur={"t1": -1.0})


def test_tune_uncertainty_writes_a_copy_whose_maps_are_blurred(tmp_path: Path, heads_model: Path) -> None:
    data = tmp_path / "data"
    for name, seed in (("val1", 1), ("val2", 2), ("seen", 3)):
        write_subject(data / name, seed=seed)
    out = tmp_path / "tuned.pt"
    args = ["tune-uncertainty", "--model", str(heads_model), "--data", str(data), "--out", str(out),
            "--subsets", "single", "--sigmas", "0,1,3"]
    result = RUNNER.invoke(app, args + ["--subjects", "val1,val2"])
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(out)
    report = json.loads(out.with_suffix(".json").read_text())
    chosen = report["chosen"]
    assert set(chosen) == set(MODALITIES) and payload["config"]["error_map_blur"] == {
        t: s for t, s in chosen.items() if s > 0}
    assert payload["metadata"]["error_map_blur"]["tuned_on"] == ["val1", "val2"]
    assert any(s > 0 for s in chosen.values())  # this model and data: something is blurred, so the check bites
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(MODALITIES) * 3  # a header, then 2 subjects x 4 targets x 3 single inputs
    original = load_checkpoint(heads_model)["state_dict"]
    assert all(torch.equal(original[k], v) for k, v in payload["state_dict"].items())  # the same weights

    # synthesis with the tuned copy: the original map blurred inside the brain by the chosen sigma
    subject = write_subject(tmp_path / "other", seed=4)
    prepared = normalise_inputs({m: load_volume(subject[m]).data for m in ("t1", "t2")})
    request = [Product("uncertainty", ("t1", "t2"), target) for target in ("t1c", "flair")]
    cpu = torch.device("cpu")
    plain = synthesize_products(load_model(heads_model, cpu)[0], prepared.volumes, prepared.mask, request, cpu)
    tuned = synthesize_products(load_model(out, cpu)[0], prepared.volumes, prepared.mask, request, cpu)
    for product in request:
        sigma = chosen[product.target]
        expected = blur_inside(plain[product], prepared.mask, sigma) if sigma > 0 else plain[product]
        np.testing.assert_allclose(tuned[product], np.where(prepared.mask, expected, 0), rtol=1e-4, atol=1e-6)

    again = RUNNER.invoke(app, args + ["--subjects", "val1"])
    assert again.exit_code == 1 and "exists" in again.output
    seen = RUNNER.invoke(app, args + ["--subjects", "seen", "--force"])
    assert seen.exit_code == 1 and "saw seen" in seen.output
