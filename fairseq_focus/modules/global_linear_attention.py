"""``--global-attention based`` (beyond the paper; issue 25): a Based-style global linear attention beside
the chunked softmax attention, so that a query can read a key that lies before its own chunk.

Based (Arora et al. 2024, arXiv 2402.18668) pairs a global linear attention with short convolutions and
local softmax attention; Zoology (Arora et al. 2023, arXiv 2312.04927) shows that linear attention with a
Taylor feature map and a short convolution before it solves multi-query associative recall. Here, in each
block, from the block's (normed) input x:

    u        = x W_u + b_u,  zeroed at pads                  (B, L, 2·H_g·F + E_v) = [q | k | v]
    u        = ShortConv_K(u)                                 causal depthwise, K taps (ops/short_conv.py)
    q, k, v  = split(u)                                       (B, L, H_g, F), (B, L, H_g, F), (B, L, H_g, E)
    o        = LinearAttn_φ(q, k, v; γ)                       ops/linear_attention.py, φ Based's Taylor map:
               o_t = Σ_{j≤t} γ^{t−j} φ(q_t)·φ(k_j) v_j / Σ_{j≤t} γ^{t−j} φ(q_t)·φ(k_j)
    g        = RMSNorm_per_head(o) · w                        output norm, gain w ∈ R^{E_v} (init 1)

and the block adds g to its chunked attention output y before its own gates: y ← y + g (E_v = the
block's value dim H). Not a separate gate: both wirings already gate y elementwise by a function of the
input and mix it by a linear map (the paper's γ ∘ y then U_h, eq. 11/13; MEGA's r ∘ y then W_h), and so
gate the sum. The global path reads x, not the IIR filter's output x_f: the short convolution gives each
key the preceding tokens (the key a value follows), which is what recall needs; x_f would blur them.

Decay (``--global-attention-decay``): none (γ = 1, Based), or learned, one γ_h = sigmoid(a_h) per head,
started at γ_h = 1 − 2^{−(7+h)} (RetNet's 1 − 2^{−(5+h)}, two octaves longer: 0.992 for head 0, a memory
of ≈ 128 tokens), so it starts near "no decay".

Init: LeCun normal, N(0, 1/D), zero bias for W_u (q and k at unit scale, so s = q·k/√F starts O(1) and the
Taylor weights differ between keys; MEGA's N(0, 0.02) would give s ≈ 0, a plain running mean of v);
PyTorch's Conv1d default for the conv taps, U(±1/√K), as Based's and fla's short convolutions; norm gain 1.
No dropout inside the path. Scale at init, measured in the first block of the recall width (D 64, H 128,
B 8, 96 positions): g has std 1.0, the chunked attention's y 0.03–0.12 (its values come from MEGA's
N(0, 0.02) projections), so the global path dominates the sum at first; both then pass the wiring's
N(0, 0.02) maps, where g's share is about the size of the gate's own input term. Not tuned.

Streaming: the cache holds the conv's last K − 1 projections ("conv", (B, K−1, C)) and the attention
state ("state", (B, H_g, P, E+1)); a single new token goes through the O(P·E) step, longer segments
through the chunked op continued from the state. Both follow beam reorders (:class:`StreamingModule`).

Glossary: D model dim, H_g heads (``--global-attention-heads``), F = ``--global-attention-feature-dim``,
P = 1 + F + F², E_v = H (block value dim), E = E_v / H_g, K = ``--global-attention-conv``, M chunk
(``--global-attention-chunk``, default the attention's ``--chunk-size``).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.linear_attention import linear_attention, linear_attention_step
from ..ops.short_conv import short_conv, short_conv_stream
from .global_attention_settings import check_global_attention
from .streaming import IncrementalState, StreamingModule

NORM_EPS = 1e-5


class GlobalLinearAttention(StreamingModule):
    """x (B, L, D) -> g (B, L, E_v): the module docstring's path."""

    def __init__(self, dim: int, value_dim: int, heads: int, feature_dim: int, conv: int, chunk: int,
                 decay: str = "none"):
        super().__init__()
        check_global_attention("based", heads, feature_dim, conv, decay, value_dim)
        self.heads, self.feature_dim, self.value_dim, self.chunk = heads, feature_dim, value_dim, chunk
        width = 2 * heads * feature_dim + value_dim  # [q | k | v] channels
        self.proj = nn.Linear(dim, width)
        self.conv = nn.Parameter(torch.empty(width, conv))  # taps, newest first (ops/short_conv.py)
        self.decay_logit = nn.Parameter(torch.empty(heads)) if decay == "learned" else None
        self.norm_weight = nn.Parameter(torch.empty(value_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The init of the module docstring."""
        nn.init.normal_(self.proj.weight, std=self.proj.in_features ** -0.5)
        nn.init.zeros_(self.proj.bias)
        bound = 1.0 / math.sqrt(self.conv.size(1))
        nn.init.uniform_(self.conv, -bound, bound)
        if self.decay_logit is not None:  # sigmoid(a_h) = 1 − 2^{−(7+h)}  <=>  a_h = log(2^{7+h} − 1)
            powers = 2.0 ** (7.0 + torch.arange(self.heads, dtype=torch.float64))
            with torch.no_grad():
                self.decay_logit.copy_(torch.log(powers - 1.0))
        nn.init.ones_(self.norm_weight)

    def log_decay(self) -> Optional[Tensor]:
        """log γ_h = log sigmoid(a_h) ≤ 0, (H_g,), or None without decay."""
        return None if self.decay_logit is None else F.logsigmoid(self.decay_logit)

    def _project(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        """u = x W_u + b_u (B, L, C), zero at pads (so a pad reaches no neighbour through the conv)."""
        u = self.proj(x)
        return u if padding_mask is None else u.masked_fill(padding_mask.unsqueeze(-1), 0.0)

    def _split(self, u: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(B, L, C) -> q, k (B, L, H_g, F), v (B, L, H_g, E)."""
        qk = self.heads * self.feature_dim
        q, k, v = u.split([qk, qk, self.value_dim], dim=-1)
        heads = lambda t: t.reshape(*t.shape[:2], self.heads, -1)  # noqa: E731  (B, L, H_g·d) -> (B, L, H_g, d)
        return heads(q), heads(k), heads(v)

    def _output(self, o: Tensor) -> Tensor:
        """Per-head RMS norm, heads merged, gain: (B, L, H_g, E) -> (B, L, E_v)."""
        o = o * torch.rsqrt(o.pow(2).mean(dim=-1, keepdim=True) + NORM_EPS)
        return o.flatten(2) * self.norm_weight

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, L, D), padding_mask (B, L) True at pads or None -> (B, L, E_v)."""
        q, k, v = self._split(short_conv(self._project(x, padding_mask), self.conv))
        keys = None if padding_mask is None else ~padding_mask
        o, _ = linear_attention(q, k, v, self.chunk, self.log_decay(), keys)
        return self._output(o)

    def forward_stream(self, x: Tensor, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        """The next n positions x (B, n, D) of the streams -> (B, n, E_v), continuing the cached state."""
        cache = self.get_cache(incremental_state)
        u = self._project(x, padding_mask)
        history = cache.get("conv")
        if history is None:
            history = u.new_zeros(u.size(0), self.conv.size(1) - 1, u.size(-1))
        u, history = short_conv_stream(u, self.conv, history)
        q, k, v = self._split(u)
        keys = None if padding_mask is None else ~padding_mask
        if x.size(1) == 1:
            o, state = linear_attention_step(q, k, v, self.log_decay(), keys, cache.get("state"))
        else:
            o, state = linear_attention(q, k, v, self.chunk, self.log_decay(), keys, cache.get("state"))
        self.set_cache(incremental_state, {"conv": history, "state": state})
        return self._output(o)


def build_global_attention(cfg) -> Optional[GlobalLinearAttention]:
    """The block's global path from the config, or None for ``--global-attention none`` (or a config from
    before the option, which lacks the field)."""
    kind = getattr(cfg, "global_attention", "none") or "none"
    if kind == "none":
        return None
    check_global_attention(kind, cfg.global_attention_heads, cfg.global_attention_feature_dim,
                           cfg.global_attention_conv, cfg.global_attention_decay, cfg.decoder_hidden_dim)
    return GlobalLinearAttention(cfg.decoder_embed_dim, cfg.decoder_hidden_dim, cfg.global_attention_heads,
                                 cfg.global_attention_feature_dim, cfg.global_attention_conv,
                                 getattr(cfg, "global_attention_chunk", 0) or cfg.chunk_size,
                                 cfg.global_attention_decay)
