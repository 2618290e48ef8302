# Sourced by recipes/text/{prepare,train,eval}.sh: the variables they share, resolved once.
#   CORPUS (a name, default "text"), DATA_BIN, VARIANT (focus | adaptive | static | ema) -> VARIANT_ARGS, ARCH, SAVE_DIR
die() { echo "error: $*" >&2; exit 1; }

TEXT_RECIPE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CORPUS="${CORPUS:-text}"
USER_DIR="${USER_DIR:-$(cd "$TEXT_RECIPE/../.." && pwd)/fairseq_focus}"
DATA_BIN="${DATA_BIN:-data-bin/${CORPUS}}"
VARIANT_GIVEN="${VARIANT:+1}"
VARIANT="${VARIANT:-focus}"
case "$VARIANT" in
    focus) VARIANT_ARGS="--focus-filter selective" ;;                # the default head: per-token selection
    adaptive) VARIANT_ARGS="--focus-filter adaptive" ;;              # Focus: the paper's hypernetwork head
    static) VARIANT_ARGS="--focus-filter static" ;;                  # Focus-H: static learned filters (ablation)
    ema) VARIANT_ARGS="--focus-filter ema --block-wiring mega" ;;    # MEGA: MEGA's block and EMA (baseline)
    *) die "VARIANT must be focus, adaptive, static or ema, got '$VARIANT'" ;;
esac
# One arch, the variant chosen by --focus-filter: the same code path and sizes for all four.
# A named ARCH keeps its own filter unless VARIANT is given too.
ARCH_GIVEN="${ARCH:+1}"
ARCH="${ARCH:-focus_lm}"
SAVE_DIR="${SAVE_DIR:-checkpoints/${CORPUS}_${ARCH}_${VARIANT}}"
