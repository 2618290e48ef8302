#!/usr/bin/env bash
# Prints "test accuracy = …" of a trained sMNIST checkpoint. Variables: see ../pixels_common/eval.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/mnist}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/smnist/${ARCH:-focus_smnist}}"
exec bash "$HERE/../pixels_common/eval.sh"
