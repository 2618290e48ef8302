#!/usr/bin/env bash
# One MQAR run (Zoology's multi-query associative recall; recipes/mqar/README.md), then its test score.
#   ARCH=focus_recall L=64 N=4 LR=1e-3 OUT=work/mqar/one bash recipes/mqar/train.sh [extra fairseq-train flags]
# Resumable: rerunning the same command continues from OUT/checkpoint_last.pt (fairseq's default restore);
# a finished run (OUT/done exists) is not trained again. Training stops at the first validation (one per epoch)
# whose accuracy reaches STOP_ACCURACY (fairseq's --patience 1 on the task's until_solved metric; see
# fairseq_focus/tasks/mqar.py), or after EPOCHS. Then OUT/test.log gets the test split's accuracy.
# Files in OUT: train.log (fairseq JSON lines, appended across resumes), test.log, times (one line per session:
# wall, user and system seconds), done, checkpoint_last.pt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

ARCH="${ARCH:-focus_recall}"
L="${L:-64}"                      # --seq-len: input tokens per example
N="${N:-4}"                       # --num-pairs: key-value pairs, each queried once
VOCAB="${VOCAB:-8192}"            # Zoology's
NUM_TRAIN="${NUM_TRAIN:-20000}"   # Zoology: 100,000 (grid.sh sizes it per cell for a CPU thread)
NUM_VALID="${NUM_VALID:-1000}"    # picks the stopping point
NUM_TEST="${NUM_TEST:-1000}"      # Zoology: 3,000; scored once, at the end
EPOCHS="${EPOCHS:-8}"             # Zoology: 64
BATCH="${BATCH:-64}"
LR="${LR:-1e-3}"
WARMUP_PERCENT="${WARMUP_PERCENT:-5}"  # linear warm-up over this share of the updates, then linear decay to 0
WEIGHT_DECAY="${WEIGHT_DECAY:-0.1}"    # AdamW (fairseq's adam is AdamW)
SEED="${SEED:-1}"                 # seeds fairseq and the data (train/valid/test: generator seeds 3·SEED + 0/1/2)
STOP_ACCURACY="${STOP_ACCURACY:-99}"   # percent
CPU="${CPU:-1}"                   # 1: train on CPU (what this recipe is sized for)
OUT="${OUT:-$REPO/work/mqar/$ARCH/L$L-N$N-lr$LR}"
USER_DIR="${USER_DIR:-$REPO/fairseq_focus}"

for var in L N VOCAB NUM_TRAIN NUM_VALID NUM_TEST EPOCHS BATCH; do
  [[ "${!var}" =~ ^[1-9][0-9]*$ ]] || { echo "error: $var must be a positive integer (got ${!var})" >&2; exit 2; }
done
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "error: SEED must be a non-negative integer (got $SEED)" >&2; exit 2; }
[[ "$WARMUP_PERCENT" =~ ^[0-9]+$ && "$WARMUP_PERCENT" -lt 100 ]] \
  || { echo "error: WARMUP_PERCENT must be an integer in 0..99 (got $WARMUP_PERCENT)" >&2; exit 2; }
if [[ -f "$OUT/done" ]]; then
  echo "done already: $OUT (remove $OUT/done to train it again)"; exit 0
fi

UPDATES_PER_EPOCH=$(( (NUM_TRAIN + BATCH - 1) / BATCH ))
TOTAL_UPDATES=$(( EPOCHS * UPDATES_PER_EPOCH ))
WARMUP_UPDATES=$(( TOTAL_UPDATES * WARMUP_PERCENT / 100 ))
FLAGS=()
[[ "$CPU" == 1 ]] && FLAGS+=(--cpu)
TIMER=()
[[ -x /usr/bin/time ]] && TIMER=(/usr/bin/time -a -o "$OUT/times" -f "%e %U %S")

mkdir -p "$OUT"
"${TIMER[@]}" fairseq-train --user-dir "$USER_DIR" --task mqar --vocab-size "$VOCAB" --seq-len "$L" --num-pairs "$N" \
  --num-train "$NUM_TRAIN" --num-valid "$NUM_VALID" --num-test "$NUM_TEST" --seed "$SEED" \
  --stop-accuracy "$STOP_ACCURACY" --arch "$ARCH" --criterion focus_labelled_cross_entropy --dropout 0 \
  --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay "$WEIGHT_DECAY" --lr "$LR" \
  --lr-scheduler polynomial_decay --warmup-updates "$WARMUP_UPDATES" --total-num-update "$TOTAL_UPDATES" \
  --batch-size "$BATCH" --max-epoch "$EPOCHS" --num-workers 0 \
  --best-checkpoint-metric until_solved --maximize-best-checkpoint-metric --patience 1 --no-epoch-checkpoints \
  --save-dir "$OUT" --log-format json --log-interval 50 --log-file "$OUT/train.log" "${FLAGS[@]}" "$@"
rm -f "$OUT/checkpoint_best.pt"  # tracks until_solved, not accuracy: meaningless (the task's docstring)
fairseq-validate --user-dir "$USER_DIR" --task mqar --path "$OUT/checkpoint_last.pt" --valid-subset test \
  --criterion focus_labelled_cross_entropy --batch-size "$BATCH" --num-workers 0 --log-format json "${FLAGS[@]}" \
  > "$OUT/test.log.tmp" 2>&1
mv "$OUT/test.log.tmp" "$OUT/test.log"
date -u +%FT%TZ > "$OUT/done"
