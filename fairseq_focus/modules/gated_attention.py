"""What the two block wirings share (``--block-wiring paper | mega``): the norm, the global filter
in front of a chunked causal attention with a relative position bias, the dropouts, and the
streaming path. A wiring says only how q, k, v come from the (normed) input x and the filter output
x_f (:meth:`GatedAttention.project`) and how the attention output y is gated back onto the residual
(:meth:`GatedAttention.combine`):

* ``paper`` — :class:`~.focus_layer.FocusGatedAttention`, the paper's eq. 9-14;
* ``mega`` — :class:`~.mega_attention.MegaGatedAttention`, MEGA's moving-average gated attention.

Relative position bias (``--rel-pos-bias``), both functions of the offset j − i only, so both reach
the ops as the (2M − 1,) offset vector ``rel_pos()``:

* ``simple`` — one learned scalar per offset (MEGA's ``simple``);
* ``rotary`` — MEGA's ``rotary``: two learned vectors a, b ∈ R^Z, each rotated per position by the RoPE
  angles i·θ_k on the pairs (dim k, dim k + Z/2), θ_k = 10000^(−k/(Z/2)); bias[i, j] = rot_i(a)·rot_j(b).
  As a function of o = j − i: f(o) = Σ_k (a1·b1 + a2·b2)_k cos(o θ_k) + (a2·b1 − a1·b2)_k sin(o θ_k).

Global path (``--global-attention based``, beyond the paper): a module that maps the normed input x
(B, L, D) to (B, L, H) over the whole sequence (modules/global_linear_attention.py); its output is added
to the chunked attention's output y before :meth:`GatedAttention.combine`, so the wiring's own gates act
on the sum. None (the default) leaves the block as it was.

Layout: batch first, x (B, L, D); L a multiple of the chunk (and bin) size — the stack pads.
Streaming (``forward_stream``, inference): n new positions at pos … pos+n−1; the filter carries its
own state, the attention keeps the keys/values of the current chunk (ops/chunked_attention.py's
:class:`ChunkCache`), everything else is per position. Attention dropout is not applied there.

Glossary: D = embed dim, Z = query/key dim, H = value/gate dim, M = chunk_size.
"""
import math
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops.chunked_attention import ChunkCache, chunked_attention, chunked_attention_segment
from .config import REL_POS_BIASES
from .global_filter import rename_prefix
from .streaming import IncrementalState, StreamingModule


class SimpleRelativeBias(nn.Module):
    """One learned scalar per offset j − i ∈ [−(M−1), M−1]."""

    def __init__(self, chunk_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2 * chunk_size - 1).normal_(0.0, 0.02))

    def forward(self) -> Tensor:
        return self.weight


class RotaryRelativeBias(nn.Module):
    """MEGA's ``rotary`` bias as the (2M − 1,) offset vector f(o) (module docstring)."""

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


def relative_bias(kind: str, zdim: int, chunk_size: int) -> nn.Module:
    if kind not in REL_POS_BIASES:
        raise ValueError(f"--rel-pos-bias must be one of {REL_POS_BIASES}, got {kind!r}")
    return SimpleRelativeBias(chunk_size) if kind == "simple" else RotaryRelativeBias(zdim, chunk_size)


def init_linears(*linears: nn.Linear) -> None:
    """MEGA's init: N(0, 0.02) weights, zero biases."""
    for lin in linears:
        nn.init.normal_(lin.weight, std=0.02)
        nn.init.zeros_(lin.bias)


class GatedAttention(StreamingModule):
    """norm -> filter -> project -> chunked attention -> combine; subclasses give project and combine."""

    def __init__(self, dim: int, zdim: int, hdim: int, chunk_size: int, global_filter: nn.Module,
                 dropout: float, attention_dropout: float, hidden_dropout: float, prenorm: bool,
                 rel_pos_bias: str = "simple", global_attention: Optional[nn.Module] = None):
        super().__init__()
        self.dim, self.zdim, self.hdim, self.chunk_size, self.prenorm = dim, zdim, hdim, chunk_size, prenorm
        self.norm = nn.LayerNorm(dim)
        self.filter = global_filter
        self.rel_pos = relative_bias(rel_pos_bias, zdim, chunk_size)
        init_linears(*self.build_projections(dim, zdim, hdim))
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.attention_dropout = attention_dropout
        self.global_attention = global_attention  # None, or x (B, L, D) -> (B, L, H) added to y

    def build_projections(self, dim: int, zdim: int, hdim: int) -> List[nn.Linear]:
        """Create the wiring's own parameters; return its linear maps, which get MEGA's init."""
        raise NotImplementedError

    def project(self, x: Tensor, x_f: Tensor) -> Tuple[Tensor, Tensor, Tensor, Any]:
        """x (normed input), x_f (filter output) (B, L, D) -> q, k (B, L, Z), v (B, L, H), and what
        :meth:`combine` needs."""
        raise NotImplementedError

    def combine(self, residual: Tensor, gates: Any, y: Tensor) -> Tensor:
        """The gated output around the attention output y (B, L, H), before a post-norm."""
        raise NotImplementedError

    def filter_input(self, x: Tensor) -> Tensor:
        """What the filter sees: the block input, normed in a pre-norm block."""
        return self.norm(x) if self.prenorm else x

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        residual, x = x, self.filter_input(x)
        q, k, v, gates = self.project(x, self.dropout(self._filter(x, e, padding_mask)))
        p = self.attention_dropout if self.training else 0.0
        y = chunked_attention(q, k, self.hidden_dropout(v), self.rel_pos(), self.chunk_size, padding_mask, p)
        if self.global_attention is not None:
            y = y + self.global_attention(x, padding_mask)
        return self._output(residual, gates, y)

    def _filter(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor]) -> Tensor:
        """x_f (B, L, D): a filter that reads later positions (``takes_padding_mask``) is told where the pads
        are; a causal one never reads a right pad at a real position, so it is not."""
        if getattr(self.filter, "takes_padding_mask", False):
            return self.filter(x, e, padding_mask)
        return self.filter(x, e)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        """The same map for n new positions (B, n, D) of a stream at pos …, with cached state."""
        residual, x = x, self.filter_input(x)
        x_f = self.dropout(self.filter.forward_stream(x, e, pos, incremental_state))  # (B, n, D)
        q, k, v, gates = self.project(x, x_f)
        saved = self.get_cache(incremental_state)
        cache = ChunkCache(saved["k"], saved["v"], saved["pad"]) if saved.get("k") is not None else None
        y, cache = chunked_attention_segment(q, k, self.hidden_dropout(v), self.rel_pos(), self.chunk_size, pos,
                                             cache, padding_mask)
        self.set_cache(incremental_state, {"k": cache.k, "v": cache.v, "pad": cache.padding_mask})
        if self.global_attention is not None:
            y = y + self.global_attention.forward_stream(x, incremental_state, padding_mask)
        return self._output(residual, gates, y)

    def _output(self, residual: Tensor, gates: Any, y: Tensor) -> Tensor:
        out = self.combine(residual, gates, y)
        return out if self.prenorm else self.norm(out)

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        """Checkpoints from before the ``--rel-pos-bias`` option kept the simple bias as ``rel_pos_bias``."""
        rename_prefix(state_dict, f"{name}.rel_pos_bias", f"{name}.rel_pos.weight")
