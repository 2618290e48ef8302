"""The CUDA kernels of the time-varying IIR op, in Triton: ``fwd`` and ``bwd`` of ``function.py``, sequential over
time or chunk-parallel (the tests run them on CPU under Triton's interpreter, ``TRITON_INTERPRET=1``).

The recursion in state form, the adjoint and the checkpoints are derived in the package docstring; these kernels
write them out per lane = (batch b, channel d, filter f), the driven input u = g·x shared by a channel's F filters.
Θ holds one row per R = ``bin_size`` steps (step t reads row t // R); ∂Θ is written per step and, for R > 1,
summed over each bin's R steps by one torch call after the launch (chunks of one bin may run in different programs).

Parallelisation over lanes (as flash-linear-attention's ``fused_recurrent`` kernels): a program holds a block
of BLOCK_D channels; the F filters of a channel sit in the program's second axis (BLOCK_F = next power of two
≥ F, masked), so Σ_f is an in-register sum. Arithmetic in the inputs' dtype: fp32 (tl.sqrt and / are the
GPU's fast ones, within an ulp or two), or fp64 (correct but slow on GPUs). The interpreter is a choice for
the whole process: TRITON_INTERPRET=1 before triton is first imported (tests/test_selective_triton.py
explains why).

Two schedules over time, the same values (to rounding) and the same ckpt, so either backward takes either
forward's ckpt:

* ``sequential``: one program per (b, channel block) walks all L steps (forward: chunk after chunk, storing
  ckpt; backward: the chunks last to first, recomputing a chunk's states into a scratch buffer, then the adjoint
  back through it, λ in registers). B·⌈D / BLOCK_D⌉ programs, each L dependent steps: on a GPU with B·D·F =
  4,096 lanes that is 64 programs of 4,096 steps, latency-bound, the GPU mostly idle.
* ``chunked`` (chunk-parallel, the chunks of C = ``chunk`` steps that the checkpoints already use, so NC
  chunks and ckpt are the same as above): three launches each way, phases 1 and 3 on a grid of
  (b·NC + n, channel block), i.e. parallel over chunks as well as lanes, phase 2 per (b, channel block):

  forward   (1) chunk n alone: P_n = A_{t1−1}…A_{t0} and v_n, its end state from a zero start
                (``trans`` (B, NC, 3, D, F, 2): P_n's rows, v_n);
            (2) sequential over chunks: ckpt[n] = s_in[n], s_in[n+1] = P_n s_in[n] + v_n, s_in[0] = state0;
                final = s_in[NC];
            (3) chunk n again from ckpt[n], writing y.
  backward  (1) chunk n alone, last step to first: M_n = A_{t0}ᵀ…A_{t1−1}ᵀ = P_nᵀ and w_n = A_{t0}ᵀ λ[t0]
                that ∂y inside the chunk gives with a zero carry entering at its end (θ and ∂y only: A_t does
                not depend on the states);
            (2) sequential over chunks last to first: entering[n] = c_n, the carry into chunk n at its end,
                c_{NC−1} = ∂final, c_{n−1} = M_n c_n + w_n; ∂state0 = M_0 c_0 + w_0 = A_0ᵀ λ[0];
            (3) chunk n: its states from ckpt[n] into its own scratch rows, then the adjoint back through it
                from entering[n], writing ∂θ, ∂u.

  Work: phase 1 walks every step once more (with a 2×2 product): 2L steps forward instead of L, 3L backward
  instead of 2L, in (B·NC)·⌈D / BLOCK_D⌉ programs of C steps, plus the NC steps of phase 2: at L = 4,096,
  C = 32 that is 8,192 programs of 32 steps and a 128-step carry scan instead of 64 programs of 4,096 steps.
  Memory: trans (3 state rows per chunk, both ways), entering (one per chunk), and the backward's scratch
  holds every chunk's states at once (B·NC·C·D·F·2 numbers, about a per-step θ's size, transient), where the
  sequential one holds one chunk's. A single launch of phase 3 that also did phase 2 (every program
  re-scanning the transfers before it) would save a launch at NC² carry steps; not done.

The choice (:func:`schedule_for`): the ``schedule`` keyword of :func:`fwd` / :func:`bwd`, else
$FOCUS_SCAN_SCHEDULE (``sequential``, ``chunked``, ``auto``), else auto = ``chunked`` when L > CHUNKED_ABOVE ·
chunk (CHUNKED_ABOVE = 2). The schedule that ran is logged once per (fwd/bwd, schedule) and kept in
``last_schedule``. NOT MEASURED: no GPU was at hand when the chunked schedule was written, so neither its
speed nor the threshold were timed (both schedules were checked only under the interpreter, on CPU); the
threshold is a guess to be set by the first GPU run (recipes/check_gpu.sh times both schedules).

Glossary (beyond the package's): NB, R = Θ's rows and bin_size (L = NB·R); lane = the flat offset (d·F + f)·2 of
a lane's pair inside one row of D·F·2 numbers; row = D·F·2; lam0, lam1 = λ (before a step is folded in: the carry
A_{t+1}ᵀ λ[t+1], plus ∂final at the end); chunked only: t0, t1 = chunk n's steps [t0, t1) (chunk = min(chunk,
L), so NC = 1 when L ≤ chunk); trans (B, NC, 3, D, F, 2) = per chunk a 2×2 matrix's two rows and a vector (P_n,
v_n forward; M_n, w_n backward); entering (B, NC, D, F, 2) = the carry into each chunk (forward: ckpt itself;
backward: at the chunk's end).
"""
import contextlib
import logging
import os
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ModuleNotFoundError as err:  # no triton (a CPU-only install): function.kernel_for warns where a GPU asks
    if err.name != "triton":
        raise
    triton = tl = None

MAX_LANES = 64  # BLOCK_D · BLOCK_F per program (untuned)
SCHEDULES = ("sequential", "chunked")  # over time: one program walks all L steps, or the three phases
CHUNKED_ABOVE = 2  # auto: chunked when L > CHUNKED_ABOVE · chunk (a guess: no GPU timed it yet)
SCHEDULE_ENV = "FOCUS_SCAN_SCHEDULE"  # sequential, chunked or auto: forces fwd/bwd's choice (bench, tests)

logger = logging.getLogger(__name__)
_logged = set()
last_schedule: Dict[str, str] = {}  # "fwd" / "bwd" -> the schedule of the last launch (not of L = 0 calls)


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
    def _theta_at(theta, b, t, NB, R, row, lane, mask):
        """Θ of step t: row t // R of batch b's NB rows."""
        return _load2(theta + (b * NB + t // R) * row, lane, mask)

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
        """λ[t], s[t−1] = (sp0, sp1) -> ∂θ0, ∂θ1 and the lane's part of ∂u (package docstring)."""
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
    def _forward_steps(theta, u, y, b, t0, t1, L, D, NB, R, row, d, lane, mask, s0, s1, LATTICE: tl.constexpr):
        """From (s0, s1) = s[t0 − 1]: steps t0 ≤ t < t1, writing y[t]; returns s[t1 − 1]."""
        for t in range(t0, t1):
            th0, th1 = _theta_at(theta, b, t, NB, R, row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1
            tl.store(y + (b * L + t) * D + d, tl.sum(tl.where(mask, s0, 0.0), axis=1), mask=d < D)
        return s0, s1

    @triton.jit
    def _fwd_kernel(theta, u, state0, y, final, ckpt, L, D, F, NC, chunk, NB, R,
                    LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Sequential: one program per (b, channel block) walks all L steps."""
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        s0, s1 = _load2(state0 + b * row, lane, mask)
        for n in range(0, NC):
            _store2(ckpt + (b * NC + n) * row, lane, mask, s0, s1)
            s0, s1 = _forward_steps(theta, u, y, b, n * chunk, tl.minimum(n * chunk + chunk, L), L, D, NB, R, row,
                                    d, lane, mask, s0, s1, LATTICE)
        _store2(final + b * row, lane, mask, s0, s1)

    @triton.jit
    def _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, NB, R, row, d, lane, mask, LATTICE: tl.constexpr):
        """scr[t − t0] = s[t − 1], the state entering step t, for t0 ≤ t < t1 (chunk n, from ckpt[b, n])."""
        s0, s1 = _load2(ckpt + (b * NC + n) * row, lane, mask)
        for t in range(t0, t1):
            _store2(scr + (t - t0) * row, lane, mask, s0, s1)
            th0, th1 = _theta_at(theta, b, t, NB, R, row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1

    @triton.jit
    def _adjoint_step(theta, u, dy, scr, dtheta, du, b, t, t0, L, D, NB, R, row, d, lane, mask, lam0, lam1,
                      LATTICE: tl.constexpr):
        """One step back: the carry (lam0, lam1) + (∂y[t], 0) = λ[t] -> ∂θ[t] (per step), ∂u[t]; returns
        A_tᵀ λ[t]."""
        th0, th1 = _theta_at(theta, b, t, NB, R, row, lane, mask)
        ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        lam0 = lam0 + tl.load(dy + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        sp0, sp1 = _load2(scr + (t - t0) * row, lane, mask)
        dth0, dth1, gu = _theta_grads(th0, th1, ut, sp0, sp1, lam0, lam1, LATTICE)
        _store2(dtheta + (b * L + t) * row, lane, mask, dth0, dth1)
        tl.store(du + (b * L + t) * D + d, tl.sum(tl.where(mask, gu, 0.0), axis=1), mask=d < D)
        a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
        return a00 * lam0 + a10 * lam1, a01 * lam0 + a11 * lam1

    @triton.jit
    def _bwd_kernel(theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0, L, D, F, NC, chunk, NB, R,
                    LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Sequential: one program per (b, channel block) walks the chunks last to first."""
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        lam0, lam1 = _load2(dfinal + b * row, lane, mask)
        scr = scratch + b * chunk * row
        for m in range(0, NC):
            n = NC - 1 - m
            t0 = n * chunk
            t1 = tl.minimum(t0 + chunk, L)
            _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, NB, R, row, d, lane, mask, LATTICE)
            tl.debug_barrier()  # scratch written above is read below (and rewritten by the next chunk)
            for i in range(0, t1 - t0):
                lam0, lam1 = _adjoint_step(theta, u, dy, scr, dtheta, du, b, t1 - 1 - i, t0, L, D, NB, R, row, d,
                                           lane, mask, lam0, lam1, LATTICE)
            tl.debug_barrier()
        _store2(dstate0 + b * row, lane, mask, lam0, lam1)

    # ---- chunk-parallel schedule (module docstring): grid (B·NC, channel blocks), except the carry scans ----

    @triton.jit
    def _chunk_program(D, F, NC, chunk, L, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Program (b·NC + n, channel block) -> b, n, its lanes (as :func:`_lanes`), row, chunk n's steps."""
        pid = tl.program_id(0)
        b, n = (pid // NC).to(tl.int64), pid % NC
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        return b, n, d, lane, mask, D * F * 2, n * chunk, tl.minimum(n * chunk + chunk, L)

    @triton.jit
    def _store_transfer(trans, b, n, NC, row, lane, mask, m00, m01, m10, m11, v0, v1):
        """trans[b, n] = (the 2×2 matrix's rows, the vector) of chunk n: trans (B, NC, 3, D, F, 2)."""
        base = trans + (b * NC + n) * 3 * row
        _store2(base, lane, mask, m00, m01)
        _store2(base + row, lane, mask, m10, m11)
        _store2(base + 2 * row, lane, mask, v0, v1)

    @triton.jit
    def _fwd_transfer_kernel(theta, u, trans, L, D, F, NC, chunk, NB, R,
                             LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 1: chunk n's P_n = A_{t1−1}…A_{t0} and v_n = its end state from a zero start."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        zero = tl.zeros([BLOCK_D, BLOCK_F], dtype=theta.dtype.element_ty)
        p00, p01, p10, p11, v0, v1 = zero + 1.0, zero, zero, zero + 1.0, zero, zero
        for t in range(t0, t1):
            th0, th1 = _theta_at(theta, b, t, NB, R, row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            p00, p01, p10, p11 = (a00 * p00 + a01 * p10, a00 * p01 + a01 * p11,
                                  a10 * p00 + a11 * p10, a10 * p01 + a11 * p11)  # A_t P
            v0, v1 = a00 * v0 + a01 * v1 + b0, a10 * v0 + a11 * v1 + b1
        _store_transfer(trans, b, n, NC, row, lane, mask, p00, p01, p10, p11, v0, v1)

    @triton.jit
    def _carry_kernel(trans, init, entering, last, L, D, F, NC, chunk, NB, R, LATTICE: tl.constexpr,
                      BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr, REVERSE: tl.constexpr):
        """Phase 2, per (b, channel block), over the chunks (last to first if REVERSE): entering[b, n] = the
        carry into chunk n, then carry = M_n carry + v_n (trans[b, n]); last = the carry out of the scan."""
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        s0, s1 = _load2(init + b * row, lane, mask)
        for m in range(0, NC):
            if REVERSE:
                n = NC - 1 - m
            else:
                n = m
            _store2(entering + (b * NC + n) * row, lane, mask, s0, s1)
            base = trans + (b * NC + n) * 3 * row
            m00, m01 = _load2(base, lane, mask)
            m10, m11 = _load2(base + row, lane, mask)
            v0, v1 = _load2(base + 2 * row, lane, mask)
            s0, s1 = m00 * s0 + m01 * s1 + v0, m10 * s0 + m11 * s1 + v1
        _store2(last + b * row, lane, mask, s0, s1)

    @triton.jit
    def _fwd_chunk_kernel(theta, u, ckpt, y, L, D, F, NC, chunk, NB, R,
                          LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 3: chunk n again from ckpt[b, n], writing y."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        s0, s1 = _load2(ckpt + (b * NC + n) * row, lane, mask)
        _forward_steps(theta, u, y, b, t0, t1, L, D, NB, R, row, d, lane, mask, s0, s1, LATTICE)

    @triton.jit
    def _bwd_transfer_kernel(theta, dy, trans, L, D, F, NC, chunk, NB, R,
                             LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 1 of the backward, chunk n last step to first: M_n = A_{t0}ᵀ…A_{t1−1}ᵀ (= P_nᵀ) and w_n =
        the carry A_{t0}ᵀ λ[t0] that ∂y inside the chunk gives with a zero carry entering at its end (reads θ,
        ∂y)."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        zero = tl.zeros([BLOCK_D, BLOCK_F], dtype=theta.dtype.element_ty)
        m00, m01, m10, m11, w0, w1 = zero + 1.0, zero, zero, zero + 1.0, zero, zero
        for i in range(0, t1 - t0):
            t = t1 - 1 - i
            th0, th1 = _theta_at(theta, b, t, NB, R, row, lane, mask)
            a00, a01, a10, a11, _b0, _b1 = _transition(th0, th1, zero, LATTICE)  # b_t unused: u = 0
            w0 = w0 + tl.load(dy + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            m00, m01, m10, m11 = (a00 * m00 + a10 * m10, a00 * m01 + a10 * m11,
                                  a01 * m00 + a11 * m10, a01 * m01 + a11 * m11)  # A_tᵀ M
            w0, w1 = a00 * w0 + a10 * w1, a01 * w0 + a11 * w1
        _store_transfer(trans, b, n, NC, row, lane, mask, m00, m01, m10, m11, w0, w1)

    @triton.jit
    def _bwd_chunk_kernel(theta, u, ckpt, dy, entering, scratch, dtheta, du, L, D, F, NC, chunk, NB, R,
                          LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 3 of the backward: chunk n's states from ckpt[b, n] into its own scratch rows, then the adjoint
        back through it from the carry entering[b, n] (phase 2), writing ∂θ and ∂u."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        scr = scratch + (b * NC + n) * chunk * row
        _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, NB, R, row, d, lane, mask, LATTICE)
        tl.debug_barrier()  # scratch written above is read below
        lam0, lam1 = _load2(entering + (b * NC + n) * row, lane, mask)
        for i in range(0, t1 - t0):
            lam0, lam1 = _adjoint_step(theta, u, dy, scr, dtheta, du, b, t1 - 1 - i, t0, L, D, NB, R, row, d, lane,
                                       mask, lam0, lam1, LATTICE)


def interpreted() -> bool:
    """Whether the kernels were built for Triton's interpreter (TRITON_INTERPRET=1 when triton and this
    module were imported)."""
    return triton is not None and type(_fwd_kernel).__name__ == "InterpretedFunction"


def available() -> bool:
    """Whether :func:`fwd` and :func:`bwd` can run here: Triton imported, and a CUDA device (compiled
    kernels) or the interpreter (CPU tensors)."""
    return triton is not None and (interpreted() or torch.cuda.is_available())


class _Sizes(NamedTuple):
    """What a launch needs: B, L, D, F, NB, R; chunk = min(chunk, L) (the same chunks and ckpt, and the scratch
    holds min(chunk, L) states), NC = ⌈L / chunk⌉."""
    B: int
    L: int
    D: int
    F: int
    NB: int
    R: int
    chunk: int
    NC: int


def _sizes(theta: Tensor, u: Tensor, chunk: int, bin_size: int, *tensors: Tensor) -> _Sizes:
    """Check the arguments of :func:`fwd` / :func:`bwd` (θ, u, then the others) and return their sizes."""
    if triton is None:
        raise RuntimeError("the Triton IIR kernels need the triton package")
    if chunk < 1 or bin_size < 1:
        raise ValueError(f"chunk and bin_size must be positive, got {chunk} and {bin_size}")
    dtype, device = theta.dtype, theta.device
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the Triton IIR kernels compute in float32 or float64, got {dtype}")
    for t in (theta, u, *tensors):
        if t.dtype != dtype or t.device != device or not t.is_contiguous():
            raise ValueError(f"expected contiguous {dtype} tensors on {device}, got a {t.dtype} on {t.device} "
                             f"(contiguous: {t.is_contiguous()})")
    bsz, nbins, dim, nfilt, _ = theta.shape
    length = nbins * bin_size
    if u.shape != (bsz, length, dim):
        raise ValueError(f"u {tuple(u.shape)} must be (B, NB·bin_size, D) = {(bsz, length, dim)}")
    chunk = max(1, min(chunk, length))
    return _Sizes(bsz, length, dim, nfilt, nbins, bin_size, chunk, -(-length // chunk))


def _launch(kernel, n: _Sizes, lattice: bool, per_chunk: bool, tensors: Tuple[Tensor, ...],
            reverse: Optional[bool] = None) -> None:
    """Run ``kernel`` on grid (B, ⌈D / BLOCK_D⌉), or (B·NC, ⌈D / BLOCK_D⌉) if ``per_chunk``: its tensors, then
    L, D, F, NC, chunk, NB, R; ``reverse``: the carry kernel's REVERSE."""
    block_f = triton.next_power_of_2(n.F)
    block_d = min(triton.next_power_of_2(n.D), max(1, MAX_LANES // block_f))
    grid = (n.B * n.NC if per_chunk else n.B, triton.cdiv(n.D, block_d))
    extra = {} if reverse is None else {"REVERSE": reverse}
    with torch.cuda.device(tensors[0].device) if tensors[0].is_cuda else contextlib.nullcontext():
        kernel[grid](*tensors, n.L, n.D, n.F, n.NC, n.chunk, n.NB, n.R, LATTICE=bool(lattice), BLOCK_D=block_d,
                     BLOCK_F=block_f, num_warps=1, **extra)


def schedule_for(length: int, chunk: int, schedule: Optional[str] = None) -> str:
    """``sequential`` or ``chunked``: ``schedule`` if given, else $FOCUS_SCAN_SCHEDULE if set, else ``auto``;
    auto = chunked when L > CHUNKED_ABOVE · chunk (module docstring: a guess, not measured on a GPU)."""
    if schedule is None:
        schedule = os.environ.get(SCHEDULE_ENV) or "auto"
    if schedule not in SCHEDULES + ("auto",):
        raise ValueError(f"schedule must be one of {SCHEDULES + ('auto',)} (argument or ${SCHEDULE_ENV}), "
                         f"got {schedule!r}")
    if schedule == "auto":
        schedule = "chunked" if length > CHUNKED_ABOVE * chunk else "sequential"
    return schedule


def _record(op: str, schedule: str, length: int, chunk: int) -> None:
    """last_schedule[op] = schedule; logged once per (op, schedule)."""
    last_schedule[op] = schedule
    if (op, schedule) not in _logged:
        _logged.add((op, schedule))
        logger.info(f"tv_iir.triton.{op}: {schedule} schedule (first at L={length}, chunk={chunk}; "
                    f"chunked when L > {CHUNKED_ABOVE}·chunk or ${SCHEDULE_ENV}=chunked)")


def fwd(theta: Tensor, u: Tensor, state0: Tensor, lattice: bool, chunk: int, bin_size: int = 1,
        schedule: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """(θ (B, NB, D, F, 2), u (B, L = NB·bin_size, D), state0 (B, D, F, 2)) -> y (B, L, D), final (B, D, F, 2),
    ckpt (B, NC, D, F, 2): the states entering steps 0, chunk, 2·chunk, … (package docstring); ``schedule``:
    :func:`schedule_for` (either gives the same ckpt layout, so either backward takes it)."""
    n = _sizes(theta, u, chunk, bin_size, state0)
    if state0.shape != (n.B, n.D, n.F, 2):
        raise ValueError(f"state0 {tuple(state0.shape)} must be (B, D, F, 2) = {(n.B, n.D, n.F, 2)}")
    schedule = schedule_for(n.L, chunk, schedule)
    y = u.new_zeros(n.B, n.L, n.D)
    ckpt = theta.new_zeros(n.B, -(-n.L // chunk), n.D, n.F, 2)
    if n.L == 0 or theta.numel() == 0:  # nothing to scan (and no zero-sized grid to launch)
        return y, state0.clone(), ckpt
    _record("fwd", schedule, n.L, chunk)
    final = torch.empty_like(state0)
    if schedule == "sequential":
        _launch(_fwd_kernel, n, lattice, False, (theta, u, state0, y, final, ckpt))
        return y, final, ckpt
    trans = theta.new_empty(n.B, n.NC, 3, n.D, n.F, 2)  # per chunk: P_n (two rows), v_n
    _launch(_fwd_transfer_kernel, n, lattice, True, (theta, u, trans))
    _launch(_carry_kernel, n, lattice, False, (trans, state0, ckpt, final), reverse=False)
    _launch(_fwd_chunk_kernel, n, lattice, True, (theta, u, ckpt, y))
    return y, final, ckpt


def bwd(theta: Tensor, u: Tensor, ckpt: Tensor, dy: Tensor, dfinal: Tensor, lattice: bool, chunk: int,
        bin_size: int = 1, schedule: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """The adjoint scan: (θ, u, ckpt from :func:`fwd`, ∂y (B, L, D), ∂final (B, D, F, 2)) -> ∂θ (θ's shape),
    ∂u (B, L, D), ∂state0 (B, D, F, 2); ``schedule``: :func:`schedule_for`."""
    n = _sizes(theta, u, chunk, bin_size, ckpt, dy, dfinal)
    shapes = {"ckpt": (ckpt, (n.B, -(-n.L // chunk), n.D, n.F, 2)), "dy": (dy, (n.B, n.L, n.D)),
              "dfinal": (dfinal, (n.B, n.D, n.F, 2))}
    for name, (t, want) in shapes.items():
        if t.shape != want:
            raise ValueError(f"{name} {tuple(t.shape)} must be {want}")
    schedule = schedule_for(n.L, chunk, schedule)
    dtheta = theta.new_zeros(n.B, n.L, n.D, n.F, 2)  # per step; summed over each bin below
    du = torch.zeros_like(u)
    if n.L == 0 or theta.numel() == 0:
        return torch.zeros_like(theta), du, dfinal.clone()
    _record("bwd", schedule, n.L, chunk)
    dstate0 = torch.empty_like(dfinal)
    if schedule == "sequential":
        scratch = theta.new_empty(n.B, n.chunk, n.D, n.F, 2)  # one chunk's entering states per b
        _launch(_bwd_kernel, n, lattice, False, (theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0))
    else:
        trans = theta.new_empty(n.B, n.NC, 3, n.D, n.F, 2)  # per chunk: M_n (two rows), w_n
        entering = theta.new_empty(n.B, n.NC, n.D, n.F, 2)  # the carry into each chunk from its end
        scratch = theta.new_empty(n.B, n.NC * n.chunk, n.D, n.F, 2)  # every chunk's entering states
        _launch(_bwd_transfer_kernel, n, lattice, True, (theta, dy, trans))
        _launch(_carry_kernel, n, lattice, False, (trans, dfinal, entering, dstate0), reverse=True)
        _launch(_bwd_chunk_kernel, n, lattice, True, (theta, u, ckpt, dy, entering, scratch, dtheta, du))
    if n.R > 1:
        dtheta = dtheta.view(n.B, n.NB, n.R, n.D, n.F, 2).sum(2)  # a bin's row sums its R steps
    return dtheta, du, dstate0
