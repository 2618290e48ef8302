#!/usr/bin/env bash
# Test perplexity per subword, bits per byte and word-level perplexity of a wikitext-103 checkpoint
# (recipes/text/eval.sh). CHECKPOINT (default SAVE_DIR/checkpoint_best.pt), VARIANT, PROTOCOLS,
# EVAL_TOKENS, CONTEXT_WINDOW, DATA_BIN: see recipes/wikitext103/README.md.
set -euo pipefail
export CORPUS=wikitext103
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../text/eval.sh"
