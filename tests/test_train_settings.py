"""Training settings: each default once (the dataclasses; the CLI reads them), configuration errors as one line,
and the recorded form that --resume compares, checked against the shipped default model's interrupted run."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.config import ConfigError, ModelConfig
from mrimpute.errors import CheckpointError, InputError, MrimputeError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.model.network import SynthesisNet
from mrimpute.pipeline import crossval, extend, train
from mrimpute.runtime import device
from mrimpute.runtime.schedule import ExponentialAverage
from mrimpute.runtime.train_settings import EXTENSION_EPOCHS, TrainSettings, recorded_defaults, recorded_settings

ROOT = Path(__file__).resolve().parents[1]
RUN_SCRIPT = ROOT / "models" / "training" / "run_default_v2.sh"
LAST = ROOT / "models" / "training" / "default-v2.last.pt"


class _Captured(MrimputeError):
    """Raised by the stand-in for training once it has the settings (the CLI prints it as one line)."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list:
    """The settings every training entry point would get; nothing is trained, no thread count set."""
    seen: list = []

    def capture(*args: object, **kwargs: object) -> None:
        seen.append(args)
        raise _Captured("captured")

    for module, name in ((train, "train"), (crossval, "cross_validate"), (extend, "add_decoder"),
                         (extend, "add_encoder"), (extend, "add_error_heads")):
        monkeypatch.setattr(module, name, capture)
    monkeypatch.setattr(device, "set_threads", lambda threads: None)
    return seen


def _settings_from_cli(captured: list, arguments: list[str]) -> TrainSettings:
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1 and "error: captured" in result.output, result.output
    settings = next(arg for arg in captured[-1] if isinstance(arg, TrainSettings))
    return settings


def test_the_cli_defaults_are_the_dataclasses(captured: list, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "m.pt"
    assert _settings_from_cli(captured, ["train", "--data", str(data), "--out", str(out)]) == \
        TrainSettings(data=data, out=out)
    parent = ["--model", str(tmp_path / "parent.pt"), "--data", str(data), "--out", str(out)]
    for command in (["train-decoder", "--output", "t1c"], ["train-encoder", "--input", "pd"], ["train-uncertainty"]):
        extension = _settings_from_cli(captured, [*command, *parent])
        assert extension == TrainSettings(data=data, out=out, epochs=EXTENSION_EPOCHS), command
        assert captured[-1][0] == tmp_path / "parent.pt" and captured[-1][1] in ("t1c", "pd", extension)
    folds = _settings_from_cli(captured, ["eval", "--data", str(data), "--folds", "2", "--out-dir",
                                          str(tmp_path / "cv")])
    assert folds == TrainSettings(data=data, out=tmp_path / "cv" / "unused.pt")


def test_options_reach_the_model_and_the_recipe(captured: list, tmp_path: Path) -> None:
    settings = _settings_from_cli(captured, [
        "train", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), "--inputs", "T1w,t2", "--outputs", "flair",
        "--width", "0.5", "--fusion", "hemis", "--latent", "8", "--slice-axis", "coronal", "--lesion-channel",
        "--lesion-masks", "either", "--no-c2", "--ssim", "0.25", "--full-c1", "--augment", "spatial",
        "--exclude", "a, b", "--time-limit", "5"])
    assert settings.model == ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.5, fusion="hemis", latent=8,
                                         slice_axis="coronal", lesion_channel=True)
    assert (settings.terms.c1, settings.terms.c2, settings.terms.ssim) == (True, False, 0.25)
    assert settings.augmentation.spatial and not settings.augmentation.intensity
    assert (settings.lesion_source, settings.sample_c1_outputs, settings.exclude, settings.time_limit_min) == \
        ("either", False, ["a", "b"], 5.0)
    folds = _settings_from_cli(captured, ["eval", "--data", str(tmp_path), "--folds", "2", "--out-dir",
                                          str(tmp_path / "cv"), "--train-width", "0.125", "--train-steps", "3",
                                          "--train-outputs", "t2", "--seed", "4"])
    assert (folds.model.width, folds.model.outputs, folds.steps_per_epoch, folds.seed) == (0.125, ["t2"], 3, 4)


def test_configuration_errors_are_one_line(tmp_path: Path) -> None:
    for bad in ({"slice_axis": "foo"}, {"fusion": "hemis", "latent": 3}, {"fusion": "median"}, {"width": 0}):
        with pytest.raises(ConfigError) as raised:
            ModelConfig(**bad)
        assert isinstance(raised.value, InputError) and isinstance(raised.value, ValueError)
    for command in (["train", "--slice-axis", "foo"], ["train", "--fusion", "hemis", "--latent", "3"],
                    ["eval", "--folds", "2", "--train-width", "-1"], ["eval", "--folds", "2", "--train-inputs", "xx"]):
        result = CliRunner().invoke(app, [*command, "--data", str(tmp_path), *(
            ["--out", str(tmp_path / "m.pt")] if command[0] == "train" else ["--out-dir", str(tmp_path / "cv")])])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert not (tmp_path / "cv").exists()  # refused before any folder is made


# ------------------------------------------------------------ resuming models/training/run_default_v2.sh's run


def _run_script_arguments(data_folder: str, *changes: str) -> list[str]:
    """`mrimpute train`'s arguments as run_default_v2.sh gives them when it resumes (its --data: the run's)."""
    command = next(line for line in RUN_SCRIPT.read_text().replace("\\\n", " ").splitlines()
                   if line.startswith("exec "))
    words = shlex.split(command)
    values = {"$DATA": data_folder, "$OUT": "models/training/default-v2.pt", "${TIME_LIMIT:-60}": "60",
              "${RESUME[@]}": "--resume"}
    return [values.get(word, word) for word in words[words.index("train"):]] + list(changes)


@pytest.fixture
def interrupted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """The rolling checkpoint of the run (a copy: the run may be writing the next one), with `path` to it."""
    if not LAST.is_file():
        pytest.skip("the default model's rolling checkpoint is not in this checkout")
    monkeypatch.chdir(ROOT)  # the script runs from the repository root (its --split is relative)
    copy = tmp_path / LAST.name
    shutil.copyfile(LAST, copy)
    return {**load_checkpoint(copy), "path": copy}


def _restore(settings: TrainSettings, last: Path) -> tuple[dict, SynthesisNet, ExponentialAverage]:
    model = SynthesisNet(settings.model)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    ema = ExponentialAverage(model, settings.ema)
    return train.restore(last, settings.model, model, optimiser, recorded_settings(settings), None, ema), model, ema


def test_the_run_script_resumes_the_interrupted_run(captured: list, interrupted: dict) -> None:
    before = interrupted["metadata"]["train_settings"]
    settings = _settings_from_cli(captured, _run_script_arguments(before["data_folder"]))
    assert settings.resume and settings.model == ModelConfig.from_dict(interrupted["config"])
    now = recorded_settings(settings)
    assert set(before) <= set(now)  # the recorded form is the flat one of before; settings added since then
    defaults = train.recorded_defaults()
    assert all(now[k] == defaults[k] for k in set(now) - set(before))  # have their defaults
    assert {k: v for k, v in now.items() if k not in train.RESUMABLE_CHANGES and k in before and k != "terms"} == \
        {k: v for k, v in before.items() if k not in train.RESUMABLE_CHANGES and k != "terms"}
    assert now["terms"] == {**defaults["terms"], **before["terms"]}  # a cost term added since: its default
    state, model, ema = _restore(settings, interrupted["path"])
    assert state == interrupted["train_state"] and state["epoch"] >= 1
    assert all(torch.equal(v, interrupted["state_dict"][k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, interrupted["ema"][k]) for k, v in ema.state_dict().items())  # the average too


@pytest.mark.parametrize("change, setting", [
    (["--lr", "2e-3"], "lr"), (["--epochs", "400"], "epochs"), (["--width", "0.5"], "model settings"),
    (["--ssim", "0.25"], "terms"), (["--augment", "intensity"], "augmentation"), (["--seed", "1"], "seed"),
])
def test_the_interrupted_run_refuses_other_settings(captured: list, interrupted: dict, change: list[str],
                                                    setting: str) -> None:
    before = interrupted["metadata"]["train_settings"]
    settings = _settings_from_cli(captured, _run_script_arguments(before["data_folder"], *change))
    with pytest.raises(CheckpointError, match=setting):
        _restore(settings, interrupted["path"])


def test_settings_a_run_did_not_record_yet_count_as_their_defaults(captured: list, interrupted: dict) -> None:
    before = dict(interrupted["metadata"]["train_settings"])
    settings = _settings_from_cli(captured, _run_script_arguments(before["data_folder"]))
    defaults = recorded_defaults()
    older = {k: v for k, v in before.items() if k not in defaults or defaults[k] != v}  # as if added since
    assert {"lesion_channel", "distributed", "fusion"} <= set(before) - set(older)
    now = recorded_settings(settings)
    train.check_resumable(interrupted["path"], older, now)
    with pytest.raises(CheckpointError, match="ema"):  # ...but a missing setting whose value was not its default
        train.check_resumable(interrupted["path"], {k: v for k, v in older.items() if k != "ema"}, now)
