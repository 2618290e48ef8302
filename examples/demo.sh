#!/usr/bin/env bash
# The main job (`make demo`): train the default model (`--arch focus_lm`, no model flags) as a byte LM
# on real text on this CPU, and print its test bits per byte beside MEGA's block trained on the same
# split for the same number of updates, beside xz -9e on the same bytes, and a sample it generates.
#
#   1. corpus: the Python standard library's source (present on every machine), 90/5/5 split
#   2. fairseq-preprocess --only-source (one token per byte, newline = </s>)
#   3. fairseq-train --arch focus_lm, and (DEMO_BASELINE=1) MEGA's block and EMA at the same size,
#      side by side on one torch thread each (progress + tensorboard for focus_lm)
#   4. fairseq-eval-lm on the test split: "Loss (base 2)" is bits per byte
#   5. xz -9e on the raw test bytes, alone and after the training bytes (conditional)
#   6. a sample from the trained focus_lm (top-k 10, temperature 0.8, seed 0)
#
# Overridable: WORK (output dir), CORPUS_BYTES, MAX_UPDATE, STOP_MINUTES (a cap per run), EXTRA_ARGS
# (model flags for both runs, e.g. a smaller model), DEMO_BASELINE (0 skips MEGA), SAMPLE_BYTES.
set -euo pipefail
export PYTHONUNBUFFERED=1  # live progress through the tee below
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$here/demo-work}"
CORPUS_BYTES="${CORPUS_BYTES:-3000000}"
MAX_UPDATE="${MAX_UPDATE:-1000}"
STOP_MINUTES="${STOP_MINUTES:-9}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
DEMO_BASELINE="${DEMO_BASELINE:-1}"
SAMPLE_BYTES="${SAMPLE_BYTES:-300}"
# MEGA's own block and EMA (README "Which model?"), FFN 512 to match focus_lm's size within 6%
MEGA_FLAGS=(--block-wiring mega --rel-pos-bias rotary --focus-filter ema --decoder-ffn-embed-dim 512)
command -v fairseq-train >/dev/null || { echo "error: fairseq-train not on PATH (run 'make demo' or activate .venv)" >&2; exit 1; }
command -v xz >/dev/null || { echo "error: xz not found; install it (e.g. apt-get install xz-utils)" >&2; exit 1; }
[[ "$DEMO_BASELINE" == 0 || "$DEMO_BASELINE" == 1 ]] || { echo "error: DEMO_BASELINE must be 0 or 1 (got $DEMO_BASELINE)" >&2; exit 1; }

start=$(date +%s)
echo "== 1/6 corpus: Python stdlib source, ${CORPUS_BYTES} bytes -> $WORK/raw"
python -m fairseq_focus.data.byte_corpus --stdlib --max-bytes "$CORPUS_BYTES" --out-dir "$WORK/raw"

echo "== 2/6 fairseq-preprocess"
rm -rf "$WORK/data-bin"
fairseq-preprocess --only-source --trainpref "$WORK/raw/train.txt" --validpref "$WORK/raw/valid.txt" \
  --testpref "$WORK/raw/test.txt" --destdir "$WORK/data-bin" --workers 2 >"$WORK/preprocess.log" 2>&1 \
  || { cat "$WORK/preprocess.log" >&2; exit 1; }

# train NAME [model flags…]: one run into $WORK/NAME (checkpoints, train.log, tensorboard)
train() {
  local name=$1; shift
  rm -rf "$WORK/$name"; mkdir -p "$WORK/$name"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 fairseq-train "$WORK/data-bin" --user-dir "$here/fairseq_focus" --task focus_lm --arch focus_lm "$@" \
    --cpu --num-workers 0 --seed 1 --tokens-per-sample 512 --max-tokens 4096 --required-batch-size-multiple 1 \
    --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 0.25 \
    --lr 2e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 \
    --max-update "$MAX_UPDATE" --stop-time-hours "$(python -c "print($STOP_MINUTES / 60)")" \
    --validate-interval-updates 500 --save-interval-updates 500 --keep-interval-updates 1 --no-epoch-checkpoints \
    --log-format simple --log-interval 100 --tensorboard-logdir "$WORK/$name/tensorboard" \
    --save-dir "$WORK/$name/checkpoints" $EXTRA_ARGS >"$WORK/$name/train.log" 2>&1
}
# bpc NAME: test BPC of NAME's best checkpoint
bpc() {
  fairseq-eval-lm "$WORK/data-bin" --user-dir "$here/fairseq_focus" --path "$WORK/$1/checkpoints/checkpoint_best.pt" \
    --cpu --num-workers 0 --gen-subset test --tokens-per-sample 512 --max-tokens 8192 --required-batch-size-multiple 1 \
    >"$WORK/$1/eval.log" 2>&1 || { cat "$WORK/$1/eval.log" >&2; exit 1; }
  local found; found=$(sed -n 's/.*Loss (base 2): \([0-9.]*\).*/\1/p' "$WORK/$1/eval.log" | tail -1)
  [ -n "$found" ] || { echo "error: no 'Loss (base 2)' in $WORK/$1/eval.log" >&2; exit 1; }
  echo "$found"
}
last() { sed -n "s/.*$2 \([0-9][0-9,]*\).*/\1/p" "$WORK/$1/train.log" | tail -1 | tr -d ,; }

echo "== 3/6 fairseq-train --arch focus_lm$([[ $DEMO_BASELINE == 1 ]] && echo ', and MEGA beside it') (at most $MAX_UPDATE updates or $STOP_MINUTES minutes each)"
pids=()
train focus_lm & pids+=($!)
[[ "$DEMO_BASELINE" == 1 ]] && { train mega "${MEGA_FLAGS[@]}" & pids+=($!); }
tail -n +1 -F "$WORK/focus_lm/train.log" 2>/dev/null | grep --line-buffered -E "focus_lm:|train_inner|valid on|done training" &
tailer=$!
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
kill "$tailer" 2>/dev/null || true
(( failed == 0 )) || { echo "error: training failed; see $WORK/focus_lm/train.log and $WORK/mega/train.log" >&2; exit 1; }
for name in focus_lm $([[ $DEMO_BASELINE == 1 ]] && echo mega); do
  [ -f "$WORK/$name/checkpoints/checkpoint_best.pt" ] || { echo "error: $name wrote no checkpoint; see $WORK/$name/train.log" >&2; exit 1; }
done

echo "== 4/6 fairseq-eval-lm on the test split"
focus_bpc=$(bpc focus_lm)
mega_bpc=$([[ "$DEMO_BASELINE" == 1 ]] && bpc mega || echo "")

echo "== 5/6 xz -9e on the same test bytes"
test_bytes=$(wc -c <"$WORK/raw/test.raw")
xz_alone=$(xz -9e -c "$WORK/raw/test.raw" | wc -c)
xz_train=$(xz -9e -c "$WORK/raw/train.raw" | wc -c)
xz_both=$(cat "$WORK/raw/train.raw" "$WORK/raw/test.raw" | xz -9e -c | wc -c)

echo "== 6/6 a sample from focus_lm"
sample=$(python - "$WORK" "$SAMPLE_BYTES" <<'PY'
import logging
import sys
logging.disable(logging.INFO)  # the loader's INFO lines would fall between the table and the sample
from fairseq_focus.inference.hub import FocusLMHub
work, n = sys.argv[1], int(sys.argv[2])
lm = FocusLMHub.from_pretrained(f"{work}/focus_lm/checkpoints", "checkpoint_best.pt", f"{work}/data-bin")
print(lm.sample("def ", n_bytes=n, temperature=0.8, top_k=10, seed=0))
PY
)

python - "$focus_bpc" "$mega_bpc" "$test_bytes" "$xz_alone" "$xz_train" "$xz_both" "$(last focus_lm num_updates)" \
  "$(last mega num_updates 2>/dev/null || true)" "$(sed -n 's/.*focus_lm: \([0-9]*\) parameters.*/\1/p' "$WORK/focus_lm/train.log" | tail -1)" \
  "$( [[ $DEMO_BASELINE == 1 ]] && sed -n 's/.*focus_lm: \([0-9]*\) parameters.*/\1/p' "$WORK/mega/train.log" | tail -1)" \
  "$(( $(date +%s) - start ))" <<'PY'
import sys
bpc, mega, n, alone, train, both, updates, mega_updates, params, mega_params, secs = sys.argv[1:]
n = int(n)
print()
print(f"test split: {n:,} bytes of Python stdlib source")
print(f"  focus_lm (default: selective IIR head), {int(params):,} params, {updates} updates : {float(bpc):.3f} bits/byte")
if mega:
    print(f"  MEGA's block and EMA,  {int(mega_params):,} params, {mega_updates} updates        : {float(mega):.3f} bits/byte")
print(f"  xz -9e on the test bytes alone                                 : {8 * int(alone) / n:.3f} bits/byte")
print(f"  xz -9e on the test bytes after the training bytes              : {8 * (int(both) - int(train)) / n:.3f} bits/byte")
print(f"  wall-clock for the whole demo: {int(secs)} s")
PY
echo
echo "sample (prompt 'def ', top-k 10, temperature 0.8, seed 0):"
echo "$sample"
