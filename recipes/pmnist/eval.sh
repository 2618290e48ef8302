#!/usr/bin/env bash
# Prints "test accuracy = …" of a trained pMNIST checkpoint, with the permutation recorded in it.
# PERMUTE_SEED, if set, must name that permutation (anything else is refused). See ../pixels_common/eval.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/mnist}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/pmnist/${ARCH:-focus_pmnist}}"
exec bash "$HERE/../pixels_common/eval.sh"
