#!/usr/bin/env bash
# Train Focus / Focus-H / MEGA on text8. VARIANT=focus|static|ema (or ARCH=...), GPUS, MAX_UPDATE,
# SAVE_DIR, PRECISION=fp32|fp16|bf16, DATA_BIN, EXTRA_ARGS; full list in recipes/lm/README.md.
# Re-running with the same SAVE_DIR resumes from its checkpoint_last.pt.
set -euo pipefail
export CORPUS=text8
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lm/train.sh"
