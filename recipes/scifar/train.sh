#!/usr/bin/env bash
# Sequential CIFAR-10: 1024 pixels in raster order, 3 channels per pixel (GRAYSCALE=1: one luma
# channel, as in LRA's Image task). Variables: see ../pixels_common/train.sh.
#   ARCH = focus_scifar (Focus: the selective head both ways, chunks of four rows) | focus_scifar_causal (left to right)
#          | focus_scifar_static (Focus-H) | focus_scifar_ema (MEGA's block, EMA both ways) | focus_scifar_transformer
#          | focus_scifar_paper, _static_paper, _ema_paper (the paper's head and whole-image chunk: reproduction)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/cifar10}"
export ARCH="${ARCH:-focus_scifar}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/scifar/$ARCH}"
export PIXEL_MEAN="${PIXEL_MEAN:-0.5}" PIXEL_STD="${PIXEL_STD:-0.5}"
export GRAYSCALE="${GRAYSCALE:-0}"
export PERMUTE_SEED=""
exec bash "$HERE/../pixels_common/train.sh"
