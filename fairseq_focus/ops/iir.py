"""Order-2 all-pole IIR filter banks applied per time bin (paper §3.2, eq. 4-8).

Each of the F filters of a channel has the transfer function (eq. 5)

    H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²),    i.e.   y[t] = x[t] − θ0·y[t−1] − θ1·y[t−2]   (eq. 32),

and the layer output is the sum of the F filter outputs (eq. 7). Θ is constant inside a time bin of
R samples and changes from bin to bin (the hypernetwork's output, already shifted by one bin by the
caller so that bin i uses coefficients computed from bin i−1).

Stability: with θ0, θ1 ∈ (0, 1) both poles p of z² + θ0 z + θ1 lie strictly inside the unit circle.
Complex poles have |p|² = p·p̄ = θ1 < 1; real poles (θ0² ≥ 4θ1) satisfy |p| ≤ (θ0 + √(θ0² − 4θ1))/2
< θ0 < 1. The sigmoid parameterisation upstream therefore makes every filter stable by construction;
``--theta-param stable`` (``ops/theta.py``) reaches the whole stability triangle |θ1| < 1, |θ0| < 1 + θ1,
which the ops here handle alike.

Modes (see DESIGN.md "Filter modes"):

* ``causal``: per bin, the zero-state recursion (state reset at every bin start), computed as the
  exact *linear* convolution of the bin with the filter's impulse response h (FFT with zero padding
  to 2R; no conjugate, nothing circular). Output t depends on inputs ≤ t of its bin only.
* ``carry``: the same recursion with its state carried across bins: the true time-varying IIR over
  the whole sequence. Computed by the fused per-sample scan of ``ops/selective_fused.py`` (Θ repeated
  over each bin, companion form) where a kernel is at hand; else (:func:`iir_filter_bins`) as the
  ``causal`` output plus each bin's free response to the state left by the previous bins, the bin-end
  states from an associative scan over bins.
* ``paper``: eq. 4-8 literally: X = FFT_R(x_bin), X_f = X ∘ conj(H), summed over F, IFFT. Because of
  the conjugate and the missing padding this is a *circular cross-correlation*: output t mixes in
  inputs t+1… of the same bin. NOT causal; for whole-sequence classification and ablations only.

Glossary (code name -> paper symbol):
    x      (B, D, L)            the input sequence, channels first
    theta  (B, Nbins, D, F, 2)  Θ: (θ0, θ1) of F filters per channel per bin
    R      = L / Nbins          bin length (= NFFT in ``paper`` mode; the FFT is 2R otherwise)
    state  (B, D, F, 2)         (y_f[t], y_f[t−1]) of each filter after the last processed sample

The impulse response of a filter is read from powers of its companion matrix
A = [[−θ0, −θ1], [1, 0]] (state s[t] = (y[t], y[t−1]) = A s[t−1] + e₁ x[t]): h[n] = (Aⁿ)₀₀. The
rows e₁ᵀAⁿ, n = 0…R, are built by doubling in log₂R steps, which is exact (no aliasing, unlike
sampling H on a grid) and differentiable.

One Θ for the whole sequence (the static head, Focus-H) in ``carry`` mode is a time-invariant filter,
y = h ∗ x over the whole length L: :func:`iir_filter_lti` makes it ONE causal FFT convolution
(``fft_conv.py``, as MEGA's EMA), a fixed number of operator calls whatever L. Its h comes from the
closed form (:func:`impulse_response`): with the poles p1, p2 of z² + θ0 z + θ1 labelled |p2| ≥ |p1|
and q = p1/p2 (|q| ≤ 1),

    h[n] = Σ_{k≤n} p1ᵏ p2ⁿ⁻ᵏ = p2ⁿ · (q^{n+1} − 1)/(q − 1),    p2ⁿ = exp(n log p2),
    q^{n+1} − 1 = expm1((n+1)·log1p(q − 1)),   q − 1 = (p1 − p2)/p2 = ±√(θ0² − 4θ1)/p2,

in complex arithmetic, whose ratio tends to n + 1 at a double pole (q = 1, taken exactly). Its
gradient is exact everywhere, double poles included: differentiating h[n] + θ0 h[n−1] + θ1 h[n−2] = δ[n]
gives ∂h[n]/∂θ0 = −(h∗h)[n−1] and ∂h[n]/∂θ1 = −(h∗h)[n−2], one more FFT convolution.
:func:`companion_rows` and the loop (:func:`iir_filter_lti_ref`) are the twins.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .fft_conv import fft_causal_conv
from .long_conv import causal_conv
from .precision import compute_dtype, no_autocast
from .selective_fused import fused_scan, kernel_for
from .segments import split_at_boundaries

MODES = ("causal", "carry", "paper")
FUSED_CHUNK = 64  # the fused scan's checkpoint interval in ``carry`` mode (the result does not depend on it)
CAUSAL_MODES = ("causal", "carry")
LOG_FLOOR = -80.0  # log|q| is floored here: |q| < e⁻⁸⁰ adds under e⁻⁸⁰ to any tap, and q = 0 stays finite


def _check(x: Tensor, theta: Tensor, mode: str, state: Optional[Tensor] = None, return_state: bool = False) -> int:
    """Validate the arguments of :func:`iir_filter` / :func:`iir_filter_ref`; returns the bin length R."""
    if mode not in MODES:
        raise ValueError(f"iir mode must be one of {MODES}, got {mode!r}")
    if x.dim() != 3 or theta.dim() != 5 or theta.size(-1) != 2:
        raise ValueError(f"expected x (B, D, L) and theta (B, Nbins, D, F, 2), got {tuple(x.shape)} and {tuple(theta.shape)}")
    bsz, dim, length = x.shape
    nbins = theta.size(1)
    if theta.size(0) != bsz or theta.size(2) != dim:
        raise ValueError(f"theta {tuple(theta.shape)} does not match x {tuple(x.shape)}")
    if length % nbins != 0:
        raise ValueError(f"sequence length {length} is not a multiple of Nbins={nbins}; pad x to whole bins first")
    if state is not None and mode != "carry":
        raise ValueError("an initial state only makes sense in 'carry' mode")
    if return_state and mode == "paper":
        raise ValueError("'paper' mode has no recurrent state")
    return length // nbins


def _rows_by_doubling(theta: Tensor, n: int):
    """(r0, r1): the rows e₁ᵀAᵗ, t < n' (n' ≥ n, a power of two), and the entries of A^{n'}.

    Doubling: rows of A^{k…2k−1} are the rows of A^{0…k−1} times A^k, and A^{2k} = A^k·A^k. The 2×2
    products are written out elementwise (tiny batched matmuls are slow on every backend).
    """
    t0, t1 = theta[..., 0:1], theta[..., 1:2]  # (..., 1)
    p00, p01, p10, p11 = -t0, -t1, torch.ones_like(t0), torch.zeros_like(t0)  # A^k, k = 1
    r0, r1 = torch.ones_like(t0), torch.zeros_like(t0)  # e₁ᵀ A⁰
    while r0.size(-1) < n:
        r0, r1 = torch.cat([r0, r0 * p00 + r1 * p10], -1), torch.cat([r1, r0 * p01 + r1 * p11], -1)
        p00, p01, p10, p11 = (p00 * p00 + p01 * p10, p00 * p01 + p01 * p11,
                              p10 * p00 + p11 * p10, p10 * p01 + p11 * p11)
    return (r0, r1), (p00, p01, p10, p11)


def _matrix_powers(m00: Tensor, m01: Tensor, m10: Tensor, m11: Tensor, n: int):
    """Entries of Mʲ for j < n' (n' ≥ n, a power of two), by doubling: (..., 1) each -> (..., n')."""
    q00, q01, q10, q11 = torch.ones_like(m00), torch.zeros_like(m00), torch.zeros_like(m00), torch.ones_like(m00)
    while q00.size(-1) < n:  # [Q_0…Q_{k−1}] -> [Q_0…Q_{k−1}, Q_0·M^k … Q_{k−1}·M^k]
        q00, q01, q10, q11 = (torch.cat([q00, q00 * m00 + q01 * m10], -1), torch.cat([q01, q00 * m01 + q01 * m11], -1),
                              torch.cat([q10, q10 * m00 + q11 * m10], -1), torch.cat([q11, q10 * m01 + q11 * m11], -1))
        m00, m01, m10, m11 = (m00 * m00 + m01 * m10, m00 * m01 + m01 * m11,
                              m10 * m00 + m11 * m10, m10 * m01 + m11 * m11)
    return q00, q01, q10, q11


def companion_rows(theta: Tensor, n: int, impulse_only: bool = False) -> Tensor:
    """e₁ᵀ Aᵗ for t = 0 … n−1, where A = [[−θ0, −θ1], [1, 0]].

    theta: (..., 2) -> (..., n, 2), or (..., n) with ``impulse_only``. Entry [..., t, 0] is the
    impulse response h[t]; row t is also the free response: y[t'] = rows[t'+1] · (y[−1], y[−2]) for a
    filter started from that state.

    Two levels, each by doubling: the rows for t < S (S ≈ √n) and the block powers (A^S)ʲ; then one
    broadcast product gives row jS + t = (row t)·(A^S)ʲ. Only products of a stable matrix are formed,
    so the result is exact up to rounding (no aliasing, unlike sampling H on a frequency grid).
    """
    block = 1 << ((max(n, 1) - 1).bit_length() + 1) // 2  # ≈ √n, a power of two
    (r0, r1), a_s = _rows_by_doubling(theta, block)  # (..., S) each; A^S entries (..., 1)
    q00, q01, q10, q11 = (q.unsqueeze(-1) for q in _matrix_powers(*a_s, -(-n // block)))  # (..., J, 1)
    r0, r1 = r0.unsqueeze(-2), r1.unsqueeze(-2)  # (..., 1, S)
    h = (r0 * q00 + r1 * q10).flatten(-2)[..., :n]  # (..., J·S) -> (..., n)
    if impulse_only:
        return h
    return torch.stack([h, (r0 * q01 + r1 * q11).flatten(-2)[..., :n]], dim=-1)


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
    fp32 companion powers over the whole length blow up near |p| = 1. :func:`companion_rows` is the twin.
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
    """Slow reference twin of :func:`iir_filter_lti`: the loop of :func:`iir_filter_ref` in ``carry``
    mode, Θ (D, F, 2) or (B, D, F, 2) as one bin over the whole sequence."""
    theta = theta.expand(x.size(0), *theta.shape[-3:]).unsqueeze(1)  # (B, 1, D, F, 2)
    return iir_filter_ref(x, theta, "carry")


def _linear_scan(mats: Tensor, vecs: Tensor) -> Tensor:
    """Inclusive scan of s_i = M_i s_{i−1} + v_i (s_{−1} = 0) along dim −2 of vecs, in log₂N steps.

    mats: (..., N, 2, 2), vecs: (..., N, 2) -> (..., N, 2). Hillis-Steele over the associative
    pairs (M, v) ∘ (M', v') = (M M', M v' + v), with the 2×2 algebra written out elementwise.
    """
    n = vecs.size(-2)
    m00, m01, m10, m11 = mats[..., 0, 0], mats[..., 0, 1], mats[..., 1, 0], mats[..., 1, 1]  # (..., N)
    v0, v1 = vecs[..., 0], vecs[..., 1]
    step = 1
    while step < n:
        def shifted(t: Tensor) -> Tensor:  # element i − step, the identity's entry for i < step
            return t[..., : n - step]
        a00, a01, a10, a11 = (shifted(t) for t in (m00, m01, m10, m11))
        b0, b1 = shifted(v0), shifted(v1)
        c00, c01, c10, c11 = (t[..., step:] for t in (m00, m01, m10, m11))
        v0 = torch.cat([v0[..., :step], v0[..., step:] + c00 * b0 + c01 * b1], -1)
        v1 = torch.cat([v1[..., :step], v1[..., step:] + c10 * b0 + c11 * b1], -1)
        m00, m01, m10, m11 = (
            torch.cat([m00[..., :step], c00 * a00 + c01 * a10], -1),
            torch.cat([m01[..., :step], c00 * a01 + c01 * a11], -1),
            torch.cat([m10[..., :step], c10 * a00 + c11 * a10], -1),
            torch.cat([m11[..., :step], c10 * a01 + c11 * a11], -1),
        )
        step *= 2
    return torch.stack([v0, v1], dim=-1)


def _bin_convolve(xb: Tensor, h: Tensor) -> Tensor:
    """Linear (not circular) causal convolution of each bin with its response, by FFT of size 2R.

    xb: (B, D, Nbins, R), h: (B, D, Nbins, R) -> (B, D, Nbins, R).
    """
    return fft_causal_conv(xb, h)


def _paper_filter(xb: Tensor, theta: Tensor) -> Tensor:
    """Eq. 4-8: per-bin FFT of size NFFT = R, times the conjugated response, summed over F, IFFT."""
    r = xb.size(-1)
    freqs = torch.fft.rfftfreq(r, device=xb.device, dtype=xb.dtype)  # f in cycles/sample, k/R
    z1 = torch.exp(-2j * torch.pi * freqs)  # e^{-j2πf}
    t0 = theta[..., 0].unsqueeze(-1)  # (B, Nbins, D, F, 1)
    t1 = theta[..., 1].unsqueeze(-1)
    response = 1.0 / (1.0 + t0 * z1 + t1 * z1 * z1)  # eq. 5, (B, Nbins, D, F, R//2+1)
    folded = response.conj().sum(dim=3).permute(0, 2, 1, 3)  # eq. 6-7: (B, D, Nbins, R//2+1)
    return torch.fft.irfft(torch.fft.rfft(xb) * folded, n=r)  # eq. 8


def _zero_state_ends(xb: Tensor, h_f: Tensor) -> Tensor:
    """Each bin's end state from a zero start: Σ_k A^{R−1−k} e₁ x[k] = Σ_k (h[R−1−k], h[R−2−k]) x[k].

    xb (B, D, Nbins, R), h_f (B, Nbins, D, F, R) -> (B, Nbins, D, F, 2).
    """
    h_prev = F.pad(h_f, (1, 0))[..., :-1]  # h[t−1], with h[−1] = 0
    kernel = torch.stack([h_f, h_prev], dim=-1).flip(-2)  # (B, Nbins, D, F, R, 2), time reversed
    return torch.einsum("bdnr,bndfrc->bndfc", xb, kernel)


def _carry_across_bins(y: Tensor, rows: Tensor, ends: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Add to the zero-state output y (B, D, Nbins, R) each bin's free response to the state the
    earlier bins (and ``state``) leave: s_i = A_i^R s_{i−1} + ends_i by a scan over bins, then
    y[t] += e₁ᵀA^{t+1} s_{i−1}. rows (B, Nbins, D, F, R+1, 2) = e₁ᵀAᵗ; returns (y, final state)."""
    r = rows.size(-2) - 1
    trans = torch.stack([rows[..., r, :], rows[..., r - 1, :]], dim=-2)  # A^R: (B, Nbins, D, F, 2, 2)
    if state is not None:  # fold the initial state into bin 0's end state
        first = ends[:, 0] + (trans[:, 0] @ state.unsqueeze(-1)).squeeze(-1)
        ends = torch.cat([first.unsqueeze(1), ends[:, 1:]], dim=1)
    # bins next to the (2,)/(2, 2) axes: (B, D, F, Nbins, ...)
    ends = _linear_scan(trans.permute(0, 2, 3, 1, 4, 5), ends.permute(0, 2, 3, 1, 4))
    starts = F.pad(ends[..., :-1, :], (0, 0, 1, 0))  # state entering each bin, (B, D, F, Nbins, 2)
    if state is not None:
        starts = torch.cat([state.unsqueeze(-2), starts[..., 1:, :]], dim=-2)
    return y + torch.einsum("bndfrc,bdfnc->bdnr", rows[..., 1:, :], starts), ends[..., -1, :]


def _bank_output(xb: Tensor, h_f: Tensor) -> Tensor:
    """Zero-state output per bin: xb (B, D, Nbins, R) ∗ Σ_F h_f (B, Nbins, D, F, R) -> (B, D, Nbins, R)."""
    h = h_f.sum(dim=3).permute(0, 2, 1, 3)  # F folded before the FFT: (B, D, Nbins, R)
    return _bin_convolve(xb, h)


def iir_filter(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
               return_state: bool = False):
    """Filter x with per-bin order-2 IIR filter banks (fast, parallel path).

    ``carry`` runs on the fused per-sample scan where a kernel is at hand (``ops/selective_fused.py``: Θ
    repeated over each bin's R samples, the companion form; one call forward and one backward whatever L);
    everything else, and ``carry`` without a kernel, on :func:`iir_filter_bins`. Same values either way.

    Args:
        x: (B, D, L) real input.
        theta: (B, Nbins, D, F, 2) coefficients inside the stability triangle; L must be a multiple of Nbins.
        mode: ``causal`` | ``carry`` | ``paper`` (module docstring).
        state: (B, D, F, 2) initial (y[−1], y[−2]) per filter, ``carry`` mode only.
        return_state: also return the final state (B, D, F, 2) (``causal``/``carry`` only).

    Returns:
        y (B, D, L) in x's dtype, or (y, final_state) when ``return_state``.
    """
    r = _check(x, theta, mode, state, return_state)
    if mode != "carry" or kernel_for(x.device) is None:
        return iir_filter_bins(x, theta, mode, state, return_state)
    y, final = fused_scan(x, theta.repeat_interleave(r, dim=1), None, state, False, FUSED_CHUNK)  # Θ (B, L, D, F, 2)
    return (y, final) if return_state else y


def iir_filter_bins(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
                    return_state: bool = False):
    """:func:`iir_filter` bin by bin (module docstring: per-bin FFT convolutions, and for ``carry`` a scan over
    the bins' end states). Same signature and values; ``carry``'s second twin where the fused scan runs."""
    r = _check(x, theta, mode, state, return_state)
    dtype = compute_dtype(x)
    with no_autocast(x):
        xb, theta = x.to(dtype).view(*x.shape[:2], -1, r), theta.to(dtype)  # (B, D, Nbins, R)
        if mode == "paper":
            return _paper_filter(xb, theta).reshape(x.shape).to(x.dtype)
        if mode == "causal" and not return_state:
            return _bank_output(xb, companion_rows(theta, r, impulse_only=True)).reshape(x.shape).to(x.dtype)
        rows = companion_rows(theta, r + 1)  # (B, Nbins, D, F, R+1, 2)
        y, ends = _bank_output(xb, rows[..., :r, 0]), _zero_state_ends(xb, rows[..., :r, 0])
        if mode == "carry":
            y, final = _carry_across_bins(y, rows, ends, None if state is None else state.to(dtype))
        else:
            final = ends[:, -1]
        y = y.reshape(x.shape).to(x.dtype)
    return (y, final.to(x.dtype)) if return_state else y


def iir_step(x_t: Tensor, theta_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One sample of the recursion (eq. 32) for decoding.

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


def iir_filter_ref(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
                   return_state: bool = False):
    """Slow reference twin of :func:`iir_filter` with the same signature.

    ``causal``/``carry``: a plain loop over time with :func:`iir_step` (state reset at bin starts in
    ``causal`` mode). ``paper``: eq. 4-8 with explicit DFT matrices, no torch.fft.
    """
    r = _check(x, theta, mode, state, return_state)
    dtype = compute_dtype(x)
    xd, th = x.to(dtype), theta.to(dtype)
    if mode == "paper":
        return _paper_filter_dft(xd, th, r).to(x.dtype)
    outputs = []
    st = None if state is None else state.to(dtype)
    for t in range(x.size(-1)):
        if mode == "causal" and t % r == 0:
            st = None
        y_t, st = iir_step(xd[..., t], th[:, t // r], st)
        outputs.append(y_t)
    y = torch.stack(outputs, dim=-1).to(x.dtype)
    if return_state:
        return y, st.to(x.dtype)
    return y


def _paper_filter_dft(x: Tensor, theta: Tensor, r: int) -> Tensor:
    """Eq. 4-8 with an explicit R×R DFT matrix per bin (reference for ``paper`` mode)."""
    bsz, dim, length = x.shape
    k = torch.arange(r, dtype=x.dtype, device=x.device)
    ctype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    dft = torch.exp(-2j * torch.pi * torch.outer(k, k).to(ctype) / r)  # W[k, n] = e^{-j2πkn/R}
    w = torch.exp(-2j * torch.pi * k.to(ctype) / r)  # e^{-j2πf} at f = k/R
    out = []
    for i in range(theta.size(1)):
        xb = x[..., i * r:(i + 1) * r].to(ctype)  # (B, D, R)
        spectrum = xb @ dft.T  # eq. 4
        t0 = theta[:, i, ..., 0].unsqueeze(-1).to(ctype)  # (B, D, F, 1)
        t1 = theta[:, i, ..., 1].unsqueeze(-1).to(ctype)
        response = 1.0 / (1.0 + t0 * w + t1 * w * w)  # eq. 5
        filtered = (spectrum.unsqueeze(2) * response.conj()).sum(2)  # eq. 6-7
        out.append(((filtered @ dft.conj().T) / r).real)  # eq. 8
    return torch.cat(out, dim=-1)


def _check_segment(x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str) -> None:
    if mode not in CAUSAL_MODES:
        raise ValueError(f"streaming needs a causal iir mode {CAUSAL_MODES}, got {mode!r}")
    if not 0 <= offset < bin_size:
        raise ValueError(f"offset {offset} is not inside a bin of {bin_size}")
    needed = (offset + x.size(-1) + bin_size - 1) // bin_size
    if theta.size(1) != needed:
        raise ValueError(f"{x.size(-1)} samples from offset {offset} touch {needed} bins, got Θ for {theta.size(1)}")


def iir_filter_segment(
    x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str, state: Optional[Tensor] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Continue the recursion (eq. 32) over n new samples of a stream, with its state (fast path).

    Args:
        x: (B, D, n), the samples at stream positions p … p+n−1.
        theta: (B, T, D, F, 2), Θ of the T bins those samples touch, in order.
        offset: p mod R, where the first sample sits inside its bin.
        bin_size: R.
        mode: ``causal`` (state reset at every bin start) or ``carry``.
        state: (B, D, F, 2), (y_f[p−1], y_f[p−2]) left by the previous samples, or None (zeros).

    Returns y (B, D, n) and the state after the last sample (None when n = 0 and no state came in).

    The samples are cut at bin boundaries (ops/segments.py); whole bins go through
    :func:`iir_filter`, the partial bins at either end through a one-bin :func:`iir_filter` with the
    state carried in (within one bin ``causal`` and ``carry`` are the same recursion), and a single
    sample through :func:`iir_step`.
    """
    _check_segment(x, theta, offset, bin_size, mode)
    outputs, start, bin_idx = [], 0, 0
    for kind, length in zip(("head", "middle", "tail"), split_at_boundaries(offset, x.size(-1), bin_size)):
        if length == 0:
            continue
        if mode == "causal" and (kind != "head" or offset == 0):
            state = None  # a bin starts here
        nbins = length // bin_size if kind == "middle" else 1
        y, state = _segment_part(x[..., start:start + length], theta[:, bin_idx:bin_idx + nbins], mode, state,
                                 whole_bins=kind == "middle")
        outputs.append(y)
        start += length
        bin_idx += nbins
    if not outputs:
        return x.clone(), state
    return torch.cat(outputs, dim=-1), state


def _segment_part(xs: Tensor, theta: Tensor, mode: str, state: Optional[Tensor],
                  whole_bins: bool) -> Tuple[Tensor, Tensor]:
    """One part of a segment: whole bins (x (B, D, Nbins·R), Θ (B, Nbins, D, F, 2)) or a piece of one bin."""
    if whole_bins:
        return iir_filter(xs, theta, mode, state=None if mode == "causal" else state, return_state=True)
    if xs.size(-1) == 1:
        y, state = iir_step(xs[..., 0], theta[:, 0], state)
        return y.unsqueeze(-1), state
    # a partial bin: one time-invariant filter from `state` (within a bin causal and carry agree)
    return iir_filter(xs, theta, "carry", state=state, return_state=True)


def iir_filter_segment_ref(
    x: Tensor, theta: Tensor, offset: int, bin_size: int, mode: str, state: Optional[Tensor] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Slow reference twin of :func:`iir_filter_segment`: one :func:`iir_step` per sample."""
    _check_segment(x, theta, offset, bin_size, mode)
    outputs = []
    for t in range(x.size(-1)):
        position = offset + t
        if mode == "causal" and position % bin_size == 0:
            state = None
        y_t, state = iir_step(x[..., t], theta[:, position // bin_size], state)
        outputs.append(y_t)
    if not outputs:
        return x.clone(), state
    return torch.stack(outputs, dim=-1), state
