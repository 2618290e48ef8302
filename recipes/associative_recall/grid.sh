#!/usr/bin/env bash
# Table 1's grid: every model at every length, then the accuracy table.
#   bash recipes/associative_recall/grid.sh            # the paper's grid (GPU)
# GRID_L and ARCHS choose the cells; every train.sh variable (VOCAB, EPOCHS, LR, CPU, WORK, ...)
# passes through. focus_recall is ours (the paper's Focus + a global linear attention, the one design that
# recalls across chunks); focus_recall_paper, _static, _ema and _transformer are the paper's four models. The transformer is skipped above TRANSFORMER_MAX_L (full attention over 8K+
# tokens does not fit; the paper marks those cells "NF").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
GRID_L="${GRID_L:-30 1024 8192 32768 65536}"
ARCHS="${ARCHS:-focus_recall focus_recall_paper focus_recall_static focus_recall_ema focus_recall_transformer}"
TRANSFORMER_MAX_L="${TRANSFORMER_MAX_L:-1024}"
export WORK="${WORK:-$REPO/work/associative_recall}"
PYTHON="${PYTHON:-python}"

for L in $GRID_L; do
  for ARCH in $ARCHS; do
    if [[ "$ARCH" == focus_recall_transformer && "$L" -gt "$TRANSFORMER_MAX_L" ]]; then
      echo "skip $ARCH at L=$L (> TRANSFORMER_MAX_L=$TRANSFORMER_MAX_L)"; continue
    fi
    echo "== $ARCH L=$L"
    ARCH="$ARCH" L="$L" bash "$HERE/train.sh" "$@"
  done
done
"$PYTHON" "$HERE/collect.py" "$WORK"
