"""MEGA's gated attention (Ma et al. 2022, §3.2-3.3; MovingAverageGatedAttention in MEGA's code), with a
pluggable filter in the place of MEGA's EMA: the ``mega`` wiring of a block.

    x̂  = Norm(x)                                    (pre-norm; post-norm normalizes the output instead)
    v   = SiLU(x̂ W_v + b_v)                         values from the normed input       (B, L, H)
    mx  = Dropout(filter(x̂))                        MEGA: SiLU(EMA(x̂) + ω ∘ x̂)          (B, L, D)
    u, z, r, ĥ = split(mx W_mx + b_mx, [D, Z, H, D])
    u   = sigmoid(u) ;  z = SiLU(z) ;  r = SiLU(r)    update gate, shared rep., reset gate
    q   = γ_q ∘ z + β_q ;  k = γ_k ∘ z + β_k          per-dimension scale and offset
    y   = ChunkedAttn(q, k, HiddenDropout(v))         softmax(q·k/√Z + bias), causal inside chunks of M
    h   = Dropout(SiLU(ĥ + (r ∘ y) W_h + b_h))        candidate
    o   = u ∘ h + (1 − u) ∘ x                          x the block input (un-normed)

The relative position bias is MEGA's ``simple`` one (a learned scalar per offset) or its ``rotary`` one (two
learned vectors a, b ∈ R^Z rotated per position, bias[i, j] = rot_i(a)·rot_j(b); MEGA's enwik8 run uses
it). Both depend only on the offset j − i, so both are handed to the chunked-attention ops as the
(2M − 1,) offset vector. Init as MEGA: N(0, 0.02) weights, γ, zero biases and β.

Filter interface (the refactored global_filter.py): ``filter(x, e)`` with x (B, L, D) the normed input and
e the shared hypernetwork embedding or None -> (B, L, D); ``filter.forward_stream(x, e, pos,
incremental_state)`` for n new positions. Layout batch first, L a multiple of M (the stack pads).

Glossary: D = embed dim, Z = q/k dim, H = value/reset-gate dim, M = chunk_size.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.chunked_attention import attention_in_chunk, chunked_attention
from ..ops.segments import split_at_boundaries
from .streaming import IncrementalState, StreamingModule

REL_POS_BIASES = ("simple", "rotary")


class SimpleRelativeBias(nn.Module):
    """One learned scalar per offset j − i ∈ [−(M−1), M−1] (MEGA's ``simple``)."""

    def __init__(self, chunk_size: int):
        super().__init__()
        self.chunk_size = chunk_size
        self.weight = nn.Parameter(torch.empty(2 * chunk_size - 1).normal_(0.0, 0.02))

    def forward(self) -> Tensor:
        return self.weight


class RotaryRelativeBias(nn.Module):
    """MEGA's ``rotary`` bias: bias[i, j] = rot_i(a)·rot_j(b), with the RoPE rotation by angle i·θ_k of the
    pair (dim k, dim k + Z/2), θ_k = 10000^(−k/(Z/2)). As a function of o = j − i:
    f(o) = Σ_k (a1·b1 + a2·b2)_k cos(o θ_k) + (a2·b1 − a1·b2)_k sin(o θ_k)."""

    def __init__(self, zdim: int, chunk_size: int):
        super().__init__()
        if zdim % 2 != 0:
            raise ValueError(f"the rotary relative bias needs an even z dim, got {zdim}")
        self.chunk_size = chunk_size
        self.alpha = nn.Parameter(torch.empty(zdim).normal_(0.0, 0.02))
        self.beta = nn.Parameter(torch.empty(zdim).normal_(0.0, 0.02))

    def forward(self) -> Tensor:
        m, half = self.chunk_size, self.alpha.numel() // 2
        dtype = torch.float64 if self.alpha.dtype == torch.float64 else torch.float32  # angles up to M rad
        a1, a2 = self.alpha.to(dtype).split(half)
        b1, b2 = self.beta.to(dtype).split(half)
        theta = torch.exp(torch.arange(half, dtype=dtype, device=self.alpha.device) * (-math.log(10000.0) / half))
        angles = torch.arange(1 - m, m, dtype=dtype, device=theta.device).unsqueeze(-1) * theta  # (2M−1, Z/2)
        f = torch.cos(angles) @ (a1 * b1 + a2 * b2) + torch.sin(angles) @ (a2 * b1 - a1 * b2)
        return f.to(self.alpha.dtype)


class MegaGatedAttention(StreamingModule):
    def __init__(self, dim: int, zdim: int, hdim: int, chunk_size: int, global_filter: nn.Module,
                 dropout: float, attention_dropout: float, hidden_dropout: float, prenorm: bool,
                 rel_pos_bias: str = "simple"):
        super().__init__()
        if rel_pos_bias not in REL_POS_BIASES:
            raise ValueError(f"rel_pos_bias must be one of {REL_POS_BIASES}, got {rel_pos_bias!r}")
        self.dim, self.zdim, self.hdim, self.chunk_size, self.prenorm = dim, zdim, hdim, chunk_size, prenorm
        self.norm = nn.LayerNorm(dim)
        self.filter = global_filter
        self.v_proj = nn.Linear(dim, hdim)
        self.mx_proj = nn.Linear(dim, dim + zdim + hdim + dim)  # [u | z | r | ĥ] from mx
        self.h_proj = nn.Linear(hdim, dim)  # W_h on r ∘ y
        self.gamma = nn.Parameter(torch.empty(2, zdim).normal_(0.0, 0.02))  # rows: q, k
        self.beta = nn.Parameter(torch.zeros(2, zdim))
        self.rel_pos = SimpleRelativeBias(chunk_size) if rel_pos_bias == "simple" else RotaryRelativeBias(zdim, chunk_size)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.attention_dropout = attention_dropout
        for lin in (self.v_proj, self.mx_proj, self.h_proj):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        residual = x
        if self.prenorm:
            x = self.norm(x)
        mx = self.dropout(self.filter(x, e))
        q, k, v, gates = self._project(x, mx)
        p = self.attention_dropout if self.training else 0.0
        y = chunked_attention(q, k, v, self.rel_pos(), self.chunk_size, padding_mask, p)
        return self._output(residual, gates, y)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        """The same map for n new positions (B, n, D) of a stream at pos …, with cached state."""
        residual = x
        if self.prenorm:
            x = self.norm(x)
        mx = self.dropout(self.filter.forward_stream(x, e, pos, incremental_state))
        q, k, v, gates = self._project(x, mx)
        y = self._attend_stream(q, k, v, pos, incremental_state, padding_mask)
        return self._output(residual, gates, y)

    def _project(self, x: Tensor, mx: Tensor):
        """q, k (B, L, Z) from z; v (B, L, H) from the normed input; the gates (u, r, ĥ) from mx."""
        v = self.hidden_dropout(F.silu(self.v_proj(x)))
        u, z, r, h_mx = self.mx_proj(mx).split([self.dim, self.zdim, self.hdim, self.dim], dim=-1)
        qk = F.silu(z).unsqueeze(-2) * self.gamma + self.beta  # (B, L, 2, Z)
        q, k = qk.unbind(dim=-2)
        return q, k, v, (torch.sigmoid(u), F.silu(r), h_mx)

    def _output(self, residual: Tensor, gates, y: Tensor) -> Tensor:
        u, r, h_mx = gates
        h = self.dropout(F.silu(h_mx + self.h_proj(r * y)))
        out = residual + u * (h - residual)
        return out if self.prenorm else self.norm(out)

    def _attend_stream(self, q: Tensor, k: Tensor, v: Tensor, pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor]) -> Tensor:
        """Chunked causal attention for positions pos … pos+n−1 with the current chunk's KV cache.

        TODO(issue 10, phase 2): replace this body with the ``chunked_attention_segment`` op the
        modules refactor adds (the same logic as FocusGatedAttention._attend_stream, with the bias
        vector passed in); kept here only until that op lands.
        """
        m, (bsz, n) = self.chunk_size, q.shape[:2]
        bias = self.rel_pos()
        cache = self.get_cache(incremental_state)
        cached = cache.get("k")
        offset = 0 if cached is None else cached.size(1)
        if offset != pos % m:
            raise RuntimeError(f"attention cache holds {offset} keys at position {pos} (chunk {m})")
        pads = q.new_zeros(bsz, n, dtype=torch.bool) if padding_mask is None else padding_mask
        if cached is not None:
            k, v, pads = torch.cat([cached, k], 1), torch.cat([cache["v"], v], 1), torch.cat([cache["pad"], pads], 1)
        head, middle, tail = split_at_boundaries(pos, n, m)
        parts = [(0, offset + head, head)] if head else []
        parts += [(offset + head + start, offset + head + start + m, m) for start in range(0, middle, m)]
        parts += [(offset + n - tail, offset + n, tail)] if tail else []
        outputs = []
        for first, end, nq in parts:
            kpm = pads[:, first:end] if pads[:, first:end].any() else None
            outputs.append(attention_in_chunk(q[:, end - offset - nq:end - offset], k[:, first:end], v[:, first:end],
                                              bias, m, kpm))
        start = offset + n - (pos + n) % m
        self.set_cache(incremental_state, {"k": k[:, start:], "v": v[:, start:], "pad": pads[:, start:]})
        return torch.cat(outputs, dim=1)

