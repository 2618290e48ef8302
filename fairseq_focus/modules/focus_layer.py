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

Streaming (``forward_stream``, inference): n new positions at pos … pos+n−1; the filter carries its
own state, the attention keeps the keys/values of the current chunk (≤ M − 1 of them, emptied at
every chunk start), everything else is per position. Attention dropout is not applied there.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.precision import model_autocast
from ..ops.chunked_attention import ChunkCache, chunked_attention, chunked_attention_segment
from .normalized_ffn import NormalizedFFN
from .streaming import IncrementalState, StreamingModule


class FocusGatedAttention(StreamingModule):
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

    def filter_input(self, x: Tensor) -> Tensor:
        """What the filter (and Q) sees: the block input, normed in a pre-norm block."""
        return self.norm(x) if self.prenorm else x

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        residual, x = x, self.filter_input(x)
        x_f = self.dropout(self.filter(x, e))  # (B, L, D)
        q, k, v = self._qkv(x, x_f)
        p = self.attention_dropout if self.training else 0.0
        y = chunked_attention(q, k, v, self.rel_pos_bias, self.chunk_size, padding_mask, p)
        return self._gate(residual, x_f, y)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        """The same map for n new positions (B, n, D) of a stream at pos …, with cached state."""
        residual, x = x, self.filter_input(x)
        x_f = self.dropout(self.filter.forward_stream(x, e, pos, incremental_state))  # (B, n, D)
        q, k, v = self._qkv(x, x_f)
        y = self._attend_stream(q, k, v, pos, incremental_state, padding_mask)
        return self._gate(residual, x_f, y)

    def _qkv(self, x: Tensor, x_f: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Q from the (normed) input, K and V from the filtered input (eq. 9)."""
        q = self.q_proj(x)  # (B, L, Z)
        k, v = self.kv_proj(x_f).split([self.zdim, self.hdim], dim=-1)  # (B, L, Z), (B, L, H)
        return q, k, self.hidden_dropout(v)

    def _gate(self, residual: Tensor, x_f: Tensor, y: Tensor) -> Tensor:
        """Eq. 11-14 around the attention output y (B, L, H)."""
        dim = residual.size(-1)
        gamma, phi, h = self.gate_proj(x_f).split([self.hdim, dim, dim], dim=-1)
        z = self.dropout(F.silu(h + self.u_proj(F.silu(gamma) * y)))  # eq. 11, 13
        out = residual + torch.sigmoid(phi) * (z - residual)  # eq. 12, 14
        return out if self.prenorm else self.norm(out)

    def _attend_stream(self, q: Tensor, k: Tensor, v: Tensor, pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor]) -> Tensor:
        """Chunked causal attention for positions pos … pos+n−1, with the current chunk's KV cache."""
        saved = self.get_cache(incremental_state)
        cache = ChunkCache(saved["k"], saved["v"], saved["pad"]) if saved.get("k") is not None else None
        y, cache = chunked_attention_segment(q, k, v, self.rel_pos_bias, self.chunk_size, pos, cache, padding_mask)
        self.set_cache(incremental_state, {"k": cache.k, "v": cache.v, "pad": cache.padding_mask})
        return y


class FocusBlock(nn.Module):
    """FocusGatedAttention followed by the normalized FFN."""

    def __init__(self, cfg, global_filter: nn.Module):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.attn = FocusGatedAttention(
            dim, cfg.decoder_z_dim, cfg.decoder_hidden_dim, cfg.chunk_size, global_filter,
            cfg.dropout, cfg.attention_dropout, cfg.hidden_dropout, not cfg.no_normalize_before,
        )
        self.ffn = NormalizedFFN(dim, cfg.decoder_ffn_embed_dim, cfg.dropout, cfg.hidden_dropout, not cfg.no_normalize_before)
        self.autocast_bf16 = cfg.autocast_bf16

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        # the model autocasts already; the block says so again because activation checkpointing recomputes
        # this forward in backward, outside the model's context, and must compute as the forward did
        with model_autocast(self.autocast_bf16, x.device):
            return self.ffn(self.attn(x, e, padding_mask))

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.ffn(self.attn.forward_stream(x, e, pos, incremental_state, padding_mask))
