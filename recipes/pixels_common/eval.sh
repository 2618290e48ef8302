#!/usr/bin/env bash
# Shared evaluator of the pixel recipes: fairseq-validate on one split of a prepared data directory
# with a trained checkpoint, then prints "<split> accuracy = <percent>" (the focus_classification
# criterion's accuracy, the metric logged in training).
#
#   CKPT          checkpoint (default SAVE_DIR/checkpoint_best.pt)
#   DATA          prepared data directory (replaces the one recorded in the checkpoint)
#   SUBSET        split to score (default test)
#   BATCH_SIZE    default 100
#   PERMUTE_SEED  optional: the permutation to evaluate with. The checkpoint records the permutation
#                 it was trained with and uses it by default; naming a different one is refused.
#   EXTRA_ARGS    more fairseq-validate arguments, word-split
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
USER_DIR="${USER_DIR:-$REPO/fairseq_focus}"

: "${DATA:?set DATA to a prepared data directory}"
CKPT="${CKPT:-${SAVE_DIR:?set CKPT or SAVE_DIR}/checkpoint_best.pt}"
SUBSET="${SUBSET:-test}"
BATCH_SIZE="${BATCH_SIZE:-100}"
PERMUTE_SEED="${PERMUTE_SEED:-}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

[[ -f "$CKPT" ]] || { echo "error: no checkpoint $CKPT" >&2; exit 1; }
[[ -f "$DATA/$SUBSET-images.idx" ]] || { echo "error: $DATA has no '$SUBSET' split ($SUBSET-images.idx)" >&2; exit 1; }
case "$DATA" in *\'*|*\\*) echo "error: DATA must not contain quotes or backslashes: $DATA" >&2; exit 1 ;; esac

overrides="'data': '$DATA'"
if [[ -n "$PERMUTE_SEED" ]]; then
    [[ "$PERMUTE_SEED" =~ ^[0-9]+$ ]] || { echo "error: PERMUTE_SEED must be a non-negative integer" >&2; exit 1; }
    overrides+=", 'permute_seed': $PERMUTE_SEED"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086
if ! fairseq-validate "$DATA" --user-dir "$USER_DIR" --path "$CKPT" --task pixel_sequence_classification \
        --valid-subset "$SUBSET" --batch-size "$BATCH_SIZE" --model-overrides "{$overrides}" \
        --log-format simple $EXTRA_ARGS >"$log" 2>&1; then
    reason="$(grep -E '^([A-Za-z_.]*(Error|Exception): |[a-z-]+: error: )' "$log" | tail -n 1 || true)"
    echo "error: evaluation failed: ${reason:-see the fairseq-validate output above}" >&2
    [[ -n "$reason" ]] || cat "$log" >&2
    exit 1
fi
accuracy="$(grep "valid on '$SUBSET' subset" "$log" | tail -n 1 | sed -n 's/.*| accuracy \([0-9.]*\).*/\1/p')"
[[ -n "$accuracy" ]] || { cat "$log" >&2; echo "error: no accuracy in the fairseq-validate output" >&2; exit 1; }
echo "$SUBSET accuracy = $accuracy"
