#!/usr/bin/env bash
# Squared-error fine-tuning of the default (issue "a model worth using": the forest leads in PSNR, the conditional
# mean it fits is what squared error rewards). default-v2 (without its error heads) trained further for 600 steps
# with the default's recipe, with MSE=<weight> (the squared-error term beside MAE + SSIM) or MSE=0 (the control:
# the same steps without it). Usage: MSE=2 NAME=default-mse models/training/run_default_finetune.sh
# Split: models/split.toml (coregistered-v1): test subjects never read, validation subjects pick the best epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
NAME=${NAME:-default-mse}
OUT=models/training/$NAME.pt
RESUME=()
[ -f "models/training/$NAME.last.pt" ] && RESUME=(--resume)
exec .venv/bin/mrimpute train --data "$DATA" --split models/split.toml --out "$OUT" \
    --init-from models/training/default-v2.pt --mse "${MSE:-2}" \
    --crop 96 --batch-size 16 --epochs 24 --steps-per-epoch 25 --patience 1000 --val-crops 128 \
    --lr 1e-4 --lr-schedule cosine --warmup-steps 25 --ema 0.995 \
    --augment intensity,spatial --input-dropout --ssim 0.5 \
    --seed 3 --threads 1 --device cpu --time-limit "${TIME_LIMIT:-60}" "${RESUME[@]}"
