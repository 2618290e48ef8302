"""The fused per-token order-2 IIR scan in Triton: forward and backward kernels, sequential over time or
chunk-parallel (CUDA; the tests run them on CPU under Triton's interpreter, ``TRITON_INTERPRET=1``).

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

Parallelisation over lanes (as flash-linear-attention's ``fused_recurrent`` kernels): a program holds a block
of BLOCK_D channels; the F filters of a channel sit in the program's second axis (BLOCK_F = next power of two
≥ F, masked), so Σ_f is an in-register sum. Arithmetic in the inputs' dtype: fp32 (tl.sqrt and / are the
GPU's fast ones, within an ulp or two), or fp64 (correct but slow on GPUs). The interpreter is a choice for
the whole process: TRITON_INTERPRET=1 before triton is first imported (tests/test_selective_triton.py
explains why).

Two schedules over time, the same values (to rounding) and the same ckpt, so either backward takes either
forward's ckpt:

* ``sequential``: one program per (b, channel block) walks all L steps (forward: chunk after chunk, storing
  ckpt; backward: the chunks last to first, as above). B·⌈D / BLOCK_D⌉ programs, each L dependent steps: on a
  GPU with B·D·F = 4,096 lanes that is 64 programs of 4,096 steps, latency-bound, the GPU mostly idle.
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
  holds every chunk's states at once (B·NC·C·D·F·2 numbers, about θ's size, transient), where the
  sequential one holds one chunk's. A single launch of phase 3 that also did phase 2 (every program
  re-scanning the transfers before it) would save a launch at NC² carry steps; not done.

The choice (:func:`schedule_for`): the ``schedule`` keyword of :func:`fwd` / :func:`bwd`, else
$FOCUS_SCAN_SCHEDULE (``sequential``, ``chunked``, ``auto``), else auto = ``chunked`` when L > CHUNKED_ABOVE ·
chunk (CHUNKED_ABOVE = 2). The schedule that ran is logged once per (fwd/bwd, schedule) and kept in
``last_schedule``. NOT MEASURED: no GPU was at hand when the chunked schedule was written, so neither its
speed nor the threshold were timed (both schedules were checked only under the interpreter, on CPU); the
threshold is a guess to be set by the first GPU run (tools/bench.py with $FOCUS_SCAN_SCHEDULE forcing each).

Glossary: theta (B, L, D, F, 2) = Θ per token; u (B, L, D); state0, final, dfinal, dstate0 (B, D, F, 2);
ckpt (B, NC, D, F, 2), NC = ⌈L / chunk⌉, ckpt[:, n] = s[n·chunk − 1] (ckpt[:, 0] = state0); y, dy, du
(B, L, D); lane = the flat offset (d·F + f)·2 of a lane's pair inside one (b, t) row of D·F·2 numbers;
row = D·F·2; lam0, lam1 = λ (before a step is folded in: the carry A_{t+1}ᵀ λ[t+1], plus ∂final at the end);
chunked only: t0, t1 = chunk n's steps [t0, t1) (chunk = min(chunk, L), so NC = 1 when L ≤ chunk); trans
(B, NC, 3, D, F, 2) = per chunk a 2×2 matrix's two rows and a vector (P_n, v_n forward; M_n, w_n backward);
entering (B, NC, D, F, 2) = the carry into each chunk (forward: ckpt itself; backward: at the chunk's end).
"""
import contextlib
import logging
import os
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: the CPU kernel or the torch scan runs instead
    triton = None
    tl = None

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
    def _forward_steps(theta, u, y, b, t0, t1, L, D, row, d, lane, mask, s0, s1, LATTICE: tl.constexpr):
        """From (s0, s1) = s[t0 − 1]: steps t0 ≤ t < t1, writing y[t]; returns s[t1 − 1]."""
        for t in range(t0, t1):
            th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1
            tl.store(y + (b * L + t) * D + d, tl.sum(tl.where(mask, s0, 0.0), axis=1), mask=d < D)
        return s0, s1

    @triton.jit
    def _fwd_kernel(theta, u, state0, y, final, ckpt, L, D, F, NC, chunk,
                    LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Sequential: one program per (b, channel block) walks all L steps."""
        b = tl.program_id(0).to(tl.int64)
        d, lane, mask = _lanes(tl.program_id(1), D, F, BLOCK_D, BLOCK_F)
        row = D * F * 2
        s0, s1 = _load2(state0 + b * row, lane, mask)
        for n in range(0, NC):
            _store2(ckpt + (b * NC + n) * row, lane, mask, s0, s1)
            s0, s1 = _forward_steps(theta, u, y, b, n * chunk, tl.minimum(n * chunk + chunk, L), L, D, row,
                                    d, lane, mask, s0, s1, LATTICE)
        _store2(final + b * row, lane, mask, s0, s1)

    @triton.jit
    def _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, row, d, lane, mask, LATTICE: tl.constexpr):
        """scr[t − t0] = s[t − 1], the state entering step t, for t0 ≤ t < t1 (chunk n, from ckpt[b, n])."""
        s0, s1 = _load2(ckpt + (b * NC + n) * row, lane, mask)
        for t in range(t0, t1):
            _store2(scr + (t - t0) * row, lane, mask, s0, s1)
            th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            s0, s1 = a00 * s0 + a01 * s1 + b0, a10 * s0 + a11 * s1 + b1

    @triton.jit
    def _adjoint_step(theta, u, dy, scr, dtheta, du, b, t, t0, L, D, row, d, lane, mask, lam0, lam1,
                      LATTICE: tl.constexpr):
        """One step back: the carry (lam0, lam1) + (∂y[t], 0) = λ[t] -> ∂θ[t], ∂u[t]; returns A_tᵀ λ[t]."""
        th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
        ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        lam0 = lam0 + tl.load(dy + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
        sp0, sp1 = _load2(scr + (t - t0) * row, lane, mask)
        dth0, dth1, gu = _theta_grads(th0, th1, ut, sp0, sp1, lam0, lam1, LATTICE)
        _store2(dtheta + (b * L + t) * row, lane, mask, dth0, dth1)
        tl.store(du + (b * L + t) * D + d, tl.sum(tl.where(mask, gu, 0.0), axis=1), mask=d < D)
        a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
        return a00 * lam0 + a10 * lam1, a01 * lam0 + a11 * lam1

    @triton.jit
    def _bwd_kernel(theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0, L, D, F, NC, chunk,
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
            _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, row, d, lane, mask, LATTICE)
            tl.debug_barrier()  # scratch written above is read below (and rewritten by the next chunk)
            for i in range(0, t1 - t0):
                lam0, lam1 = _adjoint_step(theta, u, dy, scr, dtheta, du, b, t1 - 1 - i, t0, L, D, row, d, lane,
                                           mask, lam0, lam1, LATTICE)
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
    def _fwd_transfer_kernel(theta, u, trans, L, D, F, NC, chunk,
                             LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 1: chunk n's P_n = A_{t1−1}…A_{t0} and v_n = its end state from a zero start."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        zero = tl.zeros([BLOCK_D, BLOCK_F], dtype=theta.dtype.element_ty)
        p00, p01, p10, p11, v0, v1 = zero + 1.0, zero, zero, zero + 1.0, zero, zero
        for t in range(t0, t1):
            th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
            ut = tl.load(u + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            a00, a01, a10, a11, b0, b1 = _transition(th0, th1, ut, LATTICE)
            p00, p01, p10, p11 = (a00 * p00 + a01 * p10, a00 * p01 + a01 * p11,
                                  a10 * p00 + a11 * p10, a10 * p01 + a11 * p11)  # A_t P
            v0, v1 = a00 * v0 + a01 * v1 + b0, a10 * v0 + a11 * v1 + b1
        _store_transfer(trans, b, n, NC, row, lane, mask, p00, p01, p10, p11, v0, v1)

    @triton.jit
    def _carry_kernel(trans, init, entering, last, L, D, F, NC, chunk, LATTICE: tl.constexpr,
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
    def _fwd_chunk_kernel(theta, u, ckpt, y, L, D, F, NC, chunk,
                          LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 3: chunk n again from ckpt[b, n], writing y."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        s0, s1 = _load2(ckpt + (b * NC + n) * row, lane, mask)
        _forward_steps(theta, u, y, b, t0, t1, L, D, row, d, lane, mask, s0, s1, LATTICE)

    @triton.jit
    def _bwd_transfer_kernel(theta, dy, trans, L, D, F, NC, chunk,
                             LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 1 of the backward, chunk n last step to first: M_n = A_{t0}ᵀ…A_{t1−1}ᵀ (= P_nᵀ) and w_n =
        the carry A_{t0}ᵀ λ[t0] that ∂y inside the chunk gives with a zero carry entering at its end (reads θ,
        ∂y)."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        zero = tl.zeros([BLOCK_D, BLOCK_F], dtype=theta.dtype.element_ty)
        m00, m01, m10, m11, w0, w1 = zero + 1.0, zero, zero, zero + 1.0, zero, zero
        for i in range(0, t1 - t0):
            t = t1 - 1 - i
            th0, th1 = _load2(theta + (b * L + t) * row, lane, mask)
            a00, a01, a10, a11, _b0, _b1 = _transition(th0, th1, zero, LATTICE)  # b_t unused: u = 0
            w0 = w0 + tl.load(dy + (b * L + t) * D + d, mask=d < D, other=0.0)[:, None]
            m00, m01, m10, m11 = (a00 * m00 + a10 * m10, a00 * m01 + a10 * m11,
                                  a01 * m00 + a11 * m10, a01 * m01 + a11 * m11)  # A_tᵀ M
            w0, w1 = a00 * w0 + a10 * w1, a01 * w0 + a11 * w1
        _store_transfer(trans, b, n, NC, row, lane, mask, m00, m01, m10, m11, w0, w1)

    @triton.jit
    def _bwd_chunk_kernel(theta, u, ckpt, dy, entering, scratch, dtheta, du, L, D, F, NC, chunk,
                          LATTICE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_F: tl.constexpr):
        """Phase 3 of the backward: chunk n's states from ckpt[b, n] into its own scratch rows, then the adjoint
        back through it from the carry entering[b, n] (phase 2), writing ∂θ and ∂u."""
        b, n, d, lane, mask, row, t0, t1 = _chunk_program(D, F, NC, chunk, L, BLOCK_D, BLOCK_F)
        scr = scratch + (b * NC + n) * chunk * row
        _recompute(theta, u, ckpt, scr, b, n, t0, t1, L, D, NC, row, d, lane, mask, LATTICE)
        tl.debug_barrier()  # scratch written above is read below
        lam0, lam1 = _load2(entering + (b * NC + n) * row, lane, mask)
        for i in range(0, t1 - t0):
            lam0, lam1 = _adjoint_step(theta, u, dy, scr, dtheta, du, b, t1 - 1 - i, t0, L, D, row, d, lane,
                                       mask, lam0, lam1, LATTICE)


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


def _launch(kernel, theta: Tensor, lattice: bool, chunk: int, per_chunk: bool, *args, **meta) -> None:
    """Run ``kernel`` on grid (B, ⌈D / BLOCK_D⌉), or (B·NC, ⌈D / BLOCK_D⌉) if ``per_chunk``; args = its
    tensors, then L, D, F, NC, chunk follow; meta = any further constexpr."""
    bsz, length, dim, nfilt, _ = theta.shape
    chunk = min(chunk, length)  # the same chunks and ckpt, and the scratch holds min(chunk, L) states
    nchunks = triton.cdiv(length, chunk)
    block_f = triton.next_power_of_2(nfilt)
    block_d = min(triton.next_power_of_2(dim), max(1, MAX_LANES // block_f))
    grid = (bsz * nchunks if per_chunk else bsz, triton.cdiv(dim, block_d))
    with torch.cuda.device(theta.device) if theta.is_cuda else contextlib.nullcontext():
        kernel[grid](*args, length, dim, nfilt, nchunks, chunk, LATTICE=bool(lattice), BLOCK_D=block_d,
                     BLOCK_F=block_f, num_warps=1, **meta)


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
        logger.info(f"selective_triton.{op}: {schedule} schedule (first at L={length}, chunk={chunk}; "
                    f"chunked when L > {CHUNKED_ABOVE}·chunk or ${SCHEDULE_ENV}=chunked)")


def fwd(theta: Tensor, u: Tensor, state0: Tensor, lattice: bool, chunk: int,
        schedule: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """(θ (B, L, D, F, 2), u (B, L, D), state0 (B, D, F, 2)) -> y (B, L, D), final (B, D, F, 2),
    ckpt (B, NC, D, F, 2): the states entering steps 0, chunk, 2·chunk, … (module docstring); ``schedule``:
    :func:`schedule_for` (either gives the same ckpt layout, so either backward takes it)."""
    _check(theta, u, state0)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    bsz, length, dim, nfilt, _ = theta.shape
    nchunks = -(-length // chunk)
    schedule = schedule_for(length, chunk, schedule)
    y = u.new_zeros(bsz, length, dim)
    ckpt = theta.new_zeros(bsz, nchunks, dim, nfilt, 2)
    if length == 0 or theta.numel() == 0:  # nothing to scan (and no zero-sized grid to launch)
        return y, state0.clone(), ckpt
    _record("fwd", schedule, length, chunk)
    final = torch.empty_like(state0)
    if schedule == "sequential":
        _launch(_fwd_kernel, theta, lattice, chunk, False, theta, u, state0, y, final, ckpt)
        return y, final, ckpt
    trans = theta.new_empty(bsz, nchunks, 3, dim, nfilt, 2)  # per chunk: P_n (two rows), v_n
    _launch(_fwd_transfer_kernel, theta, lattice, chunk, True, theta, u, trans)
    _launch(_carry_kernel, theta, lattice, chunk, False, trans, state0, ckpt, final, REVERSE=False)
    _launch(_fwd_chunk_kernel, theta, lattice, chunk, True, theta, u, ckpt, y)
    return y, final, ckpt


def bwd(theta: Tensor, u: Tensor, ckpt: Tensor, dy: Tensor, dfinal: Tensor, lattice: bool, chunk: int,
        schedule: Optional[str] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """The adjoint scan: (θ, u, ckpt from :func:`fwd`, ∂y (B, L, D), ∂final (B, D, F, 2)) -> ∂θ (B, L, D, F, 2),
    ∂u (B, L, D), ∂state0 (B, D, F, 2); ``schedule``: :func:`schedule_for`."""
    _check(theta, u, ckpt, dy, dfinal)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    bsz, length, dim, nfilt, _ = theta.shape
    schedule = schedule_for(length, chunk, schedule)
    dtheta, du = torch.zeros_like(theta), torch.zeros_like(u)
    if length == 0 or theta.numel() == 0:
        return dtheta, du, dfinal.clone()
    _record("bwd", schedule, length, chunk)
    dstate0 = torch.empty_like(dfinal)
    chunk = min(chunk, length)  # as _launch: the kernels' chunk, the scratch's rows per chunk
    if schedule == "sequential":
        scratch = theta.new_empty(bsz, chunk, dim, nfilt, 2)  # one chunk's entering states per b
        _launch(_bwd_kernel, theta, lattice, chunk, False, theta, u, ckpt, dy, dfinal, scratch, dtheta, du, dstate0)
        return dtheta, du, dstate0
    nchunks = ckpt.size(1)
    trans = theta.new_empty(bsz, nchunks, 3, dim, nfilt, 2)  # per chunk: M_n (two rows), w_n
    entering = theta.new_empty(bsz, nchunks, dim, nfilt, 2)  # the carry into each chunk from its end
    scratch = theta.new_empty(bsz, nchunks * chunk, dim, nfilt, 2)  # every chunk's entering states: ~θ's size
    _launch(_bwd_transfer_kernel, theta, lattice, chunk, True, theta, dy, trans)
    _launch(_carry_kernel, theta, lattice, chunk, False, trans, dfinal, entering, dstate0, REVERSE=True)
    _launch(_bwd_chunk_kernel, theta, lattice, chunk, True, theta, u, ckpt, dy, entering, scratch, dtheta, du)
    return dtheta, du, dstate0
