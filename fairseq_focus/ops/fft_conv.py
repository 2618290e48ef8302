"""Causal linear convolution by FFT with a hand-written backward (shared by the IIR bins, the
hypernetwork's long convolution and MEGA's EMA).

    y[t] = Σ_{j ≤ t} k[j] · x[t − j],   t < L,   x (..., L), k broadcastable to (..., ≤ L)

With both signals zero-padded to n ≥ L + len(k), the circular products below are exact linear
convolutions/correlations, never circular:

    y  = IFFT(X · K)[:L]          ∂x = IFFT(G · conj K)[:L]          ∂k = IFFT(G · conj X)[:len(k)]

where G is the FFT of the padded output gradient. The backward is written out because autograd's own
backward of ``rfft(n=...)``/``irfft`` pads batched inputs on a slow path; padding explicitly keeps every
transform on the fast one. :func:`causal_conv_ref` in ``long_conv.py`` is the reference twin.
"""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _spectrum(t: Tensor, n: int) -> Tensor:
    return torch.fft.rfft(F.pad(t, (0, n - t.size(-1))))


class _CausalFFTConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, k: Tensor, n: int) -> Tensor:
        length = x.size(-1)
        xs, ks = _spectrum(x, n), _spectrum(k, n)
        ctx.save_for_backward(xs, ks)
        ctx.length, ctx.k_shape, ctx.n = length, k.shape, n
        return torch.fft.irfft(xs * ks, n=n)[..., :length]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        xs, ks = ctx.saved_tensors
        gs = _spectrum(grad.contiguous(), ctx.n)
        dx = dk = None
        if ctx.needs_input_grad[0]:
            dx = torch.fft.irfft(gs * torch.conj_physical(ks), n=ctx.n)[..., : ctx.length]
        if ctx.needs_input_grad[1]:
            dk = torch.fft.irfft(gs * torch.conj_physical(xs), n=ctx.n)[..., : ctx.k_shape[-1]].sum_to_size(ctx.k_shape)
        return dx, dk, None


def fast_fft_length(n: int) -> int:
    """The smallest 2·3·5-smooth integer ≥ n (FFTs of such lengths are fast; 17·2¹⁰ is not)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_causal_conv(x: Tensor, k: Tensor) -> Tensor:
    """Causal linear convolution of x (..., L) with k (..., K ≤ L), output (..., L), by FFT of a fast
    size ≥ L + K."""
    if k.size(-1) > x.size(-1):
        raise ValueError(f"kernel length {k.size(-1)} exceeds the sequence length {x.size(-1)}; truncate it first")
    return _CausalFFTConv.apply(x, k, fast_fft_length(x.size(-1) + k.size(-1)))
