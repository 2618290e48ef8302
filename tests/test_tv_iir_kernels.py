"""The compiled CPU kernel of ops/tv_iir (scan_cpu.cpp, built as fairseq_focus._selective_cpu) held to its promises:
built with OpenMP, the same values on 1 and 2 threads; every wrong shape, dtype or layout refused instead of read
out of bounds; Θ per bin (bin_size) equal to Θ repeated at every sample on values, final state and gradients, and
the carry path no longer saving the repeated Θ; three channel blocks (D = 130 = 64 + 64 + 2) and fp32 near the
unit circle against the reference twin. And the op is loud: a kernel that is built but does not load raises, a
kernel that is not built (or a GPU without triton) warns once, and the build says when it skips the kernel.
Kernel tests skip where it is not built (test_selective_iir.py asserts that it is)."""
import importlib
import logging
import math
import subprocess
import sys
import tomllib
import types

import pytest
import torch

from fairseq_focus.ops import tv_iir
from fairseq_focus.ops.iir import iir_filter, iir_filter_ref
from fairseq_focus.ops.theta import poles, theta_from_logits
from fairseq_focus.ops.tv_iir import FORMS, function, fused_scan, kernel_for, tv_iir_filter, tv_iir_filter_ref
from helpers import REPO

kernel = function._selective_cpu
needs_kernel = pytest.mark.skipif(kernel is None, reason="fairseq_focus._selective_cpu is not built")


def draw(seed, b, d, f, n, nbins=None, dtype=torch.float64, k1_logit=0.0):
    """x (B, D, L), Θ (B, nbins or L, D, F, 2) inside the triangle, gain (B, L, D), state (B, D, F, 2). k1_logit
    moves |k1| toward tanh(k1_logit) (the pole radius toward 1), with random signs."""
    g = torch.Generator().manual_seed(seed)
    logits = (0.1 if k1_logit else 2.0) * torch.randn(b, nbins or n, d, f, 2, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(b, 1, d, f, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    logits[..., 0] += sign * k1_logit
    theta = theta_from_logits(logits, "stable")
    x, gain = torch.randn(b, d, n, generator=g, dtype=torch.float64), 2 * torch.rand(b, n, d, generator=g,
                                                                                  dtype=torch.float64)
    state = torch.randn(b, d, f, 2, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, theta, gain, state)]


def results(fn, x, theta, gain, state, weights, **kw):
    """y, final and the gradients of Σ w·y + Σ final² with respect to x, Θ, gain, state (those given)."""
    leaves = [t.clone().requires_grad_() for t in (x, theta, gain, state) if t is not None]
    args = iter(leaves)
    inputs = [None if t is None else next(args) for t in (x, theta, gain, state)]
    y, final = fn(*inputs, **kw)
    grads = torch.autograd.grad((y * weights.to(y.dtype)).sum() + final.pow(2).sum(), leaves)
    return [y.detach(), final.detach(), *grads]


# ---- built with OpenMP -----------------------------------------------------------------------------

@needs_kernel
def test_the_kernel_links_an_openmp_runtime():
    """Without -fopenmp at::parallel_for compiles to a serial loop, and the library names no OpenMP entry point."""
    with open(kernel.__file__, "rb") as library:
        data = library.read()
    assert b"GOMP_parallel" in data or b"__kmpc_fork_call" in data, f"{kernel.__file__} was built without -fopenmp"


@needs_kernel
def test_one_and_two_threads_give_the_same_bits():
    """The work items (batch, channel block) are independent: splitting them over threads changes no value."""
    x, theta, gain, state = draw(0, 3, 130, 2, 50)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(results(tv_iir_filter, x, theta, gain, state, torch.ones(3, 130, 50), return_state=True))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


# ---- every shape checked ---------------------------------------------------------------------------

B, NB, R, D, F, CHUNK = 2, 3, 2, 3, 2, 4  # L = 6, NC = 2


def kernel_args(dtype=torch.float64):
    """Valid arguments of fwd and bwd (name -> tensor), Θ per bin of R."""
    _, theta, _, state0 = draw(1, B, D, F, NB * R, nbins=NB, dtype=dtype)
    u = torch.randn(B, NB * R, D, dtype=dtype)
    args = {"theta": theta.contiguous(), "u": u, "state0": state0}
    if kernel is not None:
        args["ckpt"] = kernel.fwd(theta, u, state0, True, CHUNK, R)[2]
    args.update(dy=torch.randn(B, NB * R, D, dtype=dtype), dfinal=torch.randn(B, D, F, 2, dtype=dtype))
    return args


def call(name, args):
    a = args
    if name == "fwd":
        return kernel.fwd(a["theta"], a["u"], a["state0"], True, CHUNK, R)
    return kernel.bwd(a["theta"], a["u"], a["ckpt"], a["dy"], a["dfinal"], True, CHUNK, R)


ARGS = {"fwd": ("theta", "u", "state0"), "bwd": ("theta", "u", "ckpt", "dy", "dfinal")}
CASES = [(fn, arg, axis, delta) for fn, names in ARGS.items() for arg in names
         for axis in range(5 if arg in ("theta", "ckpt") else 4 if arg in ("state0", "dfinal") else 3)
         for delta in (-1, 1)]


@needs_kernel
@pytest.mark.parametrize("fn, arg, axis, delta", CASES)
def test_a_wrong_shape_of_any_argument_is_refused(fn, arg, axis, delta):
    args = kernel_args()
    call(fn, args)  # the valid call runs
    shape = list(args[arg].shape)
    shape[axis] += delta
    args[arg] = torch.zeros(shape, dtype=torch.float64)  # Θ = 0 is inside the triangle
    with pytest.raises(RuntimeError, match="must"):
        call(fn, args)


@needs_kernel
@pytest.mark.parametrize("fn", ARGS)
def test_a_wrong_dtype_layout_or_size_is_refused(fn):
    for arg in ARGS[fn]:
        args = kernel_args()
        args[arg] = args[arg].float()
        with pytest.raises(RuntimeError, match="one dtype|float32 or float64"):
            call(fn, args)
        args = kernel_args()
        args[arg] = args[arg].transpose(0, 1).contiguous().transpose(0, 1)  # same shape, not contiguous
        with pytest.raises(RuntimeError, match="contiguous"):
            call(fn, args)
    args = {name: t.half() for name, t in kernel_args().items()}
    with pytest.raises(RuntimeError, match="float32 or float64"):
        call(fn, args)
    a = kernel_args()
    with pytest.raises(RuntimeError, match="bin_size must be positive"):
        kernel.fwd(a["theta"], a["u"], a["state0"], True, CHUNK, 0)
    with pytest.raises(RuntimeError, match="chunk must be positive"):
        kernel.bwd(a["theta"], a["u"], a["ckpt"], a["dy"], a["dfinal"], True, 0, R)


# ---- Θ per bin -------------------------------------------------------------------------------------

@needs_kernel
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bin_size, nbins, chunk", [(1, 13, 4), (4, 5, 3), (8, 3, 32), (5, 4, 5), (3, 1, 2)])
def test_theta_per_bin_equals_theta_repeated_at_every_sample(form, bin_size, nbins, chunk):
    """Chunks shorter than, equal to and longer than a bin, and not aligned with bins."""
    x, theta, gain, state = draw(bin_size + nbins, 2, 5, 2, bin_size * nbins, nbins=nbins)
    w = torch.randn(2, 5, bin_size * nbins, dtype=torch.float64)
    lattice = form == "lattice"
    per_bin = results(lambda *a: fused_scan(*a, lattice, chunk, bin_size), x, theta, gain, state, w)
    repeated = results(lambda x_, th, g, s: fused_scan(x_, th.repeat_interleave(bin_size, 1), g, s, lattice, chunk),
                       x, theta, gain, state, w)
    for a, b in zip(per_bin, repeated):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@needs_kernel
def test_the_carry_path_saves_theta_per_bin_not_per_sample():
    """The hypernetwork heads' carry mode: no tensor saved for the backward has a row per sample of Θ."""
    x, theta, _, state = draw(3, 2, 4, 2, 64, nbins=4)
    theta.requires_grad_()
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = iir_filter(x, theta, "carry", state=state)
    assert tuple(theta.shape) in saved and (2, 64, 4, 2, 2) not in saved
    ref = iir_filter_ref(x, theta, "carry", state=state)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    grad, = torch.autograd.grad(y.sum(), theta)
    ref_grad, = torch.autograd.grad(ref.sum(), theta)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9)


# ---- several channel blocks, and fp32 near the unit circle ----------------------------------------

@needs_kernel
@pytest.mark.parametrize("form", FORMS)
def test_three_channel_blocks_match_the_reference_twin(form):
    """D = 130: two work items of 64 channels and one of 2, each with its own lanes of Θ, u and the states."""
    assert kernel_for(torch.device("cpu")) is kernel
    x, theta, gain, state = draw(4, 2, 130, 2, 37)
    w = torch.randn(2, 130, 37, dtype=torch.float64)
    fused = results(tv_iir_filter, x, theta, gain, state, w, return_state=True, chunk=8, form=form)
    ref = results(tv_iir_filter_ref, x, theta, gain, state, w, return_state=True, form=form)
    for a, b in zip(fused, ref):  # y, final, ∂x, ∂Θ, ∂gain, ∂state
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# Measured (this test's draw, L 1000, |k1| up to 0.9995, pole radius up to 0.9997): the fp32 kernel against the fp64
# twin on the same fp32-rounded inputs, max error / max|reference|: lattice y 1.6e-6, final 1.8e-5, ∂x 2.2e-5,
# ∂Θ 6.8e-5, ∂gain 2.1e-5, ∂state 1.7e-6; companion at most 4.6e-6 (∂Θ). The chunked torch scan in fp32 is as far
# (lattice: the same to two digits), so this is fp32's conditioning near |k1| = 1 (1/c1³ in ∂Θ), not the kernel's.
# Tolerances ~10× the worst entry of each form.
NEAR_UNIT_TOL = {"lattice": 7e-4, "companion": 5e-5}


@needs_kernel
@pytest.mark.parametrize("form", FORMS)
def test_float32_near_the_unit_circle_within_its_rounding(form):
    x, theta, gain, state = draw(7, 1, 130, 2, 1000, k1_logit=math.atanh(0.999), dtype=torch.float32)
    assert float(poles(theta).abs().max()) > 0.999
    w = torch.randn(1, 130, 1000, generator=torch.Generator().manual_seed(0))
    fused = results(tv_iir_filter, x, theta, gain, state, w, return_state=True, form=form)
    ref = results(tv_iir_filter_ref, *(t.double() for t in (x, theta, gain, state)), w, return_state=True, form=form)
    for a, b in zip(fused, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=0, atol=NEAR_UNIT_TOL[form] * float(b.abs().max()))


# ---- loud where the kernel is missing or broken ---------------------------------------------------

def importer(error):
    def import_module(name, package=None):
        raise error
    return import_module


def test_a_kernel_that_is_built_but_does_not_load_raises(monkeypatch):
    """An ABI mismatch after a torch upgrade is an ImportError: never a silent switch to the slow scan."""
    monkeypatch.setattr(importlib, "import_module", importer(ImportError("_selective_cpu.so: undefined symbol: _ZN3c10")))
    with pytest.raises(ImportError, match="undefined symbol.*Rebuild it"):
        function.load_cpu_kernel()
    missing_dependency = ModuleNotFoundError("No module named 'torch._C'", name="torch._C")
    monkeypatch.setattr(importlib, "import_module", importer(missing_dependency))
    with pytest.raises(ModuleNotFoundError, match="torch._C"):
        function.load_cpu_kernel()


def test_a_kernel_that_is_not_built_is_none(monkeypatch):
    not_built = ModuleNotFoundError(f"No module named '{function.CPU_KERNEL}'", name=function.CPU_KERNEL)
    monkeypatch.setattr(importlib, "import_module", importer(not_built))
    assert function.load_cpu_kernel() is None


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == function.__name__]


def test_the_slow_scan_on_cpu_warns_once_and_says_how_to_build(monkeypatch, caplog):
    monkeypatch.setattr(function, "_selective_cpu", None)
    monkeypatch.setattr(function, "_logged", set())
    x, theta, gain, state = draw(5, 2, 3, 2, 20)
    with caplog.at_level(logging.INFO, logger=function.__name__):
        for _ in range(3):
            y = tv_iir_filter(x, theta, gain, state)
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "chunked torch scan" in messages[0]
    assert "setup.py build_ext --inplace" in messages[0]
    torch.testing.assert_close(y, tv_iir_filter_ref(x, theta, gain, state), rtol=1e-10, atol=1e-10)


def test_a_gpu_without_triton_warns_once(monkeypatch, caplog):
    """The CUDA kernels' module as it loads without the triton package (no GPU needed: kernel_for only asks)."""
    no_triton = types.ModuleType("fairseq_focus.ops.tv_iir.triton")
    no_triton.available = lambda: False
    monkeypatch.setitem(sys.modules, no_triton.__name__, no_triton)
    monkeypatch.setattr(tv_iir, "triton", no_triton, raising=False)
    monkeypatch.setattr(function, "_logged", set())
    with caplog.at_level(logging.INFO, logger=function.__name__):
        assert kernel_for(torch.device("cuda")) is None and kernel_for(torch.device("cuda")) is None
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "on cuda" in messages[0] and "pip install triton" in messages[0]


def test_the_build_names_torch_and_says_when_it_skips_the_kernel():
    """pyproject.toml gives an isolated `pip install .` torch to build with; without torch setup.py warns."""
    with open(REPO / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    assert any(r.startswith("torch") for r in requires) and any(r.startswith("setuptools") for r in requires)
    hide_torch = ("import runpy, sys\n"
                  "class NoTorch:  # a finder that knows no torch, as on a machine without it\n"
                  "    def find_spec(self, name, path, target=None):\n"
                  "        if name.partition('.')[0] == 'torch':\n"
                  "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
                  "sys.meta_path.insert(0, NoTorch())\n"
                  "sys.argv = ['setup.py', '--version']\n"
                  "runpy.run_path('setup.py', run_name='__main__')\n")
    run = subprocess.run([sys.executable, "-c", hide_torch], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "0.1.0", run.stderr[-2000:]
    assert "WARNING" in run.stderr and "NOT built" in run.stderr
