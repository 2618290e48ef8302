#!/usr/bin/env bash
# First-run check of the node you are about to train on (fairseq_focus/tools/check_node.py says what
# and how): builds the registered archs and fairseq's transformer_lm (sized to focus_lm_enwik8) and counts
# their parameters; trains focus_lm_enwik8, focus_lm_enwik8_ema (MEGA) and transformer_lm briefly at 4K
# tokens on a synthetic byte corpus in bf16 (--autocast-bf16; transformer_lm: the task's
# --task-autocast-bf16) and fp16 (--fp16), and tables their whole-step tokens/s with the ratios
# focus_lm_enwik8 ÷ focus_lm_enwik8_ema and ÷ transformer_lm; checks incremental decoding against the
# parallel forward; runs the layer benchmark (the selective and static carry layers, the adaptive
# one, MEGA's EMA layer, fairseq's layer) in fp32 and bf16; and, first, checks and times the Triton kernels of
# the IIR scan compiled on the GPU (OUT_DIR/triton_scan.json). About 15 minutes on one GPU (an estimate);
# without CUDA, a CPU smoke run of the same steps at tiny sizes.
#
#   bash recipes/check_gpu.sh [OUT_DIR]        # OUT_DIR (default check-out): check.json, check.md, logs/, work/
#   CHECK_STEPS=100 CHECK_LENGTHS=1024 bash recipes/check_gpu.sh /tmp/check   # CHECK_* override any size
#
# Exit 0: every check passed; 1: one failed (check.json still written, "ok": false); 2: bad settings
# or the check could not finish (no check.json). On failure stderr holds one line, "error: ...";
# everything else (progress, fairseq's output, tracebacks) goes to stdout.
# Runs the Python on PATH (PYTHON=... to choose another): the environment with torch and fairseq.
set -euo pipefail

die() { echo "error: $*" >&2; exit 2; }

[[ $# -le 1 ]] || die "usage: bash recipes/check_gpu.sh [OUT_DIR] (sizes through CHECK_* variables; got $# arguments)"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-check-out}"
PYTHON="${PYTHON:-$(command -v python || command -v python3 || true)}"
[[ -n "$PYTHON" ]] || die "no python on PATH (activate the environment with torch and fairseq, or set PYTHON)"
"$PYTHON" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('torch') and u.find_spec('fairseq')))" \
    2>/dev/null || die "$PYTHON cannot import torch and fairseq (activate the training environment, e.g. source .venv/bin/activate, or set PYTHON)"

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# fd 3 carries a step's one-line verdict to the caller's stderr; all other output goes to stdout.
exec 3>&2
# The Triton kernels of the IIR scan compiled on this GPU (fairseq_focus/tools/check_triton_scan.py): values and
# gradients against the torch scan twin at D 130, L 3000 in fp32 and bf16, and the sequential schedule timed against
# the chunked one ($FOCUS_SCAN_SCHEDULE); OUT_DIR/triton_scan.json. Skipped (exit 0, nothing on stderr) without CUDA.
SCAN_JSON="$OUT_DIR/triton_scan.json"
rm -f "$SCAN_JSON"
scan_rc=0
"$PYTHON" -m fairseq_focus.tools.check_triton_scan --out "$SCAN_JSON" --error-fd 3 2>&1 || scan_rc=$?
node_rc=0
"$PYTHON" -m fairseq_focus.tools.check_node --out "$OUT_DIR" --error-fd 3 2>&1 || node_rc=$?
[[ $node_rc -eq 0 ]] || exit "$node_rc"
if [[ $scan_rc -ne 0 ]]; then  # a failed comparison wrote its error line; a crash did not
    grep -q '"status": "failed"' "$SCAN_JSON" 2>/dev/null \
        || echo "error: the Triton scan check did not finish (exit $scan_rc; its traceback is on stdout)" >&2
    exit 1
fi
