"""Gated DeltaNet's mixer (Yang, Kautz & Hatamizadeh 2025, §3.3 and Fig. 1), our own PyTorch, on the gated
delta rule of ``ops/gated_delta``.

    q, k, v = SiLU(conv_K(u W_q)), SiLU(conv_K(u W_k)), SiLU(conv_K(u W_v))     K = 4, per head: K_h, V_h
    q, k    = q / ‖q‖ · K_h^(−1/2), k / ‖k‖                                       per head
    β       = σ(u W_β);  g = −exp(A_log) · softplus(u W_a + dt_bias)             per head
    o       = GatedDelta(q, k, v, g, β)
    out     = W_o RMSNorm_head(o) ⊙ SiLU(u W_g)

Init as the reference layer: A = U[0, 16], dt as Mamba's (log-uniform in [1e-3, 0.1]). Decoding keeps the
three convs' last K − 1 inputs and the memory (H × K_h × V_h per stream): O(1) per token.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.gated_delta import gated_delta_chunk, gated_delta_step
from ..streaming import IncrementalState, StreamingModule
from .common import StreamingConv
from .mamba2 import _dt_bias


class GatedDeltaNetMixer(StreamingModule):
    def __init__(self, dim: int, heads: int = 2, head_k_dim: int = 64, head_v_dim: int = 128, conv_kernel: int = 4,
                 chunk: int = 64):
        super().__init__()
        self.heads, self.kdim, self.vdim, self.chunk = heads, head_k_dim, head_v_dim, chunk
        key, value = heads * head_k_dim, heads * head_v_dim
        self.proj = nn.Linear(dim, 2 * key + 2 * value + 2 * heads, bias=False)  # q, k, v, gate, a, β
        self.conv = StreamingConv(2 * key + value, conv_kernel)
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1e-4, 16)))
        self.dt_bias = nn.Parameter(_dt_bias(heads, 1e-3, 0.1))
        self.head_norm = nn.RMSNorm(head_v_dim, eps=1e-5)
        self.out_proj = nn.Linear(value, dim, bias=False)

    def forward(self, u: Tensor, incremental_state: Optional[IncrementalState] = None) -> Tensor:
        """u (B, L, D) -> (B, L, D); with ``incremental_state``, the stream's next L positions."""
        key, value = self.heads * self.kdim, self.heads * self.vdim
        qkv, gate, a, b = self.proj(u).split([2 * key + value, value, self.heads, self.heads], dim=-1)
        cache = self.get_cache(incremental_state) if incremental_state is not None else {}
        if incremental_state is None:
            qkv = self.conv(qkv)
        else:
            qkv, cache["conv"] = self.conv.stream(qkv, cache.get("conv"))
        q, k, v = F.silu(qkv).split([key, key, value], dim=-1)
        q = F.normalize(q.unflatten(-1, (self.heads, self.kdim)).float(), dim=-1) * self.kdim ** -0.5
        k = F.normalize(k.unflatten(-1, (self.heads, self.kdim)).float(), dim=-1)
        v = v.unflatten(-1, (self.heads, self.vdim))                             # (B, L, H, V_h)
        g = -torch.exp(self.A_log.float()) * F.softplus(a.float() + self.dt_bias.float())  # (B, L, H)
        o, state = self._rule(q, k, v, g, torch.sigmoid(b.float()), cache.get("memory"))
        if incremental_state is not None:
            cache["memory"] = state
            self.set_cache(incremental_state, cache)
        o = self.head_norm(o.to(u.dtype)) * F.silu(gate).unflatten(-1, (self.heads, self.vdim))
        return self.out_proj(o.flatten(-2))

    def _rule(self, q, k, v, g, beta, state):
        """The chunked form, or one recurrent step for a single decoding token."""
        if q.size(1) == 1 and state is not None:
            o, state = gated_delta_step(q[:, 0], k[:, 0], v[:, 0].float(), g[:, 0], beta[:, 0], state)
            return o.unsqueeze(1), state
        return gated_delta_chunk(q, k, v, g, beta, state, self.chunk)
