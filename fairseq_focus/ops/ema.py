"""MEGA's multi-head damped EMA (Ma et al. 2022, eq. 2-3), the baseline filter of the ``ema`` variant.

Each channel d is expanded into N dimensions by β, each runs a damped EMA, and γ projects back:

    h_n[t] = p_n β_n x[t] + q_n h_n[t−1],     p = sigmoid(δ), q = 1 − p·sigmoid(α) ∈ (0, 1)
    y[t]   = Σ_n γ_n h_n[t]                    (the module folds MEGA's 1/√N scale into γ)

which is a causal convolution with the kernel k[t] = Σ_n γ_n p_n β_n q_nᵗ. The module adds ω·x and
applies SiLU, as MEGA does.

Shapes: x (B, D, L); p, q, beta (D, N); gamma (D, N) -> (B, D, L); state (B, D, N).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .long_conv import causal_conv
from .precision import compute_dtype


def ema_kernel(p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor, length: int) -> Tensor:
    """k[d, t] = Σ_n γ[d,n] · p[d,n] β[d,n] · q[d,n]ᵗ for t < length -> (D, length)."""
    t = torch.arange(length, device=p.device, dtype=p.dtype)
    powers = torch.exp(t.view(1, 1, -1) * torch.log(q).unsqueeze(-1))  # (D, N, L)
    return torch.einsum("dnl,dn->dl", powers, p * beta * gamma)


def ema_filter(x: Tensor, p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor, return_state: bool = False):
    """Fast path: the EMA as an FFT convolution; optionally also the final per-dimension state.
    The kernel is built in fp32 (fp64 stays fp64) even when the parameters are half precision."""
    length = x.size(-1)
    dtype = compute_dtype(p)
    p, q, beta, gamma = (t.to(dtype) for t in (p, q, beta, gamma))
    y = causal_conv(x, ema_kernel(p, q, beta, gamma, length))
    if not return_state:
        return y
    # h_n[L−1] = Σ_k p β q^{L−1−k} x[k]
    t = torch.arange(length, device=x.device, dtype=p.dtype).flip(0)
    weights = p.unsqueeze(-1) * beta.unsqueeze(-1) * torch.exp(t * torch.log(q).unsqueeze(-1))  # (D, N, L)
    return y, torch.einsum("bdl,dnl->bdn", x.to(p.dtype), weights).to(x.dtype)


def ema_step(x_t: Tensor, p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """One step of the recursion: x_t (B, D), state (B, D, N) or None -> y_t (B, D), new state."""
    h = p * beta * x_t.unsqueeze(-1)
    if state is not None:
        h = h + q * state
    return torch.einsum("bdn,dn->bd", h, gamma), h


def ema_filter_ref(x: Tensor, p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor, return_state: bool = False):
    """Reference twin of :func:`ema_filter`: a loop over time with :func:`ema_step`."""
    state, out = None, []
    for t in range(x.size(-1)):
        y_t, state = ema_step(x[..., t], p, q, beta, gamma, state)
        out.append(y_t)
    y = torch.stack(out, dim=-1)
    return (y, state) if return_state else y


def ema_filter_stream(x: Tensor, p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor,
                      state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Continue the EMA over n new inputs x (B, D, n) from ``state`` (B, D, N) or None (zeros).

    By linearity, y = (zero-state response) + Σ_n γ_n q_nᵗ⁺¹ s_n and the new state is
    (zero-state end state) + qⁿ s. One input goes through :func:`ema_step`.
    """
    if x.size(-1) == 1:
        y, state = ema_step(x[..., 0], p, q, beta, gamma, state)
        return y.unsqueeze(-1), state
    y, end = ema_filter(x, p, q, beta, gamma, return_state=True)
    if state is None:
        return y, end
    t = torch.arange(1, x.size(-1) + 1, device=x.device, dtype=q.dtype)
    decay = torch.exp(t * torch.log(q).unsqueeze(-1))  # q^{t+1}, (D, N, n)
    y = y + torch.einsum("bdn,dn,dnl->bdl", state, gamma, decay).to(y.dtype)
    return y, end + decay[..., -1] * state


def ema_filter_stream_ref(x: Tensor, p: Tensor, q: Tensor, beta: Tensor, gamma: Tensor,
                          state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Reference twin of :func:`ema_filter_stream`: a loop of :func:`ema_step`."""
    out = []
    for t in range(x.size(-1)):
        y_t, state = ema_step(x[..., t], p, q, beta, gamma, state)
        out.append(y_t)
    return torch.stack(out, dim=-1), state
