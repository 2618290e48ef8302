"""The fused kernels of the time-varying IIR op, their autograd.Function and the op's dispatchers (the package
docstring has the math, the adjoint and the checkpoints).

Kernels, one per device type, with the same two functions:

    fwd(θ, u, state0, lattice, chunk, bin_size) -> y (B, L, D), final (B, D, F, 2), ckpt (B, NC, D, F, 2)
    bwd(θ, u, ckpt, ∂y, ∂final, lattice, chunk, bin_size) -> ∂θ (θ's shape), ∂u (B, L, D), ∂state0 (B, D, F, 2)

θ holds one row per ``bin_size`` steps: 1 for Θ per sample; R for the per-bin heads' carry mode (``ops/iir``),
so the backward saves Θ per bin, not Θ repeated at every sample.

* CPU: ``fairseq_focus._selective_cpu``, compiled from ``scan_cpu.cpp`` by setup.py;
* CUDA: :mod:`.triton` (needs the triton package).

**No silent fallback.** A CPU kernel that is built but does not load (an ABI mismatch after a torch upgrade, an
undefined symbol) raises when this module is imported, with the loader's message. Where a kernel is merely absent
(the CPU one not built: ModuleNotFoundError of that very module; a GPU without triton) the op takes its chunked
torch scan (``chunk.py``: the same values, operator calls growing with L, more memory) and one WARNING per device
type and process says so, and how to get the kernel. The fast path taken is logged (INFO) once per device type.
"""
import importlib
import logging
from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..precision import compute_dtype, no_autocast
from .chunk import tv_iir_filter_scan
from .naive import CHUNK, STEPS, check

CPU_KERNEL = "fairseq_focus._selective_cpu"
MISSING = {
    "cpu": f"{CPU_KERNEL} is not built: build it in the repository root with `python setup.py build_ext --inplace` "
           "(or `pip install --no-build-isolation -e .`; it needs torch at build time and a C++ compiler with OpenMP)",
    "cuda": "the triton package is not installed (`pip install triton`, the version your torch was built with)",
}

logger = logging.getLogger(__name__)
_logged = set()  # (device type, kernel name or None) already logged


def load_cpu_kernel() -> Optional[ModuleType]:
    """The compiled CPU kernel, or None where it was not built; any other failure to load it raises."""
    try:
        return importlib.import_module(CPU_KERNEL)
    except ModuleNotFoundError as err:
        if err.name != CPU_KERNEL:  # the kernel is there, but a module it needs is not
            raise
        return None
    except ImportError as err:  # built, but does not load: never fall back to the slow scan in silence
        raise ImportError(f"{CPU_KERNEL} is built but does not load: {err}. Rebuild it in the repository root "
                          f"with `python setup.py build_ext --inplace`") from err


_selective_cpu = load_cpu_kernel()


def kernel_for(device: torch.device) -> Optional[ModuleType]:
    """The fused kernel module for ``device`` (with ``fwd`` and ``bwd``), or None: the chunked torch scan runs,
    and for a CPU or CUDA device one WARNING per process says why (module docstring)."""
    if device.type == "cpu":
        kernel = _selective_cpu
    elif device.type == "cuda":
        from . import triton as triton_kernels  # imports triton: only where a GPU asks for it
        kernel = triton_kernels if triton_kernels.available() else None
    else:
        return None
    name = None if kernel is None else kernel.__name__
    if (device.type, name) not in _logged:
        _logged.add((device.type, name))
        if kernel is None:
            logger.warning(f"the per-token IIR scan on {device.type} takes the chunked torch scan (the same values, "
                           f"operator calls growing with L, more memory): {MISSING[device.type]}")
        else:
            logger.info(f"per-token IIR scan on {device.type}: {name}")
    return kernel


def checkpoint_interval(bin_size: int) -> int:
    """The fused kernels' checkpoint interval for Θ held over ``bin_size`` steps: CHUNK (naive.py), or the bin
    where bins are longer, so the saved states (one per interval) never outgrow Θ (one row per bin)."""
    return max(CHUNK, bin_size)


class TVIIRScan(torch.autograd.Function):
    """(θ (B, NB, D, F, 2), u (B, L = NB·bin_size, D), state0 (B, D, F, 2), lattice, chunk, bin_size) ->
    (y (B, L, D), final (B, D, F, 2)) by a fused kernel's ``fwd``; its ``bwd`` (the adjoint) is the backward.

    Every tensor contiguous, one dtype (fp32 or fp64), on a device :func:`kernel_for` has a kernel for.
    Differentiable once (the backward is the adjoint scan, not made of differentiable ops)."""

    @staticmethod
    def forward(ctx, theta: Tensor, u: Tensor, state0: Tensor, lattice: bool, chunk: int, bin_size: int):
        kernel = kernel_for(theta.device)
        if kernel is None:
            raise RuntimeError(f"no fused IIR kernel for {theta.device} tensors (tv_iir_filter picks the torch scan)")
        y, final, ckpt = kernel.fwd(theta, u, state0, lattice, chunk, bin_size)
        ctx.save_for_backward(theta, u, ckpt)
        ctx.kernel, ctx.lattice, ctx.chunk, ctx.bin_size = kernel, lattice, chunk, bin_size
        return y, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Optional[Tensor], dfinal: Optional[Tensor]):
        theta, u, ckpt = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        shape = (theta.size(0), theta.size(2), theta.size(3), 2)
        dfinal = theta.new_zeros(shape) if dfinal is None else dfinal.contiguous()
        dtheta, du, dstate0 = ctx.kernel.bwd(theta, u, ckpt, dy, dfinal, ctx.lattice, ctx.chunk, ctx.bin_size)
        return dtheta, du, dstate0, None, None, None


def fused_scan(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor], lattice: bool,
               chunk: int, bin_size: int = 1) -> Tuple[Tensor, Tensor]:
    """x (B, D, L), θ (B, L / bin_size, D, F, 2), gain (B, L, D) or None, state (B, D, F, 2) or None -> y (B, D, L)
    in x's dtype and the final state, through :class:`TVIIRScan` (fp32 math, fp64 stays fp64, autocast off).
    Arguments already checked; :func:`kernel_for` has a kernel for x's device."""
    bsz, dim, _ = x.shape
    dtype = compute_dtype(x)
    with no_autocast(x):
        u = x.transpose(1, 2).to(dtype)  # (B, L, D): the kernels' layout (a view when x came from (B, L, D))
        u = (u if gain is None else u * gain.to(dtype)).contiguous()
        s0 = x.new_zeros(bsz, dim, theta.size(3), 2, dtype=dtype) if state is None else state.to(dtype).contiguous()
        y, final = TVIIRScan.apply(theta.to(dtype).contiguous(), u, s0, lattice, chunk, bin_size)
    return y.transpose(1, 2).to(x.dtype), final.to(x.dtype)  # (B, D, L)


def tv_iir_filter(x: Tensor, theta: Tensor, gain: Optional[Tensor] = None, state: Optional[Tensor] = None,
                  return_state: bool = False, chunk: int = CHUNK, form: str = "lattice"):
    """Filter x with a per-sample order-2 IIR bank: the fused kernel where one is at hand (one call forward, one
    backward, whatever L), else :func:`~.chunk.tv_iir_filter_scan`. Same values either way.

    Args:
        x: (B, D, L) real input.
        theta: (B, L, D, F, 2) coefficients, one Θ per sample, inside the stability triangle.
        gain: (B, L, D) input gain g[t] or None (1).
        state: (B, D, F, 2) initial state per filter (the form's: package docstring), or None (zeros).
        return_state: also return the state after the last sample (B, D, F, 2).
        chunk: the scan's in-chunk length, or the fused kernel's checkpoint interval (any positive int; the
            result does not depend on it).
        form: ``lattice`` (stable under any time variation) or ``companion`` (package docstring).

    Returns:
        y (B, D, L) in x's dtype, or (y, final_state).
    """
    check(x, theta, gain, state, form, chunk)
    if kernel_for(x.device) is None:
        return tv_iir_filter_scan(x, theta, gain, state, return_state, chunk, form)
    y, final = fused_scan(x, theta, gain, state, form == "lattice", chunk)
    return (y, final) if return_state else y


def tv_iir_stream(x: Tensor, theta: Tensor, gain: Optional[Tensor], state: Optional[Tensor],
                  form: str = "lattice") -> Tuple[Tensor, Tensor]:
    """The next n samples of a stream from the carried state: one step for n = 1 (decoding), the fused kernel or
    the chunked scan otherwise. Returns y (B, D, n) and the new state."""
    if x.size(-1) == 1:
        check(x, theta, gain, state, form)
        x_t = x[..., 0].to(compute_dtype(x))
        if gain is not None:
            x_t = x_t * gain[:, 0].to(x_t.dtype)
        y, state = STEPS[form](x_t, theta[:, 0], None if state is None else state.to(x_t.dtype))
        return y.unsqueeze(-1).to(x.dtype), state.to(x.dtype)
    return tv_iir_filter(x, theta, gain, state, return_state=True, form=form)
