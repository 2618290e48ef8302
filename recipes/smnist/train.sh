#!/usr/bin/env bash
# Sequential MNIST: 784 pixels in raster order, one channel. Variables: see ../pixels_common/train.sh.
#   ARCH = focus_smnist (Focus: the selective head both ways, chunks of four rows) | focus_smnist_causal (left to right)
#          | focus_smnist_static (Focus-H) | focus_smnist_ema (MEGA's block, EMA both ways) | focus_smnist_transformer
#          | focus_smnist_paper, _static_paper, _ema_paper (the paper's head and whole-image chunk: reproduction)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/mnist}"
export ARCH="${ARCH:-focus_smnist}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/smnist/$ARCH}"
# MNIST's training-set pixel mean and std (the values of pytorch/examples mnist/main.py)
export PIXEL_MEAN="${PIXEL_MEAN:-0.1307}" PIXEL_STD="${PIXEL_STD:-0.3081}"
export PERMUTE_SEED=""
exec bash "$HERE/../pixels_common/train.sh"
