#!/usr/bin/env bash
# Shared by recipes/enwik8/train.sh and recipes/text8/train.sh (they set CORPUS). Trains a focus_lm
# variant with fairseq-train: the paper's AdamW betas (0.9, 0.98), otherwise MEGA's enwik8 recipe.
# Every setting below is an environment variable; recipes/lm/README.md lists them.
#
# Launch modes, all fairseq's own machinery:
#   one GPU / CPU          bash train.sh
#   G GPUs, one node       GPUS=G bash train.sh            (fairseq spawns G DDP processes)
#   N nodes x G GPUs       sbatch recipes/slurm/train.sbatch recipes/<corpus>/train.sh
#                          (srun starts one task per GPU; fairseq reads SLURM_* and DISTRIBUTED_PORT)
#   torchrun (e.g. CPU)    torchrun --nproc_per_node 2 --no-python bash train.sh
#                          (RANK/WORLD_SIZE from torchrun, env:// init, gloo on CPU)
# Re-running with the same SAVE_DIR resumes from SAVE_DIR/checkpoint_last.pt (fairseq's default).
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-$SAVE_DIR/tensorboard}"
PRECISION="${PRECISION:-fp32}"
SEED="${SEED:-1}"

# Optimisation. Paper (Appendix A): AdamW, betas (0.9, 0.98). fairseq's --optimizer adam applies
# --weight-decay decoupled, as AdamW (fairseq/optim/adam.py: "corresponds to the AdamW variant";
# the step does p -= wd * lr * p apart from the Adam update). The rest is MEGA's enwik8 recipe
# (facebookresearch/mega examples/mega/README.lm.md): lr 5e-3, 24k warmup updates, linear decay to
# 0 over 400k updates, clip-norm 0.25, weight decay 0.1, 8192 tokens per GPU on 8 GPUs.
# fairseq has no `linear_decay` scheduler; polynomial_decay with --power 1 is the same line (its
# warmup starts at lr/WARMUP = 2e-7 instead of MEGA's 1e-7: it has no --warmup-init-lr).
LR="${LR:-5e-3}"
WARMUP="${WARMUP:-24000}"
MAX_UPDATE="${MAX_UPDATE:-400000}"
TOTAL_NUM_UPDATE="${TOTAL_NUM_UPDATE:-$MAX_UPDATE}"
CLIP_NORM="${CLIP_NORM:-0.25}"
WEIGHT_DECAY="${WEIGHT_DECAY:-0.1}"
TOKENS_PER_SAMPLE="${TOKENS_PER_SAMPLE:-8192}"
MAX_TOKENS="${MAX_TOKENS:-8192}"
GLOBAL_GPUS_EQUIV="${GLOBAL_GPUS_EQUIV:-8}"   # UPDATE_FREQ keeps MEGA's 8 x 8192 tokens per update
SAVE_INTERVAL_UPDATES="${SAVE_INTERVAL_UPDATES:-2000}"
LOG_INTERVAL="${LOG_INTERVAL:-100}"
NUM_WORKERS="${NUM_WORKERS:-1}"
DDP_BACKEND="${DDP_BACKEND:-legacy_ddp}"      # MEGA's no_c10d; tolerates parameters a variant leaves unused
EXTRA_ARGS="${EXTRA_ARGS:-}"

# Check the data before anything is created, so a wrong DATA_BIN leaves nothing behind.
[[ -d "$DATA_BIN" ]] || die "DATA_BIN=$DATA_BIN is not a directory (run recipes/${CORPUS}/prepare.sh first)"
for f in dict.txt train.bin train.idx valid.bin valid.idx; do
    [[ -s "$DATA_BIN/$f" ]] || die "DATA_BIN=$DATA_BIN is not a fairseq data-bin: $f is missing (run recipes/${CORPUS}/prepare.sh)"
done
command -v fairseq-train >/dev/null || die "fairseq-train not on PATH (activate the environment with fairseq installed)"

if [[ -z "${GPUS:-}" ]]; then
    GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
fi
DIST_ARGS=()
if [[ -n "${WORLD_SIZE:-}" && -n "${RANK:-}" ]]; then
    # Started by torchrun / torch.distributed.run: one process per rank, env:// rendezvous.
    WORLD="$WORLD_SIZE"
    if [[ "$GPUS" -gt 0 ]]; then backend=nccl; else backend=gloo; fi
    DIST_ARGS=(--distributed-backend "$backend" --distributed-init-method env://
               --distributed-rank "$RANK" --distributed-world-size "$WORLD_SIZE" --distributed-no-spawn
               --device-id "${LOCAL_RANK:-0}")
elif [[ "$GPUS" -gt 1 ]]; then
    # One node: fairseq spawns GPUS processes. Under srun (recipes/slurm), GPUS is the world size
    # (nodes x GPUs) and DISTRIBUTED_PORT makes fairseq derive ranks and the master from SLURM_*.
    WORLD="$GPUS"
    DIST_ARGS=(--distributed-world-size "$GPUS")
    if [[ -n "${DISTRIBUTED_PORT:-}" ]]; then DIST_ARGS+=(--distributed-port "$DISTRIBUTED_PORT"); fi
else
    WORLD=1
fi
UPDATE_FREQ="${UPDATE_FREQ:-$(( GLOBAL_GPUS_EQUIV > WORLD ? GLOBAL_GPUS_EQUIV / WORLD : 1 ))}"

DEVICE_ARGS=()
[[ "$GPUS" -gt 0 ]] || DEVICE_ARGS=(--cpu)
case "$PRECISION" in
    fp32) ;;
    # fairseq's --amp: torch.cuda.amp autocast (fp16) with fp32 weights and dynamic loss scaling;
    # the IIR filter and the FFT convolution run in fp32 inside autocast (ops/iir/, ops/long_conv.py).
    fp16) DEVICE_ARGS+=(--amp) ;;
    # fairseq 0.12's --bf16 turns on --tpu (fairseq/options.py: "if args.bf16: args.tpu = True"), so
    # bf16 is the model's own option: its forward runs under torch.autocast(bfloat16), fp32 weights,
    # the IIR filter and FFT convolution in fp32; refused at the first forward on a GPU without bf16.
    bf16) DEVICE_ARGS+=(--autocast-bf16) ;;
    *) die "PRECISION must be fp32, fp16 or bf16, got '$PRECISION'" ;;
esac

mkdir -p "$SAVE_DIR"
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags on purpose
exec fairseq-train "$DATA_BIN" \
    --user-dir "$USER_DIR" --task focus_lm --arch "$ARCH" \
    --sample-break-mode none --tokens-per-sample "$TOKENS_PER_SAMPLE" \
    --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" \
    --criterion cross_entropy \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-8 --weight-decay "$WEIGHT_DECAY" \
    --clip-norm "$CLIP_NORM" --lr "$LR" \
    --lr-scheduler polynomial_decay --power 1 --end-learning-rate 0 \
    --warmup-updates "$WARMUP" --total-num-update "$TOTAL_NUM_UPDATE" --max-update "$MAX_UPDATE" \
    --seed "$SEED" --ddp-backend "$DDP_BACKEND" --num-workers "$NUM_WORKERS" \
    --save-dir "$SAVE_DIR" --save-interval-updates "$SAVE_INTERVAL_UPDATES" --keep-interval-updates 1 \
    --no-epoch-checkpoints --best-checkpoint-metric loss \
    --tensorboard-logdir "$TENSORBOARD_DIR" \
    --log-format simple --log-interval "$LOG_INTERVAL" \
    "${DIST_ARGS[@]}" "${DEVICE_ARGS[@]}" $EXTRA_ARGS
