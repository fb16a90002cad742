"""train-decoder / train-encoder: the parent is untouched, frozen weights stay bit for bit, the new part learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.data.slices import SliceSampler
from mrimpute.data.subjects import discover_subjects, load_subject
from mrimpute.errors import InputError, OutputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.io.checksum import sha256_file
from mrimpute.model.losses import latent_variance
from mrimpute.model.network import SynthesisNet
from mrimpute.pipeline.extend import add_decoder, add_encoder
from mrimpute.pipeline.train import TrainSettings, last_checkpoint_path, train
from mrimpute.runtime.model_loading import load_model
from mrimpute.runtime.synthesize import synthesize

from conftest import write_subject


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extend")
    for i in range(3):
        write_subject(root / "data" / f"s{i}", codes=("RAS", "LPS", "LAS")[i], seed=i)
    return root / "data"


def _settings(dataset: Path, out: Path, **overrides) -> TrainSettings:
    network = ModelConfig(inputs=["t1", "t2"], outputs=["t2"], width=0.125)
    values = dict(data=dataset, out=out, model=network, epochs=1, steps_per_epoch=2, batch_size=4, crop=16,
                  val_crops=4, seed=3, device="cpu", val_subjects=["s1"])
    values.update(overrides)
    return TrainSettings(**values)


@pytest.fixture(scope="module")
def parent(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained model: inputs t1, t2; output t2 only (a seed whose decoder is not stuck at zero output)."""
    path = train(_settings(dataset, tmp_path_factory.mktemp("parent") / "parent.pt", epochs=3, steps_per_epoch=4,
                           lr=3e-3, seed=0))
    history = load_checkpoint(last_checkpoint_path(path))["train_state"]["history"]
    assert history[-1]["val_loss"] < 0.8 * history[0]["val_loss"]  # the parent learned something to build on
    return path


def _check_frozen(parent: Path, new: Path, added: str) -> None:
    old, grown = load_checkpoint(parent)["state_dict"], load_checkpoint(new)["state_dict"]
    assert all(torch.equal(old[key], grown[key]) for key in old)  # every parent weight, bit for bit
    new_keys = [key for key in grown if key not in old]
    assert new_keys and all(key.startswith(added + ".") for key in new_keys)
    meta = load_checkpoint(new)["metadata"]["extension"]
    assert meta["added"] == added and meta["parent_sha256"] == sha256_file(parent)
    assert set(meta["frozen"]) == {"encoders.t1", "encoders.t2", "decoders.t2"}
    card = new.with_suffix(".md").read_text()
    assert sha256_file(parent) in card and added in card


def test_new_decoder_learns_with_everything_else_frozen(dataset: Path, parent: Path, tmp_path: Path) -> None:
    before = sha256_file(parent), sha256_file(parent.with_suffix(".md"))
    new = add_decoder(parent, "flair", _settings(dataset, tmp_path / "dec.pt", epochs=5, steps_per_epoch=4, lr=3e-3))
    assert (sha256_file(parent), sha256_file(parent.with_suffix(".md"))) == before
    _check_frozen(parent, new, "decoders.flair")
    history = load_checkpoint(last_checkpoint_path(new))["train_state"]["history"]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]  # c1 + c3 of the new output only
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    model, _ = load_model(new, torch.device("cpu"))
    assert model.config.outputs == ["t2", "flair"]
    files = write_subject(tmp_path / "subject")
    result = synthesize({"t1": files["t1"]}, ["flair"], new, "cpu")
    assert result.outputs["flair"][result.mask].std() > 0


def _new_encoder_cost(model: SynthesisNet, batch: np.ndarray) -> float:
    """c1 + c2 of the new flair encoder on fixed crops: its latent decoded to t2 by the frozen decoder (MAE), and the
    variance between its latent and the frozen encoders' latents."""
    planes = dict(zip(("t1", "t2", "flair", "target:t1", "target:t2", "target:flair"),
                      torch.from_numpy(batch).unsqueeze(2)))
    images = {m: planes[m] for m in ("t1", "t2", "flair")}
    with torch.no_grad():
        latents = model.encode(images)
        decoded = model.decoders["t2"](latents["flair"])
    return float((decoded - planes["target:t2"]).abs().mean() + latent_variance(list(latents.values())))


def test_new_encoder_lands_in_the_frozen_latent_space(dataset: Path, parent: Path, tmp_path: Path) -> None:
    before = sha256_file(parent)
    settings = _settings(dataset, tmp_path / "enc.pt", epochs=10, steps_per_epoch=4, lr=3e-3)
    new = add_encoder(parent, "flair", settings)
    assert sha256_file(parent) == before
    _check_frozen(parent, new, "encoders.flair")
    trained, _ = load_model(new, torch.device("cpu"))
    torch.manual_seed(settings.seed)  # the new encoder as training started: same seed, parent weights loaded
    untrained = SynthesisNet(ModelConfig.from_dict(load_checkpoint(new)["config"])).eval()
    untrained.load_state_dict(load_checkpoint(parent)["state_dict"], strict=False)
    subjects = [load_subject(s, ["t1", "t2", "flair"]) for s in discover_subjects(dataset) if s.name == "s1"]
    batch = SliceSampler(subjects, ["t1", "t2", "flair"], 2, 16, targets=True).batch(16, np.random.default_rng(0))
    assert _new_encoder_cost(trained, batch) < 0.9 * _new_encoder_cost(untrained, batch)


def test_refusals(dataset: Path, parent: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="already has a decoder for t2"):
        add_decoder(parent, "t2", _settings(dataset, tmp_path / "x.pt"))
    with pytest.raises(InputError, match="already has an encoder for t1"):
        add_encoder(parent, "T1w", _settings(dataset, tmp_path / "x.pt"))
    with pytest.raises(OutputError, match="overwrite an input"):
        add_decoder(parent, "flair", _settings(dataset, parent), force=True)
    (tmp_path / "taken.pt").write_bytes(b"")
    with pytest.raises(OutputError, match="--force"):
        add_decoder(parent, "flair", _settings(dataset, tmp_path / "taken.pt"))


def test_cli_train_decoder(dataset: Path, parent: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["train-decoder", "--model", str(parent), "--output", "t1c", "--data", str(dataset), "--out",
            str(tmp_path / "new.pt"), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--crop", "16",
            "--device", "cpu", "--val-subjects", "s1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "new.pt")["config"]["outputs"] == ["t2", "t1c"]
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "error:" in again.output and "--force" in again.output
    wrong = runner.invoke(app, ["train-encoder", "--model", str(parent), "--input", "t2", "--data", str(dataset),
                                "--out", str(tmp_path / "e.pt")])
    assert wrong.exit_code == 1 and "already has an encoder for t2" in wrong.output


def test_init_from_fine_tunes_the_parent_with_its_network(dataset: Path, parent: Path, tmp_path: Path) -> None:
    """--init-from without --lesion-channel: the parent's network and weights, every part trained further (a zero
    learning rate keeps them bit for bit); the command's own network options do not apply."""
    runner = CliRunner(env={"COLUMNS": "200"})
    common = ["train", "--init-from", str(parent), "--data", str(dataset), "--epochs", "1", "--steps-per-epoch", "2",
              "--batch-size", "4", "--crop", "16", "--device", "cpu", "--val-subjects", "s1", "--width", "1"]
    still = tmp_path / "still.pt"
    result = runner.invoke(app, [*common, "--out", str(still), "--lr", "0"])
    assert result.exit_code == 0, result.output
    old, kept = load_checkpoint(parent), load_checkpoint(still)
    assert kept["config"] == old["config"]  # width 0.125 and output t2 as the parent, not --width 1
    assert all(torch.equal(old["state_dict"][k], v) for k, v in kept["state_dict"].items())
    assert kept["metadata"]["extension"]["parent_sha256"] == sha256_file(parent)
    moved = tmp_path / "moved.pt"
    result = runner.invoke(app, [*common, "--out", str(moved), "--lr", "1e-3", "--mse", "1"])
    assert result.exit_code == 0, result.output
    tuned = load_checkpoint(moved)
    assert any(not torch.equal(old["state_dict"][k], v) for k, v in tuned["state_dict"].items())
    assert tuned["metadata"]["train_settings"]["terms"]["mse"] == 1.0
    again = runner.invoke(app, [*common, "--out", str(moved)])
    assert again.exit_code == 1 and "--force" in again.output
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "bad.pt"), "--mse", "-1"])
    assert bad.exit_code == 1 and "--mse -1.0: must be 0 or more" in bad.output
