#!/usr/bin/env bash
# A lesion-aware model trained further (issue "a model worth using", item 6), every part free, lesion crops drawn per
# connected lesion; its final EMA (models/training/finish_final_ema.py NAME) is the candidate. Stop 26's two runs:
#   NAME=lesion-v4 PARENT=<lesion-v3-final.pt, the lesion.pt of stop 25> FRACTION=0.6 SEED=3
#   NAME=lesion-v5 PARENT=models/training/lesion-v4-final.pt FRACTION=0.8 SEED=4
# (lesion-v3-final.pt: `finish_final_ema.py lesion-v3` from the committed lesion-v3.last.pt.) FRACTION is the share of
# lesion-centred crops (v3 had 1/3): more lesion exposure is what these runs test.
# Usage: NAME=... PARENT=... FRACTION=... SEED=... TIME_LIMIT=<minutes> models/training/run_lesion_further.sh
# (resumes when models/training/NAME.last.pt exists).
# Split: models/split.toml (coregistered-v1): test subjects never read, validation subjects pick the best epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
OUT=models/training/$NAME.pt
RESUME=()
[ -f "models/training/$NAME.last.pt" ] && RESUME=(--resume)
exec .venv/bin/mrimpute train --data "$DATA" --split models/split.toml --out "$OUT" \
    --init-from "$PARENT" --lesion-masks either --lesion-sampling component --lesion-fraction "$FRACTION" \
    --crop 96 --batch-size 16 --epochs 24 --steps-per-epoch 25 --patience 1000 --val-crops 128 \
    --lr 1e-4 --lr-schedule cosine --warmup-steps 25 --ema 0.995 \
    --augment intensity,spatial --input-dropout --ssim 0.5 \
    --seed "$SEED" --threads 1 --device cpu --time-limit "${TIME_LIMIT:-60}" "${RESUME[@]}"
