#!/usr/bin/env bash
# Prints "test accuracy = …" of a trained sCIFAR checkpoint. Variables: see ../pixels_common/eval.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DATA="${DATA:-data-bin/cifar10}"
export SAVE_DIR="${SAVE_DIR:-checkpoints/scifar/${ARCH:-focus_scifar}}"
exec bash "$HERE/../pixels_common/eval.sh"
