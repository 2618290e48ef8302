"""The fused per-token order-2 IIR scan in Triton: one forward kernel, one backward kernel (CUDA; the tests
run them on CPU under Triton's interpreter, ``TRITON_INTERPRET=1``).

The op is :func:`.selective_iir.tv_iir_filter_ref` (the slow reference: same values, same final state; its
torch autograd gives the gradients) written in state form, per lane = (batch b, channel d, filter f), with
the driven input u = g·x shared by the F filters of a channel:

    s[t] = A_t s[t−1] + b_t,    s[−1] = state0,    y[t] = Σ_f s_f[t]₀   (per channel)

    lattice   (k2 = θ1, k1 = θ0 / (1 + θ1), c1 = √((1 − k1)(1 + k1))):
              A_t = [[−k1, −c1·k2], [c1, −k1·k2]],   b_t = (u, k1·u / c1)
    companion A_t = [[−θ0, −θ1], [1, 0]],            b_t = (u, 0)

(the lattice's A_t, b_t are the two rotations of ``lattice_step`` multiplied out).

Backward: the adjoint λ[t] = ∂loss/∂s[t] runs backward in time,

    λ[t] = (∂y[t], 0) + A_{t+1}ᵀ λ[t+1]     (λ[L−1] = (∂y[L−1], 0) + ∂final),
    ∂A_t = λ[t] s[t−1]ᵀ  (g00 = λ0·s0', g01 = λ0·s1', g10 = λ1·s0', g11 = λ1·s1', s' = s[t−1]),
    ∂b_t = λ[t],   ∂state0 = A_0ᵀ λ[0]   (= ∂final when L = 0),

then the chain rule to Θ and u (∂c1/∂k1 = −k1/c1, ∂(k1/c1)/∂k1 = 1/c1³):

    lattice   ∂k1 = −g00 − k2·g11 − (k1/c1)(g10 − k2·g01) + λ1·u/c1³,   ∂k2 = −c1·g01 − k1·g11,
              ∂u = λ0 + λ1·k1/c1,   ∂θ0 = ∂k1 / (1 + θ1),   ∂θ1 = ∂k2 − ∂k1·k1 / (1 + θ1)
    companion ∂θ0 = −g00,   ∂θ1 = −g01,   ∂u = λ0

and ∂u of a channel sums its F lanes. States are not saved per step: the forward stores the state entering
every ``chunk``-th step (ckpt); the backward walks the chunks last to first, recomputes one chunk's
entering states from its ckpt into a scratch buffer, then runs the adjoint back through it (λ in registers).

Parallelisation (as flash-linear-attention's ``fused_recurrent`` kernels): one program per (batch, block
of BLOCK_D channels), looping over time; the F filters of a channel sit in the program's second axis
(BLOCK_F = next power of two ≥ F, masked), so Σ_f is an in-register sum. Arithmetic in the inputs' dtype:
fp32 (tl.sqrt and / are the GPU's fast ones, within an ulp or two), or fp64 (correct but slow on GPUs).
The interpreter is a choice for the whole process: TRITON_INTERPRET=1 before triton is first imported
(tests/test_selective_triton.py explains why).

Glossary: theta (B, L, D, F, 2) = Θ per token; u (B, L, D); state0, final, dfinal, dstate0 (B, D, F, 2);
ckpt (B, NC, D, F, 2), NC = ⌈L / chunk⌉, ckpt[:, n] = s[n·chunk − 1] (ckpt[:, 0] = state0); y, dy, du
(B, L, D); lane = the flat offset (d·F + f)·2 of a lane's pair inside one (b, t) row of D·F·2 numbers;
row = D·F·2; lam0, lam1 = λ (before a step is folded in: the carry A_{t+1}ᵀ λ[t+1], plus ∂final at the end).
"""
import contextlib
from typing import Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: the CPU kernel or the torch scan runs instead
    triton = None
    tl = None

MAX_LANES = 64  # BLOCK_D · BLOCK_F per program (untuned)


if triton is not None:
    @triton.jit
    def _lanes(pid_d, D, F, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """The channels d (BLOCK_D,) of program pid_d, the lanes' offsets in a row, their mask."""
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        f = tl.arange(0, BLOCK_F)
        return d, (d[:, None] * F + f[None, :]) * 2, (d < D)[:, None] & (f < F)[None, :]

    @triton.jit
    def _load2(ptr, lane, mask):
        return tl.load(ptr + lane, mask=mask, other=0.0), tl.load(ptr + lane + 1, mask=mask, other=0.0)

    @triton.jit
    def _store2(ptr, lane, mask, v0, v1):
        tl.store(ptr + lane, v0, mask=mask)
        tl.store(ptr + lane + 1, v1, mask=mask)

    @triton.jit
    def _transition(th0, th1, u, LATTICE: tl.constexpr):
        """Θ (lanes) and u (BLOCK_D, 1) -> the entries a00, a01, a10, a11 of A_t and b0, b1 of b_t."""
        zero = tl.zeros_like(th0)
        if LATTICE:
            k1 = th0 / (1.0 + th1)
            c1 = tl.sqrt((1.0 - k1) * (1.0 + k1))
            a00, a01, a10, a11, b1 = -k1, -c1 * th1, c1, -k1 * th1, k1 * u / c1
        else:
            a00, a01, a10, a11, b1 = -th0, -th1, zero + 1.0, zero, zero
        return a00, a01, a10, a11, u + zero, b1

    @triton.jit
    def _theta_grads(th0, th1, u, sp0, sp1, lam0, lam1, LATTICE: tl.constexpr):
        """λ[t], s[t−1] = (sp0, sp1) -> ∂θ0, ∂θ1 and the lane's part of ∂u (module docstring)."""
        g00, g01 = lam0 * sp0, lam0 * sp1
        if LATTICE:
            g10, g11 = lam1 * sp0, lam1 * sp1
            k1 = th0 / (1.0 + th1)
            c1 = tl.sqrt((1.0 - k1) * (1.0 + k1))
            r = k1 / c1
            gk1 = -g00 - th1 * g11 - r * (g10 - th1 * g01) + lam1 * u / (c1 * c1 * c1)
            gk2 = -c1 * g01 - k1 * g11
            dth0 = gk1 / (1.0 + th1)
            dth1, gu = gk2 - dth0 * k1, lam0 + lam1 * r
        else:
            dth0, dth1, gu = -g00, -g01, lam0
        return dth0, dth1, gu

    @triton.jit
    def _fwd_kernel(theta, u, state0, y, final, ckpt, L, D, F, NC, chunk,
                    LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        s0, s1 = _load2(state0 + b * row, lane, mask)
        for n in range(0, NC):
            _store2(ckpt + (b * NC + n) * row, lane, mask, s0, s1)
            for t in range(n * chunk, tl.minimum(n * chunk + chunk, L)):
                th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
                ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
                a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
                s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1
                tl.store(y + (b * L + t) * D + d, tl.sum(tl.where(mask, s0, 0.0), axis=1), mask=d < D)
        _store2(final + b * row, lane, mask, s0, s1)

    @triton.jit
    def _recompute(theta, u, ckpt, scratch, b, n, t0, t1, L, D, NC, chunk, row, d, lane, mask,
                   LATTICE: tl.constexpr):
        """scratch[b, t − t0] = s[t − 1], the state entering step t, for t0 ≤ t < t1 (chunk n)."""
        s0, s1 = _load2(ckpt + (b * NC + n) * row, lane, mask)
        for t in range(t0, t1):
            _store2(scratch + (b * chunk + t - t0) * row, lane, mask, s0, s1)
            th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1

    @triton.jit
    def _adjoint_step(theta, u, dy, scratch, dtheta, du, b, t, t0, L, D, chunk, row, d, lane, mask,
                      lam0, lam1, LATTICE: tl.constexpr):
        """One step back: the carry (lam0, lam1) + (∂y[t], 0) = λ[t] -> ∂θ[t], ∂u[t]; returns A_tᵀ λ[t]."""
        th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
        ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        lam0 = lam0 + tl.load(dy + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        sp0, sp1 = _load2(scratch + (b * chunk + t - t0) * row, lane, mask)
        dth0, dth1, gu = _theta_grads(th0, th1, ut, sp0, sp1, lam0, lam1, LATTICE)
        _store2(dtheta + (b * L + t) * row, lane, mask, dth0, dth1)
        tl.store(du + (b * L + t) * D + d, tl.sum(tl.where(mask, gu, 0.0), axis=1), mask=d < D)
        a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
        return a00 * lam0 + a10 * lam1, a01 * lam0 + a11 * lam1

    @triton.jit
    def _bwd_kernel(theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0, L, D, F, NC, chunk,
                    LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        lam0, lam1 = _load2(dfinal + b * row, lane, mask)
        for m in range(0, NC):
            n = NC - 1 - m
            t0 = n * chunk
            t1 = tl.minimum(t0 + chunk, L)
            _recompute(theta, u, ckpt, scratch, b, n, t0, t1, L, D, NC, chunk, row, d, lane, mask, LATTICE)
            tl.debug_barrier()  # scratch written above is read below (and rewritten by the next chunk)
            for i in range(0, t1 - t0):
                lam0, lam1 = _adjoint_step(theta, u, dy, scratch, dtheta, du, b, t1 - 1 - i, t0, L, D, chunk,
                                           row, d, lane, mask, lam0, lam1, LATTICE)
            tl.debug_barrier()
        _store2(dstate0 + b * row, lane, mask, lam0, lam1)


def interpreted() -> bool:
    """Whether the kernels were built for Triton's interpreter (TRITON_INTERPRET=1 when triton and this
    module were imported)."""
    return triton is not None and type(_fwd_kernel).__name__ == "InterpretedFunction"


def available() -> bool:
    """Whether :func:`fwd` and :func:`bwd` can run here: Triton imported, and a CUDA device (compiled
    kernels) or the interpreter (CPU tensors)."""
    return triton is not None and (interpreted() or torch.cuda.is_available())


def _check(*tensors: Tensor) -> None:
    if triton is None:
        raise RuntimeError("selective_triton needs the triton package")
    dtype, device = tensors[0].dtype, tensors[0].device
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"selective_triton computes in float32 or float64, got {dtype}")
    for t in tensors:
        if t.dtype != dtype or t.device != device or not t.is_contiguous():
            raise ValueError(f"expected contiguous {dtype} tensors on {device}, got a {t.dtype} on {t.device} "
                             f"(contiguous: {t.is_contiguous()})")


def _launch(kernel, theta: Tensor, lattice: bool, chunk: int, *args) -> None:
    """Run ``kernel`` on grid (B, ⌈D / BLOCK_D⌉); args = its tensors, then L, D, F, NC, chunk follow."""
    bsz, length, dim, nfilt, _ = theta.shape
    chunk = min(chunk, length)  # the same chunks and ckpt, and the scratch holds min(chunk, L) states
    block_f = triton.next_power_of_2(nfilt)
    block_d = min(triton.next_power_of_2(dim), max(1, MAX_LANES // block_f))
    grid = (bsz, triton.cdiv(dim, block_d))
    with torch.cuda.device(theta.device) if theta.is_cuda else contextlib.nullcontext():
        kernel[grid](*args, length, dim, nfilt, triton.cdiv(length, chunk), chunk, LATTICE=bool(lattice),
                     BLOCK_D=block_d, BLOCK_F=block_f, num_warps=1)


def fwd(theta: Tensor, u: Tensor, state0: Tensor, lattice: bool, chunk: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(θ (B, L, D, F, 2), u (B, L, D), state0 (B, D, F, 2)) -> y (B, L, D), final (B, D, F, 2),
    ckpt (B, NC, D, F, 2): the states entering steps 0, chunk, 2·chunk, … (module docstring)."""
    _check(theta, u, state0)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    bsz, length, dim, nfilt, _ = theta.shape
    nchunks = -(-length // chunk)
    y = u.new_zeros(bsz, length, dim)
    ckpt = theta.new_zeros(bsz, nchunks, dim, nfilt, 2)
    if length == 0 or theta.numel() == 0:  # nothing to scan (and no zero-sized grid to launch)
        return y, state0.clone(), ckpt
    final = torch.empty_like(state0)
    _launch(_fwd_kernel, theta, lattice, chunk, theta, u, state0, y, final, ckpt)
    return y, final, ckpt


def bwd(theta: Tensor, u: Tensor, ckpt: Tensor, dy: Tensor, dfinal: Tensor, lattice: bool,
        chunk: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The adjoint scan: (θ, u, ckpt from :func:`fwd`, ∂y (B, L, D), ∂final (B, D, F, 2)) -> ∂θ (B, L, D, F, 2),
    ∂u (B, L, D), ∂state0 (B, D, F, 2)."""
    _check(theta, u, ckpt, dy, dfinal)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    bsz, length, dim, nfilt, _ = theta.shape
    dtheta, du = torch.zeros_like(theta), torch.zeros_like(u)
    if length == 0 or theta.numel() == 0:
        return dtheta, du, dfinal.clone()
    dstate0 = torch.empty_like(dfinal)
    scratch = theta.new_empty(bsz, min(chunk, length), dim, nfilt, 2)  # one chunk's entering states
    _launch(_bwd_kernel, theta, lattice, chunk, theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0)
    return dtheta, du, dstate0
