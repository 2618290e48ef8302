"""MEGA's gated attention (Ma et al. 2022, §3.2-3.3; MovingAverageGatedAttention in MEGA's code), with a
pluggable filter in the place of MEGA's EMA: the ``--block-wiring mega`` block.

    x̂  = Norm(x)                                    (pre-norm; post-norm normalizes the output instead)
    v   = SiLU(x̂ W_v + b_v)                         values from the normed input       (B, L, H)
    mx  = Dropout(filter(x̂))                        MEGA: SiLU(EMA(x̂) + ω ∘ x̂)          (B, L, D)
    u, z, r, ĥ = split(mx W_mx + b_mx, [D, Z, H, D])
    u   = sigmoid(u) ;  z = SiLU(z) ;  r = SiLU(r)    update gate, shared rep., reset gate
    q   = γ_q ∘ z + β_q ;  k = γ_k ∘ z + β_k          per-dimension scale and offset
    y   = ChunkedAttn(q, k, HiddenDropout(v))         softmax(q·k/√Z + bias), causal inside chunks of M
    h   = Dropout(SiLU(ĥ + (r ∘ y) W_h + b_h))        candidate
    o   = u ∘ h + (1 − u) ∘ x                          x the block input (un-normed)

With ``--focus-filter ema`` this is MEGA's block; with ``adaptive`` / ``static`` the IIR head sits where
MEGA's EMA sits. The norm, the filter call, the chunked attention (parallel and streaming), the relative
bias (simple or MEGA's rotary) and the dropouts are :class:`~.gated_attention.GatedAttention`'s. Init as
MEGA: N(0, 0.02) weights and γ, zero biases and β.

Glossary: D = embed dim, Z = q/k dim, H = value/reset-gate dim, M = chunk_size.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gated_attention import GatedAttention


class MegaGatedAttention(GatedAttention):
    def build_projections(self, dim: int, zdim: int, hdim: int) -> List[nn.Linear]:
        self.v_proj = nn.Linear(dim, hdim)
        self.mx_proj = nn.Linear(dim, dim + zdim + hdim + dim)  # [u | z | r | ĥ] from mx
        self.h_proj = nn.Linear(hdim, dim)  # W_h on r ∘ y
        self.gamma = nn.Parameter(torch.empty(2, zdim).normal_(0.0, 0.02))  # rows: q, k
        self.beta = nn.Parameter(torch.zeros(2, zdim))
        return [self.v_proj, self.mx_proj, self.h_proj]

    def project(self, x: Tensor, mx: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tuple[Tensor, Tensor, Tensor]]:
        """q, k (B, L, Z) from z; v (B, L, H) from the normed input; the gates (u, r, ĥ) from mx."""
        v = F.silu(self.v_proj(x))
        u, z, r, h_mx = self.mx_proj(mx).split([self.dim, self.zdim, self.hdim, self.dim], dim=-1)
        q, k = (F.silu(z).unsqueeze(-2) * self.gamma + self.beta).unbind(dim=-2)  # (B, L, 2, Z) -> 2 × (B, L, Z)
        return q, k, v, (torch.sigmoid(u), F.silu(r), h_mx)

    def combine(self, residual: Tensor, gates: Tuple[Tensor, Tensor, Tensor], y: Tensor) -> Tensor:
        u, r, h_mx = gates
        h = self.dropout(F.silu(h_mx + self.h_proj(r * y)))
        return residual + u * (h - residual)
