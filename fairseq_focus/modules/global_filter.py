"""The global filter in front of the attention: x (B, D, L) -> x_f (B, D, L), three variants.

* :class:`AdaptiveIIRFilter` (Focus): Θ from the hypernetwork, per bin (paper eq. 1-8).
* :class:`StaticIIRFilter` (Focus-H, the paper's ablation): Θ = sigmoid(learned logits), the same
  for every bin and input.
* :class:`EMAFilter` (MEGA): the multi-head damped EMA, silu(EMA(x) + ω·x) as in MEGA.

All three share ``forward(x, hyper)``: ``hyper`` is the shared global hypernetwork embedding
e (B, Nbins, D, O) or None (then an adaptive filter computes its own from x; the others ignore it).
L must be a whole number of bins; the stack pads.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.ema import ema_filter
from ..ops.iir import iir_filter
from .hypernetwork import GlobalHyperConv, LocalHyperMLP


class AdaptiveIIRFilter(nn.Module):
    def __init__(self, dim: int, num_filters: int, oversampling: int, hidden: int, mode: str,
                 own_global: Optional[GlobalHyperConv]):
        super().__init__()
        self.mode = mode
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


class StaticIIRFilter(nn.Module):
    def __init__(self, dim: int, num_filters: int, bin_size: int, mode: str):
        super().__init__()
        self.mode, self.bin_size = mode, bin_size
        self.logits = nn.Parameter(torch.empty(dim, num_filters, 2).uniform_(-1.0, 1.0))

    def coefficients(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        nbins = x.size(-1) // self.bin_size
        return torch.sigmoid(self.logits).expand(x.size(0), nbins, -1, -1, -1)

    def forward(self, x: Tensor, hyper: Optional[Tensor]) -> Tensor:
        return iir_filter(x, self.coefficients(x, hyper), self.mode)


class EMAFilter(nn.Module):
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


def build_filter(cfg, own_global: Optional[GlobalHyperConv]) -> nn.Module:
    """The variant named by ``cfg.focus_filter``, with the stack's hyperparameters."""
    dim = cfg.decoder_embed_dim
    if cfg.focus_filter == "adaptive":
        return AdaptiveIIRFilter(dim, cfg.num_filters, cfg.oversampling, cfg.hyper_hidden_dim, cfg.iir_mode, own_global)
    if cfg.focus_filter == "static":
        return StaticIIRFilter(dim, cfg.num_filters, cfg.bin_size, cfg.iir_mode)
    return EMAFilter(dim, cfg.ema_ndim)
