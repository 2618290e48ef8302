"""Hyperparameters of a stack of Focus blocks, as a plain dataclass (no fairseq import).

The fairseq model configs in ``models/`` inherit these fields, so each hyperparameter, its default
and its help text live in exactly one place and surface as ``--kebab-case`` CLI flags.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Optional

from .global_attention_settings import GLOBAL_ATTENTION_DECAYS, GLOBAL_ATTENTIONS, check_global_attention  # noqa: F401

FILTERS = ("adaptive", "adaptive-residual", "selective", "static", "ema", "none", "mimo")
HYPER_FILTERS = ("adaptive", "adaptive-residual")  # the filters that read the hypernetwork encoder
IIR_FREE_FILTERS = ("ema", "none", "mimo")  # the filters that read no --iir-mode
PER_TOKEN_FILTERS = ("ema", "selective", "none", "mimo")  # Θ per token, or no filter: no bins
THETA_INITS = ("default", "ring")
FILTER_INPUTS = ("x", "product", "both")

# fairseq turns a bool field that defaults to True into a store_false flag (``--share-hypernet`` would
# switch sharing *off*), so every such setting is a ``no_…`` field defaulting to False. The old name
# stays as an Optional field, None unless given: old checkpoints' configs carry it (fairseq drops keys
# its dataclass lacks) and the old flag keeps meaning what it says. :func:`upgrade_renamed` folds it in.
OLD_NAME = "old name of the default, kept for old checkpoints and command lines; see --{}"
RENAMED = {"share_hypernet": "no_share_hypernet", "normalize_before": "no_normalize_before"}
WIRINGS = ("paper", "mega")
REL_POS_BIASES = ("simple", "rotary")


@dataclass
class FocusStackConfig:
    decoder_embed_dim: int = field(default=128, metadata={"help": "model dimension D"})
    decoder_layers: int = field(default=2, metadata={"help": "number of Focus blocks"})
    decoder_hidden_dim: int = field(default=256, metadata={"help": "attention value / gate dimension H"})
    decoder_ffn_embed_dim: int = field(default=256,
                                       metadata={"help": "hidden size of the normalized FFN (0: no FFN)"})
    decoder_z_dim: int = field(default=64, metadata={"help": "query/key dimension Z of the attention head"})
    focus_filter: str = field(
        default="adaptive",
        metadata={"help": "adaptive: Θ per bin from the hypernetwork (Focus, the paper); adaptive-residual: learned "
                          "per-channel Θ logits plus the hypernetwork's part, the latter initialised at zero; "
                          "selective: Θ and an input gain per token and channel, learned per-channel logits plus a "
                          "low-rank projection of the current input initialised at zero (Mamba-style selection); "
                          "static: learned Θ (Focus-H); ema: MEGA's EMA; none (a study ablation): no filter, x_f = x "
                          "(no parameters, no state), so no path crosses attention chunks: the block is its chunked "
                          "attention with its gates"},
    )
    iir_mode: str = field(
        default="causal",
        metadata={"help": "causal: per-bin linear convolution, state reset per bin; carry: exact IIR recursion "
                          "across bins; paper: eq. 6 literally (circular per bin, looks ahead inside a bin: NOT "
                          "causal, refused by causal LMs; for whole-sequence classification)"},
    )
    # Optional: None unless given, so an arch can make it its default (fairseq gives a plain bool flag the
    # value False when it is absent, which an arch's default could not tell from "not given")
    bidirectional_filter: Optional[bool] = field(
        default=None,
        metadata={"help": "run each block's filter forward and, with its own parameters, over the time-reversed "
                          "sequence, and sum the two (MEGA's bidirectional EMA for its image models): every "
                          "position sees the whole sequence. Whole-sequence classification only (causal tasks "
                          "refuse it); selective, static and ema heads (modules/bidirectional_filter.py). On in "
                          "the image archs; their _causal archs are the left-to-right form"},
    )
    filter_input: str = field(
        default="x",
        metadata={"help": "what the global filter filters. x: the normed block input (the paper); product "
                          "(beyond the paper, after H3): q ⊙ filter(shift(k) ⊗ v) per head of "
                          "--product-head-dim, with q, k, v projections of x (modules/product_filter.py); both (beyond the "
                          "paper): the sum of the two, each with its own filter of the --focus-filter kind"},
    )
    product_head_dim: int = field(
        default=8,  # recall at width 64, L = 64: d = 8 learned it in one seed of two, d = 4 in none (RESULTS.md §2)
        metadata={"help": "d of --filter-input product (and both): H = D // d² heads, each filtering its d×d key-value "
                          "outer products; d² must divide --decoder-embed-dim"},
    )
    selective_rank: int = field(
        default=16,
        metadata={"help": "rank of --focus-filter selective's input projection (x -> rank -> per-channel Θ logits and "
                          "gain), as Mamba's dt_rank"},
    )
    selective_form: str = field(
        default="lattice",
        metadata={"help": "how --focus-filter selective realises its per-token filter (ops/tv_iir/): lattice "
                          "(normalized lattice, stable under any change of Θ from token to token; the frozen-time "
                          "filter is the same all-pole 1/A(z)) or companion (the direct form of eq. 32, whose "
                          "products of per-token matrices can grow)"},
    )
    num_filters: int = field(default=1, metadata={"help": "F: order-2 filters per channel, summed (eq. 7)"})
    # --focus-filter mimo (modules/mimo_filter.py) and the short conv in front of any head.
    mimo_state: int = field(
        default=64, metadata={"help": "N of --focus-filter mimo: N/2 selective order-2 sections per head, an N × P state"})
    mimo_head_dim: int = field(default=64, metadata={"help": "P of --focus-filter mimo: channels per head"})
    filter_conv: int = field(
        default=0,
        metadata={"help": "K > 0: the filter reads SiLU(causal depthwise conv of K taps (x)) (beyond the paper; Mamba's "
                          "and DeltaNet's short conv); 0: x itself"},
    )
    # How the adaptive and static filters map their logits to Θ (ops/theta.py), and its init.
    theta_param: str = field(
        default="paper",
        metadata={"help": "paper: Θ = sigmoid(logits) as eq. 5 (every filter high-pass); stable: the whole "
                          "stability triangle through reflection coefficients (low-pass and resonant filters too). "
                          "Both in fp32 under autocast, shrunk by ρ² = (1 − 2⁻¹⁴)² so every pole stays inside"},
    )
    theta_init: str = field(
        default="default",
        metadata={"help": "default: the paper's logits init; ring (stable only): Θ starts with its pole pairs "
                          "drawn on the ring theta_ring_rmin ≤ |p| ≤ theta_ring_rmax (LRU's ring init) — the "
                          "hypernetwork's last-layer bias, the first bin's and Focus-H's logits"},
    )
    theta_ring_rmin: float = field(default=0.9, metadata={"help": "smallest pole radius of --theta-init ring"})
    theta_ring_rmax: float = field(default=0.999, metadata={"help": "largest pole radius of --theta-init ring"})
    theta_ring_max_phase: float = field(
        default=math.pi,
        metadata={"help": "largest pole angle (radians, in (0, π]) of --theta-init ring; LRU's max_phase. π: any "
                          "angle; small: low-pass poles near +1, which hold a sum over the past (long memory)"},
    )
    bin_size: int = field(default=64, metadata={"help": "R: time-bin length; Θ is constant in a bin (NFFT in paper mode)"})
    oversampling: int = field(default=4, metadata={"help": "O: max-pooled values per bin and channel fed to the MLP"})
    hyper_hidden_dim: int = field(default=16, metadata={"help": "hidden width of the per-layer hypernetwork MLP"})
    hyper_kernel_size: int = field(default=1024, metadata={"help": "K: fixed maximum length of the global conv kernel"})
    hyper_squash: float = field(default=1e-3, metadata={"help": "λ of the squash regularizer of the global conv"})
    hyper_smooth: int = field(default=3, metadata={"help": "width of the smooth (average-pool) regularizer"})
    no_share_hypernet: bool = field(
        default=False, metadata={"help": "one global hypernetwork part per layer (default: one shared by all layers, §3.2)"}
    )
    share_hypernet: Optional[bool] = field(default=None, metadata={"help": OLD_NAME.format("no-share-hypernet")})
    ema_ndim: int = field(default=16, metadata={"help": "N: EMA dimensions per channel (ema filter only)"})
    chunk_size: int = field(default=128, metadata={"help": "M: attention chunk length"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings, filter output and block outputs"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout inside the FFN and on attention values"})
    no_normalize_before: bool = field(
        default=False, metadata={"help": "post-norm blocks, no final norm (default: pre-norm blocks and a final norm)"}
    )
    normalize_before: Optional[bool] = field(default=None, metadata={"help": OLD_NAME.format("no-normalize-before")})
    no_affine_final_norm: bool = field(default=False, metadata={"help": "final LayerNorm without affine parameters"})
    autocast_bf16: bool = field(
        default=False,
        metadata={"help": "run the model's forward under torch.autocast(bfloat16) on the input's device, the filter "
                          "math in fp32: bf16 on GPUs (fairseq 0.12's --bf16 means TPU); refused where the device "
                          "cannot compute in bf16"},
    )
    checkpoint_activations: bool = field(
        default=False, metadata={"help": "checkpoint activations at each Focus block (recomputed in backward)"}
    )
    offload_activations: bool = field(
        default=False,
        metadata={"help": "move checkpointed activations to CPU after they are used (implies --checkpoint-activations)"},
    )
    # -- block wiring --
    block_wiring: str = field(
        default="paper",
        metadata={"help": "paper: the paper's eq. 9-14 (Q from the input, K, V and gates from x_f); mega: MEGA's "
                          "gated attention with the filter output in the place of MEGA's EMA output (shared z -> "
                          "q, k; values from the input); mega with --focus-filter ema is MEGA's block"},
    )
    rel_pos_bias: str = field(
        default="simple",
        metadata={"help": "relative position bias in each chunk: simple: a learned scalar per offset; rotary: "
                          "MEGA's rotary bias (two learned Z-vectors rotated per position; MEGA's enwik8 runs)"},
    )
    # -- a global path beside the chunked attention (beyond the paper; issue 25) --
    global_attention: str = field(
        default="none",
        metadata={"help": "none: the chunked softmax attention alone (the paper); based: add, in every block, a "
                          "Based-style causal linear attention over the whole sequence to the chunked attention's "
                          "output y, before the block's gates (a causal depthwise short conv on q, k, v; 2nd-order "
                          "Taylor features; per-head RMS output norm; O(L) by chunks, its state carried across "
                          "chunks and in decoding; modules/global_linear_attention.py)"},
    )
    global_attention_heads: int = field(
        default=2,
        metadata={"help": "heads of --global-attention based, each with its own q/k features and a "
                          "--decoder-hidden-dim / heads share of the values (must divide it)"},
    )
    global_attention_feature_dim: int = field(
        default=16,
        metadata={"help": "F: q/k dim per head of --global-attention based; the Taylor features have 1 + F + F² "
                          "entries (16, Based's: 273), the state per head (1 + F + F²) × (value dim + 1)"},
    )
    global_attention_conv: int = field(
        default=3,
        metadata={"help": "taps K of --global-attention based's causal depthwise short convolution on q, k and v "
                          "(Based's and Hyena's 3; DeltaNet's 4; 1: a per-channel scale, no mixing in time)"},
    )
    global_attention_decay: str = field(
        default="none",
        metadata={"help": "--global-attention based's memory: none: the plain sum over the whole past (Based); "
                          "learned: one decay γ = sigmoid(a) per head, started at 1 − 2^-(7+h) for head h"},
    )
    global_attention_chunk: int = field(
        default=0,
        metadata={"help": "chunk length of --global-attention based's chunked form (0: --chunk-size); with "
                          "--chunk-size 1 (each position attends to itself only) the global path is the block's "
                          "only path across positions: Based alone, run at its own chunk length"},
    )


def upgrade_renamed(cfg, renamed: Dict[str, str] = RENAMED) -> None:
    """Fold each old positive field (True / False / None) into its ``no_…`` field, in place.

    old False (an old checkpoint, or the old store_false flag) -> no_… = True; old True agrees with
    the default and contradicts no_… = True. The old field is then cleared to None.
    """
    for old, new in renamed.items():
        value = getattr(cfg, old, None)
        if value is None:
            continue
        if value and getattr(cfg, new, False):
            flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
            raise ValueError(f"{flag(old)} and {flag(new)} contradict each other; give one of them")
        if not value:
            setattr(cfg, new, True)
        setattr(cfg, old, None)


def validate(cfg: FocusStackConfig) -> None:
    """One-line ValueErrors for settings that cannot build a stack: each choice, then what goes together."""
    _check_choices(cfg)
    _check_theta_init(cfg)
    _check_filter(cfg)
    _check_expanded_head(cfg)
    _check_attention(cfg)


def _check_choice(flag: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"--{flag} must be one of {allowed}, got {value!r}")


def _check_choices(cfg: FocusStackConfig) -> None:
    """Every option that names one of a fixed set of choices."""
    from ..ops.iir import MODES
    from ..ops.tv_iir import FORMS
    from ..ops.theta import PARAMS
    for flag, value, allowed in (("focus-filter", cfg.focus_filter, FILTERS), ("iir-mode", cfg.iir_mode, MODES),
                                 ("filter-input", cfg.filter_input, FILTER_INPUTS),
                                 ("theta-param", cfg.theta_param, PARAMS), ("theta-init", cfg.theta_init, THETA_INITS),
                                 ("block-wiring", cfg.block_wiring, WIRINGS),
                                 ("rel-pos-bias", cfg.rel_pos_bias, REL_POS_BIASES),
                                 ("selective-form", cfg.selective_form, FORMS)):
        _check_choice(flag, value, allowed)


def _check_theta_init(cfg: FocusStackConfig) -> None:
    """--theta-init ring: the stable map, and a ring inside the unit circle."""
    from ..ops.theta import MAX_RADIUS
    if cfg.theta_init == "ring" and cfg.theta_param != "stable":
        raise ValueError("--theta-init ring needs --theta-param stable (eq. 5's Θ holds only high-pass poles)")
    if not 0.0 <= cfg.theta_ring_rmin <= cfg.theta_ring_rmax < MAX_RADIUS:
        raise ValueError(f"need 0 <= --theta-ring-rmin <= --theta-ring-rmax < {MAX_RADIUS}, "
                         f"got {cfg.theta_ring_rmin}, {cfg.theta_ring_rmax}")
    if not 0.0 < cfg.theta_ring_max_phase <= math.pi:
        raise ValueError(f"need 0 < --theta-ring-max-phase <= pi, got {cfg.theta_ring_max_phase}")


def _check_filter(cfg: FocusStackConfig) -> None:
    """The filter with what it filters, its mode, its selection, both directions and its bins."""
    if cfg.filter_input in ("product", "both"):
        from .product_filter import product_heads
        product_heads(cfg.decoder_embed_dim, cfg.product_head_dim)
    if cfg.focus_filter == "selective" and cfg.iir_mode != "carry":
        raise ValueError(f"--focus-filter selective changes Θ at every token through the carried recursion; it needs "
                         f"--iir-mode carry, got {cfg.iir_mode!r}")
    if cfg.selective_rank < 1:
        raise ValueError(f"--selective-rank must be positive, got {cfg.selective_rank}")
    if cfg.focus_filter == "none" and cfg.filter_input != "x":
        raise ValueError(f"--focus-filter none has no filter for --filter-input {cfg.filter_input}'s key-value "
                         f"products; use --filter-input x")
    if getattr(cfg, "bidirectional_filter", False) and cfg.focus_filter == "none":
        raise ValueError("--bidirectional-filter runs a filter both ways; --focus-filter none has no filter")
    if getattr(cfg, "bidirectional_filter", False) and cfg.focus_filter in HYPER_FILTERS:
        raise ValueError(f"--bidirectional-filter needs a head that reads no left-to-right hypernetwork embedding "
                         f"(selective, static or ema), got --focus-filter {cfg.focus_filter}")
    if cfg.focus_filter in HYPER_FILTERS and cfg.bin_size % cfg.oversampling != 0:
        raise ValueError(f"--bin-size {cfg.bin_size} must be a multiple of --oversampling {cfg.oversampling}")


def _check_expanded_head(cfg: FocusStackConfig) -> None:
    """--focus-filter mimo's sizes and --filter-conv's taps."""
    if cfg.focus_filter == "mimo":
        from .mimo_filter import check_mimo
        check_mimo(cfg.decoder_embed_dim, cfg.mimo_state, cfg.mimo_head_dim)
    if cfg.filter_conv < 0:
        raise ValueError(f"--filter-conv must be >= 0, got {cfg.filter_conv}")


def _check_attention(cfg: FocusStackConfig) -> None:
    """The rotary bias's even z dim; the global path's settings."""
    if cfg.rel_pos_bias == "rotary" and cfg.decoder_z_dim % 2 != 0:
        raise ValueError(f"--rel-pos-bias rotary needs an even --decoder-z-dim, got {cfg.decoder_z_dim}")
    if getattr(cfg, "global_attention", "none") != "none":
        check_global_attention(cfg.global_attention, cfg.global_attention_heads, cfg.global_attention_feature_dim,
                               cfg.global_attention_conv, cfg.global_attention_decay, cfg.decoder_hidden_dim)
    if getattr(cfg, "global_attention_chunk", 0) < 0:
        raise ValueError(f"--global-attention-chunk must be 0 (the --chunk-size) or positive, "
                         f"got {cfg.global_attention_chunk}")
