"""Time-varying order-2 IIR filter banks: Θ changes at every sample (the selective head's op).

Each of the F filters of a channel runs the recursion of eq. 32 with coefficients of its own at
every time step, and an input gain g[t] per channel (the "B" of a state-space model):

    y_f[t] = g[t]·x[t] − θ0_f[t]·y_f[t−1] − θ1_f[t]·y_f[t−2],        output  Σ_f y_f[t]   (eq. 7)

In state form s[t] = (y[t], y[t−1]) = A_t s[t−1] + (g[t]·x[t], 0), A_t = [[−θ0[t], −θ1[t]], [1, 0]]:
a 2×2 linear recurrence, so the pairs (A_t, b_t) compose associatively,
(A', b') ∘ (A, b) = (A'A, A'b + b'), and the whole sequence is one scan (Blelloch 1990; the same
structure as the selective scan of Mamba, Gu & Dao 2023, with a 2×2 block instead of a diagonal).

Fast path (:func:`tv_iir_filter`): the fused kernel of ``ops/selective_fused.py`` (one call forward, one
backward, the adjoint scan run backward in time; compiled C++ on CPU, Triton on CUDA) wherever one is at
hand. Where none is, and as the fused path's second twin, the chunked torch scan
(:func:`tv_iir_filter_scan`): the sequence is cut into L/C chunks of C samples. Inside
the chunks, all at once, C elementwise steps give each sample's zero-start state v[t] and the product
P[t] = A_t…A_{chunk start} (:func:`_sequential_scan`); a Hillis–Steele scan over the chunks' end pairs
(:func:`_log_scan`, log₂(L/C) steps) gives the state S entering each chunk; then s[t] = v[t] + P[t]·S.
Work O(L), depth C + log₂(L/C): the loop runs over the C positions of a chunk, never over the sequence.
(A Hillis–Steele scan inside the chunks too does O(L log C) work; on one CPU thread at L = 1024,
B·D = 512 it took 2.3× as long for forward + backward as the stepwise form at C = 32.)
The slow twin (:func:`tv_iir_filter_ref`) is a plain loop, one step per sample (:func:`~.iir.iir_step`
or :func:`lattice_step`, which writes the lattice as its two rotations rather than as a matrix).

Two realisations of the same frozen-time filter (``form``):

* ``lattice`` (the default): the normalized lattice of Gray & Markel (1975), built from the reflection
  coefficients k2 = θ1, k1 = θ0 / (1 + θ1) (the step-down recursion; |k| < 1 inside the triangle). Each
  stage is a plane rotation, [f_{m−1}[t], g_m[t]] = [[c_m, −k_m], [k_m, c_m]]·[f_m[t], g_{m−1}[t−1]],
  c_m = √(1 − k_m²), with f_2 = u, y = f_0 = g_0. The map (u, s[t−1]) -> (g_2, s[t]) is orthogonal, so
  ‖s[t]‖² ≤ ‖s[t−1]‖² + u[t]² whatever Θ does from sample to sample: **stable under any time variation**.
  Its frozen-time response is c1·c2 / A(z), so the input is scaled by g[t] / (c1[t]·c2[t]): with a constant
  Θ the output is exactly the all-pole filter 1 / A(z) of the static head. State s[t] = (y[t], g_1[t]);
  in state form A_t = [[−k1, −c1·k2], [c1, −k1·k2]], b_t = (g·x, k1·g·x / c1).
* ``companion``: the direct form of eq. 32, A_t = [[−θ0[t], −θ1[t]], [1, 0]], state (y[t], y[t−1]). Every
  frozen-time A_t is stable, but a product of them need not be: companion matrices are far from normal
  (‖A‖ ≈ 2.4 near a double pole at +1), and with Θ drawn afresh at every sample an impulse response grew
  to 1e33 over 4096 samples (logits N(0, 2²)), and to NaN around LRU's ring (poles 0.9–0.999) moved by
  logits N(0, 1) (``tests/test_selective_iir.py`` keeps the measurement). Kept for the study rows that
  were measured with it (docs/RESULTS.md §1b).

Every frozen-time pole stays inside |p| ≤ ρ < 1 (``ops/theta.py``'s maps) in both forms. The arithmetic
runs in fp32 (fp64 stays fp64) with autocast off, like the other filters.

Glossary: x (B, D, L); theta (B, L, D, F, 2) = Θ per sample; gain (B, L, D) = g or None (g = 1);
state (B, D, F, 2) before the first sample (the form's state: see above); C = ``chunk``; k, c the
lattice's reflection coefficients and their cosines.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .iir import iir_step
from .precision import compute_dtype, no_autocast
from .selective_fused import fused_scan, kernel_for

DEFAULT_CHUNK = 32
FORMS = ("lattice", "companion")


def _check(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor], form: str = "lattice",
           chunk: int = DEFAULT_CHUNK) -> None:
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


def lattice_coefficients(theta: Tensor):
    """Θ (..., 2) -> (k1, k2, c1, c2) (...,) each: reflection coefficients by the step-down recursion and
    c = √((1 − k)(1 + k)) (the factored form keeps precision near |k| = 1)."""
    k2 = theta[..., 1]
    k1 = theta[..., 0] / (1.0 + k2)
    return k1, k2, torch.sqrt((1.0 - k1) * (1.0 + k1)), torch.sqrt((1.0 - k2) * (1.0 + k2))


def _transitions(theta: Tensor, u: Tensor, form: str):
    """Θ (..., 2) and the driven input u = g·x (...) -> the entries of A_t and b_t (module docstring)."""
    if form == "companion":
        a0, a1 = -theta[..., 0], -theta[..., 1]
        return a0, a1, torch.ones_like(a0), torch.zeros_like(a0), u.expand_as(a0), torch.zeros_like(a0)
    k1, k2, c1, c2 = lattice_coefficients(theta)
    return -k1, -c1 * k2, c1, -k1 * k2, u.expand_as(k1), k1 * u / c1


def tv_iir_filter(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                  return_state: bool = False, chunk: int = DEFAULT_CHUNK, form: str = "lattice"):
    """Filter x with a per-sample order-2 IIR bank: the fused kernel where one is at hand (``ops/selective_fused.py``:
    one call forward, one backward, whatever L), else :func:`tv_iir_filter_scan`. Same values either way.

    Args:
        x: (B, D, L) real input.
        theta: (B, L, D, F, 2) coefficients, one Θ per sample, inside the stability triangle.
        gain: (B, L, D) input gain g[t] or None (1).
        state: (B, D, F, 2) initial state per filter (the form's: module docstring), or None (zeros).
        return_state: also return the state after the last sample (B, D, F, 2).
        chunk: the scan's in-chunk length, or the fused kernel's checkpoint interval (any positive int; the
            result does not depend on it).
        form: ``lattice`` (stable under any time variation) or ``companion`` (module docstring).

    Returns:
        y (B, D, L) in x's dtype, or (y, final_state).
    """
    _check(x, theta, gain, state, form, chunk)
    if kernel_for(x.device) is None:
        return tv_iir_filter_scan(x, theta, gain, state, return_state, chunk, form)
    y, final = fused_scan(x, theta, gain, state, form == "lattice", chunk)
    return (y, final) if return_state else y


def tv_iir_filter_scan(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                       return_state: bool = False, chunk: int = DEFAULT_CHUNK, form: str = "lattice"):
    """The chunked scan in torch ops (module docstring), differentiated by autograd: the path where no fused
    kernel is at hand, and the fast kernels' second twin. Same signature as :func:`tv_iir_filter`."""
    _check(x, theta, gain, state, form, chunk)
    bsz, dim, length = x.shape
    if length == 0:
        return _empty(x, theta, state, return_state)
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


def _empty(x: Tensor, theta: Tensor, state: Optional[Tensor], return_state: bool):
    """The result for L = 0: an empty output and the state unchanged (zeros for none)."""
    y = x.new_zeros(x.shape)
    if not return_state:
        return y
    return y, x.new_zeros(x.size(0), x.size(1), theta.size(3), 2) if state is None else state.to(x.dtype)


def lattice_step(x_t: Tensor, theta_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One sample of the normalized lattice, written as its two rotations (the module docstring's
    stage equations, not the state matrix the scan uses). x_t (B, D) = g·x, theta_t (B, D, F, 2),
    state (B, D, F, 2) = (y[t−1], g_1[t−1]) or None (zeros). Returns y_t (B, D) summed over F and the
    new state."""
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


def tv_iir_filter_ref(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                      return_state: bool = False, chunk: int = DEFAULT_CHUNK, form: str = "lattice"):
    """Slow reference twin of :func:`tv_iir_filter` (same signature; ``chunk`` is ignored): one step per
    sample with that sample's Θ (:func:`~.iir.iir_step` for ``companion``, :func:`lattice_step`)."""
    _check(x, theta, gain, state, form)
    dtype = compute_dtype(x)
    xd = x.to(dtype)
    if gain is not None:
        xd = xd * gain.to(dtype).transpose(1, 2)
    outputs, st = [], None if state is None else state.to(dtype)
    for t in range(x.size(-1)):
        y_t, st = STEPS[form](xd[..., t], theta[:, t].to(dtype), st)
        outputs.append(y_t)
    if not outputs:
        return _empty(x, theta, state, return_state)
    y = torch.stack(outputs, dim=-1).to(x.dtype)
    return (y, st.to(x.dtype)) if return_state else y


def tv_iir_stream(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor],
                  form: str = "lattice") -> Tuple[Tensor, Tensor]:
    """The next n samples of a stream from the carried state: one step for n = 1 (decoding), the chunked
    scan otherwise. Returns y (B, D, n) and the new state."""
    if x.size(-1) == 1:
        _check(x, theta, gain, state, form)
        x_t = x[..., 0].to(compute_dtype(x))
        if gain is not None:
            x_t = x_t * gain[:, 0].to(x_t.dtype)
        y, state = STEPS[form](x_t, theta[:, 0], None if state is None else state.to(x_t.dtype))
        return y.unsqueeze(-1).to(x.dtype), state.to(x.dtype)
    return tv_iir_filter(x, theta, gain, state, return_state=True, form=form)
