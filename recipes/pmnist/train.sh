#!/usr/bin/env bash
# Permuted MNIST: the 784 pixels of every image reordered by one fixed permutation (seed PERMUTE_SEED).
# Variables: see ../pixels_common/train.sh.
#   ARCH = focus_pmnist (Focus: the selective head both ways, chunks of four rows) | focus_pmnist_causal (left to right)
#          | focus_pmnist_static (Focus-H) | focus_pmnist_ema (MEGA's block, EMA both ways) | focus_pmnist_transformer
#          | focus_pmnist_paper, _static_paper, _ema_paper (the paper's head and whole-image chunk: reproduction)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/mnist}"
export ARCH="${ARCH:-focus_pmnist}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/pmnist/$ARCH}"
export PIXEL_MEAN="${PIXEL_MEAN:-0.1307}" PIXEL_STD="${PIXEL_STD:-0.3081}"
export PERMUTE_SEED="${PERMUTE_SEED:-1}"
exec bash "$HERE/../pixels_common/train.sh"
