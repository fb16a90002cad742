#!/usr/bin/env bash
# models/diffusion.pt: the shipped default model plus `dwi` and `adc` encoders trained into its latent space with
# `mrimpute train-encoder` (every other part frozen, bit for bit the default's), then scored (issue 16).
#
#   bash benchmarks/diffusion_encoders.sh            # from the project root; writes under runs/diffusion/
#   PARENT=models/default.pt RUNS=runs/diffusion SHARED=../shared/data bash benchmarks/diffusion_encoders.sh
#   INSTALL=1 bash benchmarks/diffusion_encoders.sh  # also copy the result to models/diffusion.pt (+ .md)
#   FROM=eval INSTALL=1 bash benchmarks/diffusion_encoders.sh  # scores and install only (model built)
#
# These are the commands the first build ran (2026-12-03, parent models/default.pt, width 0.375, one CPU thread at
# nice 19 beside another training run). Rerun the whole script after the default model changes:
# tests/test_diffusion_model.py checks that diffusion.pt holds the default's weights bit for bit.
#
# Data (../shared/data; licences: development and testing only, never copied into the project):
#   raw/clinical01      T1 pre/post, T2, FLAIR, DWI trace, ADC: heads, 6 mm slices, each series on its own grid.
#                       Reference: the pre-contrast T1 (as benchmarks/clinical_preprocess.py), 1 mm in-plane, its
#                       6 mm slices kept; deepbet brain mask (--skull-strip).
#   stroke/isles22-0009 DWI, ADC (2 mm isotropic grid), FLAIR (0.45 x 0.45 x 5 mm, its own grid). No T1, so deepbet
#                       cannot run: the brain mask is the DWI's own foreground (preprocess's head mask of the DWI,
#                       which shows no scalp), given with --mask. Reference: the FLAIR, 1 mm in-plane with its own
#                       5 mm slices: every axial training slice then has a real FLAIR slice as its target (on the
#                       DWI's grid the FLAIR would be interpolated across its 5 mm slices), and the evaluation
#                       compares against the acquired FLAIR slices. The 2 mm DWI/ADC are resampled onto it.
# Split: train on clinical01 (all four of the default's contrasts: the new encoder learns against four frozen
# encoders' latents and through four frozen decoders); isles22-0009 (DWI, ADC, FLAIR only) is the validation
# subject: it picks the best epoch and is never trained on. No third subject has diffusion.
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${PARENT:-models/default.pt}
RUNS=${RUNS:-runs/diffusion}
SHARED=${SHARED:-../shared/data}
MR=${MR:-.venv/bin/mrimpute}
NICE=${NICE:-nice -n 19}
MINUTES=${MINUTES:-13}          # --time-limit of the dwi run
ADC_MINUTES=${ADC_MINUTES:-10}  # and of the adc run
C=$SHARED/raw/clinical01
S=$SHARED/stroke/isles22-0009
mkdir -p "$RUNS/data" "$RUNS/prep" "$RUNS/models" "$RUNS/eval"

if [[ "${FROM:-prep}" == prep ]]; then  # FROM=eval: only steps 3-4 (scores, install) on a built model
# 1. training data with the project's own preprocessing (it does not depend on the model: kept when both subjects'
# folders exist, e.g. copied from an earlier build's $RUNS/data; delete them to redo it)
if [[ ! -f "$RUNS/data/clinical01/flair.nii.gz" || ! -f "$RUNS/data/isles22-0009/flair.nii.gz" ]]; then
$NICE $MR preprocess --ref t1=$C/t1_se_fs_series901.nii.gz --t1c $C/t1_se_fs_series1201.nii.gz \
    --t2 $C/t2_tse_series401.nii.gz --flair $C/flair_series701.nii.gz --dwi $C/dwi_trace_series304.nii.gz \
    --adc $C/adc_series303.nii.gz --inplane 1 --skull-strip --threads 1 --force --out-dir "$RUNS/data/clinical01"
# the DWI's own foreground mask (only its brainmask.nii.gz is used, in world space; on this isotropic 2 mm grid
# --inplane keeps the axial slices, the axis closest to superior-inferior; before that fix, the first build's run
# took the left-right axis as the "slice" axis, which did not matter for a mask used in world space)
$NICE $MR preprocess --ref dwi=$S/dwi.nii.gz --adc $S/adc.nii.gz --flair $S/flair_native.nii.gz --inplane 1 \
    --threads 1 --force --out-dir "$RUNS/prep/isles22-0009-fg"
$NICE $MR preprocess --ref flair=$S/flair_native.nii.gz --dwi $S/dwi.nii.gz --adc $S/adc.nii.gz --inplane 1 \
    --threads 1 --skull-strip --mask "$RUNS/prep/isles22-0009-fg/brainmask.nii.gz" --force \
    --out-dir "$RUNS/data/isles22-0009"
fi

# 2. the dwi encoder, then the adc encoder on the dwi-extended model (one file with both)
# (--subjects must list the validation subject too, or it is dropped from the pool before the split)
$NICE $MR train-encoder --model "$PARENT" --input dwi --data "$RUNS/data" --subjects clinical01,isles22-0009 \
    --val-subjects isles22-0009 --out "$RUNS/models/dwi.pt" --epochs 24 --steps-per-epoch 25 --patience 24 \
    --threads 1 --device cpu --seed 0 --time-limit "$MINUTES" --force
$NICE $MR train-encoder --model "$RUNS/models/dwi.pt" --input adc --data "$RUNS/data" \
    --subjects clinical01,isles22-0009 --val-subjects isles22-0009 --out "$RUNS/models/diffusion.pt" --epochs 16 \
    --steps-per-epoch 25 --patience 16 --threads 1 --device cpu --seed 0 --time-limit "$ADC_MINUTES" --force

fi

# 3. scores (shipped commands). isles22-0009: FLAIR from DWI+ADC against its acquired FLAIR, inside the brain and
# inside the stroke lesion (the expert mask, on the DWI's grid, resampled onto the FLAIR-based grid through the
# registration's transform, nearest neighbour). It is the validation subject: never trained on, but it chose the
# epoch. clinical01 is the diffusion encoders' TRAINING subject: its rows are not a held-out measurement.
M=$RUNS/models/diffusion.pt
I=$RUNS/data/isles22-0009
.venv/bin/python - "$S/lesion.nii.gz" "$I/dwi.nii.gz" "$I/transforms/dwi_to_flair.tfm" "$RUNS/eval/isles_lesion.nii.gz" <<'EOF'
import sys
import SimpleITK as sitk
lesion, grid, transform, out = sys.argv[1:]
moved = sitk.Resample(sitk.ReadImage(lesion), sitk.ReadImage(grid), sitk.ReadTransform(transform),
                      sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
sitk.WriteImage(moved, out)
EOF
$NICE $MR synth --dwi $I/dwi.nii.gz --adc $I/adc.nii.gz --out "$RUNS/eval/isles_flair_synth.nii.gz" --model "$M" \
    --threads 1 --device cpu --force
scored() {  # run an eval command; keep its command line and its table (COLUMNS wide) in $RUNS/eval/<name>.txt
    local name=$1; shift
    { echo "mrimpute $(printf '%q ' "${@:2}")--no-qc"; COLUMNS=160 $NICE "$@" --no-qc 2>&1; } | tee "$RUNS/eval/$name.txt"
}
scored isles_pair $MR eval --pred "$RUNS/eval/isles_flair_synth.nii.gz" --truth $I/flair.nii.gz \
    --mask $I/brainmask.nii.gz --lesion "$RUNS/eval/isles_lesion.nii.gz" --out-dir "$RUNS/eval/isles_pair" --force
scored isles $MR eval --model "$M" --data "$RUNS/data" --subjects isles22-0009 --targets flair \
    --subsets 'dwi,adc;dwi;adc' --out-dir "$RUNS/eval/isles" --threads 1 --device cpu --force
scored clinical01 $MR eval --model "$M" --data "$RUNS/data" --subjects clinical01 --targets flair \
    --subsets 't1,t2;t1,t2,dwi;dwi;t1;dwi,adc;t1,t2,dwi,adc' --out-dir "$RUNS/eval/clinical01" --threads 1 \
    --device cpu --force
# a reference any synthesis should beat: the subject's own DWI, unchanged, scored as if it were the FLAIR
for subject in isles22-0009 clinical01; do
    D=$RUNS/data/$subject
    scored "${subject}_dwi_as_flair" $MR eval --pred $D/dwi.nii.gz --truth $D/flair.nii.gz --mask $D/brainmask.nii.gz \
        $([[ $subject == isles22-0009 ]] && echo --lesion "$RUNS/eval/isles_lesion.nii.gz")
done

# 4. ship it: the card train-encoder wrote, a section on the data and its limits, and the score tables above
if [[ "${INSTALL:-0}" == 1 ]]; then
    cp "$M" models/diffusion.pt
    {
        cat "${M%.pt}.md"
        cat <<'CARD'

## Diffusion inputs: data and limits

`diffusion.pt` is the shipped default model plus two encoders, `dwi` (the isotropic diffusion-weighted trace image)
and `adc` (the ADC map), each trained into the default's latent space with every other part frozen (`dwi` first
from `default.pt`, then `adc` from that model: its card sections above). `mrimpute synth` uses it without `--model`
when an input is `--dwi` or `--adc` (the default model has no encoder for them) and says so in one line.
Rebuild it after the default model changes: `INSTALL=1 bash benchmarks/diffusion_encoders.sh`.

- Training data: ONE subject, `clinical01` (a glioma patient's Philips clinical session: T1 spin echo before and
  after gadolinium, T2 TSE, FLAIR, DWI trace, ADC; 6 mm axial slices; `preprocess --ref t1 --inplane 1
  --skull-strip`). The validation subject, which picked the best epoch and was never trained on, is `isles22-0009`
  (an ISLES 2022 stroke case: DWI, ADC on a 2 mm grid, FLAIR; `preprocess --ref flair --inplane 1`, brain mask =
  the DWI's own foreground, since there is no T1 for deepbet). No other subject with diffusion was available, so
  there is no held-out test subject: the clinical01 scores below are on the encoders' training subject and the
  isles22-0009 scores on their validation subject. Neither is an unbiased estimate.
- b-values, scanner and protocol vary between sites; these encoders saw one session of each. DWI and ADC
  normalisation is the default's (each volume divided by its brain mean): a DWI with another b-value or an ADC in
  other units is rescaled the same way, but its contrast may still differ from what the encoders learnt.
- The synthesis comes from the default's decoders, which learnt from gliomas, metastases and MS (see above): a
  stroke lesion bright on DWI is not a pattern they were trained to draw in FLAIR.
- Research use only (see Intended use): a FLAIR synthesised from diffusion images is not a FLAIR.
CARD
        echo
        echo "### The dwi encoder's run (its own card: \`${RUNS}/models/dwi.md\`)"
        echo
        echo "| setting | value |"; echo "|---|---|"
        grep -E '^\| (training subjects|validation subjects|epochs run|best epoch|training seconds|validation) ' \
            "$RUNS/models/dwi.md"
        echo
        sed -n '/^## Extended model/,/^## Intended use/p' "$RUNS/models/dwi.md" | sed '$d' | sed 's/^## /### /'
        echo "### Scores (\`benchmarks/diffusion_encoders.sh\`; brain protocol)"
        echo
        echo "The last two tables score the subject's own DWI, unchanged, as if it were its FLAIR: a reference that"
        echo "these syntheses do not beat in SSIM."
        for f in "$RUNS/eval/isles_pair.txt" "$RUNS/eval/isles.txt" "$RUNS/eval/clinical01.txt" \
                 "$RUNS/eval/isles22-0009_dwi_as_flair.txt" "$RUNS/eval/clinical01_dwi_as_flair.txt"; do
            echo; echo "\`$(head -1 "$f")\`"; echo; echo '```'; tail -n +2 "$f"; echo '```'
        done
    } > models/diffusion.md
fi
