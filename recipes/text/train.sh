#!/usr/bin/env bash
# Train Focus / Focus-H / MEGA on a data-bin from recipes/text/prepare.sh, with the byte recipes'
# training script (recipes/lm/train.sh: same variables, launchers, precision and resume rules).
# VARIANT=focus|static|ema picks --focus-filter (and, for ema, MEGA's --block-wiring) on one arch (ARCH, default focus_lm); MODEL_ARGS
# sets its sizes (e.g. "--decoder-layers 8 --decoder-embed-dim 512"); CORPUS, DATA_BIN, SAVE_DIR,
# GPUS, PRECISION, MAX_UPDATE, LR, ... as in recipes/enwik8/README.md. See recipes/text/README.md.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
MODEL_ARGS="${MODEL_ARGS:-}"

# Checked here (not only in lm/train.sh) so the message names this recipe's prepare.sh.
[[ -d "$DATA_BIN" ]] || die "DATA_BIN=$DATA_BIN is not a directory (run recipes/text/prepare.sh first)"
for f in dict.txt train.bin train.idx valid.bin valid.idx; do
    [[ -s "$DATA_BIN/$f" ]] || die "DATA_BIN=$DATA_BIN is not a fairseq data-bin: $f is missing (run recipes/text/prepare.sh)"
done

if [[ -n "$ARCH_GIVEN" && -z "$VARIANT_GIVEN" ]]; then VARIANT_ARGS=""; fi
export CORPUS DATA_BIN VARIANT ARCH SAVE_DIR USER_DIR
export EXTRA_ARGS="$VARIANT_ARGS $MODEL_ARGS ${EXTRA_ARGS:-}"
exec bash "$TEXT_RECIPE/../lm/train.sh"
