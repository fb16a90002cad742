"""The lesion-v2 run's final weights as a model: the exponential moving average after its last epoch (48), taken
from `lesion-v2.last.pt`. Its validation loss (synthesis of 128 validation crops) was flat, 0.8425 after epoch 1 to
0.8481 after epoch 48, so `train` kept epoch 1 as `lesion-v2.pt`; that loss does not measure how lesions are drawn,
and the run's length was fixed beforehand, so the final weights are the lesion model (chosen before any test
subject was scored). Usage: .venv/bin/python models/training/finish_lesion_v2.py"""

from pathlib import Path

import torch

from mrimpute.config import ModelConfig
from mrimpute.io.checkpoint import save_checkpoint, write_model_card
from mrimpute.model import network  # noqa: F401 (registers the fusions a config names)

HERE = Path(__file__).resolve().parent
last = torch.load(HERE / "lesion-v2.last.pt", map_location="cpu", weights_only=True)
weights = {k.removeprefix("module."): v for k, v in last["ema"].items() if k != "n_averaged"}
assert set(weights) == set(last["state_dict"]), "the average holds other weights than the network"
config = ModelConfig.from_dict(last["config"])
epochs = last["metadata"]["epochs_run"]
final = last["train_state"]["history"][-1]
metadata = {**last["metadata"], "best_epoch": f"final ({epochs}; EMA weights, not the lowest validation loss)",
            "validation": {k: round(v, 5) for k, v in final.items() if k.startswith(("val", "mae"))}}
out = HERE / "lesion-v2-final.pt"
save_checkpoint(out, config, weights, metadata)
write_model_card(out, config, metadata)
print(f"wrote {out} (epoch {epochs}, EMA)")
