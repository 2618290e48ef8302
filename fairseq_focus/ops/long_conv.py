"""Regularized causal long convolution: the global part of the hypernetwork (paper eq. 2).

Following Fu et al. 2023 ("Simple hardware-efficient long convolutions"), each channel d owns an
explicit kernel k_d of a fixed maximum length K, regularized at every use by

    squash(k) = sign(k) · relu(|k| − λ)          (sparsifies small taps)
    smooth(k) = AvgPool_w(k)                      (low-pass over the taps)

and applied causally: y[t] = Σ_{j<K} k[j] · x[t−j]. The FFT path zero-pads to ≥ L + K, so the
convolution is linear, never circular. Because K is fixed, nothing about position t depends on
the total length L (DESIGN.md "Length independence").

Shapes: x (B, D, L), kernel (D, K) -> (B, D, L).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .fft_conv import fft_causal_conv


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
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        return fft_causal_conv(x.to(dtype), kernel[..., :length].to(dtype)).to(x.dtype)


def causal_conv_ref(x: Tensor, kernel: Tensor) -> Tensor:
    """Reference twin of :func:`causal_conv`: the sum over taps, one shifted copy per tap."""
    length = x.size(-1)
    out = torch.zeros_like(x)
    for j in range(min(kernel.size(-1), length)):
        out[..., j:] += kernel[:, j : j + 1] * x[..., : length - j]
    return out
