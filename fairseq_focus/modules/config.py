"""Hyperparameters of a stack of Focus blocks, as a plain dataclass (no fairseq import).

The fairseq model configs in ``models/`` inherit these fields, so each hyperparameter, its default
and its help text live in exactly one place and surface as ``--kebab-case`` CLI flags.
"""
from dataclasses import dataclass, field

FILTERS = ("adaptive", "static", "ema")
THETA_INITS = ("default", "ring")


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


def validate(cfg: FocusStackConfig) -> None:
    if cfg.focus_filter not in FILTERS:
        raise ValueError(f"--focus-filter must be one of {FILTERS}, got {cfg.focus_filter!r}")
    from ..ops.iir import MODES
    if cfg.iir_mode not in MODES:
        raise ValueError(f"--iir-mode must be one of {MODES}, got {cfg.iir_mode!r}")
    from ..ops.theta import MAX_RADIUS, PARAMS
    if cfg.theta_param not in PARAMS:
        raise ValueError(f"--theta-param must be one of {PARAMS}, got {cfg.theta_param!r}")
    if cfg.theta_init not in THETA_INITS:
        raise ValueError(f"--theta-init must be one of {THETA_INITS}, got {cfg.theta_init!r}")
    if cfg.theta_init == "ring" and cfg.theta_param != "stable":
        raise ValueError("--theta-init ring needs --theta-param stable (eq. 5's Θ holds only high-pass poles)")
    if not 0.0 <= cfg.theta_ring_rmin <= cfg.theta_ring_rmax < MAX_RADIUS:
        raise ValueError(f"need 0 <= --theta-ring-rmin <= --theta-ring-rmax < {MAX_RADIUS}, "
                         f"got {cfg.theta_ring_rmin}, {cfg.theta_ring_rmax}")
    if cfg.focus_filter == "adaptive" and cfg.bin_size % cfg.oversampling != 0:
        raise ValueError(f"--bin-size {cfg.bin_size} must be a multiple of --oversampling {cfg.oversampling}")
