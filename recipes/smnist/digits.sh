#!/usr/bin/env bash
# A real-data check that runs on a laptop CPU in minutes: scikit-learn's 1,797 real 8x8 handwritten
# digits (sklearn.datasets.load_digits, shipped with scikit-learn, no download) read as sequences of
# 64 pixels, trained with the same task, model, criterion, train.sh and eval.sh as the MNIST recipes.
# Focus (adaptive), Focus-H (static) and MEGA (ema) get the same model size, data and update budget.
#
#   WORK         working directory (default digits-work): data, checkpoints, logs
#   VARIANTS     filters to compare (default "adaptive static ema")
#   MAX_UPDATE   updates per variant (default 400 = about 10 epochs of 1,297 training images)
#   BATCH_SIZE, LR, WARMUP, SEED, EXTRA_ARGS as in ../pixels_common/train.sh
# Prints one line per variant: "<filter>: test accuracy = <percent> (<updates> updates, <seconds> s training)".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
WORK="${WORK:-digits-work}"
VARIANTS="${VARIANTS:-adaptive static ema}"
export MAX_UPDATE="${MAX_UPDATE:-400}" BATCH_SIZE="${BATCH_SIZE:-32}" LR="${LR:-0.01}" WARMUP="${WARMUP:-50}"
export SEED="${SEED:-1}" LOG_INTERVAL="${LOG_INTERVAL:-50}" NUM_WORKERS=0 GPUS=1 PERMUTE_SEED=""
# the train split's pixel statistics, as prepare_pixels prints them
export PIXEL_MEAN="${PIXEL_MEAN:-0.3059}" PIXEL_STD="${PIXEL_STD:-0.3754}"
USER_EXTRA_ARGS="${EXTRA_ARGS:-}"
# a small model: 2 blocks, D = 32; bins of 16 pixels (two image rows, L/4), one attention chunk of 64
MODEL="--decoder-layers 2 --decoder-embed-dim 32 --decoder-hidden-dim 64 --decoder-ffn-embed-dim 32
       --decoder-z-dim 16 --bin-size 16 --chunk-size 64 --hyper-kernel-size 64 --dropout 0.1"

export DATA="$WORK/data"
if [[ ! -f "$DATA/test-labels.idx" ]]; then
    mkdir -p "$WORK"
    python -m fairseq_focus.data.prepare_pixels digits --out "$DATA"
fi

for filter in $VARIANTS; do
    export ARCH=focus_classifier_paper SAVE_DIR="$WORK/checkpoints-$filter"  # the model's settings before issue 26
    wiring=paper; [[ "$filter" != ema ]] || wiring=mega  # MEGA (ema) is MEGA's block
    start=$(date +%s)
    EXTRA_ARGS="$MODEL --focus-filter $filter --block-wiring $wiring $USER_EXTRA_ARGS" bash "$HERE/../pixels_common/train.sh" >"$WORK/train-$filter.log" 2>&1 \
        || { tail -n 20 "$WORK/train-$filter.log" >&2; echo "error: training $filter failed (log: $WORK/train-$filter.log)" >&2; exit 1; }
    seconds=$(( $(date +%s) - start ))
    result="$(EXTRA_ARGS="" bash "$HERE/../pixels_common/eval.sh")"
    echo "$filter: $result ($MAX_UPDATE updates, $seconds s training)"
done
