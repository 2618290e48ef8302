"""Regularized causal long convolution: the global part of the hypernetwork (paper eq. 2).

Following Fu et al. 2023 ("Simple hardware-efficient long convolutions"), each channel d owns an
explicit kernel k_d of a fixed maximum length K, regularized at every use by

    squash(k) = sign(k) · relu(|k| − λ)          (sparsifies small taps)
    smooth(k) = AvgPool_w(k)                      (low-pass over the taps)

and applied causally: y[t] = Σ_{j<K} k[j] · x[t−j]. The FFT path zero-pads to ≥ L + K, so the
convolution is linear, never circular. Because K is fixed, nothing about position t depends on
the total length L (DESIGN.md "Length independence").

Shapes: x (B, D, L), kernel (D, K) -> (B, D, L).

Streaming (:func:`causal_conv_stream`): only the last K − 1 inputs ever reach a new output, so a
stream is continued from a history buffer of that many inputs (zeros before the stream starts,
exactly the zero padding of the parallel path).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fft_conv import fft_causal_conv
from .precision import compute_dtype, no_autocast


def regularize_kernel(kernel: Tensor, squash_lambda: float, smooth_width: int) -> Tensor:
    """squash then smooth (Fu et al. 2023, §3.2); smooth_width 1 and λ = 0 leave k unchanged."""
    if squash_lambda > 0:
        kernel = torch.sign(kernel) * F.relu(kernel.abs() - squash_lambda)
    if smooth_width > 1:
        pad = smooth_width // 2
        kernel = F.avg_pool1d(kernel.unsqueeze(0), smooth_width, stride=1, padding=pad, count_include_pad=False)
        kernel = kernel.squeeze(0)[..., : kernel.size(-1)]
    return kernel


def causal_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel causal linear convolution by FFT (computed in fp32 or fp64); kernel (D, K)."""
    length = x.size(-1)
    dtype = compute_dtype(x)
    with no_autocast(x):
        return fft_causal_conv(x.to(dtype), kernel[..., :length].to(dtype)).to(x.dtype)


def causal_conv_ref(x: Tensor, kernel: Tensor) -> Tensor:
    """Reference twin of :func:`causal_conv`: the sum over taps, one shifted copy per tap."""
    length = x.size(-1)
    out = torch.zeros_like(x)
    for j in range(min(kernel.size(-1), length)):
        out[..., j:] += kernel[:, j : j + 1] * x[..., : length - j]
    return out


def causal_conv_stream(x: Tensor, kernel: Tensor, history: Tensor) -> Tuple[Tensor, Tensor]:
    """Continue a causal convolution over n new inputs of a stream.

    x: (B, D, n); kernel: (D, K); history: (B, D, K−1), the previous K−1 inputs (zeros before the
    start). Returns y (B, D, n) and the new history (B, D, K−1). One input costs O(D·K) by a dot
    product; a longer segment goes through :func:`causal_conv` on [history, x].
    """
    ksize = kernel.size(-1)
    if history.size(-1) != ksize - 1:
        raise ValueError(f"history holds {history.size(-1)} inputs, the kernel needs {ksize - 1}")
    full = torch.cat([history, x], dim=-1)  # (B, D, K−1+n)
    if x.size(-1) == 1:
        dtype = compute_dtype(x)
        with no_autocast(x):
            # y[t] = Σ_j k[j] x[t−j]: the last K inputs, newest first, against the taps
            window = full.to(dtype).flip(-1)  # (B, D, K)
            y = torch.einsum("bdk,dk->bd", window, kernel.to(dtype)).unsqueeze(-1).to(x.dtype)
    else:
        y = causal_conv(full, kernel)[..., ksize - 1:]
    return y, full[..., full.size(-1) - (ksize - 1):]


def causal_conv_stream_ref(x: Tensor, kernel: Tensor, history: Tensor) -> Tuple[Tensor, Tensor]:
    """Reference twin of :func:`causal_conv_stream`: the tap sum over [history, x]."""
    ksize = kernel.size(-1)
    full = torch.cat([history, x], dim=-1)
    return causal_conv_ref(full, kernel)[..., ksize - 1:], full[..., full.size(-1) - (ksize - 1):]
