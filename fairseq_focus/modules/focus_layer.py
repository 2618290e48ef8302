"""One Focus block: a gated, filter-focused chunked attention, then MEGA's NFFN.

``--block-wiring paper`` (:class:`FocusGatedAttention`, the paper's eq. 9-14):

    x_f = GlobalFilter(Norm(x))                                  (eq. 1-8, or Focus-H / MEGA's EMA / none: Norm(x))
    y   = ChunkedAttn(Q = Norm(x) W_q, K = x_f W_k, V = x_f W_v)  (eq. 9-10, causal in each chunk)
    γ   = SiLU(x_f W_γ + b_γ)                                    (eq. 11)
    φ   = sigmoid(x_f W_φ + b_φ)                                 (eq. 12)
    z   = SiLU(x_f W_h + (γ ∘ y) U_h + b_h)                      (eq. 13)
    o   = φ ∘ z + (1 − φ) ∘ x                                     (eq. 14, x the block input as in MEGA)

``--block-wiring mega``: MEGA's gated attention with the filter in the EMA's place
(:class:`~.mega_attention.MegaGatedAttention`). Either is followed by the NormalizedFFN. What both share
(norm, filter, attention, streaming, relative bias) is :class:`~.gated_attention.GatedAttention`.
``--global-attention based`` adds a global linear attention's output to y in either wiring (beyond the
paper; :mod:`~.global_linear_attention`).
Dropout placement, pre/post norm and the N(0, 0.02) init follow MEGA.

Glossary: D = embed dim, Z = query/key dim, H = value/gate dim, M = chunk_size.
Layout: batch first, x (B, L, D); L a multiple of the chunk (and bin) size — the stack pads.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.precision import model_autocast
from .gated_attention import GatedAttention
from .global_linear_attention import build_global_attention
from .mega_attention import MegaGatedAttention
from .normalized_ffn import NormalizedFFN
from .streaming import IncrementalState


class FocusGatedAttention(GatedAttention):
    def build_projections(self, dim: int, zdim: int, hdim: int) -> List[nn.Linear]:
        self.q_proj = nn.Linear(dim, zdim)
        self.kv_proj = nn.Linear(dim, zdim + hdim)  # [W_k | W_v] on x_f
        self.gate_proj = nn.Linear(dim, hdim + 2 * dim)  # [W_γ | W_φ | W_h] on x_f
        self.u_proj = nn.Linear(hdim, dim)  # U_h
        return [self.q_proj, self.kv_proj, self.gate_proj, self.u_proj]

    def project(self, x: Tensor, x_f: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Q from the (normed) input, K and V from the filtered input (eq. 9); x_f feeds the gates."""
        q = self.q_proj(x)  # (B, L, Z)
        k, v = self.kv_proj(x_f).split([self.zdim, self.hdim], dim=-1)  # (B, L, Z), (B, L, H)
        return q, k, v, x_f

    def combine(self, residual: Tensor, x_f: Tensor, y: Tensor) -> Tensor:
        """Eq. 11-14 around the attention output y (B, L, H)."""
        dim = residual.size(-1)
        gamma, phi, h = self.gate_proj(x_f).split([self.hdim, dim, dim], dim=-1)
        z = self.dropout(F.silu(h + self.u_proj(F.silu(gamma) * y)))  # eq. 11, 13
        return residual + torch.sigmoid(phi) * (z - residual)  # eq. 12, 14


ATTENTIONS = {"paper": FocusGatedAttention, "mega": MegaGatedAttention}


class FocusBlock(nn.Module):
    """The gated attention of ``cfg.block_wiring`` followed by the normalized FFN."""

    def __init__(self, cfg, global_filter: nn.Module):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.attn = ATTENTIONS[cfg.block_wiring](
            dim, cfg.decoder_z_dim, cfg.decoder_hidden_dim, cfg.chunk_size, global_filter,
            cfg.dropout, cfg.attention_dropout, cfg.hidden_dropout, not cfg.no_normalize_before, cfg.rel_pos_bias,
            build_global_attention(cfg),
        )
        # --decoder-ffn-embed-dim 0: no FFN at all (its parameters spent on more blocks, as Mamba-2 does)
        self.ffn = (NormalizedFFN(dim, cfg.decoder_ffn_embed_dim, cfg.dropout, cfg.hidden_dropout,
                                  not cfg.no_normalize_before) if cfg.decoder_ffn_embed_dim > 0 else nn.Identity())
        self.autocast_bf16 = cfg.autocast_bf16

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        # the model autocasts already; the block says so again because activation checkpointing recomputes
        # this forward in backward, outside the model's context, and must compute as the forward did
        with model_autocast(self.autocast_bf16, x.device):
            return self.ffn(self.attn(x, e, padding_mask))

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.ffn(self.attn.forward_stream(x, e, pos, incremental_state, padding_mask))
