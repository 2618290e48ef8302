#!/usr/bin/env bash
# Train one model on associative recall (paper §5.1, Table 1; hyperparameters of appendix Table 6).
#   ARCH=focus_recall L=1024 bash recipes/associative_recall/train.sh [extra fairseq-train flags]
# ARCH: focus_recall (Focus) | focus_recall_static (Focus-H) | focus_recall_ema (MEGA-EMA)
#       | focus_recall_transformer (fairseq's transformer_lm). The command differs only in --arch.
# Every variable below can be overridden from the environment. On a GPU node fairseq trains on all
# visible GPUs (DDP); BATCH is the total batch, split over GPUs with --update-freq 1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

ARCH="${ARCH:-focus_recall}"
L="${L:-1024}"                  # --seq-len: key/value tokens per example (Table 1's L)
VOCAB="${VOCAB:-30}"            # Table 6
NUM_TRAIN="${NUM_TRAIN:-2000}"  # Table 6: 2000 samples
NUM_TEST="${NUM_TEST:-500}"     # not in the paper; Hyena's recall default
EPOCHS="${EPOCHS:-400}"         # not in the paper; Hyena's recall config trains 400 epochs
WARMUP_EPOCHS="${WARMUP_EPOCHS:-10}"  # Table 6
LR="${LR:-1e-4}"                # Table 6
BATCH="${BATCH:-32}"            # Table 6
WEIGHT_DECAY="${WEIGHT_DECAY:-0.01}"  # not in the paper; torch's AdamW default
SEED="${SEED:-1}"               # seeds the data generator and fairseq
WORK="${WORK:-$REPO/work/associative_recall}"
CPU="${CPU:-0}"                 # 1: train on CPU
PRECISION="${PRECISION:-}"      # "" (fp32) | fp16 | bf16 (Focus archs; a GPU with bf16 units, or CPU)
USER_DIR="${USER_DIR:-$REPO/fairseq_focus}"
NUM_WORKERS="${NUM_WORKERS:-0}"  # the data is in memory already

NGPU=1
if [[ "$CPU" != 1 ]] && command -v nvidia-smi >/dev/null; then
  NGPU="$(nvidia-smi -L | wc -l)"; NGPU=$(( NGPU > 0 ? NGPU : 1 ))
fi
PER_DEVICE_BATCH=$(( BATCH / NGPU ))
(( PER_DEVICE_BATCH * NGPU == BATCH )) || { echo "error: BATCH=$BATCH is not divisible by $NGPU GPUs" >&2; exit 2; }
UPDATES_PER_EPOCH=$(( (NUM_TRAIN + BATCH - 1) / BATCH ))
TOTAL_UPDATES=$(( EPOCHS * UPDATES_PER_EPOCH ))
WARMUP_UPDATES=$(( WARMUP_EPOCHS * UPDATES_PER_EPOCH ))
(( WARMUP_UPDATES < TOTAL_UPDATES )) || WARMUP_UPDATES=$(( TOTAL_UPDATES / 2 ))

FLAGS=()
[[ "$CPU" == 1 ]] && FLAGS+=(--cpu)
case "$PRECISION" in
  "") ;; fp16) FLAGS+=(--fp16) ;;
  # the Focus models' own bf16 autocast (fairseq 0.12's --bf16 means TPU); stock transformer_lm has none
  bf16) if [[ "$ARCH" == focus_recall_transformer ]]; then
          echo "error: PRECISION=bf16 needs a Focus arch (--autocast-bf16); fairseq 0.12's transformer_lm has no" \
               "CUDA bf16 path (--bf16 means TPU): use PRECISION=fp16 or fp32 for $ARCH" >&2; exit 2
        fi
        FLAGS+=(--autocast-bf16) ;;
  *) echo "error: PRECISION must be empty, fp16 or bf16 (got $PRECISION)" >&2; exit 2 ;;
esac

OUT="$WORK/$ARCH/L$L"
mkdir -p "$OUT"
rm -f "$OUT/train.log"
START=$(date +%s)
fairseq-train --user-dir "$USER_DIR" --task associative_recall \
  --seq-len "$L" --vocab-size "$VOCAB" --num-train "$NUM_TRAIN" --num-test "$NUM_TEST" --seed "$SEED" \
  --arch "$ARCH" --criterion cross_entropy \
  --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay "$WEIGHT_DECAY" --lr "$LR" \
  --lr-scheduler polynomial_decay --warmup-updates "$WARMUP_UPDATES" --total-num-update "$TOTAL_UPDATES" \
  --batch-size "$PER_DEVICE_BATCH" --max-epoch "$EPOCHS" --num-workers "$NUM_WORKERS" \
  --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-epoch-checkpoints \
  --save-dir "$OUT" --log-format json --log-interval 50 --log-file "$OUT/train.log" \
  "${FLAGS[@]}" "$@"
echo "$(( $(date +%s) - START ))" > "$OUT/wall_seconds"
