#!/usr/bin/env bash
# Test BPC of a text8 checkpoint, one line per protocol ("test BPC = X (protocol: ...)").
# CHECKPOINT (default SAVE_DIR/checkpoint_best.pt), PROTOCOLS="blocks sliding", EVAL_TOKENS,
# CONTEXT_WINDOW, DATA_BIN; full list and the protocols' meaning in recipes/lm/README.md.
set -euo pipefail
export CORPUS=text8
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lm/eval.sh"
