"""Hyperparameters of a stack of Focus blocks, as a plain dataclass (no fairseq import).

The fairseq model configs in ``models/`` inherit these fields, so each hyperparameter, its default
and its help text live in exactly one place and surface as ``--kebab-case`` CLI flags.
"""
from dataclasses import dataclass, field

FILTERS = ("adaptive", "static", "ema")
WIRINGS = ("paper", "mega")  # --block-wiring (issue 10)
REL_POS_BIASES = ("simple", "rotary")  # --rel-pos-bias (issue 10)


@dataclass
class FocusStackConfig:
    decoder_embed_dim: int = field(default=128, metadata={"help": "model dimension D"})
    decoder_layers: int = field(default=2, metadata={"help": "number of Focus blocks"})
    decoder_hidden_dim: int = field(default=256, metadata={"help": "attention value / gate dimension H"})
    decoder_ffn_embed_dim: int = field(default=256, metadata={"help": "hidden size of the normalized FFN"})
    decoder_z_dim: int = field(default=64, metadata={"help": "query/key dimension Z of the attention head"})
    focus_filter: str = field(
        default="adaptive",
        metadata={"help": "adaptive: Θ from the hypernetwork (Focus); static: learned Θ (Focus-H); ema: MEGA's EMA"},
    )
    iir_mode: str = field(
        default="causal",
        metadata={"help": "causal: per-bin linear convolution, state reset per bin; carry: exact IIR recursion "
                          "across bins; paper: eq. 6 literally (circular per bin, looks ahead inside a bin: NOT "
                          "causal, refused by causal LMs; for whole-sequence classification)"},
    )
    num_filters: int = field(default=1, metadata={"help": "F: order-2 filters per channel, summed (eq. 7)"})
    bin_size: int = field(default=64, metadata={"help": "R: time-bin length; Θ is constant in a bin (NFFT in paper mode)"})
    oversampling: int = field(default=4, metadata={"help": "O: max-pooled values per bin and channel fed to the MLP"})
    hyper_hidden_dim: int = field(default=16, metadata={"help": "hidden width of the per-layer hypernetwork MLP"})
    hyper_kernel_size: int = field(default=1024, metadata={"help": "K: fixed maximum length of the global conv kernel"})
    hyper_squash: float = field(default=1e-3, metadata={"help": "λ of the squash regularizer of the global conv"})
    hyper_smooth: int = field(default=3, metadata={"help": "width of the smooth (average-pool) regularizer"})
    share_hypernet: bool = field(default=True, metadata={"help": "one global hypernetwork part for all layers"})
    ema_ndim: int = field(default=16, metadata={"help": "N: EMA dimensions per channel (ema filter only)"})
    chunk_size: int = field(default=128, metadata={"help": "M: attention chunk length"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings, filter output and block outputs"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout inside the FFN and on attention values"})
    normalize_before: bool = field(default=True, metadata={"help": "pre-norm blocks (and a final norm)"})
    no_affine_final_norm: bool = field(default=False, metadata={"help": "final LayerNorm without affine parameters"})
    # -- block wiring (issue 10) --
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


def validate(cfg: FocusStackConfig) -> None:
    if cfg.focus_filter not in FILTERS:
        raise ValueError(f"--focus-filter must be one of {FILTERS}, got {cfg.focus_filter!r}")
    from ..ops.iir import MODES
    if cfg.iir_mode not in MODES:
        raise ValueError(f"--iir-mode must be one of {MODES}, got {cfg.iir_mode!r}")
    if cfg.block_wiring not in WIRINGS:
        raise ValueError(f"--block-wiring must be one of {WIRINGS}, got {cfg.block_wiring!r}")
    if cfg.rel_pos_bias not in REL_POS_BIASES:
        raise ValueError(f"--rel-pos-bias must be one of {REL_POS_BIASES}, got {cfg.rel_pos_bias!r}")
    if cfg.rel_pos_bias == "rotary" and cfg.decoder_z_dim % 2 != 0:
        raise ValueError(f"--rel-pos-bias rotary needs an even --decoder-z-dim, got {cfg.decoder_z_dim}")
    if cfg.focus_filter == "adaptive" and cfg.bin_size % cfg.oversampling != 0:
        raise ValueError(f"--bin-size {cfg.bin_size} must be a multiple of --oversampling {cfg.oversampling}")
