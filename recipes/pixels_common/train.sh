#!/usr/bin/env bash
# Shared trainer of the pixel recipes (smnist, pmnist, scifar): fairseq-train with the
# pixel_sequence_classification task, the focus_classifier model and the focus_classification
# criterion (logs loss and accuracy for train, valid). Called by recipes/<name>/train.sh, which
# sets the per-dataset defaults; every variable below can be overridden from the environment.
#
#   DATA          prepared data directory (recipes/<name>/prepare.sh)
#   ARCH          focus_smnist | _causal | _static | _ema | _transformer | _paper | _static_paper | _ema_paper (… pmnist, scifar)
#   SAVE_DIR      checkpoints; re-running resumes from SAVE_DIR/checkpoint_last.pt (fairseq's default)
#   GPUS          GPUs on this node (default: all that nvidia-smi lists, else 1 = one GPU or the CPU);
#                 > 1 runs fairseq's own DDP (one process per GPU, NCCL). BATCH_SIZE is per GPU.
#   DISTRIBUTED_PORT  set it on a SLURM allocation (one task per node): fairseq then finds the nodes
#                 itself (scontrol) and uses every GPU of every node.
#   PRECISION     fp32 | fp16 | bf16 (the IIR filter math stays in fp32 in any case)
#   MAX_UPDATE, BATCH_SIZE, LR, WARMUP, WEIGHT_DECAY, CLIP_NORM, SEED, LOG_INTERVAL, NUM_WORKERS
#   PERMUTE_SEED  pixel permutation seed (pMNIST); empty = raster order
#   PIXEL_MEAN, PIXEL_STD, GRAYSCALE (0/1)
#   TB_DIR        tensorboard log dir (default SAVE_DIR/tb)
#   EXTRA_ARGS    more fairseq-train arguments, word-split (e.g. "--dropout 0.2 --cpu")
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
USER_DIR="${USER_DIR:-$REPO/fairseq_focus}"

: "${DATA:?set DATA to a prepared data directory}"
: "${ARCH:?set ARCH}"
SAVE_DIR="${SAVE_DIR:-checkpoints/$ARCH}"
if [[ -z "${GPUS:-}" ]]; then
    GPUS=$( (command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -c '^GPU') || true)
    [[ "${GPUS:-0}" -ge 1 ]] || GPUS=1
fi
PRECISION="${PRECISION:-fp32}"
MAX_UPDATE="${MAX_UPDATE:-100000}"
BATCH_SIZE="${BATCH_SIZE:-50}"
LR="${LR:-0.002}"
WARMUP="${WARMUP:-1000}"
WEIGHT_DECAY="${WEIGHT_DECAY:-0.01}"
CLIP_NORM="${CLIP_NORM:-1.0}"
SEED="${SEED:-1}"
LOG_INTERVAL="${LOG_INTERVAL:-100}"
NUM_WORKERS="${NUM_WORKERS:-2}"
PERMUTE_SEED="${PERMUTE_SEED:-}"
PIXEL_MEAN="${PIXEL_MEAN:-0.5}"
PIXEL_STD="${PIXEL_STD:-0.5}"
GRAYSCALE="${GRAYSCALE:-0}"
TB_DIR="${TB_DIR:-$SAVE_DIR/tb}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

[[ -f "$DATA/train-images.idx" ]] || { echo "error: $DATA is not a prepared data directory (no train-images.idx; run prepare.sh)" >&2; exit 1; }

args=(
    "$DATA" --user-dir "$USER_DIR"
    --task pixel_sequence_classification --pixel-mean "$PIXEL_MEAN" --pixel-std "$PIXEL_STD"
    --arch "$ARCH" --criterion focus_classification
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-8 --weight-decay "$WEIGHT_DECAY"
    --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" --total-num-update "$MAX_UPDATE"
    --end-learning-rate 0 --clip-norm "$CLIP_NORM"
    --batch-size "$BATCH_SIZE" --max-update "$MAX_UPDATE" --seed "$SEED" --num-workers "$NUM_WORKERS"
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-epoch-checkpoints
    --save-dir "$SAVE_DIR" --log-format simple --log-interval "$LOG_INTERVAL"
)
[[ -n "$PERMUTE_SEED" ]] && args+=(--permute-seed "$PERMUTE_SEED")
[[ "$GRAYSCALE" == 1 ]] && args+=(--grayscale)
case "$PRECISION" in
    fp32) ;;
    fp16) args+=(--fp16) ;;
    bf16) args+=(--autocast-bf16) ;;  # the model's bf16 autocast: fairseq 0.12's --bf16 means TPU
    *) echo "error: PRECISION must be fp32, fp16 or bf16, got '$PRECISION'" >&2; exit 1 ;;
esac
[[ "$GPUS" -gt 1 ]] && args+=(--distributed-world-size "$GPUS")
[[ -n "${DISTRIBUTED_PORT:-}" ]] && args+=(--distributed-port "$DISTRIBUTED_PORT")
if python -c 'import tensorboardX' 2>/dev/null || python -c 'import torch.utils.tensorboard' 2>/dev/null; then
    args+=(--tensorboard-logdir "$TB_DIR")
fi

mkdir -p "$SAVE_DIR"
# shellcheck disable=SC2086  # EXTRA_ARGS is meant to be word-split
exec fairseq-train "${args[@]}" $EXTRA_ARGS
