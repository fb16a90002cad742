"""The training recipe: incomplete subjects, the declared split, augmentation, SSIM, schedule, EMA, resume rules,
settings and output refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.data.slices import SliceSampler
from mrimpute.data.split import load_split
from mrimpute.data.subjects import discover_subjects, load_subject
from mrimpute.errors import CheckpointError, InputError, OutputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.model.augment import Augmentation, augment, parse_augmentations
from mrimpute.model.losses import LossTerms, pixel_loss, ssim
from mrimpute.pipeline.evaluate import check_held_out
from mrimpute.pipeline.train import TrainSettings, last_checkpoint_path, train
from mrimpute.runtime.schedule import learning_rate

from conftest import write_subject


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    for i in range(4):
        write_subject(tmp_path / "data" / f"s{i}", codes=("RAS", "LPS", "LAS", "RAS")[i], seed=i)
    (tmp_path / "data" / "s3" / "flair.nii.gz").unlink()  # an incomplete subject
    (tmp_path / "split.toml").write_text('name = "tiny"\ntest = ["s0"]\nvalidation = ["s1"]\n')
    return tmp_path / "data"


def _settings(dataset: Path, out: Path, **overrides) -> TrainSettings:
    network = ModelConfig(inputs=["t1", "t2", "flair"], outputs=["t2", "flair"], width=0.125)
    values = dict(data=dataset, out=out, model=network, epochs=2, steps_per_epoch=3, batch_size=4, crop=16,
                  val_crops=4, seed=3, device="cpu", split=dataset.parent / "split.toml")
    values.update(overrides)
    return TrainSettings(**values)


def test_the_split_keeps_test_subjects_out_and_picks_validation(dataset: Path, tmp_path: Path) -> None:
    split = load_split(dataset.parent / "split.toml")
    assert split.name == "tiny" and split.part("test") == ("s0",)
    metadata = load_checkpoint(train(_settings(dataset, tmp_path / "m.pt")))["metadata"]
    assert metadata["training_subjects"] == ["s2", "s3"] and metadata["validation_subjects"] == ["s1"]
    with pytest.raises(InputError, match="saw s1"):
        check_held_out(["s1"], metadata, "test", "m.pt")
    check_held_out(["s0"], metadata, "test", "m.pt")  # never seen: fine
    (tmp_path / "bad.toml").write_text('test = ["a"]\nvalidation = ["a"]\n')
    with pytest.raises(InputError, match="both test and validation"):
        load_split(tmp_path / "bad.toml")


def test_a_subject_missing_a_contrast_trains_what_it_has(dataset: Path) -> None:
    subjects = {s.name: s for s in discover_subjects(dataset)}
    loaded = [load_subject(subjects["s2"], ["t1", "t2", "flair"]), load_subject(subjects["s3"], ["t1", "t2"])]
    sampler = SliceSampler(loaded, ["t1", "t2", "flair"], 2, 16, targets=True)
    assert sorted(sampler.groups) == [("t1", "t2"), ("t1", "t2", "flair")]
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(20):
        planes, batch = sampler.batch_with_planes(4, rng)
        assert batch.shape == (len(planes), 4, 16, 16)
        seen.add(tuple(planes))
    assert ("t1", "t2", "target:t1", "target:t2") in seen and len(seen) == 2


def test_augmentation_is_seeded_keeps_targets_and_lesions_clean() -> None:
    rng = np.random.default_rng(0)
    planes = torch.rand(3, 6, 40, 40) + 0.5
    planes[2] = (planes[2] > 1.2).float()
    names = ["t1", "target:t1", "lesion"]
    aug = parse_augmentations("intensity,spatial")
    assert aug == Augmentation(intensity=True, spatial=True) and aug.margin(32) > 0
    a = augment(aug, planes.clone(), names, ["t1"], 32, np.random.default_rng(1))
    b = augment(aug, planes.clone(), names, ["t1"], 32, np.random.default_rng(1))
    assert a.shape == (3, 6, 32, 32) and torch.equal(a, b)
    assert set(torch.unique(a[2]).tolist()) <= {0.0, 1.0}
    only_spatial = augment(Augmentation(spatial=True), planes.clone(), names, ["t1"], 32, np.random.default_rng(1))
    assert torch.allclose(only_spatial[1], a[1])  # the target got the spatial change only
    assert not torch.allclose(only_spatial[0], a[0])  # the input got intensity changes on top
    centre = augment(Augmentation(), planes.clone(), names, ["t1"], 32, rng)
    assert torch.equal(centre, planes[..., 4:36, 4:36])
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_augmentations("colour")


def test_ssim_term() -> None:
    x = torch.rand(2, 1, 24, 24)
    assert float(ssim(x, x)) == pytest.approx(1.0)
    assert float(ssim(x, torch.rand(2, 1, 24, 24))) < 0.5
    assert float(pixel_loss(x, x + 0.1, 0.0)) == pytest.approx(0.1, abs=1e-5)
    assert float(pixel_loss(x, torch.flip(x, [-1]), 0.5)) > float(pixel_loss(x, torch.flip(x, [-1]), 0.0))


def test_cosine_schedule_with_warm_up() -> None:
    assert learning_rate(1e-3, 0, 100, "cosine", 10) == pytest.approx(1e-4)
    assert learning_rate(1e-3, 9, 100, "cosine", 10) == pytest.approx(1e-3)
    assert learning_rate(1e-3, 100, 100, "cosine", 10) == pytest.approx(1e-5)
    assert learning_rate(1e-3, 55, 100, "constant", 10) == 1e-3


def test_the_full_recipe_trains_ships_the_average_and_resumes_only_unchanged(dataset: Path, tmp_path: Path) -> None:
    recipe = dict(augmentation=Augmentation(intensity=True, spatial=True), input_dropout=True,
                  terms=LossTerms(ssim=0.5), lr_schedule="cosine", warmup_steps=2, ema=0.9, epochs=2)
    best = train(_settings(dataset, tmp_path / "r.pt", **recipe, time_limit_min=1e-6))  # stops after epoch 1
    last = load_checkpoint(last_checkpoint_path(best))
    assert last["train_state"]["epoch"] == 1 and "ema" in last
    shipped = load_checkpoint(best)["state_dict"]
    assert any(not torch.equal(shipped[k], v) for k, v in last["state_dict"].items())  # the average, not the raw
    with pytest.raises(CheckpointError, match="lr"):
        train(_settings(dataset, tmp_path / "r.pt", **recipe, lr=5e-4, resume=True))
    train(_settings(dataset, tmp_path / "r.pt", **recipe, resume=True))
    assert load_checkpoint(last_checkpoint_path(best))["train_state"]["epoch"] == 2


def test_training_never_writes_over_data_or_an_existing_model(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="end in .pt|training volume"):
        train(_settings(dataset, dataset / "s2" / "t1.nii.gz", force=True))
    volume = dataset / "s2" / "t1.nii.gz"
    link = dataset / "s2" / "model.pt"
    link.symlink_to(volume)
    before = volume.read_bytes()
    with pytest.raises(OutputError, match="training volume"):
        train(_settings(dataset, link, force=True))
    assert volume.read_bytes() == before
    (tmp_path / "taken.pt").write_bytes(b"x")
    with pytest.raises(OutputError, match="--force"):
        train(_settings(dataset, tmp_path / "taken.pt"))
    assert train(_settings(dataset, tmp_path / "new" / "folder" / "m.pt")).is_file()  # its folder is created


@pytest.mark.parametrize("options, message", [
    (["--lr", "nan"], "--lr nan"), (["--lr", "-1"], "--lr -1"), (["--lr", "inf"], "--lr inf"),
    (["--slice-axis", "bogus"], "slice axis"), (["--no-c1", "--no-c2", "--no-c3"], "no cost term"),
    (["--latent", "100000"], "--latent 100000"), (["--crop", "4000"], "--crop 4000"),
    (["--batch-size", "100000"], "--batch-size 100000"), (["--time-limit", "-5"], "--time-limit -5"),
    (["--fusion", "hemis", "--latent", "3"], "even latent"), (["--augment", "colour"], "unknown augmentation"),
    (["--lr-schedule", "step"], "--lr-schedule step"), (["--ema", "1.5"], "--ema 1.5"),
])
def test_impossible_settings_are_one_line_errors(dataset: Path, tmp_path: Path, options: list[str], message: str
                                                 ) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(dataset), "--out", str(tmp_path / "m.pt"), *options])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "m.pt").exists()


def test_a_new_encoder_trains_from_subjects_with_only_some_of_the_models_contrasts(dataset: Path,
                                                                                    tmp_path: Path) -> None:
    from mrimpute.pipeline.extend import add_encoder

    parent = train(_settings(dataset, tmp_path / "parent.pt", split=None, val_subjects=["s1"]))
    for name in ("s0", "s2"):  # these two have the new contrast (pd) beside FLAIR only
        folder = dataset / name
        (folder / "t2.nii.gz").rename(folder / "pd.nii.gz")
        (folder / "t1.nii.gz").unlink()
    extended = add_encoder(parent, "pd", _settings(dataset, tmp_path / "pd.pt", split=None, val_subjects=["s0"],
                                                   subjects=["s0", "s2"]))
    payload = load_checkpoint(extended)
    assert payload["config"]["inputs"] == ["t1", "t2", "flair", "pd"]
    assert payload["metadata"]["training_subjects"] == ["s2"]
    parent_weights = load_checkpoint(parent)["state_dict"]
    assert all(torch.equal(parent_weights[k], v) for k, v in payload["state_dict"].items() if k in parent_weights)


def test_learnt_error_heads_train_frozen_and_map_the_uncertainty(dataset: Path, tmp_path: Path) -> None:
    from mrimpute.pipeline.extend import add_error_heads
    from mrimpute.runtime.synthesize import synthesize

    parent = train(_settings(dataset, tmp_path / "parent.pt"))
    heads = add_error_heads(parent, _settings(dataset, tmp_path / "heads.pt", epochs=3, lr=3e-3))
    payload = load_checkpoint(heads)
    assert payload["config"]["error_heads"] == ["t2", "flair"] and payload["config"]["error_head_form"] == "log"
    assert payload["metadata"]["error_loss"] == "l1"
    parent_weights = load_checkpoint(parent)["state_dict"]
    assert all(torch.equal(parent_weights[k], v) for k, v in payload["state_dict"].items() if k in parent_weights)
    history = load_checkpoint(last_checkpoint_path(heads))["train_state"]["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # the heads learnt something about the error
    inputs = {m: dataset / "s1" / f"{m}.nii.gz" for m in ("t1", "t2")}
    learnt = synthesize(inputs, ["flair"], heads, "cpu", uncertainty=True)
    spread = synthesize(inputs, ["flair"], parent, "cpu", uncertainty=True)
    assert np.array_equal(learnt.outputs["flair"], spread.outputs["flair"])  # the synthesis itself is the parent's
    assert learnt.uncertainty["flair"][learnt.mask].min() > 0 and np.isfinite(learnt.uncertainty["flair"]).all()
    assert not np.allclose(learnt.uncertainty["flair"], spread.uncertainty["flair"])
    with pytest.raises(InputError, match="already has error heads"):
        add_error_heads(heads, _settings(dataset, tmp_path / "again.pt"))


@pytest.mark.parametrize("fit", ["laplace", "l1"])
def test_the_error_heads_fits_learn_the_mean_or_the_median_absolute_error(fit: str) -> None:
    """The Laplace likelihood's minimiser is the mean of |error|; L1's is its median (0.3 for these errors: 0 on 40%
    of the pixels, then 0.1 to 1.0)."""
    from mrimpute.model.error_head import laplace_nll, log_l1

    error = torch.zeros(1000)
    error[:600] = torch.linspace(1.0, 0.1, 600)
    log_scale = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.Adam([log_scale], lr=0.02)
    for _ in range(1500):
        optimiser.zero_grad()
        (laplace_nll if fit == "laplace" else log_l1)(log_scale.expand(1000), error).backward()
        optimiser.step()
    expected = error.mean() if fit == "laplace" else error.median()
    assert float(log_scale.detach().exp()) == pytest.approx(float(expected), rel=0.03)


def test_error_heads_map_a_positive_error_and_read_their_first_form() -> None:
    """A log-form head (no output ReLU) gives exp of its output, positive however negative the output; a checkpoint
    whose config predates the form has ReLU heads read as they were trained (the expected |error| itself)."""
    from mrimpute.config import ModelConfig
    from mrimpute.model.network import ErrorHead, SynthesisNet

    config = ModelConfig(inputs=["t1", "t2"], outputs=["t1", "t2"], width=0.125, error_heads=["t2"])
    model = SynthesisNet(config).eval()
    assert isinstance(model.error_heads["t2"], ErrorHead) and config.error_head_form == "log"
    torch.nn.init.constant_(model.error_heads["t2"].head[0].bias, -20.0)  # far below any real log-error
    with torch.no_grad():
        latents = list(model.encode({"t1": torch.rand(1, 1, 16, 16)}).values())
        raw, expected = model.error_head_output(latents, "t2"), model.expected_error(latents, "t2")
    assert float(raw.max()) < -12 and float(expected.min()) > 0
    legacy = {k: v for k, v in config.to_dict().items() if k != "error_head_form"}
    first = SynthesisNet(ModelConfig.from_dict(legacy))
    assert first.config.error_head_form == "relu" and isinstance(first.error_heads["t2"].head[-1], torch.nn.ReLU)
    assert first.state_dict().keys() == model.state_dict().keys()


def test_the_time_limit_counts_this_process_not_the_runs_earlier_sessions(dataset: Path, tmp_path: Path) -> None:
    best = train(_settings(dataset, tmp_path / "t.pt", epochs=3, time_limit_min=1e-6))  # stops after epoch 1
    last_path = last_checkpoint_path(best)
    last = torch.load(last_path, weights_only=False)
    last["train_state"]["seconds"] = 1e6  # earlier sessions trained for days
    torch.save(last, last_path)
    train(_settings(dataset, tmp_path / "t.pt", epochs=3, time_limit_min=10, resume=True))
    assert load_checkpoint(last_path)["train_state"]["epoch"] == 3  # a fresh 10 minutes, not out of time at once
