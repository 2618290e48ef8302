#!/usr/bin/env bash
# The main job (`make demo`): train a small Focus byte LM on real text on this CPU and compare its
# test bits per byte with what xz -9e needs for the same bytes.
#
#   1. corpus: the Python standard library's source (present on every machine), 90/5/5 split
#   2. fairseq-preprocess --only-source (one token per byte, newline = </s>)
#   3. fairseq-train --user-dir fairseq_focus --task focus_lm --arch focus_lm (progress + tensorboard)
#   4. fairseq-eval-lm on the test split: "Loss (base 2)" is bits per byte
#   5. xz -9e on the raw test bytes, alone and after the training bytes (conditional)
#
# Overridable: WORK (output dir), CORPUS_BYTES, MAX_UPDATE, STOP_MINUTES, EXTRA_ARGS.
set -euo pipefail
export PYTHONUNBUFFERED=1  # live progress through the tee below
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$here/demo-work}"
CORPUS_BYTES="${CORPUS_BYTES:-3000000}"
MAX_UPDATE="${MAX_UPDATE:-1500}"
STOP_MINUTES="${STOP_MINUTES:-6}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
command -v fairseq-train >/dev/null || { echo "error: fairseq-train not on PATH (run 'make demo' or activate .venv)" >&2; exit 1; }
command -v xz >/dev/null || { echo "error: xz not found; install it (e.g. apt-get install xz-utils)" >&2; exit 1; }

start=$(date +%s)
echo "== 1/5 corpus: Python stdlib source, ${CORPUS_BYTES} bytes -> $WORK/raw"
python -m fairseq_focus.data.byte_corpus --stdlib --max-bytes "$CORPUS_BYTES" --out-dir "$WORK/raw"

echo "== 2/5 fairseq-preprocess"
rm -rf "$WORK/data-bin"
fairseq-preprocess --only-source --trainpref "$WORK/raw/train.txt" --validpref "$WORK/raw/valid.txt" \
  --testpref "$WORK/raw/test.txt" --destdir "$WORK/data-bin" --workers 2 >"$WORK/preprocess.log" 2>&1 \
  || { cat "$WORK/preprocess.log" >&2; exit 1; }

echo "== 3/5 fairseq-train focus_lm (at most $MAX_UPDATE updates or $STOP_MINUTES minutes)"
rm -rf "$WORK/checkpoints" "$WORK/tensorboard"
# shellcheck disable=SC2086
fairseq-train "$WORK/data-bin" --user-dir "$here/fairseq_focus" --task focus_lm --arch focus_lm \
  --cpu --num-workers 0 --seed 1 --tokens-per-sample 512 --max-tokens 4096 --required-batch-size-multiple 1 \
  --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 0.25 \
  --lr 2e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 \
  --max-update "$MAX_UPDATE" --stop-time-hours "$(python -c "print($STOP_MINUTES / 60)")" \
  --validate-interval-updates 500 --save-interval-updates 500 --keep-interval-updates 1 --no-epoch-checkpoints \
  --log-format simple --log-interval 100 --tensorboard-logdir "$WORK/tensorboard" \
  --save-dir "$WORK/checkpoints" $EXTRA_ARGS 2>&1 | tee "$WORK/train.log" \
  | grep --line-buffered -E "focus_lm:|train_inner|valid on|done training" || true
[ -f "$WORK/checkpoints/checkpoint_best.pt" ] || { echo "error: training wrote no checkpoint; see $WORK/train.log" >&2; exit 1; }

echo "== 4/5 fairseq-eval-lm on the test split"
fairseq-eval-lm "$WORK/data-bin" --user-dir "$here/fairseq_focus" --path "$WORK/checkpoints/checkpoint_best.pt" \
  --cpu --num-workers 0 --gen-subset test --tokens-per-sample 512 --max-tokens 8192 --required-batch-size-multiple 1 >"$WORK/eval.log" 2>&1 \
  || { cat "$WORK/eval.log" >&2; exit 1; }
bpc=$(sed -n 's/.*Loss (base 2): \([0-9.]*\).*/\1/p' "$WORK/eval.log" | tail -1)
[ -n "$bpc" ] || { echo "error: no 'Loss (base 2)' in $WORK/eval.log" >&2; exit 1; }

echo "== 5/5 xz -9e on the same test bytes"
test_bytes=$(wc -c <"$WORK/raw/test.raw")
xz_alone=$(xz -9e -c "$WORK/raw/test.raw" | wc -c)
xz_train=$(xz -9e -c "$WORK/raw/train.raw" | wc -c)
xz_both=$(cat "$WORK/raw/train.raw" "$WORK/raw/test.raw" | xz -9e -c | wc -c)
updates=$(sed -n 's/.*num_updates \([0-9]*\).*/\1/p' "$WORK/train.log" | tail -1)
params=$(sed -n 's/.*focus_lm: \([0-9]*\) parameters.*/\1/p' "$WORK/train.log" | tail -1)
python - "$bpc" "$test_bytes" "$xz_alone" "$xz_train" "$xz_both" "$updates" "$params" "$(( $(date +%s) - start ))" <<'PY'
import sys
bpc, n, alone, train, both, updates, params, secs = sys.argv[1:]
n = int(n)
print()
print(f"test split: {n:,} bytes of Python stdlib source; focus_lm with {int(params):,} parameters, {updates} updates")
print(f"  focus_lm test BPC (fairseq-eval-lm, Loss base 2)      : {float(bpc):.3f} bits/byte")
print(f"  xz -9e on the test bytes alone                         : {8 * int(alone) / n:.3f} bits/byte")
print(f"  xz -9e on the test bytes after the training bytes      : {8 * (int(both) - int(train)) / n:.3f} bits/byte")
print(f"  wall-clock for the whole demo: {int(secs)} s")
PY
