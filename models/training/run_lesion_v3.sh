#!/usr/bin/env bash
# Lesion model v3 (issue "a model worth using", item 6): lesion-v2-final (tumours drawn within 15% on the brats18 test
# subject, small MS lesions 23% too faint) trained further with lesion crops drawn per connected lesion
# (--lesion-sampling component: ms19's 57 lesions then weigh against each tumour's one), every part free.
# Usage: TIME_LIMIT=<minutes> models/training/run_lesion_v3.sh  (resumes when .last.pt exists)
# Split: models/split.toml (coregistered-v1): test subjects never read, validation subjects pick the best epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
OUT=models/training/lesion-v3.pt
RESUME=()
[ -f models/training/lesion-v3.last.pt ] && RESUME=(--resume)
exec .venv/bin/mrimpute train --data "$DATA" --split models/split.toml --out "$OUT" \
    --init-from models/training/lesion-v2-final.pt --lesion-masks either --lesion-sampling component \
    --crop 96 --batch-size 16 --epochs 24 --steps-per-epoch 25 --patience 1000 --val-crops 128 \
    --lr 1e-4 --lr-schedule cosine --warmup-steps 25 --ema 0.995 \
    --augment intensity,spatial --input-dropout --ssim 0.5 \
    --seed 2 --threads 1 --device cpu --time-limit "${TIME_LIMIT:-60}" "${RESUME[@]}"
