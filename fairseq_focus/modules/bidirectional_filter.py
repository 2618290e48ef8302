"""A global filter run both ways over the sequence, for whole-sequence classification.

    x_f[t] = F→(x)[t] + flip(F←(flip(x)))[t]

with F→ and F← two filters of the same kind and size, each with its own parameters: F→ sees
x[0 … t], F← sees x[t … L−1] (time-reversed), so x_f[t] depends on the whole sequence. MEGA does this
for its LRA image models (``MultiHeadEMA(bidirectional=True)`` in facebookresearch/mega,
``fairseq/modules/exponential_moving_average.py``: a forward kernel and a flipped backward kernel
summed into one two-sided convolution, with 2× the EMA parameters). Here the wrapper holds two whole
filter modules instead, so it applies to every head that does not read the hypernetwork's shared
bin embedding (``selective``, ``static``, ``ema``): that embedding is computed left to right.

Not causal, so no streaming; a causal task refuses ``--bidirectional-filter`` at build time
(``models/focus_lm.py`` :func:`check_causal`). Layout: x (B, L, D) in and out; L whole sequences of
equal length (the classifier's images), so the stack's right padding (zeros, when L is not a whole
number of chunks) comes *first* in the reversed pass.
"""
from typing import Optional

from torch import Tensor, nn

from .global_filter import build_filter
from .hypernetwork import HyperEncoder
from .streaming import IncrementalState, StreamingModule


class BidirectionalFilter(StreamingModule):
    """F→(x) + flip(F←(flip(x))) along time (dim 1 of (B, L, D))."""

    def __init__(self, forward_filter: nn.Module, backward_filter: nn.Module):
        super().__init__()
        self.forward_filter = forward_filter
        self.backward_filter = backward_filter

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D) -> (B, L, D); e is ignored (no hypernetwork head here, see the module docstring)."""
        reverse = self.backward_filter(x.flip(1), None).flip(1)  # (B, L, D), reads x[t …] at t
        return self.forward_filter(x, None) + reverse

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        raise ValueError("--bidirectional-filter reads later samples, so it cannot stream; stream a causal model")


def build_block_filter(cfg, own_encoder: Optional[HyperEncoder]) -> nn.Module:
    """The filter of one block: ``build_filter``'s, or two of them run both ways with
    ``--bidirectional-filter`` (``config.validate`` has refused the hypernetwork heads there)."""
    if not getattr(cfg, "bidirectional_filter", False):
        return build_filter(cfg, own_encoder)
    return BidirectionalFilter(build_filter(cfg, None), build_filter(cfg, None))
