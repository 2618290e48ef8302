# Sourced by recipes/lm/eval.sh and recipes/text/eval.sh: fairseq-eval-lm with the flags both use.
# Needs die(), DATA_BIN, USER_DIR, CHECKPOINT, SUBSET, MAX_TOKENS, EVAL_ARGS; sets DEVICE_ARGS and LOG.
DEVICE_ARGS=()
if ! nvidia-smi -L >/dev/null 2>&1; then DEVICE_ARGS=(--cpu); fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

# Runs fairseq-eval-lm with the common flags plus "$@"; prints "<base-2 loss> <tokens scored>".
eval_lm() {
    # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags on purpose
    if ! fairseq-eval-lm "$DATA_BIN" --user-dir "$USER_DIR" --task focus_lm --path "$CHECKPOINT" \
        --gen-subset "$SUBSET" --sample-break-mode none --max-tokens "$MAX_TOKENS" \
        --log-format simple "${DEVICE_ARGS[@]}" "$@" $EVAL_ARGS > "$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        die "fairseq-eval-lm failed (last lines above)"
    fi
    local loss ntok
    loss="$(sed -n 's/.*Loss (base 2): \([0-9.eE+-]*\),.*/\1/p' "$LOG" | tail -n 1)"
    ntok="$(sed -n 's/.*Evaluated \([0-9,]*\) tokens.*/\1/p' "$LOG" | tail -n 1 | tr -d ,)"
    [[ -n "$loss" && -n "$ntok" ]] || die "no 'Loss (base 2)' / 'Evaluated N tokens' line in fairseq-eval-lm's output"
    echo "$loss $ntok"
}
