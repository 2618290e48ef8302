"""Causal depthwise short convolution (kernel K of 2–4 taps), channels last.

    y[t, c] = Σ_{i=0}^{K−1} w[c, i] · x[t − i, c],   x[s] = 0 for s < 0

Tap w[c, 0] weighs the current input, w[c, i] the input i steps back: the same convention as
``ops/long_conv.py`` (whose FFT path is for kernels as long as the sequence; here K is a handful of
taps, so one grouped ``conv1d`` is cheaper). This is the short convolution that recall layers put
before their key-value product (H3's shift SSM, Hyena's and Based's kernel-3 convolutions, DeltaNet's
kernel-4 one): it lets the key at t carry the token at t − 1, the one a value follows.

Shapes: x (B, L, C), weight (C, K) -> (B, L, C).

Streaming (:func:`short_conv_stream`): only the last K − 1 inputs reach a new output, so a stream is
continued from a history of that many inputs, (B, K − 1, C), zeros before the stream starts (exactly
the zero padding of the parallel path).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(x: Tensor, weight: Tensor) -> None:
    if x.dim() != 3 or weight.dim() != 2 or weight.size(0) != x.size(-1) or weight.size(1) < 1:
        raise ValueError(f"short_conv needs x (B, L, C) and weight (C, K ≥ 1), "
                         f"got {tuple(x.shape)}, {tuple(weight.shape)}")


def short_conv(x: Tensor, weight: Tensor) -> Tensor:
    """Fast path: one grouped conv1d over x left-padded by K − 1 zeros."""
    _check(x, weight)
    ksize = weight.size(1)
    xt = F.pad(x.transpose(1, 2), (ksize - 1, 0))  # (B, C, K−1+L)
    # conv1d correlates: out[t] = Σ_j w'[j] x_pad[t + j]; w' = w flipped puts w[0] on x[t]
    y = F.conv1d(xt, weight.flip(-1).unsqueeze(1).to(x.dtype), groups=x.size(-1))  # (B, C, L)
    return y.transpose(1, 2)


def short_conv_ref(x: Tensor, weight: Tensor) -> Tensor:
    """Reference twin: the sum over taps, one shifted copy of x per tap."""
    _check(x, weight)
    out = torch.zeros_like(x)
    length = x.size(1)
    for i in range(min(weight.size(1), length)):
        out[:, i:] += weight[:, i] * x[:, : length - i]
    return out


def short_conv_stream(x: Tensor, weight: Tensor, history: Tensor) -> Tuple[Tensor, Tensor]:
    """Continue the convolution over n new inputs x (B, n, C) after ``history`` (B, K − 1, C), the
    previous K − 1 inputs. Returns y (B, n, C), equal to :func:`short_conv` on the whole stream at
    these positions, and the new history (the last K − 1 inputs of [history, x])."""
    _check(x, weight)
    ksize = weight.size(1)
    if history.shape != (x.size(0), ksize - 1, x.size(-1)):
        raise ValueError(f"short conv history must be {(x.size(0), ksize - 1, x.size(-1))}, got {tuple(history.shape)}")
    full = torch.cat([history.to(x.dtype), x], dim=1)  # (B, K−1+n, C)
    y = short_conv(full, weight)[:, ksize - 1:]
    return y, full[:, full.size(1) - (ksize - 1):]
