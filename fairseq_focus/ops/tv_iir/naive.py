"""The reference form of the time-varying order-2 IIR op (the package docstring has the math): one step per sample,
gradients by torch autograd. Also what every form shares: the argument checks, the forms and the chunk length."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..precision import compute_dtype, no_autocast

FORMS = ("lattice", "companion")
# C, the op's one chunk length, of two tiers that both cut time into chunks: the chunked torch scan's in-chunk
# length (C stepwise steps inside every chunk, then a log₂(L/C) scan across chunks) and the fused kernels'
# checkpoint interval (one saved state per C steps, 1/C of a per-sample Θ's memory; the backward recomputes a
# chunk's C states from it). No result depends on it. The per-bin carry path once used a second value (64, the
# default bin size) with no measurement behind either: it now takes function.checkpoint_interval(R).
CHUNK = 32


def check(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor], form: str = "lattice",
          chunk: int = CHUNK) -> None:
    """Validate the arguments every form takes (the package glossary's shapes, Θ per sample)."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if x.dim() != 3 or theta.dim() != 5 or theta.size(-1) != 2:
        raise ValueError(f"expected x (B, D, L) and theta (B, L, D, F, 2), got {tuple(x.shape)} and {tuple(theta.shape)}")
    bsz, dim, length = x.shape
    if theta.shape[:3] != (bsz, length, dim):
        raise ValueError(f"theta {tuple(theta.shape)} does not give one Θ per sample of x {tuple(x.shape)}")
    if gain is not None and gain.shape != (bsz, length, dim):
        raise ValueError(f"gain {tuple(gain.shape)} must be (B, L, D) = {(bsz, length, dim)}")
    if state is not None and state.shape != (bsz, dim, theta.size(3), 2):
        raise ValueError(f"state {tuple(state.shape)} must be (B, D, F, 2) = {(bsz, dim, theta.size(3), 2)}")


def lattice_coefficients(theta: Tensor):
    """Θ (..., 2) -> (k1, k2, c1, c2) (...,) each: reflection coefficients by the step-down recursion and
    c = √((1 − k)(1 + k)) (the factored form keeps precision near |k| = 1)."""
    k2 = theta[..., 1]
    k1 = theta[..., 0] / (1.0 + k2)
    return k1, k2, torch.sqrt((1.0 - k1) * (1.0 + k1)), torch.sqrt((1.0 - k2) * (1.0 + k2))


def iir_step(x_t: Tensor, theta_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One sample of the companion form (eq. 32), for decoding and the loops.

    x_t: (B, D), theta_t: (B, D, F, 2), state: (B, D, F, 2) = (y_f[t−1], y_f[t−2]) or None (zeros).
    Returns y_t (B, D) summed over F and the new state (B, D, F, 2).
    """
    dtype = compute_dtype(x_t)
    with no_autocast(x_t):
        theta_t = theta_t.to(dtype)
        xs = x_t.to(dtype).unsqueeze(-1)  # (B, D, 1): the same input drives every filter
        if state is None:
            y_f = xs.expand(theta_t.shape[:-1])
            prev1 = torch.zeros_like(y_f)
        else:
            state = state.to(dtype)
            prev1 = state[..., 0]
            y_f = xs - theta_t[..., 0] * prev1 - theta_t[..., 1] * state[..., 1]
        new_state = torch.stack([y_f, prev1], dim=-1)
    return y_f.sum(-1).to(x_t.dtype), new_state.to(x_t.dtype)


def lattice_step(x_t: Tensor, theta_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One sample of the normalized lattice, written as its two rotations (the package docstring's stage
    equations, not the state matrix the scans use). x_t (B, D) = g·x, theta_t (B, D, F, 2), state (B, D, F, 2) =
    (y[t−1], g_1[t−1]) or None (zeros). Returns y_t (B, D) summed over F and the new state."""
    dtype = compute_dtype(x_t)
    with no_autocast(x_t):
        k1, k2, c1, c2 = lattice_coefficients(theta_t.to(dtype))
        f2 = x_t.to(dtype).unsqueeze(-1) / (c1 * c2)  # the input, scaled so a constant Θ gives 1 / A(z)
        y_prev, g1_prev = (torch.zeros_like(f2), torch.zeros_like(f2)) if state is None else \
            (state[..., 0].to(dtype), state[..., 1].to(dtype))
        f1 = c2 * f2 - k2 * g1_prev  # stage 2
        f0 = c1 * f1 - k1 * y_prev  # stage 1; y = f_0 = g_0
        g1 = k1 * f1 + c1 * y_prev
        new_state = torch.stack([f0, g1], dim=-1)
    return f0.sum(-1).to(x_t.dtype), new_state.to(x_t.dtype)


STEPS = {"companion": iir_step, "lattice": lattice_step}


def empty_result(x: Tensor, theta: Tensor, state: Optional[Tensor], return_state: bool):
    """The result for L = 0: an empty output and the state unchanged (zeros for none)."""
    y = x.new_zeros(x.shape)
    if not return_state:
        return y
    return y, x.new_zeros(x.size(0), x.size(1), theta.size(3), 2) if state is None else state.to(x.dtype)


def tv_iir_filter_ref(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                      return_state: bool = False, chunk: int = CHUNK, form: str = "lattice"):
    """Slow reference twin of :func:`~.function.tv_iir_filter` (same signature; ``chunk`` is ignored): one step
    per sample with that sample's Θ (:func:`iir_step` for ``companion``, :func:`lattice_step`)."""
    check(x, theta, gain, state, form)
    dtype = compute_dtype(x)
    xd = x.to(dtype)
    if gain is not None:
        xd = xd * gain.to(dtype).transpose(1, 2)
    outputs, st = [], None if state is None else state.to(dtype)
    for t in range(x.size(-1)):
        y_t, st = STEPS[form](xd[..., t], theta[:, t].to(dtype), st)
        outputs.append(y_t)
    if not outputs:
        return empty_result(x, theta, state, return_state)
    y = torch.stack(outputs, dim=-1).to(x.dtype)
    return (y, st.to(x.dtype)) if return_state else y
