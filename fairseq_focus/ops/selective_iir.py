"""Time-varying order-2 IIR filter banks: Θ changes at every sample (the selective head's op).

Each of the F filters of a channel runs the recursion of eq. 32 with coefficients of its own at
every time step, and an input gain g[t] per channel (the "B" of a state-space model):

    y_f[t] = g[t]·x[t] − θ0_f[t]·y_f[t−1] − θ1_f[t]·y_f[t−2],        output  Σ_f y_f[t]   (eq. 7)

In state form s[t] = (y[t], y[t−1]) = A_t s[t−1] + (g[t]·x[t], 0), A_t = [[−θ0[t], −θ1[t]], [1, 0]]:
a 2×2 linear recurrence, so the pairs (A_t, b_t) compose associatively,
(A', b') ∘ (A, b) = (A'A, A'b + b'), and the whole sequence is one scan (Blelloch 1990; the same
structure as the selective scan of Mamba, Gu & Dao 2023, with a 2×2 block instead of a diagonal).

Fast path (:func:`tv_iir_filter`), chunked: the sequence is cut into chunks of C samples; inside
every chunk a Hillis–Steele scan (log₂C steps, all chunks at once) gives each sample's zero-start
state v[t] and the product P[t] = A_t…A_{chunk start}; a scan over the chunks' end pairs
(``ops/iir._linear_scan``, log₂(L/C) steps) gives the state S entering each chunk; then
s[t] = v[t] + P[t]·S. Every step is elementwise on (B, D, F, L) tensors: no loop over time.
The slow twin (:func:`tv_iir_filter_ref`) is a plain loop of :func:`~.iir.iir_step`.

Stability: Θ[t] comes from ``ops/theta.py``'s maps, so every A_t has its poles inside |p| ≤ ρ < 1.
(A product of stable time-varying matrices need not contract in general; in practice, and in the
tests, the states stay bounded; the margin keeps every frozen-time pole off the unit circle.)
The arithmetic runs in fp32 (fp64 stays fp64) with autocast off, like the other filters.

Glossary: x (B, D, L); theta (B, L, D, F, 2) = Θ per sample; gain (B, L, D) = g or None (g = 1);
state (B, D, F, 2) = (y_f[t−1], y_f[t−2]) before the first sample; C = ``chunk``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .iir import _linear_scan, iir_step
from .precision import compute_dtype, no_autocast

DEFAULT_CHUNK = 16


def _check(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor]) -> None:
    if x.dim() != 3 or theta.dim() != 5 or theta.size(-1) != 2:
        raise ValueError(f"expected x (B, D, L) and theta (B, L, D, F, 2), got {tuple(x.shape)} and {tuple(theta.shape)}")
    bsz, dim, length = x.shape
    if theta.shape[:3] != (bsz, length, dim):
        raise ValueError(f"theta {tuple(theta.shape)} does not give one Θ per sample of x {tuple(x.shape)}")
    if gain is not None and gain.shape != (bsz, length, dim):
        raise ValueError(f"gain {tuple(gain.shape)} must be (B, L, D) = {(bsz, length, dim)}")
    if state is not None and state.shape != (bsz, dim, theta.size(3), 2):
        raise ValueError(f"state {tuple(state.shape)} must be (B, D, F, 2) = {(bsz, dim, theta.size(3), 2)}")


def _chunk_scan(a0: Tensor, a1: Tensor, u: Tensor):
    """Inclusive scan inside chunks along the last axis: (..., C) each -> P[t] entries and v[t].

    a0, a1: −θ0, −θ1 per sample; u: the driven input g·x. Returns (p00, p01, p10, p11, v0, v1), the
    product A_t…A_0 and the zero-start state (y[t], y[t−1]) of every sample of every chunk. Shifting
    by ``step`` pads with the identity pair (I, 0), so every position combines uniformly.
    """
    p00, p01, p10, p11 = a0, a1, torch.ones_like(a0), torch.zeros_like(a0)
    v0, v1 = u, torch.zeros_like(u)
    step, n = 1, a0.size(-1)
    while step < n:
        def back(t: Tensor, fill: float) -> Tensor:  # entry t − step, the identity's beyond the start
            return F.pad(t[..., :-step], (step, 0), value=fill)
        q00, q01, q10, q11 = back(p00, 1.0), back(p01, 0.0), back(p10, 0.0), back(p11, 1.0)
        w0, w1 = back(v0, 0.0), back(v1, 0.0)
        v0, v1 = v0 + p00 * w0 + p01 * w1, v1 + p10 * w0 + p11 * w1
        p00, p01, p10, p11 = (p00 * q00 + p01 * q10, p00 * q01 + p01 * q11,
                              p10 * q00 + p11 * q10, p10 * q01 + p11 * q11)
        step *= 2
    return p00, p01, p10, p11, v0, v1


def tv_iir_filter(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                  return_state: bool = False, chunk: int = DEFAULT_CHUNK):
    """Filter x with a per-sample order-2 IIR bank (fast, chunked-scan path).

    Args:
        x: (B, D, L) real input.
        theta: (B, L, D, F, 2) coefficients, one Θ per sample, inside the stability triangle.
        gain: (B, L, D) input gain g[t] or None (1).
        state: (B, D, F, 2) initial (y[−1], y[−2]) per filter, or None (zeros).
        return_state: also return the state after the last sample (B, D, F, 2).
        chunk: C, the in-chunk scan length (any positive int; the result does not depend on it).

    Returns:
        y (B, D, L) in x's dtype, or (y, final_state).
    """
    _check(x, theta, gain, state)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    bsz, dim, length = x.shape
    dtype = compute_dtype(x)
    with no_autocast(x):
        u = x.to(dtype) if gain is None else x.to(dtype) * gain.to(dtype).transpose(1, 2)  # (B, D, L)
        th = theta.to(dtype).permute(0, 2, 3, 1, 4)  # (B, D, F, L, 2)
        c = max(1, min(chunk, length))
        pad = (-length) % c
        nchunks = (length + pad) // c
        # padded samples come after the real ones (A = 0-row, input 0): they change nothing before them
        a0 = F.pad(-th[..., 0], (0, pad)).view(bsz, dim, -1, nchunks, c)  # (B, D, F, N, C)
        a1 = F.pad(-th[..., 1], (0, pad)).view(bsz, dim, -1, nchunks, c)
        u = F.pad(u, (0, pad)).view(bsz, dim, 1, nchunks, c).expand_as(a0)
        p00, p01, p10, p11, v0, v1 = _chunk_scan(a0, a1, u)
        # chunk-end pairs, scanned over chunks: the state leaving chunk n
        ends_m = torch.stack([torch.stack([p00[..., -1], p01[..., -1]], -1),
                              torch.stack([p10[..., -1], p11[..., -1]], -1)], -2)  # (B, D, F, N, 2, 2)
        ends_v = torch.stack([v0[..., -1], v1[..., -1]], -1)  # (B, D, F, N, 2)
        if state is not None:  # fold the initial state into chunk 0's end
            first = ends_v[..., 0, :] + (ends_m[..., 0, :, :] @ state.to(dtype).unsqueeze(-1)).squeeze(-1)
            ends_v = torch.cat([first.unsqueeze(-2), ends_v[..., 1:, :]], dim=-2)
        leaving = _linear_scan(ends_m, ends_v)  # (B, D, F, N, 2)
        entering = F.pad(leaving[..., :-1, :], (0, 0, 1, 0))  # (B, D, F, N, 2)
        if state is not None:
            entering = torch.cat([state.to(dtype).unsqueeze(-2), entering[..., 1:, :]], dim=-2)
        s0, s1 = entering[..., 0:1], entering[..., 1:2]  # (B, D, F, N, 1)
        y_f = v0 + p00 * s0 + p01 * s1  # (B, D, F, N, C)
        y = y_f.sum(2).reshape(bsz, dim, -1)[..., :length].to(x.dtype)
        if not return_state:
            return y
        y_prev = v1 + p10 * s0 + p11 * s1
        flat = lambda t: t.reshape(bsz, dim, t.size(2), -1)[..., length - 1]  # noqa: E731  (B, D, F)
        final = torch.stack([flat(y_f), flat(y_prev)], dim=-1)
    return y, final.to(x.dtype)


def tv_iir_filter_ref(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                      return_state: bool = False, chunk: int = DEFAULT_CHUNK):
    """Slow reference twin of :func:`tv_iir_filter` (same signature; ``chunk`` is ignored): one
    :func:`~.iir.iir_step` per sample with that sample's Θ."""
    _check(x, theta, gain, state)
    dtype = compute_dtype(x)
    xd = x.to(dtype)
    if gain is not None:
        xd = xd * gain.to(dtype).transpose(1, 2)
    outputs, st = [], None if state is None else state.to(dtype)
    for t in range(x.size(-1)):
        y_t, st = iir_step(xd[..., t], theta[:, t].to(dtype), st)
        outputs.append(y_t)
    if not outputs:
        y = x.clone()
        return (y, state) if return_state else y
    y = torch.stack(outputs, dim=-1).to(x.dtype)
    return (y, st.to(x.dtype)) if return_state else y


def tv_iir_stream(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The next n samples of a stream from the carried state: one :func:`iir_step` for n = 1 (decoding),
    the chunked scan otherwise. Returns y (B, D, n) and the new state."""
    if x.size(-1) == 1:
        _check(x, theta, gain, state)
        x_t = x[..., 0].to(compute_dtype(x))
        if gain is not None:
            x_t = x_t * gain[:, 0].to(x_t.dtype)
        y, state = iir_step(x_t, theta[:, 0], None if state is None else state.to(x_t.dtype))
        return y.unsqueeze(-1).to(x.dtype), state.to(x.dtype)
    return tv_iir_filter(x, theta, gain, state, return_state=True)
