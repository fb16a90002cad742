#!/usr/bin/env bash
# The lesion-aware model's fine-tuning on the new default (issue "a model worth using", item 6): the default-v2
# weights (models/training/default-v2.pt: the shipped default's synthesis, without its error heads) with a lesion-mask
# channel on every encoder (zero-initialised, so training starts from them exactly), every part free; BraTS tumour
# labels and MS lesion masks all count (--lesion-masks either).
# Run after the default-v2 run ends: TIME_LIMIT=<minutes> models/training/run_lesion_v2.sh  (resumes when .last.pt exists)
# Then: benchmarks/lesion_contrast.py --model models/training/lesion-v2.pt (target: within 15% of the real contrast).
# Split: models/split.toml (coregistered-v1): test subjects never read, validation subjects pick the best epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
OUT=models/training/lesion-v2.pt
RESUME=()
[ -f models/training/lesion-v2.last.pt ] && RESUME=(--resume)
exec .venv/bin/mrimpute train --data "$DATA" --split models/split.toml --out "$OUT" \
    --lesion-channel --lesion-masks either --init-from models/training/default-v2.pt \
    --crop 96 --batch-size 16 --epochs 48 --steps-per-epoch 25 --patience 1000 --val-crops 128 \
    --lr 3e-4 --lr-schedule cosine --warmup-steps 50 --ema 0.995 \
    --augment intensity,spatial --input-dropout --ssim 0.5 \
    --seed 1 --threads 1 --device cpu --time-limit "${TIME_LIMIT:-80}" "${RESUME[@]}"
