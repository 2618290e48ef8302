#!/usr/bin/env bash
# Train Focus / Focus-H / MEGA on wikitext-103 subwords at the size of MEGA's wikitext-103 model with
# MEGA's training settings (facebookresearch/mega, examples/mega/README.lm.md, arch mega_lm_adaptive_big).
# VARIANT=focus|static|ema, GPUS, PRECISION, MAX_UPDATE, SAVE_DIR, MODEL_ARGS, EXTRA_ARGS: see
# recipes/wikitext103/README.md. Re-running with the same SAVE_DIR resumes from its checkpoint_last.pt.
set -euo pipefail
export CORPUS=wikitext103
# mega_lm_adaptive_big: 16 layers, D 1024, value/gate dim 2048, FFN 2048, z 256, EMA dim 16,
# attention chunks of 1024, dropout 0.3 / attention 0.1 / hidden 0.1, no affine final norm.
# Focus's own hyperparameters (bins of 128, conv kernel 2048) as in the byte archs (paper §5.2).
export MODEL_ARGS="${MODEL_ARGS:---decoder-layers 16 --decoder-embed-dim 1024 --decoder-hidden-dim 2048 \
--decoder-ffn-embed-dim 2048 --decoder-z-dim 256 --ema-ndim 16 --chunk-size 1024 --bin-size 128 \
--hyper-kernel-size 2048 --dropout 0.3 --attention-dropout 0.1 --hidden-dropout 0.1 --no-affine-final-norm}"
# MEGA's optimisation: lr 5e-3, 24k warmup, linear decay to 0 at 400k updates, clip 0.25, weight decay
# 0.1 (recipes/lm/train.sh defaults), and 6144 tokens per GPU on 24 GPUs, update-freq 1.
export TOKENS_PER_SAMPLE="${TOKENS_PER_SAMPLE:-6144}"
export MAX_TOKENS="${MAX_TOKENS:-6144}"
export GLOBAL_GPUS_EQUIV="${GLOBAL_GPUS_EQUIV:-24}"
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../text/train.sh"
