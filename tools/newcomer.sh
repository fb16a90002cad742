#!/usr/bin/env bash
# A newcomer's first hour, as a script: clone this project into a temporary folder, run the README's two set-up
# commands (`make demo`, `make test`), then the README's own command lines, verbatim, wherever they can run on the
# bundled subject and ../shared/data; stop at the first failure.
#
#   tools/newcomer.sh [PROJECT]          # PROJECT: the git repository to clone (default: this one)
#   NEWCOMER_SKIP_TESTS=1 tools/newcomer.sh   # skip `make test` (minutes)
#   NEWCOMER_KEEP=1 ...                  # keep the temporary folder (default: removed after a pass)
#   NEWCOMER_UNCOMMITTED=1 ...           # apply PROJECT's uncommitted changes (and new files) to the clone
#
# The README's lines are run as written, in folders holding the files they name (t1.nii.gz, t2.nii.gz ... copied
# from the bundled subject; FLAIR.nii.gz, T1.nii.gz, T2.nii.gz from ../shared/data/raw/mslong01). Left out: the
# `train` lines (an hour of CPU) and lines with placeholders (`M`, `DIR`, `...`); `/data/study` of the dataset
# lines is a placeholder too, so those run on a small BIDS study made here (marked "adapted").
# `make demo` creates .venv and installs torch and the project from PyPI: it needs the network, and minutes.
set -euo pipefail

PROJECT=$(cd "${1:-$(dirname "$0")/..}" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mrimpute-newcomer.XXXXXX")
STARTED=$SECONDS

fail() { echo "newcomer: FAILED: $*" >&2; echo "newcomer: the clone is in $WORK/main" >&2; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND (exit $?)"' ERR
step() { echo; echo "== [$((SECONDS - STARTED)) s] $*"; }
run() {  # echo a command line, run it, stop on failure
    echo "\$ $*" >&2
    "$@" || fail "$* (exit $?)"
}
expect() { for f in "$@"; do [ -s "$f" ] || fail "expected output missing: $PWD/$f"; done; }

step "fresh clone of $PROJECT into $WORK/main"
git clone --quiet "$PROJECT" "$WORK/main"
if [ "${NEWCOMER_UNCOMMITTED:-0}" = 1 ]; then  # try work not yet committed: the tree's changes on top
    git -C "$PROJECT" diff HEAD --binary | git -C "$WORK/main" apply --whitespace=nowarn
    git -C "$PROJECT" ls-files --others --exclude-standard -z -- src tests tools benchmarks docs \
        | (cd "$PROJECT" && xargs -0 -r cp --parents -t "$WORK/main")
fi
if [ -d "$PROJECT/../shared" ]; then  # the README's ../shared/data: the data the project was developed on
    ln -s "$(cd "$PROJECT/../shared" && pwd)" "$WORK/shared"
fi
cd "$WORK/main"
SAMPLE=$PWD/src/mrimpute/sample/ms07
SHARED=$WORK/shared/data

step "set-up command 1: make demo"
run make demo
expect demo-output/flair_synth.nii.gz demo-output/preview.png demo-output/metrics.json
if [ "${NEWCOMER_SKIP_TESTS:-0}" = 1 ]; then
    step "set-up command 2: make test -- skipped (NEWCOMER_SKIP_TESTS=1)"
else
    step "set-up command 2: make test"
    run make test
fi

step "the command, with or without activating .venv"
run .venv/bin/mrimpute --help > /dev/null
# shellcheck disable=SC1091
source .venv/bin/activate
run mrimpute --help > /dev/null
run mrimpute --version
run mrimpute synth -h > /dev/null

step "Commands: synth on the bundled subject's t1.nii.gz, t2.nii.gz (and t1c.nii.gz)"
mkdir -p "$WORK/first-hour" && cd "$WORK/first-hour"
cp "$SAMPLE/t1.nii.gz" "$SAMPLE/t2.nii.gz" "$SAMPLE/t1c.nii.gz" .
run mrimpute synth --t1 t1.nii.gz --t2 t2.nii.gz --out flair_synth.nii.gz
expect flair_synth.nii.gz flair_synth.json
run mrimpute synth --t1 t1.nii.gz --out-dir imputed/
expect imputed/t1c_synth.nii.gz imputed/t2_synth.nii.gz imputed/flair_synth.nii.gz
run mrimpute synth --t1 t1.nii.gz --t1c t1c.nii.gz --t2 t2.nii.gz --out flair.nii.gz \
    --uncertainty flair_sd.nii.gz --explain fusion.nii.gz
expect flair.nii.gz flair_sd.nii.gz flair_sd.png fusion.nii.gz fusion.json fusion.png
run mrimpute demo
expect demo-output/preview.png

step "Commands: eval of one prediction (synth.nii.gz against the true flair.nii.gz)"
mkdir -p "$WORK/score" && cd "$WORK/score"
cp "$WORK/first-hour/flair_synth.nii.gz" synth.nii.gz && cp "$SAMPLE/flair.nii.gz" flair.nii.gz
run mrimpute eval --pred synth.nii.gz --truth flair.nii.gz
run mrimpute eval --pred synth.nii.gz --truth flair.nii.gz --out-dir D
[ -d D ] && [ -n "$(ls D)" ] || fail "eval --out-dir D wrote nothing into D"

if [ -d "$SHARED/coregistered/ms07" ]; then
    step "Commands: eval of the shipped model on ../shared/data (from the clone's root)"
    cd "$WORK/main"
    run mrimpute eval --model models/default.pt --data ../shared/data/coregistered --subjects ms07 --subsets all
else
    step "no ../shared/data/coregistered/ms07 beside the clone: the eval --data line is skipped"
fi

if [ -d "$SHARED/raw/mslong01" ]; then
    step "Raw scans: preprocess a raw open_ms session (FLAIR.nii.gz, T1.nii.gz, T2.nii.gz), back to its grids"
    mkdir -p "$WORK/raw-session" && cd "$WORK/raw-session"
    cp "$SHARED/raw/mslong01/study1_FLAIR.nii.gz" FLAIR.nii.gz
    cp "$SHARED/raw/mslong01/study1_T1W.nii.gz" T1.nii.gz
    cp "$SHARED/raw/mslong01/study1_T2W.nii.gz" T2.nii.gz
    run mrimpute preprocess --ref flair=FLAIR.nii.gz --t1 T1.nii.gz --t2 T2.nii.gz --out-dir subject/
    expect subject/t1.nii.gz subject/t2.nii.gz subject/flair.nii.gz subject/manifest.json
    run mrimpute synth --t1 subject/t1.nii.gz --t2 subject/t2.nii.gz --out flair_on_t1.nii.gz --target flair --native-ref t1
    run mrimpute synth --t1 subject/t1.nii.gz --t2 subject/t2.nii.gz --out-dir imputed/ --native-ref t2 --manifest subject/manifest.json
    expect flair_on_t1.nii.gz imputed/flair_synth.nii.gz
else
    step "no ../shared/data/raw/mslong01 beside the clone: the preprocess lines are skipped"
fi

if [ -d "$SHARED/raw/clinical01" ]; then
    step "A clinical session: raw/clinical01's six series as .nii, preprocess, then FLAIR from T1+DWI on the T1's grid"
    mkdir -p "$WORK/clinical" && cd "$WORK/clinical"
    for pair in T1:t1_se_fs_series901 T1_post:t1_se_fs_series1201 T2:t2_tse_series401 FLAIR:flair_series701 \
                DWI_trace:dwi_trace_series304 ADC:adc_series303; do
        gunzip -c "$SHARED/raw/clinical01/${pair#*:}.nii.gz" > "${pair%%:*}.nii"
    done
    run mrimpute preprocess --ref t1=T1.nii --t1c T1_post.nii --t2 T2.nii --flair FLAIR.nii --dwi DWI_trace.nii \
        --adc ADC.nii --inplane 1 --skull-strip --out-dir session/
    run mrimpute synth --t1 session/t1.nii.gz --dwi session/dwi.nii.gz --target flair --native-ref t1 --out flair_synth.nii.gz
    expect flair_synth.nii.gz flair_synth.json
else
    step "no ../shared/data/raw/clinical01 beside the clone: the clinical session lines are skipped"
fi

step "A whole dataset (adapted: a two-subject BIDS study instead of the README's /data/study)"
STUDY=$WORK/study
for s in 01 02; do
    mkdir -p "$STUDY/sub-$s/anat"
    cp "$SAMPLE/t1.nii.gz" "$STUDY/sub-$s/anat/sub-${s}_T1w.nii.gz"
done
cp "$SAMPLE/t2.nii.gz" "$STUDY/sub-01/anat/sub-01_T2w.nii.gz"
echo '{"Name": "newcomer study", "BIDSVersion": "1.9.0"}' > "$STUDY/dataset_description.json"
run mrimpute synth --dataset "$STUDY" --dry-run
run mrimpute synth --dataset "$STUDY" --participant-label 01
expect "$STUDY/derivatives/mrimpute/dataset_description.json" \
    "$STUDY/derivatives/mrimpute/sub-01/anat/sub-01_desc-synth_FLAIR.nii.gz"
[ ! -e "$STUDY/derivatives/mrimpute/sub-02" ] || fail "--participant-label 01 also wrote sub-02"

trap - ERR
echo
echo "newcomer: PASSED in $((SECONDS - STARTED)) s (clone: $WORK/main)"
if [ "${NEWCOMER_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
fi
