#!/usr/bin/env bash
# After the default-v2 run ends: score it on the declared test split beside the old default and the forest, add
# learnt error heads, score the uncertainty. Each step is skipped when its output exists (rerun to continue).
# Usage: models/training/finish_default_v2.sh   (one core: --threads 1; about 1-2 hours on a shared core)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/coregistered}
SPLIT=models/split.toml
RUNS=${RUNS:-runs/test-split}
M=.venv/bin/mrimpute
V2=models/training/default-v2.pt
HEADS=models/training/default-v2-heads.pt
score() {  # score <model> <out-dir> [more eval options]: the test split, single+rest subsets
    local model=$1 out=$2; shift 2
    [ -f "$out/summary.json" ] || $M eval --model "$model" --data "$DATA" --split "$SPLIT" --part test \
        --subsets single+rest --threads 1 --out-dir "$out" "$@"
}
score models/default.pt "$RUNS/old-default"
score "$V2" "$RUNS/replica" --baseline replica  # the forest on the run's own training subjects and normaliser
score "$V2" "$RUNS/v2" --uncertainty
[ -f "$HEADS" ] || $M train-uncertainty --model "$V2" --data "$DATA" --split "$SPLIT" --out "$HEADS" \
    --epochs 10 --steps-per-epoch 50 --threads 1 --device cpu
score "$HEADS" "$RUNS/v2-heads" --uncertainty
$M eval --compare "$RUNS/v2" --compare "$RUNS/old-default" --compare "$RUNS/replica" --out-dir "$RUNS/compare"
