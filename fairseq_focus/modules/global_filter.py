"""The global filter in front of the attention: x (B, D, L) -> x_f (B, D, L), three variants.

* :class:`AdaptiveIIRFilter` (Focus): Θ from the hypernetwork, per bin (paper eq. 1-8).
* :class:`StaticIIRFilter` (Focus-H, the paper's ablation): Θ = sigmoid(learned logits), the same
  for every bin and input.
* :class:`EMAFilter` (MEGA): the multi-head damped EMA, silu(EMA(x) + ω·x) as in MEGA.

All three share ``forward(x, hyper)``: ``hyper`` is the shared global hypernetwork embedding
e (B, Nbins, D, O) or None (then an adaptive filter computes its own from x; the others ignore it).
L must be a whole number of bins; the stack pads.

Streaming: ``forward_stream(x, e_before, pos, incremental_state)`` continues the filter over n new
samples at positions pos … pos+n−1 (any n, any pos), keeping the recursion state (B, D, F, 2) —
or the EMA state (B, D, N) — in ``incremental_state``; ``e_before`` (B, T, D, O) is the shared
hypernetwork's embedding of the bin before each of the T bins the samples touch, or None.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.ema import ema_filter, ema_filter_stream
from ..ops.iir import iir_filter, iir_filter_segment
from ..ops.segments import blocks_touched
from .hypernetwork import GlobalHyperConv, LocalHyperMLP
from .streaming import IncrementalState, StreamingModule


class _IIRStreaming(StreamingModule):
    """The recursion-state bookkeeping shared by the adaptive and static IIR filters."""

    mode: str
    bin_size: Optional[int]

    def stream_coefficients(self, x: Tensor, e_before: Optional[Tensor], pos: int,
                            incremental_state: IncrementalState) -> Tensor:
        raise NotImplementedError

    def forward_stream(self, x: Tensor, e_before: Optional[Tensor], pos: int,
                       incremental_state: IncrementalState) -> Tensor:
        if self.bin_size is None:
            raise ValueError(f"{type(self).__name__} was built without a bin size, so it cannot stream")
        theta = self.stream_coefficients(x, e_before, pos, incremental_state)  # (B, T, D, F, 2)
        state = self.get_cache(incremental_state).get("state")
        y, state = iir_filter_segment(x, theta, pos % self.bin_size, self.bin_size, self.mode, state)
        self.set_cache(incremental_state, {"state": state})
        return y


class AdaptiveIIRFilter(_IIRStreaming):
    def __init__(self, dim: int, num_filters: int, oversampling: int, hidden: int, mode: str,
                 own_global: Optional[GlobalHyperConv], bin_size: Optional[int] = None):
        super().__init__()
        self.mode = mode
        self.bin_size = bin_size if bin_size is not None or own_global is None else own_global.bin_size
        self.local = LocalHyperMLP(dim, oversampling, hidden, num_filters)
        self.own_global = own_global  # None when the model shares one global part

    def coefficients(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        """Θ (B, Nbins, D, F, 2), already shifted by one bin."""
        e = self.own_global(x) if self.own_global is not None else hyper
        if e is None:
            raise ValueError("an adaptive filter without its own global hypernetwork needs the shared embedding")
        return self.local(e)

    def forward(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        return iir_filter(x, self.coefficients(x, hyper), self.mode)

    def stream_coefficients(self, x: Tensor, e_before: Optional[Tensor], pos: int,
                            incremental_state: IncrementalState) -> Tensor:
        if self.own_global is not None:
            e_before = self.own_global.forward_stream(x, pos, incremental_state)
        if e_before is None:
            raise ValueError("an adaptive filter without its own global hypernetwork needs the shared embedding")
        return self.local.for_bins(e_before, pos // self.bin_size)


class StaticIIRFilter(_IIRStreaming):
    def __init__(self, dim: int, num_filters: int, bin_size: int, mode: str):
        super().__init__()
        self.mode, self.bin_size = mode, bin_size
        self.logits = nn.Parameter(torch.empty(dim, num_filters, 2).uniform_(-1.0, 1.0))

    def coefficients(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        nbins = x.size(-1) // self.bin_size
        return torch.sigmoid(self.logits).expand(x.size(0), nbins, -1, -1, -1)

    def forward(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        return iir_filter(x, self.coefficients(x, hyper), self.mode)

    def stream_coefficients(self, x: Tensor, e_before: Optional[Tensor], pos: int,
                            incremental_state: IncrementalState) -> Tensor:
        nbins = blocks_touched(pos, x.size(-1), self.bin_size)
        return torch.sigmoid(self.logits).expand(x.size(0), nbins, -1, -1, -1)


class EMAFilter(StreamingModule):
    """MEGA's multi-head EMA; parameter names and init follow MEGA (Ma et al. 2022, §3.1)."""

    def __init__(self, dim: int, ndim: int):
        super().__init__()
        self.scale = ndim ** -0.5
        self.delta = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.2))
        self.alpha = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.2))
        signs = torch.ones(ndim)
        signs[1::2] = -1.0  # β initialised around (1, −1, 1, …), as MEGA does
        self.beta = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.02) + signs)
        self.gamma = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 1.0))
        self.omega = nn.Parameter(torch.empty(dim).normal_(0.0, 1.0))

    def coefficients(self):
        """(p, q, β, γ·scale), each (D, N), with p, q ∈ (0, 1)."""
        p = torch.sigmoid(self.delta)
        q = 1.0 - p * torch.sigmoid(self.alpha)
        return p, q, self.beta, self.gamma * self.scale

    def forward(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        y = ema_filter(x, *self.coefficients())
        return F.silu(y + self.omega.unsqueeze(-1) * x)

    def forward_stream(self, x: Tensor, e_before: Optional[Tensor], pos: int,
                       incremental_state: IncrementalState) -> Tensor:
        y, state = ema_filter_stream(x, *self.coefficients(), self.get_cache(incremental_state).get("state"))
        self.set_cache(incremental_state, {"state": state})
        return F.silu(y + self.omega.unsqueeze(-1) * x)


def build_filter(cfg, own_global: Optional[GlobalHyperConv]) -> nn.Module:
    """The variant named by ``cfg.focus_filter``, with the stack's hyperparameters."""
    dim = cfg.decoder_embed_dim
    if cfg.focus_filter == "adaptive":
        return AdaptiveIIRFilter(dim, cfg.num_filters, cfg.oversampling, cfg.hyper_hidden_dim, cfg.iir_mode, own_global,
                                 bin_size=cfg.bin_size)
    if cfg.focus_filter == "static":
        return StaticIIRFilter(dim, cfg.num_filters, cfg.bin_size, cfg.iir_mode)
    return EMAFilter(dim, cfg.ema_ndim)
