"""One Θ for the whole sequence (the static head, Focus-H, in ``carry`` mode): a time-invariant filter, y = h ∗ x
over the whole length L, which :func:`iir_filter_lti` makes ONE causal FFT convolution (``ops/fft_conv.py``, as
MEGA's EMA), a fixed number of operator calls whatever L.

Its h comes from the closed form (:func:`impulse_response`): with the poles p1, p2 of z² + θ0 z + θ1 labelled
|p2| ≥ |p1| and q = p1/p2 (|q| ≤ 1),

    h[n] = Σ_{k≤n} p1ᵏ p2ⁿ⁻ᵏ = p2ⁿ · (q^{n+1} − 1)/(q − 1),    p2ⁿ = exp(n log p2),
    q^{n+1} − 1 = expm1((n+1)·log1p(q − 1)),   q − 1 = (p1 − p2)/p2 = ±√(θ0² − 4θ1)/p2,

in complex arithmetic, whose ratio tends to n + 1 at a double pole (q = 1, taken exactly). Its gradient is exact
everywhere, double poles included: differentiating h[n] + θ0 h[n−1] + θ1 h[n−2] = δ[n] gives ∂h[n]/∂θ0 =
−(h∗h)[n−1] and ∂h[n]/∂θ1 = −(h∗h)[n−2], one more FFT convolution. :func:`~.companion.companion_rows` and the
loop (:func:`iir_filter_lti_ref`) are the twins.
"""
from typing import Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..fft_conv import fft_causal_conv
from ..long_conv import causal_conv
from ..precision import compute_dtype, no_autocast
from .naive import iir_filter_ref

LOG_FLOOR = -80.0  # log|q| is floored here: |q| < e⁻⁸⁰ adds under e⁻⁸⁰ to any tap, and q = 0 stays finite


def _discriminant(t0: Tensor, t1: Tensor) -> Tensor:
    """θ0² − 4θ1 = (p1 − p2)², without the cancellation of the naive form near a double pole.

    θ0 is split (Veltkamp) into a high half of ≤ 12 (fp32) / 27 (fp64) bits and the rest, so every
    product below is exact and hi² − 4θ1 cancels exactly (Sterbenz); the error is then ε·|disc| plus
    ~ε·2⁻¹¹·θ0², not ε·θ0² (which would put an error of √ε on the poles of a near-double pair).
    """
    split = 4097.0 if t0.dtype == torch.float32 else 134217729.0  # 2^⌈p/2⌉ + 1
    c = t0 * split
    hi = c - (c - t0)
    lo = t0 - hi
    return (hi * hi - 4.0 * t1) + (2.0 * hi * lo + lo * lo)


def _pole_logs(theta: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(log p2, log q, q − 1), complex, each (..., 1), for Θ (..., 2) (module docstring).

    p2 = −(θ0 + σ√disc)/2 with σ = ±1 chosen so that the two terms do not cancel: p2 is the larger
    pole, and p1 − p2 = σ√disc directly, so q − 1 = σ√disc / p2 is exactly 0 at a double pole and
    accurate near one. Θ = (0, 0) (both poles 0) gets p2 = tiny, whose powers vanish (h = δ); q = 0
    (θ1 = 0) gets log q floored at LOG_FLOOR.
    """
    ctype = torch.complex128 if theta.dtype == torch.float64 else torch.complex64
    t0, t1 = theta[..., 0:1], theta[..., 1:2]  # (..., 1)
    root = torch.sqrt(_discriminant(t0, t1).to(ctype))
    sign = torch.where(t0 * root.real >= 0, 1.0, -1.0).to(theta.dtype)
    p2 = -(t0 + sign * root) / 2.0
    p2 = torch.where(p2 == 0, torch.finfo(theta.dtype).tiny, p2)
    q_minus_1 = sign * root / p2
    log_q = torch.log1p(q_minus_1)
    log_q = torch.complex(log_q.real.clamp_min(LOG_FLOOR), log_q.imag)
    return torch.log(p2), log_q, q_minus_1


def _impulse_closed_form(theta: Tensor, n: int) -> Tensor:
    """h[t] = Re p2ᵗ · (q^{t+1} − 1)/(q − 1), t < n, Θ (..., 2) -> (..., n); the ratio is t + 1 where q = 1."""
    log_p2, log_q, q_minus_1 = _pole_logs(theta)  # (..., 1) each
    t = torch.arange(n, dtype=theta.dtype, device=theta.device)  # (n,)
    double = q_minus_1 == 0
    safe = torch.where(double, torch.ones_like(q_minus_1), q_minus_1)
    ratio = torch.where(double, (t + 1.0).to(safe.dtype), torch.expm1((t + 1.0) * log_q) / safe)  # (..., n)
    return (torch.exp(t * log_p2) * ratio).real


class _ImpulseResponse(torch.autograd.Function):
    """h (..., n) from Θ (..., 2) by the closed form; backward from the recursion's derivative:
    ∂h[t]/∂θ0 = −(h∗h)[t−1], ∂h[t]/∂θ1 = −(h∗h)[t−2] (module docstring), exact at double poles too."""

    @staticmethod
    def forward(ctx, theta: Tensor, n: int) -> Tensor:
        h = _impulse_closed_form(theta, n)
        ctx.save_for_backward(h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (h,) = ctx.saved_tensors
        hh = fft_causal_conv(h, h)  # (h ∗ h)[t], t < n: (..., n)
        d0 = -(grad[..., 1:] * hh[..., :-1]).sum(-1)  # Σ_t g[t] ∂h[t]/∂θ0
        d1 = -(grad[..., 2:] * hh[..., :-2]).sum(-1)
        return torch.stack([d0, d1], dim=-1), None


def impulse_response(theta: Tensor, n: int) -> Tensor:
    """h[t], t < n, of H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²) for Θ (..., 2) anywhere in the stability
    triangle: (..., n), in fp32 (fp64 for fp64 Θ) with autocast off.

    A fixed number of operator calls whatever n (the closed form of the module docstring), exact up
    to rounding: in fp32 the error at tap t is about t·ε·|arg p| of max|h| (the pole's angle rounded to
    fp32, turned t times; ≤ 7e-4 at n 16384 with |p| = ρ), the order of the fp32 recursion's own, where
    fp32 companion powers over the whole length blow up near |p| = 1. ``companion_rows`` is the twin.
    """
    with no_autocast(theta):
        return _ImpulseResponse.apply(theta.to(compute_dtype(theta)), n)


def iir_filter_lti(x: Tensor, theta: Tensor) -> Tensor:
    """``carry`` mode with one Θ for the whole sequence (a time-invariant filter): y = (Σ_F h_f) ∗ x.

    x: (B, D, L); theta: (D, F, 2) (or (B, D, F, 2)) -> y (B, D, L) in x's dtype. One causal FFT
    convolution (``long_conv.causal_conv``, fp32 under autocast), a fixed number of operator calls
    whatever L. Equal to ``iir_filter(x, Θ per bin, "carry")`` with no initial state.
    """
    if x.dim() != 3 or theta.dim() not in (3, 4) or theta.size(-1) != 2 or theta.size(-3) != x.size(1):
        raise ValueError(f"expected x (B, D, L) and theta (D, F, 2) or (B, D, F, 2), got {tuple(x.shape)} and "
                         f"{tuple(theta.shape)}")
    kernel = impulse_response(theta, x.size(-1)).sum(dim=-2)  # Σ_F: (..., D, F, L) -> (..., D, L)
    return causal_conv(x, kernel)


def iir_filter_lti_ref(x: Tensor, theta: Tensor) -> Tensor:
    """Slow reference twin of :func:`iir_filter_lti`: the loop of :func:`~.naive.iir_filter_ref` in ``carry``
    mode, Θ (D, F, 2) or (B, D, F, 2) as one bin over the whole sequence."""
    theta = theta.expand(x.size(0), *theta.shape[-3:]).unsqueeze(1)  # (B, 1, D, F, 2)
    return iir_filter_ref(x, theta, "carry")
