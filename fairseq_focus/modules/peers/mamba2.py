"""Mamba-2's mixer (Dao & Gu 2024, §7 and Fig. 6), our own PyTorch, on the SSD op of ``ops/ssd``.

    [z, xBC, dt] = in_proj(u)                              z, x (inner), B, C (N each: one group), dt (H)
    xBC          = SiLU(conv_K(xBC))                        depthwise causal conv, K = 4
    dt           = softplus(dt + dt_bias);  A = −exp(A_log)
    y            = SSD(x, dt, A, B, C) + D ⊙ x              per head of P = head_dim channels
    out          = out_proj(RMSNorm(y ⊙ SiLU(z)))

Init as Mamba-2's reference layer: dt = exp(U[log dt_min, log dt_max]) floored at 1e-4, dt_bias its
inverse softplus; A = −U[1, 16]; D = 1. Decoding keeps the conv's last K − 1 inputs and the SSD state
(H × P × N per stream): O(1) per token.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.ssd import ssd_chunk, ssd_step
from ..streaming import IncrementalState, StreamingModule
from .common import GatedRMSNorm, StreamingConv


def _dt_bias(heads: int, dt_min: float, dt_max: float, floor: float = 1e-4) -> Tensor:
    """softplus⁻¹ of dt drawn log-uniformly in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba2Mixer(StreamingModule):
    def __init__(self, dim: int, d_state: int = 64, head_dim: int = 64, expand: int = 2, conv_kernel: int = 4,
                 chunk: int = 64, dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        inner = expand * dim
        if inner % head_dim:
            raise ValueError(f"mamba2: expand × dim = {inner} is not a multiple of --mamba-head-dim {head_dim}")
        self.inner, self.d_state, self.head_dim, self.heads = inner, d_state, head_dim, inner // head_dim
        self.chunk = chunk
        self.in_proj = nn.Linear(dim, 2 * inner + 2 * d_state + self.heads, bias=False)
        self.conv = StreamingConv(inner + 2 * d_state, conv_kernel)
        self.dt_bias = nn.Parameter(_dt_bias(self.heads, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.norm = GatedRMSNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, u: Tensor, incremental_state: Optional[IncrementalState] = None) -> Tensor:
        """u (B, L, D) -> (B, L, D); with ``incremental_state``, the stream's next L positions."""
        z, xbc, dt = self.in_proj(u).split([self.inner, self.inner + 2 * self.d_state, self.heads], dim=-1)
        cache = self.get_cache(incremental_state) if incremental_state is not None else {}
        if incremental_state is None:
            xbc = self.conv(xbc)
        else:
            xbc, cache["conv"] = self.conv.stream(xbc, cache.get("conv"))
        x, B, C = F.silu(xbc).split([self.inner, self.d_state, self.d_state], dim=-1)
        x = x.unflatten(-1, (self.heads, self.head_dim))                       # (B, L, H, P)
        dt = F.softplus(dt.float() + self.dt_bias.float())                     # (B, L, H)
        A = -torch.exp(self.A_log.float())
        y, state = self._ssd(x, dt, A, B.unsqueeze(2), C.unsqueeze(2), cache.get("ssm"))
        if incremental_state is not None:
            cache["ssm"] = state
            self.set_cache(incremental_state, cache)
        y = (y + self.D.to(y.dtype)[:, None] * x).flatten(-2)                   # (B, L, inner)
        return self.out_proj(self.norm(y, z))

    def _ssd(self, x, dt, A, B, C, state):
        """The chunked form, or one recurrent step for a single decoding token."""
        if x.size(1) == 1 and state is not None:
            y, state = ssd_step(x[:, 0].float(), dt[:, 0], A, B[:, 0, 0].float()[:, None].expand(-1, self.heads, -1),
                                C[:, 0, 0].float()[:, None].expand(-1, self.heads, -1), state)
            return y.unsqueeze(1).to(x.dtype), state
        return ssd_chunk(x, dt, A, B, C, state, self.chunk)
