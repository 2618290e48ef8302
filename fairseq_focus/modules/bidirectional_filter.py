"""A global filter run both ways over the sequence, for whole-sequence classification.

    x_f[t] = F→(x)[t] + flip(F←(flip(x)))[t]

with F→ and F← two filters of the same kind and size, each with its own parameters: F→ sees
x[0 … t], F← sees x[t … L−1] (time-reversed), so x_f[t] depends on the whole sequence. MEGA does this
for its LRA image models (``MultiHeadEMA(bidirectional=True)`` in facebookresearch/mega,
``fairseq/modules/exponential_moving_average.py``: a forward kernel and a flipped backward kernel
summed into one two-sided convolution, with 2× the EMA parameters). Here the wrapper holds two whole
filter modules instead, so it applies to every head that does not read the hypernetwork's shared
bin embedding (``selective``, ``static``, ``ema``): that embedding is computed left to right.

Padding: with a padding mask (B, L), True at pads anywhere in a row, each direction filters the row's
real positions packed to the front — in time order for F→, in reverse for F← — with the pads zeroed
behind them, and the outputs go back to their positions. So F← starts at each sequence's last real
token and neither direction reads a pad at a real position, however much padding a batch adds (the
pads are not zero inside the stack: a LayerNorm and every block change them). The stack passes the
mask (``FocusStack`` masks its own right padding too), so a sequence gives the same outputs alone,
padded, or beside longer ones (``tests/test_bidirectional_padding.py``). Exact for a filter causal on
its input, and for ``--iir-mode paper``'s circular bins on x (zeros add nothing to a bin); the product
path's biases make its pads non-zero, which paper mode's circular bins would read.

Not causal, so no streaming; a causal task refuses ``--bidirectional-filter`` at build time
(``models/focus_lm.py`` :func:`check_causal`). Layout: x (B, L, D) in and out.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from .global_filter import build_filter
from .hypernetwork import HyperEncoder
from .streaming import IncrementalState, StreamingModule


def real_first(padding_mask: Tensor, reverse: bool) -> Tensor:
    """order (B, L): per row the indices of the real positions (in time order, or reversed), then those of
    the pads (in time order); x.gather(1, order) packs a row's real positions to the front."""
    length = padding_mask.size(1)
    t = torch.arange(length, device=padding_mask.device)
    real_rank = length - 1 - t if reverse else t  # in [0, L): the real positions sort first
    return torch.where(padding_mask, length + t, real_rank).argsort(dim=1)


def _gather_time(x: Tensor, order: Tensor) -> Tensor:
    """x (B, L, D), order (B, L) -> x[b, order[b, i]] (B, L, D)."""
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


def filter_packed(filt: nn.Module, x: Tensor, padding_mask: Tensor, reverse: bool) -> Tensor:
    """``filt`` over each row's real positions packed to the front (reversed for F←), pads zeroed behind
    them, its output put back in place: (B, L, D) -> (B, L, D)."""
    order = real_first(padding_mask, reverse)  # (B, L)
    packed = _gather_time(x, order).masked_fill(padding_mask.gather(1, order).unsqueeze(-1), 0.0)
    return _gather_time(filt(packed, None), order.argsort(dim=1))  # the inverse permutation


class BidirectionalFilter(StreamingModule):
    """F→(x) + flip(F←(flip(x))) along time (dim 1 of (B, L, D)), each over the real positions only."""

    takes_padding_mask = True  # GatedAttention hands it the block's padding mask

    def __init__(self, forward_filter: nn.Module, backward_filter: nn.Module):
        super().__init__()
        self.forward_filter = forward_filter
        self.backward_filter = backward_filter

    def forward(self, x: Tensor, e: Optional[Tensor], padding_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, L, D), padding_mask (B, L) True at pads or None -> (B, L, D); e is ignored (no hypernetwork
        head here, see the module docstring). Outputs at pads are not meaningful."""
        if padding_mask is None:
            reverse = self.backward_filter(x.flip(1), None).flip(1)  # (B, L, D), reads x[t …] at t
            return self.forward_filter(x, None) + reverse
        return (filter_packed(self.forward_filter, x, padding_mask, reverse=False)
                + filter_packed(self.backward_filter, x, padding_mask, reverse=True))

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        raise ValueError("--bidirectional-filter reads later samples, so it cannot stream; stream a causal model")


def build_block_filter(cfg, own_encoder: Optional[HyperEncoder]) -> nn.Module:
    """The filter of one block: ``build_filter``'s, or two of them run both ways with
    ``--bidirectional-filter`` (``config.validate`` has refused the hypernetwork heads there)."""
    if not getattr(cfg, "bidirectional_filter", False):
        return build_filter(cfg, own_encoder)
    return BidirectionalFilter(build_filter(cfg, None), build_filter(cfg, None))
