"""Data-parallel training: two CPU processes under torchrun train the weights one process trains with the same
global batch and seed; rank 0 alone writes; each rank's share of the batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mrimpute.config import ModelConfig
from mrimpute.errors import InputError
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.pipeline.train import TrainSettings, last_checkpoint_path, train
from mrimpute.runtime import distributed
from mrimpute.runtime.distributed import World, share, world_from_env

from conftest import write_subject

ARGS = dict(inputs="t1,t2", outputs="t2,flair", epochs=1, steps_per_epoch=3, batch_size=5, crop=16, width=0.125, seed=3)


def test_shares_cover_the_batch_once() -> None:
    for size in (1, 2, 3):
        parts = [share(World(rank, size), 7) for rank in range(size)]
        assert [i for p in parts for i in range(p.start, p.stop)] == list(range(7))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
    with pytest.raises(InputError, match="smaller than the 3 training processes"):
        share(World(0, 3), 2)


def test_world_from_torchrun_environment() -> None:
    assert world_from_env({}) == World() and World().main and not World().distributed
    world = world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert world == World(1, 2, 1) and not world.main and world.distributed


def test_distributed_flag_without_launcher_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(InputError, match="torchrun --nproc_per_node"):
        distributed.start(True, "cpu")


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(3):
        write_subject(data / f"s{i}", seed=i, shape=(32, 28, 8))
    out = tmp_path / "ddp" / "model.pt"
    out.parent.mkdir()
    options = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mrimpute", "train", "--data", str(data), "--out", str(out), "--device", "cpu", "--distributed",
               *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("best model:") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.last.pt", "model.md", "model.pt"]

    network = ModelConfig(inputs=ARGS["inputs"].split(","), outputs=ARGS["outputs"].split(","), width=ARGS["width"])
    single = train(TrainSettings(data=data, out=tmp_path / "single.pt", device="cpu", model=network,
                                 **{k: v for k, v in ARGS.items() if k not in ("inputs", "outputs", "width")}))
    together, alone = load_checkpoint(last_checkpoint_path(out)), load_checkpoint(last_checkpoint_path(single))
    assert together["metadata"]["processes"] == 2 and alone["metadata"]["processes"] == 1
    for key, weights in alone["state_dict"].items():
        assert torch.allclose(together["state_dict"][key], weights, atol=1e-6), key
    assert abs(together["train_state"]["history"][0]["val_loss"]
               - alone["train_state"]["history"][0]["val_loss"]) < 1e-5
