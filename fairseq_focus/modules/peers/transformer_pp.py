"""Transformer++'s attention (the LLaMA recipe: pre-RMSNorm blocks, rotary positions, SwiGLU FFN): causal
multi-head softmax attention through ``scaled_dot_product_attention``, without biases.

    q, k, v = u W_q, u W_k, u W_v         split into H heads of D / H
    q, k    = RoPE(q, t), RoPE(k, t)       rotation of each pair (i, i + D/2H) by t · 10000^(−2i·H/D)
    out     = softmax(q kᵀ / √d + causal) v W_o

Decoding keeps every earlier key and value (the KV cache): O(t) per token, as any softmax attention.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..streaming import IncrementalState, StreamingModule


def rotary(x: Tensor, start: int, base: float = 10000.0) -> Tensor:
    """x (B, L, H, d) at positions start … start + L − 1 -> x rotated pairwise (d even), in x's dtype."""
    half = x.size(-1) // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)  # (d/2,)
    angle = torch.arange(start, start + x.size(1), device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = angle.cos()[:, None, :], angle.sin()[:, None, :]                           # (L, 1, d/2)
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class RotaryAttention(StreamingModule):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"transformer_pp: --decoder-embed-dim {dim} must split into {heads} heads of even size")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, u: Tensor, incremental_state: Optional[IncrementalState] = None) -> Tensor:
        q, k, v = self.qkv(u).unflatten(-1, (3, self.heads, -1)).unbind(2)    # (B, L, H, d) each
        cache = self.get_cache(incremental_state) if incremental_state is not None else {}
        start = 0 if cache.get("k") is None else cache["k"].size(1)
        q, k = rotary(q, start), rotary(k, start)
        if cache.get("k") is not None:
            k, v = torch.cat([cache["k"], k], dim=1), torch.cat([cache["v"], v], dim=1)
        if incremental_state is not None:
            self.set_cache(incremental_state, {"k": k, "v": v})
        mask = None
        if start:  # query i sits at start + i and sees keys 0 … start + i
            mask = torch.ones(q.size(1), k.size(1), dtype=torch.bool, device=u.device).tril(start)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=mask is None)  # (B, H, L, d)
        return self.out_proj(y.transpose(1, 2).flatten(-2))
