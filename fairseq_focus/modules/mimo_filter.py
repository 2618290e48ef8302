"""``--focus-filter mimo`` (beyond the paper): the selective order-2 IIR head with an expanded state.

The default head (``selective``) holds one pole pair and 2 numbers per channel. This head keeps the
adaptive order-2 IIR filter — a selective complex pole pair r e^{±iθ} per token — but runs a bank of
them per head with an outer-product state, as Mamba-2 / Mamba-3 do (DESIGN §9): for each head of P
channels, N/2 pole pairs share the head's radius r[t] = exp(dt[t] A) and each has its own angle
θ[t] = dt[t] ω(x[t]); the input map B[t] and output map C[t] (N each) are projections of the input:

    u      = SiLU(conv_K(x))                                       causal depthwise conv (--filter-conv, K taps)
    h[t]   = r[t] R(θ[t]) h[t−1] + dt[t] B[t] u[t]ᵀ                h (N × P) per head: N/2 order-2 sections
    x_f[t] = SiLU(h[t]ᵀ C[t] + D ⊙ u[t])                            per channel

R(θ) rotates each pair of state rows. With Φ[t] = Σ_{s ≤ t} θ[s], h̃ = R(−Φ) h obeys the real-decay
recurrence h̃[t] = r[t] h̃[t−1] + dt[t] (R(−Φ[t]) B[t]) u[t]ᵀ and x_f reads it through R(−Φ[t]) C[t]:
the chunked SSD of ``ops/ssd`` with rotated maps (Mamba-3's "data-dependent RoPE"), at matmul speed.
Frozen in time, every section is the paper's order-2 all-pole filter with poles r e^{±iθ}, 0 < r < 1.

Streaming keeps the conv's last K − 1 inputs, the state h̃ (H × P × N) and the phase Φ (N/2): O(1) per token.
Init: A = −U[1, 16], dt log-uniform in [1e-3, 0.1] (Mamba's), ω's projection N(0, 0.02) around angles
spread as LRU's phases, D = 1.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.precision import compute_dtype
from ..ops.ssd import ssd_chunk, ssd_step
from .peers.common import StreamingConv
from .peers.mamba2 import _dt_bias
from .streaming import IncrementalState, StreamingModule


def rotate_pairs(m: Tensor, phase: Tensor) -> Tensor:
    """R(−Φ) m: m (B, L, N) as N/2 pairs (first half, second half), phase (B, L, N/2)."""
    half = m.size(-1) // 2
    cos, sin = phase.cos(), phase.sin()
    m1, m2 = m[..., :half], m[..., half:]
    return torch.cat([m1 * cos + m2 * sin, m2 * cos - m1 * sin], dim=-1)


def check_mimo(dim: int, d_state: int, head_dim: int) -> None:
    if head_dim < 1 or dim % head_dim or d_state < 2 or d_state % 2:
        raise ValueError(f"--focus-filter mimo: --mimo-head-dim {head_dim} must divide --decoder-embed-dim {dim} "
                         f"and --mimo-state {d_state} must be even and positive")


class MIMOIIRFilter(StreamingModule):
    def __init__(self, dim: int, d_state: int = 64, head_dim: int = 64, conv_kernel: int = 4, chunk: int = 64):
        super().__init__()
        check_mimo(dim, d_state, head_dim)
        self.dim, self.d_state, self.head_dim, self.heads, self.chunk = dim, d_state, head_dim, dim // head_dim, chunk
        self.conv = StreamingConv(dim, conv_kernel) if conv_kernel else None
        self.proj = nn.Linear(dim, 2 * d_state + d_state // 2 + self.heads, bias=False)  # B, C, ω, dt
        nn.init.normal_(self.proj.weight, std=0.02)
        self.omega_bias = nn.Parameter(torch.linspace(0.0, math.pi, d_state // 2))  # angles per unit dt at init
        self.dt_bias = nn.Parameter(_dt_bias(self.heads, 1e-3, 0.1))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(dim))

    def _maps(self, u: Tensor, phase0: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """u (B, L, D) -> dt (B, L, H), rotated B, C (B, L, 1, N), the last phase (B, N/2) — all fp32."""
        n = self.d_state
        dtype = compute_dtype(u)  # fp32 under autocast; fp64 stays fp64 (the tests)
        B, C, omega, dt = self.proj(u).to(dtype).split([n, n, n // 2, self.heads], dim=-1)
        dt = F.softplus(dt + self.dt_bias.to(dtype))
        theta = dt.mean(-1, keepdim=True) * (omega + self.omega_bias.to(dtype))   # (B, L, N/2) angle per token
        phase = torch.cumsum(theta, dim=1)
        if phase0 is not None:
            phase = phase + phase0.unsqueeze(1)
        phase = torch.remainder(phase, 2 * math.pi)
        return dt, rotate_pairs(B, phase).unsqueeze(2), rotate_pairs(C, phase).unsqueeze(2), phase[:, -1]

    def _filter(self, u: Tensor, cache: dict) -> Tensor:
        dt, B, C, cache["phase"] = self._maps(u, cache.get("phase"))
        x = u.unflatten(-1, (self.heads, self.head_dim))                          # (B, L, H, P)
        A = -torch.exp(self.A_log.to(dt.dtype))
        if x.size(1) == 1 and cache.get("ssm") is not None:
            y, cache["ssm"] = ssd_step(x[:, 0].to(dt.dtype), dt[:, 0], A, B[:, 0, 0, None].expand(-1, self.heads, -1),
                                       C[:, 0, 0, None].expand(-1, self.heads, -1), cache["ssm"])
            y = y.unsqueeze(1)
        else:
            y, cache["ssm"] = ssd_chunk(x, dt, A, B, C, cache.get("ssm"), self.chunk)
        return F.silu(y.flatten(-2).to(u.dtype) + self.D.to(u.dtype) * u)

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D) -> x_f (B, L, D); e is ignored."""
        u = F.silu(self.conv(x)) if self.conv is not None else x
        return self._filter(u, {})

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        cache = self.get_cache(incremental_state)
        if self.conv is not None:
            u, cache["conv"] = self.conv.stream(x, cache.get("conv"))
            u = F.silu(u)
        else:
            u = x
        y = self._filter(u, cache)
        self.set_cache(incremental_state, cache)
        return y


class ConvFilter(StreamingModule):
    """``--filter-conv K`` on the other heads: the filter reads SiLU(conv_K(x)), a causal depthwise short conv
    (H3, Mamba, DeltaNet put one in front of their mixers), instead of x."""

    def __init__(self, dim: int, conv_kernel: int, inner: nn.Module):
        super().__init__()
        self.conv, self.inner = StreamingConv(dim, conv_kernel), inner

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        return self.inner(F.silu(self.conv(x)), e)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        cache = self.get_cache(incremental_state)
        u, cache["conv"] = self.conv.stream(x, cache.get("conv"))
        self.set_cache(incremental_state, cache)
        return self.inner.forward_stream(F.silu(u), e, pos, incremental_state)
