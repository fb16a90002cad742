"""Training: repeatable with a seed, resumable after an interruption, early stopping, checkpoint contents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrimpute.config import ModelConfig
from mrimpute.errors import CheckpointError, InputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.pipeline.train import TrainSettings, last_checkpoint_path, train

from conftest import write_subject


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    for i in range(3):
        write_subject(tmp_path / "data" / f"s{i}", codes=("RAS", "LPS", "LAS")[i], seed=i)
    return tmp_path / "data"


def _settings(dataset: Path, out: Path, model: dict | None = None, **overrides) -> TrainSettings:
    network = ModelConfig(**{"inputs": ["t1", "t2"], "outputs": ["t2", "flair"], "width": 0.125, **(model or {})})
    values = dict(data=dataset, out=out, model=network, epochs=2, steps_per_epoch=2, batch_size=4, crop=16,
                  val_crops=4, seed=3, device="cpu")
    values.update(overrides)
    return TrainSettings(**values)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def test_same_seed_same_model(dataset: Path, tmp_path: Path) -> None:
    a = train(_settings(dataset, tmp_path / "a.pt"))
    b = train(_settings(dataset, tmp_path / "b.pt"))
    wa, wb = _weights(last_checkpoint_path(a)), _weights(last_checkpoint_path(b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(_settings(dataset, tmp_path / "c.pt", seed=4))
    assert not all(torch.equal(wa[k], v) for k, v in _weights(last_checkpoint_path(c)).items())


def test_resume_continues_exactly(dataset: Path, tmp_path: Path) -> None:
    straight = train(_settings(dataset, tmp_path / "straight.pt", epochs=3))
    train(_settings(dataset, tmp_path / "split.pt", epochs=1))  # as if killed after epoch 1
    resumed = train(_settings(dataset, tmp_path / "split.pt", epochs=3, resume=True))
    wa, wb = _weights(last_checkpoint_path(straight)), _weights(last_checkpoint_path(resumed))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert load_checkpoint(last_checkpoint_path(resumed))["train_state"]["epoch"] == 3


def test_checkpoint_metadata_and_card(dataset: Path, tmp_path: Path) -> None:
    path = train(_settings(dataset, tmp_path / "m.pt", val_subjects=["s1"]))
    payload = load_checkpoint(path)
    assert payload["config"]["inputs"] == ["t1", "t2"] and payload["config"]["outputs"] == ["t2", "flair"]
    meta = payload["metadata"]
    assert meta["training_subjects"] == ["s0", "s2"] and meta["validation_subjects"] == ["s1"]
    assert {"created", "normalisation", "validation", "best_epoch", "training_seconds"} <= set(meta)
    assert payload["format_version"] == 1 and "package_version" in payload
    card = path.with_suffix(".md").read_text()
    assert "t1, t2" in card and "s0" in card


def test_early_stopping(dataset: Path, tmp_path: Path) -> None:
    path = train(_settings(dataset, tmp_path / "m.pt", epochs=50, lr=0.0, patience=2))
    state = load_checkpoint(last_checkpoint_path(path))["train_state"]
    assert state["epoch"] == 3 and state["best_epoch"] == 1  # no learning: no improvement after epoch 1


def test_resume_refuses_other_settings_and_missing_state(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_settings(dataset, tmp_path / "none.pt", resume=True))
    train(_settings(dataset, tmp_path / "m.pt", epochs=1))
    with pytest.raises(CheckpointError, match="other model settings"):
        train(_settings(dataset, tmp_path / "m.pt", model={"width": 0.25}, resume=True))


def test_unknown_subject_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no subject named 'zz'"):
        train(_settings(dataset, tmp_path / "m.pt", exclude=["zz"]))


def test_mean_max_fusion_learns_its_mix_and_reports_it(dataset: Path, tmp_path: Path) -> None:
    path = train(_settings(dataset, tmp_path / "mix.pt", model={"fusion": "mean-max"}, epochs=1))
    payload = load_checkpoint(path)
    mix = payload["state_dict"]["fusion_mix"]
    assert mix.shape == (16,) and mix.abs().max() > 0  # trained away from its start at 0 (max share 0.5)
    share = payload["metadata"]["fusion_max_share"]
    assert share == [round(float(v), 3) for v in torch.sigmoid(mix)]
    assert "fusion max share" in path.with_suffix(".md").read_text()
