"""Powers of the companion matrix A = [[−θ0, −θ1], [1, 0]] of eq. 32 (state s[t] = (y[t], y[t−1]) = A s[t−1] +
e₁ x[t]), and the scan over bins that carries the state across them.

The impulse response of a filter is h[n] = (Aⁿ)₀₀, and row n of e₁ᵀAⁿ is also the free response to a state. The
rows e₁ᵀAⁿ, n = 0…R, are built by doubling in log₂R steps, which is exact (no aliasing, unlike sampling H on a
grid) and differentiable; the 2×2 products are written out elementwise (tiny batched matmuls are slow on every
backend).
"""
import torch
from torch import Tensor


def _rows_by_doubling(theta: Tensor, n: int):
    """(r0, r1): the rows e₁ᵀAᵗ, t < n' (n' ≥ n, a power of two), and the entries of A^{n'}.

    Doubling: rows of A^{k…2k−1} are the rows of A^{0…k−1} times A^k, and A^{2k} = A^k·A^k.
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


def linear_scan(mats: Tensor, vecs: Tensor) -> Tensor:
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
