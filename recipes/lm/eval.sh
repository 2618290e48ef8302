#!/usr/bin/env bash
# Shared by recipes/enwik8/eval.sh and recipes/text8/eval.sh (they set CORPUS). Scores a checkpoint
# on the test split with fairseq-eval-lm and prints one line per protocol:
#     test BPC = X (protocol: ...)
# With one token per byte/character (newlines or the end of the split as </s>), fairseq-eval-lm's
# "Loss (base 2)" is the mean of -log2 p over every test token: the BPC.
#
# PROTOCOLS (space separated, run in order):
#   blocks   the test split cut into non-overlapping blocks of EVAL_TOKENS tokens, each scored
#            on its own: a token's context is only the earlier part of its block.
#   sliding  fairseq's --context-window: blocks of EVAL_TOKENS - CONTEXT_WINDOW new tokens, each
#            fed with the CONTEXT_WINDOW tokens before it, only the new tokens scored: every token
#            (after the first block) is predicted from at least CONTEXT_WINDOW tokens of left context.
#   stream   the whole split as one stream, fed in consecutive segments of EVAL_TOKENS tokens with
#            the model's state (IIR/EMA state, hypernetwork history, current attention chunk)
#            carried across segments (python -m fairseq_focus.tools.score_stream), as MEGA reports
#            enwik8 and fairseq's examples/truncated_bptt evaluates. Equal to one parallel forward
#            over the whole split: no segment cut shortens the context, but how far back a token
#            can see is the model's own reach: unbounded (decaying) for --iir-mode carry and the
#            EMA; adaptive causal sees tokens before its attention chunk only through Θ, from
#            chunk_start − R − K + 1 on (shared hypernetwork; R divides the chunk in the LM archs);
#            static causal (Focus-H) sees nothing before its chunk. See docs/INFERENCE.md.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
CHECKPOINT="${CHECKPOINT:-$SAVE_DIR/checkpoint_best.pt}"
SUBSET="${SUBSET:-test}"
PROTOCOLS="${PROTOCOLS:-blocks sliding stream}"
EVAL_TOKENS="${EVAL_TOKENS:-8192}"          # block length fed to the model (the training length)
CONTEXT_WINDOW="${CONTEXT_WINDOW:-6144}"    # sliding: left context per block; scores 2048 new tokens
MAX_TOKENS="${MAX_TOKENS:-65536}"           # tokens per eval batch
EVAL_ARGS="${EVAL_ARGS:-}"

[[ -d "$DATA_BIN" ]] || die "DATA_BIN=$DATA_BIN is not a directory (run recipes/${CORPUS}/prepare.sh first)"
for f in dict.txt "$SUBSET.bin" "$SUBSET.idx"; do
    [[ -s "$DATA_BIN/$f" ]] || die "DATA_BIN=$DATA_BIN is not a fairseq data-bin with a $SUBSET split: $f is missing"
done
[[ -f "$CHECKPOINT" ]] || die "checkpoint not found: $CHECKPOINT (set CHECKPOINT or SAVE_DIR)"
(( CONTEXT_WINDOW < EVAL_TOKENS )) || die "CONTEXT_WINDOW=$CONTEXT_WINDOW must be smaller than EVAL_TOKENS=$EVAL_TOKENS"
command -v fairseq-eval-lm >/dev/null || die "fairseq-eval-lm not on PATH (activate the environment with fairseq installed)"

# shellcheck source=eval_lm.sh
source "$HERE/eval_lm.sh"

for protocol in $PROTOCOLS; do
    case "$protocol" in
        blocks)
            read -r bpc ntok < <(eval_lm --tokens-per-sample "$EVAL_TOKENS")
            echo "$SUBSET BPC = $bpc (protocol: blocks: non-overlapping blocks of $EVAL_TOKENS tokens, no context across blocks; $ntok tokens)"
            ;;
        sliding)
            # fairseq-eval-lm subtracts --context-window from --tokens-per-sample: the model sees
            # EVAL_TOKENS tokens per row and scores the last EVAL_TOKENS - CONTEXT_WINDOW of them.
            read -r bpc ntok < <(eval_lm --tokens-per-sample "$EVAL_TOKENS" --context-window "$CONTEXT_WINDOW")
            echo "$SUBSET BPC = $bpc (protocol: sliding: fairseq --context-window $CONTEXT_WINDOW, $((EVAL_TOKENS - CONTEXT_WINDOW)) new tokens scored per $EVAL_TOKENS-token window; $ntok tokens)"
            ;;
        stream)
            if ! PYTHONPATH="$(dirname "$USER_DIR")${PYTHONPATH:+:$PYTHONPATH}" python -m fairseq_focus.tools.score_stream \
                "$DATA_BIN" --path "$CHECKPOINT" --gen-subset "$SUBSET" --segment-len "$EVAL_TOKENS" \
                "${DEVICE_ARGS[@]}" > "$LOG" 2>&1; then
                tail -n 20 "$LOG" >&2
                die "fairseq_focus.tools.score_stream failed (last lines above)"
            fi
            read -r bpc ntok < <(sed -n 's/^streaming BPC = \([0-9.]*\) over \([0-9]*\) tokens.*/\1 \2/p' "$LOG" | tail -n 1)
            [[ -n "${bpc:-}" ]] || die "no 'streaming BPC' line in score_stream's output"
            echo "$SUBSET BPC = $bpc (protocol: stream: the whole split as one stream, segments of $EVAL_TOKENS tokens, model state carried across segments; $ntok tokens)"
            ;;
        *) die "unknown protocol '$protocol' in PROTOCOLS (known: blocks sliding stream)" ;;
    esac
done
