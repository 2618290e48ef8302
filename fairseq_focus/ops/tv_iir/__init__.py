"""The time-varying order-2 IIR filter bank: Θ changes at every sample (the selective head's op), or every R
samples (a bin: the hypernetwork heads' ``carry`` mode, ``ops/iir``). The math is written here once; the files of
this folder are its forms, tied to each other by tests/test_selective_iir.py and tests/test_selective_triton.py.

**The recursion.** Each of the F filters of a channel runs eq. 32 with coefficients of its own at every step, and
an input gain g[t] per channel (the "B" of a state-space model):

    y_f[t] = g[t]·x[t] − θ0_f[t]·y_f[t−1] − θ1_f[t]·y_f[t−2],        output  Σ_f y_f[t]   (eq. 7)

**State form.** Per lane (batch b, channel d, filter f), with the driven input u = g·x shared by the F filters:

    s[t] = A_t s[t−1] + b_t,   s[−1] = state0,   y[t] = Σ_f s_f[t]₀

a 2×2 linear recurrence, so the pairs (A_t, b_t) compose associatively, (A', b') ∘ (A, b) = (A'A, A'b + b'), and
the whole sequence is one scan (Blelloch 1990; the selective scan of Mamba, Gu & Dao 2023, with a 2×2 block
instead of a diagonal). Two realisations of the same frozen-time filter (``form``):

* ``lattice`` (the default): the normalized lattice of Gray & Markel (1975), built from the reflection
  coefficients k2 = θ1, k1 = θ0 / (1 + θ1) (the step-down recursion; |k| < 1 inside the triangle). Each stage is
  a plane rotation, [f_{m−1}[t], g_m[t]] = [[c_m, −k_m], [k_m, c_m]]·[f_m[t], g_{m−1}[t−1]], c_m = √(1 − k_m²),
  with f_2 = u, y = f_0 = g_0. The map (u, s[t−1]) -> (g_2, s[t]) is orthogonal, so ‖s[t]‖² ≤ ‖s[t−1]‖² + u[t]²
  whatever Θ does from sample to sample: **stable under any time variation**. Its frozen-time response is
  c1·c2 / A(z), so the input is scaled by g[t] / (c1[t]·c2[t]): with a constant Θ the output is exactly the
  all-pole filter 1 / A(z) of the static head. State s[t] = (y[t], g_1[t]); multiplied out,

      A_t = [[−k1, −c1·k2], [c1, −k1·k2]],   b_t = (u, k1·u / c1),   c1 = √((1 − k1)(1 + k1)).

* ``companion``: the direct form of eq. 32, state (y[t], y[t−1]),

      A_t = [[−θ0, −θ1], [1, 0]],   b_t = (u, 0).

  Every frozen-time A_t is stable, but a product of them need not be: companion matrices are far from normal
  (‖A‖ ≈ 2.4 near a double pole at +1), and with Θ drawn afresh at every sample an impulse response grew to
  1e33 over 4096 samples (logits N(0, 2²)), and to NaN around LRU's ring (poles 0.9–0.999) moved by logits
  N(0, 1) (tests/test_selective_iir.py keeps the measurement). Kept for the study rows measured with it
  (docs/RESULTS.md §1b), and it is the per-bin heads' form.

Every frozen-time pole stays inside |p| ≤ ρ < 1 (``ops/theta.py``'s maps) in both forms. The arithmetic runs in
fp32 (fp64 stays fp64) with autocast off, like the other filters.

**The adjoint** (the backward of the fused kernels; the transpose of the forward scan, run backward in time).
With λ[t] = ∂loss/∂s[t]:

    λ[t] = (∂y[t], 0) + A_{t+1}ᵀ λ[t+1]     (λ[L−1] = (∂y[L−1], 0) + ∂final),
    ∂A_t = λ[t] s[t−1]ᵀ  (g00 = λ0·s0', g01 = λ0·s1', g10 = λ1·s0', g11 = λ1·s1', s' = s[t−1]),
    ∂b_t = λ[t],   ∂state0 = A_0ᵀ λ[0]   (= ∂final when L = 0),

then the chain rule to Θ and u (∂c1/∂k1 = −k1/c1, ∂(k1/c1)/∂k1 = 1/c1³):

    lattice   ∂k1 = −g00 − k2·g11 − (k1/c1)(g10 − k2·g01) + λ1·u/c1³,   ∂k2 = −c1·g01 − k1·g11,
              ∂u = λ0 + λ1·k1/c1,   ∂θ0 = ∂k1 / (1 + θ1),   ∂θ1 = ∂k2 − ∂k1·k1 / (1 + θ1)
    companion ∂θ0 = −g00,   ∂θ1 = −g01,   ∂u = λ0

∂u of a channel sums its F lanes; with Θ per bin, ∂Θ of a bin sums its R steps. For the lattice ‖A_t‖ ≤ 1, so
the adjoint is as stable as the forward. States are not saved per step: the forward keeps only the state entering
every ``chunk``-th step (the checkpoints), and the backward recomputes one chunk's states from its checkpoint
before walking that chunk backward (as Mamba's scan kernels do), so the saved memory is Θ, u and L/chunk states.

**The forms** (the same values to rounding; one signature per tier):

* ``naive.py``: the reference, :func:`tv_iir_filter_ref`: one step per sample (:func:`lattice_step`, written as the
  lattice's two rotations; :func:`iir_step`, eq. 32), gradients by torch autograd; also the argument checks and
  :data:`CHUNK`.
* ``chunk.py``: :func:`tv_iir_filter_scan`, the chunked scan in torch ops (C stepwise steps inside every chunk, a
  Hillis–Steele scan across chunks), autograd's backward: the path where no kernel is at hand, and the kernels'
  second twin.
* ``function.py``: :class:`TVIIRScan`, the autograd.Function around a fused kernel's ``fwd`` / ``bwd`` (one call
  each way whatever L), :func:`kernel_for` (which kernel a device gets, loud where none is built), and the
  dispatchers :func:`tv_iir_filter` and :func:`tv_iir_stream`.
* ``scan_cpu.cpp``: the CPU kernel (built by setup.py as ``fairseq_focus._selective_cpu``, OpenMP over batch ×
  channel blocks).
* ``triton.py``: the CUDA kernels (Triton; run on CPU by its interpreter in the tests), sequential or
  chunk-parallel over time.

Glossary: x (B, D, L); theta (B, L, D, F, 2) = Θ per sample, or (B, NB, D, F, 2) per bin of R = bin_size samples
(L = NB·R); gain (B, L, D) = g or None (g = 1); u (B, L, D) = g·x, the kernels' layout; state, state0, final
(B, D, F, 2), the form's state (above); C = ``chunk``; ckpt (B, NC, D, F, 2), NC = ⌈L / C⌉, ckpt[:, n] =
s[n·C − 1] (ckpt[:, 0] = state0); k, c the lattice's reflection coefficients and their cosines; λ the adjoint.
"""
from .chunk import tv_iir_filter_scan
from .function import TVIIRScan, fused_scan, kernel_for, tv_iir_filter, tv_iir_stream
from .naive import CHUNK, FORMS, iir_step, lattice_coefficients, lattice_step, tv_iir_filter_ref

__all__ = ["CHUNK", "FORMS", "TVIIRScan", "fused_scan", "iir_step", "kernel_for", "lattice_coefficients",
           "lattice_step", "tv_iir_filter", "tv_iir_filter_ref", "tv_iir_filter_scan", "tv_iir_stream"]
