#!/usr/bin/env bash
# The recall study of docs/RESULTS.md: every model of recall_variants.txt at every length, run side by
# side (JOBS at a time; on one GPU they share it), then one table.
#   bash recipes/study/recall_grid.sh                      # GPU: L = 64 256 1024, the budget below
#   CPU=1 JOBS=2 GRID_L=64 bash recipes/study/recall_grid.sh
# Each run is recipes/associative_recall/train.sh with WORK=$WORK/<variant>, so its files land in
# $WORK/<variant>/<arch>/L<L>/ (train.log, wall_seconds, stdout.log). Every train.sh variable passes
# through; the defaults below are the study's budget: 20,000 examples, batch 32, 8 epochs (5,000
# updates), lr 3e-3 with 200 warm-up updates and linear decay, held-out accuracy after every epoch,
# split by whether the query's key lies inside or before the query's attention chunk (M = 32).
# STOP_HOURS (fairseq's --stop-time-hours) caps each run's training time; a run stopped by it still
# validates, and the table reports the updates it reached. Extra arguments go to every fairseq-train.
# A variant's own flags come after the defaults here (e.g. its --split-chunk-size replaces the 32): the
# last occurrence of a flag wins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
GRID_L="${GRID_L:-64 256 1024}"
VARIANTS="${VARIANTS:-$HERE/recall_variants.txt}"
ONLY="${ONLY:-}"                # space-separated variant names; empty: all of VARIANTS
JOBS="${JOBS:-18}"
STOP_HOURS="${STOP_HOURS:-0}"   # 0: no cap
PYTHON="${PYTHON:-python}"
export WORK="${WORK:-$REPO/work/recall_study}"
export VOCAB="${VOCAB:-30}" NUM_TRAIN="${NUM_TRAIN:-20000}" NUM_TEST="${NUM_TEST:-500}" EPOCHS="${EPOCHS:-8}"
export WARMUP_EPOCHS="${WARMUP_EPOCHS:-1}" LR="${LR:-3e-3}" SEED="${SEED:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
[[ -f "$VARIANTS" ]] || { echo "error: no variants file $VARIANTS" >&2; exit 2; }
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "error: JOBS must be a positive integer (got $JOBS)" >&2; exit 2; }
STOP=()
[[ "$STOP_HOURS" != 0 ]] && STOP=(--stop-time-hours "$STOP_HOURS")

launched=0
failed=0
wait_one() { if ! wait -n; then failed=$(( failed + 1 )); fi; launched=$(( launched - 1 )); }
while read -r name arch flags; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ -n "$ONLY" && " $ONLY " != *" $name "* ]] && continue
  for L in $GRID_L; do
    (( launched >= JOBS )) && wait_one
    run_dir="$WORK/$name/$arch/L$L"
    mkdir -p "$run_dir"
    echo "== $name ($arch $flags) L=$L -> $run_dir"
    # shellcheck disable=SC2086  # flags is a word list from the variants file
    WORK="$WORK/$name" ARCH="$arch" L="$L" bash "$REPO/recipes/associative_recall/train.sh" \
      --warmup-updates 200 --split-chunk-size 32 --no-save "${STOP[@]}" $flags "$@" > "$run_dir/stdout.log" 2>&1 &
    launched=$(( launched + 1 ))
  done
done < "$VARIANTS"
while (( launched > 0 )); do wait_one; done
table=0
"$PYTHON" "$HERE/recall_collect.py" "$WORK" || table=$?
(( failed == 0 )) || { echo "error: $failed run(s) failed; see $WORK/*/*/L*/stdout.log" >&2; exit 1; }
exit "$table"
