"""A fixed-length run's final weights as a model: the exponential moving average after its last epoch, taken from
`<run>.last.pt`, written as `<run>-final.pt` with its card.

The lesion runs use it: lesion-v2's validation loss (synthesis of 128 validation crops) was flat, 0.8425 after epoch
1 to 0.8481 after epoch 48, so `train` kept epoch 1 as `lesion-v2.pt`; that loss does not measure how lesions are
drawn, and each lesion run's length is fixed beforehand, so its final weights are the lesion model (chosen before
any test subject is scored). Usage: .venv/bin/python models/training/finish_final_ema.py lesion-v3"""

import sys
from pathlib import Path

import torch

from mrimpute.config import ModelConfig
from mrimpute.io.checkpoint import save_checkpoint, write_model_card
from mrimpute.model import network  # noqa: F401 (registers the fusions a config names)

HERE = Path(__file__).resolve().parent
run = sys.argv[1] if len(sys.argv) > 1 else "lesion-v2"
last = torch.load(HERE / f"{run}.last.pt", map_location="cpu", weights_only=True)
weights = {k.removeprefix("module."): v for k, v in last["ema"].items() if k != "n_averaged"}
assert set(weights) == set(last["state_dict"]), "the average holds other weights than the network"
config = ModelConfig.from_dict(last["config"])
epochs = last["metadata"]["epochs_run"]
final = last["train_state"]["history"][-1]
metadata = {**last["metadata"], "best_epoch": f"final ({epochs}; EMA weights, not the lowest validation loss)",
            "validation": {k: round(v, 5) for k, v in final.items() if k.startswith(("val", "mae"))}}
out = HERE / f"{run}-final.pt"
save_checkpoint(out, config, weights, metadata)
write_model_card(out, config, metadata)
print(f"wrote {out} (epoch {epochs}, EMA)")
