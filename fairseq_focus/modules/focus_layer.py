"""One Focus block: the gated, filter-focused chunked attention (paper eq. 9-14) and MEGA's NFFN.

    x_f = GlobalFilter(Norm(x))                                  (eq. 1-8, or Focus-H / MEGA's EMA)
    y   = ChunkedAttn(Q = Norm(x) W_q, K = x_f W_k, V = x_f W_v)  (eq. 9-10, causal in each chunk)
    γ   = SiLU(x_f W_γ + b_γ)                                    (eq. 11)
    φ   = sigmoid(x_f W_φ + b_φ)                                 (eq. 12)
    z   = SiLU(x_f W_h + (γ ∘ y) U_h + b_h)                      (eq. 13)
    o   = φ ∘ z + (1 − φ) ∘ x                                     (eq. 14, x the block input as in MEGA)

then o -> NormalizedFFN. Dropout placement, pre/post norm and the N(0, 0.02) init follow MEGA.

Glossary: D = embed dim, Z = query/key dim, H = value/gate dim, M = chunk_size.
Layout: batch first, x (B, L, D); L a multiple of the chunk (and bin) size — the stack pads.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.chunked_attention import chunked_attention
from .normalized_ffn import NormalizedFFN


class FocusGatedAttention(nn.Module):
    def __init__(self, dim: int, zdim: int, hdim: int, chunk_size: int, global_filter: nn.Module,
                 dropout: float, attention_dropout: float, hidden_dropout: float, prenorm: bool):
        super().__init__()
        self.zdim, self.hdim, self.chunk_size, self.prenorm = zdim, hdim, chunk_size, prenorm
        self.norm = nn.LayerNorm(dim)
        self.filter = global_filter
        self.q_proj = nn.Linear(dim, zdim)
        self.kv_proj = nn.Linear(dim, zdim + hdim)  # [W_k | W_v] on x_f
        self.gate_proj = nn.Linear(dim, hdim + 2 * dim)  # [W_γ | W_φ | W_h] on x_f
        self.u_proj = nn.Linear(hdim, dim)  # U_h
        self.rel_pos_bias = nn.Parameter(torch.empty(2 * chunk_size - 1).normal_(0.0, 0.02))
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.attention_dropout = attention_dropout
        for lin in (self.q_proj, self.kv_proj, self.gate_proj, self.u_proj):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, hyper: Optional[Tensor], key_padding_mask: Optional[Tensor]) -> Tensor:
        residual = x
        if self.prenorm:
            x = self.norm(x)
        x_f = self.filter(x.transpose(1, 2), hyper).transpose(1, 2)  # (B, L, D)
        x_f = self.dropout(x_f)
        q = self.q_proj(x)  # (B, L, Z)
        k, v = self.kv_proj(x_f).split([self.zdim, self.hdim], dim=-1)
        gamma, phi, h = self.gate_proj(x_f).split([self.hdim, residual.size(-1), residual.size(-1)], dim=-1)
        p = self.attention_dropout if self.training else 0.0
        y = chunked_attention(q, k, self.hidden_dropout(v), self.rel_pos_bias, self.chunk_size, key_padding_mask, p)
        z = self.dropout(F.silu(h + self.u_proj(F.silu(gamma) * y)))  # eq. 11, 13
        out = residual + torch.sigmoid(phi) * (z - residual)  # eq. 12, 14
        return out if self.prenorm else self.norm(out)


class FocusBlock(nn.Module):
    """FocusGatedAttention followed by the normalized FFN."""

    def __init__(self, cfg, global_filter: nn.Module):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.attn = FocusGatedAttention(
            dim, cfg.decoder_z_dim, cfg.decoder_hidden_dim, cfg.chunk_size, global_filter,
            cfg.dropout, cfg.attention_dropout, cfg.hidden_dropout, cfg.normalize_before,
        )
        self.ffn = NormalizedFFN(dim, cfg.decoder_ffn_embed_dim, cfg.dropout, cfg.hidden_dropout, cfg.normalize_before)

    def forward(self, x: Tensor, hyper: Optional[Tensor], key_padding_mask: Optional[Tensor]) -> Tensor:
        return self.ffn(self.attn(x, hyper, key_padding_mask))
