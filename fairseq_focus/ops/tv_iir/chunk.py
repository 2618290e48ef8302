"""The chunked scan of the time-varying IIR op in torch ops (the package docstring has the math), differentiated by
autograd: the path where no fused kernel is at hand, and the kernels' second twin.

The sequence is cut into L/C chunks of C samples. Inside the chunks, all at once, C elementwise steps give each
sample's zero-start state v[t] and the product P[t] = A_t…A_{chunk start} (:func:`_sequential_scan`); a
Hillis–Steele scan over the chunks' end pairs (:func:`_log_scan`, log₂(L/C) steps) gives the state S entering each
chunk; then s[t] = v[t] + P[t]·S. Work O(L), depth C + log₂(L/C): the loop runs over the C positions of a chunk,
never over the sequence. (A Hillis–Steele scan inside the chunks too does O(L log C) work; on one CPU thread at
L = 1024, B·D = 512 it took 2.3× as long for forward + backward as the stepwise form at C = 32.) Its operator calls
grow with L/C: tests/test_op_calls.py shows it, the reason the fused kernels exist.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..precision import compute_dtype, no_autocast
from .naive import CHUNK, check, empty_result, lattice_coefficients


def _log_scan(m00: Tensor, m01: Tensor, b0: Tensor, m10: Tensor, m11: Tensor, b1: Tensor):
    """Inclusive scan of s[t] = M_t s[t−1] + b_t (s[−1] = 0) along the last axis, all leading axes at once.

    M_t = [[m00, m01], [m10, m11]], b_t = (b0, b1), (..., N) each. Returns (p00, p01, p10, p11, v0, v1): the
    products M_t…M_0 and the states s[t]. Shifting by ``step`` pads with the identity pair (I, 0), so
    every position combines uniformly.
    """
    p00, p01, p10, p11, v0, v1 = m00, m01, m10, m11, b0, b1
    step, n = 1, m00.size(-1)
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


def _sequential_scan(m00: Tensor, m01: Tensor, m10: Tensor, m11: Tensor, b0: Tensor, b1: Tensor):
    """The same scan as :func:`_log_scan`, step by step along the last axis (C steps, every leading axis
    at once): O(C) work per chunk instead of O(C log C). (..., C) each -> (p00, p01, p10, p11, v0, v1).
    The steps come from ``unbind`` (one call, whose backward is one stack), not one index per step, whose
    backward would zero-fill a full-size gradient each."""
    steps = zip(*(t.unbind(-1) for t in (m00, m01, m10, m11, b0, b1)))
    a, b, c, d, v0, v1 = next(steps)
    p00, p01, p10, p11 = a, b, c, d
    out = [[p00], [p01], [p10], [p11], [v0], [v1]]
    for a, b, c, d, e0, e1 in steps:
        v0, v1 = e0 + a * v0 + b * v1, e1 + c * v0 + d * v1
        p00, p01, p10, p11 = a * p00 + b * p10, a * p01 + b * p11, c * p00 + d * p10, c * p01 + d * p11
        for seq, t in zip(out, (p00, p01, p10, p11, v0, v1)):
            seq.append(t)
    return tuple(torch.stack(seq, dim=-1) for seq in out)


def _transitions(theta: Tensor, u: Tensor, form: str):
    """Θ (..., 2) and the driven input u = g·x (...) -> the entries of A_t and b_t (package docstring)."""
    if form == "companion":
        a0, a1 = -theta[..., 0], -theta[..., 1]
        return a0, a1, torch.ones_like(a0), torch.zeros_like(a0), u.expand_as(a0), torch.zeros_like(a0)
    k1, k2, c1, c2 = lattice_coefficients(theta)
    return -k1, -c1 * k2, c1, -k1 * k2, u.expand_as(k1), k1 * u / c1


def tv_iir_filter_scan(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                       return_state: bool = False, chunk: int = CHUNK, form: str = "lattice"):
    """The chunked scan in torch ops (module docstring). Same signature and values as
    :func:`~.function.tv_iir_filter`."""
    check(x, theta, gain, state, form, chunk)
    bsz, dim, length = x.shape
    if length == 0:
        return empty_result(x, theta, state, return_state)
    dtype = compute_dtype(x)
    with no_autocast(x):
        u = x.to(dtype) if gain is None else x.to(dtype) * gain.to(dtype).transpose(1, 2)  # (B, D, L)
        c = max(1, min(chunk, length))
        pad = (-length) % c
        nchunks = (length + pad) // c
        # padded samples come after the real ones (Θ = 0, input 0): they change nothing before them
        th = F.pad(theta.to(dtype).permute(0, 2, 3, 1, 4), (0, 0, 0, pad))  # (B, D, F, L + pad, 2)
        th = th.reshape(bsz, dim, -1, nchunks, c, 2)  # (B, D, F, N, C, 2)
        u = F.pad(u, (0, pad)).reshape(bsz, dim, 1, nchunks, c)  # (B, D, 1, N, C)
        p00, p01, p10, p11, v0, v1 = _sequential_scan(*_transitions(th, u, form))
        s0, s1 = _entering_states(p00, p01, p10, p11, v0, v1, None if state is None else state.to(dtype))
        y_f = v0 + p00 * s0 + p01 * s1  # (B, D, F, N, C)
        y = y_f.sum(2).reshape(bsz, dim, -1)[..., :length].to(x.dtype)
        if not return_state:
            return y
        y_prev = v1 + p10 * s0 + p11 * s1
        flat = lambda t: t.reshape(bsz, dim, t.size(2), -1)[..., length - 1]  # noqa: E731  (B, D, F)
        final = torch.stack([flat(y_f), flat(y_prev)], dim=-1)
    return y, final.to(x.dtype)


def _entering_states(p00: Tensor, p01: Tensor, p10: Tensor, p11: Tensor, v0: Tensor, v1: Tensor,
                     state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The state entering each chunk, (B, D, F, N, 1) per component, from the in-chunk products and zero-start
    states (B, D, F, N, C): a Hillis–Steele scan over the chunks' end pairs, the initial state folded in."""
    e00, e01, e10, e11, f0, f1 = (t[..., -1] for t in (p00, p01, p10, p11, v0, v1))  # (B, D, F, N)
    if state is not None:  # fold the initial state into chunk 0's end
        g0 = f0[..., 0] + e00[..., 0] * state[..., 0] + e01[..., 0] * state[..., 1]
        g1 = f1[..., 0] + e10[..., 0] * state[..., 0] + e11[..., 0] * state[..., 1]
        f0 = torch.cat([g0.unsqueeze(-1), f0[..., 1:]], -1)
        f1 = torch.cat([g1.unsqueeze(-1), f1[..., 1:]], -1)
    leaving0, leaving1 = _log_scan(e00, e01, f0, e10, e11, f1)[4:]  # (B, D, F, N)
    entering = torch.stack([F.pad(leaving0[..., :-1], (1, 0)), F.pad(leaving1[..., :-1], (1, 0))], -1)
    if state is not None:
        entering = torch.cat([state.unsqueeze(-2), entering[..., 1:, :]], dim=-2)  # (B, D, F, N, 2)
    return entering[..., 0:1], entering[..., 1:2]
