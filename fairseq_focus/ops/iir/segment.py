"""Streaming the per-bin IIR op: n new samples of a stream from its state, at any offset inside a bin (decoding
with ``incremental_state``), and its loop twin."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..segments import split_at_boundaries
from ..tv_iir.naive import iir_step
from .bins import iir_filter
from .naive import CAUSAL_MODES


def _check_segment(x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str) -> None:
    if mode not in CAUSAL_MODES:
        raise ValueError(f"streaming needs a causal iir mode {CAUSAL_MODES}, got {mode!r}")
    if not 0 <= offset < bin_size:
        raise ValueError(f"offset {offset} is not inside a bin of {bin_size}")
    needed = (offset + x.size(-1) + bin_size - 1) // bin_size
    if theta.size(1) != needed:
        raise ValueError(f"{x.size(-1)} samples from offset {offset} touch {needed} bins, got Θ for {theta.size(1)}")


def iir_filter_segment(
    x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str, state: Optional[Tensor] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Continue the recursion (eq. 32) over n new samples of a stream, with its state (fast path).

    Args:
        x: (B, D, n), the samples at stream positions p … p+n−1.
        theta: (B, T, D, F, 2), Θ of the T bins those samples touch, in order.
        offset: p mod R, where the first sample sits inside its bin.
        bin_size: R.
        mode: ``causal`` (state reset at every bin start) or ``carry``.
        state: (B, D, F, 2), (y_f[p−1], y_f[p−2]) left by the previous samples, or None (zeros).

    Returns y (B, D, n) and the state after the last sample (None when n = 0 and no state came in).

    The samples are cut at bin boundaries (ops/segments.py); whole bins go through
    :func:`~.bins.iir_filter`, the partial bins at either end through a one-bin ``iir_filter`` with the
    state carried in (within one bin ``causal`` and ``carry`` are the same recursion), and a single
    sample through :func:`iir_step`.
    """
    _check_segment(x, theta, offset, bin_size, mode)
    outputs, start, bin_idx = [], 0, 0
    for kind, length in zip(("head", "middle", "tail"), split_at_boundaries(offset, x.size(-1), bin_size)):
        if length == 0:
            continue
        if mode == "causal" and (kind != "head" or offset == 0):
            state = None  # a bin starts here
        nbins = length // bin_size if kind == "middle" else 1
        y, state = _segment_part(x[..., start:start + length], theta[:, bin_idx:bin_idx + nbins], mode, state,
                                 whole_bins=kind == "middle")
        outputs.append(y)
        start += length
        bin_idx += nbins
    if not outputs:
        return x.clone(), state
    return torch.cat(outputs, dim=-1), state


def _segment_part(xs: Tensor, theta: Tensor, mode: str, state: Optional[Tensor],
                  whole_bins: bool) -> Tuple[Tensor, Tensor]:
    """One part of a segment: whole bins (x (B, D, Nbins·R), Θ (B, Nbins, D, F, 2)) or a piece of one bin."""
    if whole_bins:
        return iir_filter(xs, theta, mode, state=None if mode == "causal" else state, return_state=True)
    if xs.size(-1) == 1:
        y, state = iir_step(xs[..., 0], theta[:, 0], state)
        return y.unsqueeze(-1), state
    # a partial bin: one time-invariant filter from `state` (within a bin causal and carry agree)
    return iir_filter(xs, theta, "carry", state=state, return_state=True)


def iir_filter_segment_ref(
    x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str, state: Optional[Tensor] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Slow reference twin of :func:`iir_filter_segment`: one :func:`iir_step` per sample."""
    _check_segment(x, theta, offset, bin_size, mode)
    outputs = []
    for t in range(x.size(-1)):
        position = offset + t
        if mode == "causal" and position % bin_size == 0:
            state = None
        y_t, state = iir_step(x[..., t], theta[:, position // bin_size], state)
        outputs.append(y_t)
    if not outputs:
        return x.clone(), state
    return torch.stack(outputs, dim=-1), state
