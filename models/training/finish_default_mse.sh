#!/usr/bin/env bash
# default-mse (the squared-error fine-tune of default-v2, chosen on the validation subjects over the control
# default-ft and default-v2) made the shipped default: error heads as for default-v2 (500 steps, the rest frozen),
# their blur tuned on the validation subjects, then the test split scored (with uncertainty) and compared with the
# old default and the forest. Each step skipped when its output exists. Usage: models/training/finish_default_mse.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
M=.venv/bin/mrimpute
DATA=${DATA:-../shared/data/coregistered}
SPLIT=models/split.toml
HEADS=models/training/default-mse-heads.pt
TUNED=models/training/default-mse-tuned.pt
RUNS=runs/test-split
[ -f "$HEADS" ] || $M train-uncertainty --model models/training/default-mse.pt --data "$DATA" --split "$SPLIT" \
    --out "$HEADS" --epochs 10 --steps-per-epoch 50 --threads 1 --device cpu
[ -f "$TUNED" ] || $M tune-uncertainty --model "$HEADS" --data "$DATA" --split "$SPLIT" --out "$TUNED" --threads 1
[ -f "$RUNS/mse/metrics.csv" ] || $M eval --model "$TUNED" --data "$DATA" --split "$SPLIT" --part test \
    --subsets single+rest --uncertainty --no-qc --threads 1 --out-dir "$RUNS/mse"
$M eval --compare "$RUNS/mse" --compare "$RUNS/old-default" --compare "$RUNS/replica" --compare "$RUNS/v2-tuned" \
    --out-dir "$RUNS/compare-mse"
