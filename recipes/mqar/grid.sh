#!/usr/bin/env bash
# The MQAR grid (issue 31; recipes/mqar/README.md): every variant of VARIANTS at every cell and learning rate,
# JOBS runs at a time in the background of this script, then the table and the plot.
#   nohup bash recipes/mqar/grid.sh > work/mqar/grid.out 2>&1 &            # width 64, every variant
#   WIDEN=1 nohup bash recipes/mqar/grid.sh > work/mqar/grid128.out 2>&1 &  # then 128 where 64 stayed < 90%
# Resumable: rerun the same command; finished runs (done) are skipped, unfinished ones resume from their
# checkpoint_last.pt. Each run is train.sh with OUT=$WORK/<variant>/L<L>-N<N>/d<D>-lr<LR>; its stdout/stderr
# go to stdout.log there. Every train.sh variable (VOCAB, BATCH, NUM_VALID, NUM_TEST, SEED, …) passes through.
# CELLS: "L:N:NUM_TRAIN:EPOCHS" entries; the defaults are sized so that one run takes at most ~30 CPU minutes
# on one thread (README, "Sizing"). Extra arguments go to every fairseq-train.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CELLS="${CELLS:-64:4:36000:4 256:16:9600:3 512:64:6400:2}"
LRS="${LRS:-1e-3 3e-3 1e-2}"
VARIANTS="${VARIANTS:-$HERE/variants.txt}"
ONLY="${ONLY:-}"                  # space-separated variant names; empty: all of VARIANTS
WIDTH="${WIDTH:-64}"
WIDEN="${WIDEN:-0}"               # 1: width WIDEN_TO, only where the best lr at WIDTH stayed below WIDEN_BELOW %
WIDEN_TO="${WIDEN_TO:-128}"
WIDEN_BELOW="${WIDEN_BELOW:-90}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python}"
export WORK="${WORK:-$REPO/work/mqar}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "error: JOBS must be a positive integer (got $JOBS)" >&2; exit 2; }
for cell in $CELLS; do
  [[ "$cell" =~ ^[1-9][0-9]*:[1-9][0-9]*:[1-9][0-9]*:[1-9][0-9]*$ ]] \
    || { echo "error: CELLS entries are L:N:NUM_TRAIN:EPOCHS (got $cell)" >&2; exit 2; }
done
# shellcheck disable=SC2086  # ONLY is a word list
LINES="$("$PYTHON" "$HERE/variants.py" "$VARIANTS" --width "$([[ "$WIDEN" == 1 ]] && echo "$WIDEN_TO" || echo "$WIDTH")" \
         ${ONLY:+--only $ONLY})"
WANTED=""
if [[ "$WIDEN" == 1 ]]; then
  WANTED="$("$PYTHON" "$HERE/collect.py" "$WORK" --below "$WIDEN_BELOW" --at-width "$WIDTH")"
  echo "widening to $WIDEN_TO (best at $WIDTH below $WIDEN_BELOW%):"; echo "${WANTED:-  nothing}"
  WIDTH="$WIDEN_TO"
fi

launched=0
failed=0
wait_one() { if ! wait -n; then failed=$(( failed + 1 )); fi; launched=$(( launched - 1 )); }
for cell in $CELLS; do
  IFS=: read -r L N NUM_TRAIN EPOCHS <<< "$cell"
  while IFS=$'\t' read -r name arch flags; do
    [[ -z "$name" ]] && continue
    if [[ "$WIDEN" == 1 ]] && ! grep -qx "$name $L $N" <<< "$WANTED"; then continue; fi
    for LR in $LRS; do
      run_dir="$WORK/$name/L$L-N$N/d$WIDTH-lr$LR"
      if [[ -f "$run_dir/done" ]]; then echo "== done already: $run_dir"; continue; fi
      (( launched >= JOBS )) && wait_one
      mkdir -p "$run_dir"
      echo "== $name ($arch $flags) L=$L N=$N lr=$LR -> $run_dir"
      # shellcheck disable=SC2086  # flags is a word list from the variants file
      ARCH="$arch" L="$L" N="$N" LR="$LR" NUM_TRAIN="$NUM_TRAIN" EPOCHS="$EPOCHS" OUT="$run_dir" \
        bash "$HERE/train.sh" $flags "$@" >> "$run_dir/stdout.log" 2>&1 &
      launched=$(( launched + 1 ))
    done
  done <<< "$LINES"
done
while (( launched > 0 )); do wait_one; done
table=0
"$PYTHON" "$HERE/collect.py" "$WORK" --out "$WORK/table.md" --plot "$WORK/accuracy_vs_state.png" || table=$?
(( failed == 0 )) || { echo "error: $failed run(s) failed; see $WORK/*/L*-N*/d*-lr*/stdout.log" >&2; exit 1; }
exit "$table"
