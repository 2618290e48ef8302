"""Pieces the peer layers share: a causal depthwise conv that streams, the gated RMSNorm, SwiGLU, and the
pre-norm residual stack that carries a stream's position for decoding."""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.short_conv import short_conv, short_conv_stream
from ..streaming import IncrementalState, StreamingModule


class StreamingConv(nn.Module):
    """Causal depthwise conv of K taps with a bias (Mamba's and DeltaNet's short conv), channels last.

    ``forward(x)``: a fresh stream, x (B, L, C) -> (B, L, C). ``stream(x, history)``: continue a stream
    after history (B, K − 1, C), its previous inputs (None: a fresh stream) -> y, the new history.
    PyTorch's Conv1d init (uniform ±1/√K), as Mamba's layers keep it."""

    def __init__(self, channels: int, ksize: int):
        super().__init__()
        bound = 1.0 / math.sqrt(ksize)
        self.weight = nn.Parameter(torch.empty(channels, ksize).uniform_(-bound, bound))  # tap 0 = current input
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return short_conv(x, self.weight) + self.bias.to(x.dtype)

    def stream(self, x: Tensor, history: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if history is None:
            history = x.new_zeros(x.size(0), self.weight.size(1) - 1, x.size(-1))
        y, history = short_conv_stream(x, self.weight, history)
        return y + self.bias.to(y.dtype), history


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: RMSNorm(y · SiLU(z)) · w, over the whole inner width (one group)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        return F.rms_norm(y * F.silu(z), (y.size(-1),), self.weight, self.eps)


class SwiGLU(nn.Module):
    """(SiLU(x W1) ⊙ x W3) W2, no biases (Shazeer 2020; LLaMA's FFN)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class ResidualBlock(nn.Module):
    """x + Dropout(mixer(RMSNorm(x))), then x + Dropout(FFN(RMSNorm(x))) when the layer has an FFN."""

    def __init__(self, dim: int, mixer: nn.Module, ffn: Optional[nn.Module], eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        self.mixer_norm, self.mixer = nn.RMSNorm(dim, eps=eps), mixer
        self.ffn_norm = nn.RMSNorm(dim, eps=eps) if ffn is not None else None
        self.ffn = ffn
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, incremental_state: Optional[IncrementalState] = None) -> Tensor:
        x = x + self.dropout(self.mixer(self.mixer_norm(x), incremental_state))
        return x if self.ffn is None else x + self.dropout(self.ffn(self.ffn_norm(x)))


class PeerStack(StreamingModule):
    """Residual blocks and a final RMSNorm; remembers how many positions a stream has seen."""

    def __init__(self, dim: int, layers: int, make_block: Callable[[int], ResidualBlock]):
        super().__init__()
        self.blocks = nn.ModuleList([make_block(i) for i in range(layers)])
        self.final_norm = nn.RMSNorm(dim, eps=1e-5)

    def forward(self, x: Tensor, incremental_state: Optional[IncrementalState] = None) -> Tensor:
        """x (B, L, D) -> (B, L, D); with ``incremental_state``, x is the stream's next L positions."""
        for block in self.blocks:
            x = block(x, incremental_state)
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "position",
                                       {"pos": torch.tensor(self.position(incremental_state) + x.size(1))})
        return self.final_norm(x)

    def position(self, incremental_state: Optional[IncrementalState]) -> int:
        saved = self.get_incremental_state(incremental_state, "position") if incremental_state is not None else None
        return 0 if saved is None else int(saved["pos"])

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """The position is the same for every stream: nothing to select."""

