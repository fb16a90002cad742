#!/usr/bin/env bash
# The shipped default model's training run (issue "a model worth using"): one CPU core, resumable across sessions.
# First session: TIME_LIMIT=<minutes> models/training/run_default_v2.sh
# Later sessions: the same line; it resumes from models/training/default-v2.last.pt when that exists.
# Split: models/split.toml (coregistered-v1): test subjects never read, validation subjects pick the best epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
OUT=models/training/default-v2.pt
RESUME=()
[ -f models/training/default-v2.last.pt ] && RESUME=(--resume)
exec .venv/bin/mrimpute train --data "$DATA" --split models/split.toml --out "$OUT" \
    --width 0.375 --crop 96 --batch-size 16 --epochs 320 --steps-per-epoch 25 --patience 1000 --val-crops 128 \
    --lr 1e-3 --lr-schedule cosine --warmup-steps 250 --ema 0.999 \
    --augment intensity,spatial --input-dropout --ssim 0.5 \
    --seed 0 --threads 1 --device cpu --time-limit "${TIME_LIMIT:-60}" "${RESUME[@]}"
