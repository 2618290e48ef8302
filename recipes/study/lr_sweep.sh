#!/usr/bin/env bash
# One queue of an lr sweep (docs/RESULTS.md §3): for each lr in LRS, train every line of VARIANTS (one run at a
# time, one torch thread) into WORK/CORPUS-lrLR with run.py's study budget at that lr. Run two queues side by side
# for two cores. Rerunning the same command skips finished runs (their result.json). Example:
#   LRS="4e-3 2e-3" VARIANTS=recipes/study/peers_variants.txt ONLY="mamba2 gated-deltanet" bash recipes/study/lr_sweep.sh
# ONLY: names of VARIANTS lines to run (default: all). SEEDS (default 1), CORPUS (pydoc | stdlib | sitepkgs),
# BUDGET (study | scale4x; give each budget its own WORK) and WORK (default work/peers) as run.py takes them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${LRS:?set LRS, e.g. LRS=\"4e-3 8e-3\"}" "${VARIANTS:=recipes/study/peers_variants.txt}" "${SEEDS:=1}"
: "${CORPUS:=pydoc}" "${BUDGET:=study}" "${WORK:=work/peers}" "${ONLY:=}"
PY=${PY:-.venv/bin/python}
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS=1
for lr in $LRS; do
  dir="$WORK/$CORPUS-lr$lr"
  [ -d "$dir/data-bin" ] || "$PY" recipes/study/run.py prepare --work "$dir" --corpus "$CORPUS"
  "$PY" recipes/study/run.py train --work "$dir" --variants "$VARIANTS" ${ONLY:+--only $ONLY} --budget "$BUDGET" \
    --lr "$lr" --seeds $SEEDS --jobs 1 || echo "lr $lr: a run failed (see its train.log)" >&2
done
