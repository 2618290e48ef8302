# Sourced by recipes/lm/train.sh and recipes/lm/eval.sh: the variables both need, resolved once.
#   CORPUS (enwik8 | text8, required), USER_DIR, DATA_BIN, VARIANT (focus | adaptive | static | paper | static_paper | ema | mega | mega_adaptive) -> ARCH, SAVE_DIR
die() { echo "error: $*" >&2; exit 1; }

: "${CORPUS:?set CORPUS=enwik8 or CORPUS=text8 (or run recipes/<corpus>/train.sh or eval.sh)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
USER_DIR="${USER_DIR:-$(cd "$HERE/../.." && pwd)/fairseq_focus}"
DATA_BIN="${DATA_BIN:-data-bin/${CORPUS}}"
VARIANT="${VARIANT:-focus}"
case "$VARIANT" in
    focus) DEFAULT_ARCH="focus_lm_${CORPUS}" ;;          # the default: the selective IIR head (docs/RESULTS.md §1b)
    adaptive) DEFAULT_ARCH="focus_lm_${CORPUS}_adaptive" ;;  # Focus as the paper designs it: the hypernetwork head, stable + carry
    static) DEFAULT_ARCH="focus_lm_${CORPUS}_static" ;;  # Focus-H: static learned filters (ablation), the same
    paper) DEFAULT_ARCH="focus_lm_${CORPUS}_paper" ;;    # the paper's Focus exactly (eq. 5 Θ, state reset per bin)
    static_paper) DEFAULT_ARCH="focus_lm_${CORPUS}_static_paper" ;;  # the paper's Focus-H exactly
    ema) DEFAULT_ARCH="focus_lm_${CORPUS}_ema" ;;        # MEGA: MEGA's block and EMA (baseline)
    mega) DEFAULT_ARCH="focus_lm_${CORPUS}_mega" ;;      # MEGA's block with the selective IIR head
    mega_adaptive) DEFAULT_ARCH="focus_lm_${CORPUS}_mega_adaptive" ;;  # MEGA's block with the hypernetwork head
    *) die "VARIANT must be focus, adaptive, static, paper, static_paper, ema, mega or mega_adaptive, got '$VARIANT'" ;;
esac
ARCH="${ARCH:-$DEFAULT_ARCH}"
SAVE_DIR="${SAVE_DIR:-checkpoints/${CORPUS}_${ARCH}}"
