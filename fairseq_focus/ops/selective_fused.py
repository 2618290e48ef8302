"""The per-token order-2 IIR scan fused into one kernel call forward and one backward (the default head's op).

The recursion is the one of :mod:`.selective_iir` (its module docstring has both realisations), written in
state form per lane (batch b, channel d, filter f) with the driven input u = g·x shared by the F filters:

    s[t] = A_t s[t−1] + b_t,   s[−1] = state0,   y[t] = Σ_f s_f[t]₀
    lattice:   A_t = [[−k1, −c1·k2], [c1, −k1·k2]],  b_t = (u, k1·u / c1)   (k2 = θ1, k1 = θ0/(1+θ1), c1 = √(1−k1²))
    companion: A_t = [[−θ0, −θ1], [1, 0]],            b_t = (u, 0)

**Backward** is the adjoint recurrence, run backward in time (the transpose of the forward scan):

    λ[t] = (∂y[t], 0) + A_{t+1}ᵀ λ[t+1]   (λ[L−1] also gets ∂final),
    ∂A_t = λ[t] s[t−1]ᵀ,   ∂b_t = λ[t],   ∂state0 = A_0ᵀ λ[0],

then the chain rule to θ and u (k1, k2, c1 as above). For the lattice ‖A_t‖ ≤ 1, so the adjoint is as stable
as the forward. States are not saved per step: the forward keeps only the state entering every ``chunk``
steps, and the backward recomputes one chunk's states from it before walking that chunk backward (Mamba's
scan kernels do the same), so the saved memory is θ, u and L/chunk states.

Kernels, one per device type, with the same two functions (``fwd``, ``bwd``; shapes in :class:`TVIIRScan`):

* CPU: ``fairseq_focus._selective_cpu``, compiled from ``csrc/selective_scan_cpu.cpp`` by ``setup.py``;
* CUDA: :mod:`.selective_triton` (Triton), also run on CPU by Triton's interpreter in the tests; it walks
  time sequentially for short L and chunk-parallel (three launches each way) for long L, ``chunk`` being its
  chunk length too (its module docstring: the threshold, $FOCUS_SCAN_SCHEDULE to force either).

:func:`kernel_for` returns None where neither is at hand (a pure-Python install, a GPU without Triton):
``tv_iir_filter`` then takes its chunked torch scan, which gives the same values. The path taken is logged
once per device type.
"""
import logging
from typing import Optional, Tuple

import torch
from torch import Tensor

from .precision import compute_dtype, no_autocast

try:
    from .. import _selective_cpu
except ImportError:  # built by setup.py; a pure-Python install has no compiled kernel
    _selective_cpu = None

logger = logging.getLogger(__name__)
_logged = set()


def kernel_for(device: torch.device):
    """The fused kernel module for ``device`` (with ``fwd`` and ``bwd``), or None."""
    if device.type == "cpu":
        kernel = _selective_cpu
    elif device.type == "cuda":
        from . import selective_triton  # imports triton: only where a GPU asks for it
        kernel = selective_triton if selective_triton.available() else None
    else:
        kernel = None
    if device.type not in _logged:
        _logged.add(device.type)
        name = "none: the chunked torch scan" if kernel is None else kernel.__name__
        logger.info(f"per-token IIR scan on {device.type}: {name}")
    return kernel


class TVIIRScan(torch.autograd.Function):
    """(θ (B, L, D, F, 2), u (B, L, D), state0 (B, D, F, 2), lattice, chunk) -> (y (B, L, D), final (B, D, F, 2)).

    Every tensor contiguous, one dtype (fp32 or fp64), on a device :func:`kernel_for` has a kernel for.
    Differentiable once (the backward is the adjoint scan, not made of differentiable ops)."""

    @staticmethod
    def forward(ctx, theta: Tensor, u: Tensor, state0: Tensor, lattice: bool, chunk: int):
        kernel = kernel_for(theta.device)
        y, final, ckpt = kernel.fwd(theta, u, state0, lattice, chunk)
        ctx.save_for_backward(theta, u, ckpt)
        ctx.kernel, ctx.lattice, ctx.chunk = kernel, lattice, chunk
        return y, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Optional[Tensor], dfinal: Optional[Tensor]):
        theta, u, ckpt = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        shape = (theta.size(0), theta.size(2), theta.size(3), 2)
        dfinal = theta.new_zeros(shape) if dfinal is None else dfinal.contiguous()
        dtheta, du, dstate0 = ctx.kernel.bwd(theta, u, ckpt, dy, dfinal, ctx.lattice, ctx.chunk)
        return dtheta, du, dstate0, None, None


def fused_scan(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor], lattice: bool,
               chunk: int) -> Tuple[Tensor, Tensor]:
    """x (B, D, L), θ per sample (B, L, D, F, 2), gain (B, L, D) or None, state (B, D, F, 2) or None ->
    y (B, D, L) in x's dtype and the final state, through :class:`TVIIRScan` (fp32 math, fp64 stays fp64,
    autocast off). Arguments already checked; :func:`kernel_for` has a kernel for x's device."""
    bsz, dim, _ = x.shape
    dtype = compute_dtype(x)
    with no_autocast(x):
        u = x.transpose(1, 2).to(dtype)  # (B, L, D): the kernels' layout (a view when x came from (B, L, D))
        u = (u if gain is None else u * gain.to(dtype)).contiguous()
        s0 = x.new_zeros(bsz, dim, theta.size(3), 2, dtype=dtype) if state is None else state.to(dtype).contiguous()
        y, final = TVIIRScan.apply(theta.to(dtype).contiguous(), u, s0, lattice, chunk)
    return y.transpose(1, 2).to(x.dtype), final.to(x.dtype)  # (B, D, L)
