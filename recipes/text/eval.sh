#!/usr/bin/env bash
# Scores a subword focus_lm checkpoint on the test split and prints, for each protocol (blocks and
# sliding through fairseq-eval-lm, stream through fairseq_focus.tools.score_stream: as in
# recipes/lm/eval.sh),
#     test ppl per token = X (protocol: ...; N tokens)
#     test bits per byte = Y (protocol: ...; T bits over B bytes of test text)
#     test word-level ppl = Z (protocol: ...; W words)
# ppl per token = 2^(fairseq's "Loss (base 2)"), the mean over every sentencepiece token and every
# end-of-line token </s>. Bits per byte = that loss x the number of tokens (total bits over the
# split) / the test text's UTF-8 bytes, one "\n" per line counted (the </s> predicts it): comparable
# with a byte-level model's BPC. Word-level ppl = 2^(total bits / words), words = whitespace-separated
# words + one end-of-line per line: comparable with a word-level model on the same text.
# The counts come from DATA_BIN/PREPARED (written by prepare.sh). See recipes/text/README.md.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
CHECKPOINT="${CHECKPOINT:-$SAVE_DIR/checkpoint_best.pt}"
SUBSET="${SUBSET:-test}"
PROTOCOLS="${PROTOCOLS:-blocks sliding stream}"
EVAL_TOKENS="${EVAL_TOKENS:-8192}"          # block (stream: segment) length fed to the model
CONTEXT_WINDOW="${CONTEXT_WINDOW:-6144}"    # sliding: left context per block
MAX_TOKENS="${MAX_TOKENS:-65536}"           # tokens per eval batch
EVAL_ARGS="${EVAL_ARGS:-}"

[[ -d "$DATA_BIN" ]] || die "DATA_BIN=$DATA_BIN is not a directory (run recipes/text/prepare.sh first)"
for f in dict.txt PREPARED "$SUBSET.bin" "$SUBSET.idx"; do
    [[ -s "$DATA_BIN/$f" ]] || die "DATA_BIN=$DATA_BIN is not a data-bin from recipes/text/prepare.sh with a $SUBSET split: $f is missing"
done
[[ -f "$CHECKPOINT" ]] || die "checkpoint not found: $CHECKPOINT (set CHECKPOINT or SAVE_DIR)"
(( CONTEXT_WINDOW < EVAL_TOKENS )) || die "CONTEXT_WINDOW=$CONTEXT_WINDOW must be smaller than EVAL_TOKENS=$EVAL_TOKENS"
command -v fairseq-eval-lm >/dev/null || die "fairseq-eval-lm not on PATH (activate the environment with fairseq installed)"
prepared() { awk -v k="${SUBSET}_$1" '$1 == k { print $2 }' "$DATA_BIN/PREPARED"; }
BYTES="$(prepared bytes)"; WORDS="$(prepared words)"; TOKENS="$(prepared tokens)"
[[ -n "$BYTES" && -n "$WORDS" && -n "$TOKENS" ]] || die "$DATA_BIN/PREPARED has no ${SUBSET}_bytes/words/tokens lines (prepare again)"

# shellcheck source=../lm/eval_lm.sh
source "$TEXT_RECIPE/../lm/eval_lm.sh"
scored() {  # tool, tokens scored: bits per byte is only right when the whole split was scored
    [[ "$2" == "$TOKENS" ]] || die "$1 scored $2 tokens but the $SUBSET split has $TOKENS (PREPARED): bits per byte would be wrong"
}

report() {  # protocol description, base-2 loss, tokens
    awk -v what="$1" -v loss="$2" -v ntok="$3" -v bytes="$BYTES" -v words="$WORDS" -v subset="$SUBSET" 'BEGIN {
        bits = loss * ntok
        printf "%s ppl per token = %.2f (protocol: %s; %d tokens)\n", subset, 2 ^ loss, what, ntok
        printf "%s bits per byte = %.4f (protocol: %s; %.1f bits over %d bytes of text)\n", subset, bits / bytes, what, bits, bytes
        printf "%s word-level ppl = %.2f (protocol: %s; %d words)\n", subset, 2 ^ (bits / words), what, words
    }'
}

for protocol in $PROTOCOLS; do
    case "$protocol" in
        blocks)
            read -r loss ntok < <(eval_lm --tokens-per-sample "$EVAL_TOKENS")
            scored fairseq-eval-lm "$ntok"
            report "blocks: non-overlapping blocks of $EVAL_TOKENS tokens, no context across blocks" "$loss" "$ntok"
            ;;
        sliding)
            read -r loss ntok < <(eval_lm --tokens-per-sample "$EVAL_TOKENS" --context-window "$CONTEXT_WINDOW")
            scored fairseq-eval-lm "$ntok"
            report "sliding: fairseq --context-window $CONTEXT_WINDOW, $((EVAL_TOKENS - CONTEXT_WINDOW)) new tokens scored per $EVAL_TOKENS-token window" "$loss" "$ntok"
            ;;
        stream)
            if ! PYTHONPATH="$(dirname "$USER_DIR")${PYTHONPATH:+:$PYTHONPATH}" python -m fairseq_focus.tools.score_stream \
                "$DATA_BIN" --path "$CHECKPOINT" --gen-subset "$SUBSET" --segment-len "$EVAL_TOKENS" \
                "${DEVICE_ARGS[@]}" > "$LOG" 2>&1; then
                tail -n 20 "$LOG" >&2
                die "fairseq_focus.tools.score_stream failed (last lines above)"
            fi
            # its "BPC" is bits per token here (a subword), the same 4-decimal mean as fairseq's Loss (base 2)
            read -r loss ntok < <(sed -n 's/^streaming BPC = \([0-9.]*\) over \([0-9]*\) tokens.*/\1 \2/p' "$LOG" | tail -n 1)
            [[ -n "${loss:-}" ]] || die "no 'streaming BPC' line in score_stream's output"
            scored score_stream "$ntok"
            report "stream: the whole split as one stream, segments of $EVAL_TOKENS tokens, model state carried across segments" "$loss" "$ntok"
            ;;
        *) die "unknown protocol '$protocol' in PROTOCOLS (known: blocks sliding stream)" ;;
    esac
done
