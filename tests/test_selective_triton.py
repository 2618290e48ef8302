"""ops/tv_iir/triton.py (the Triton kernels of the fused per-token IIR scan), run on CPU by Triton's
interpreter, against ops/tv_iir's loop twin tv_iir_filter_ref: values, final state, the
checkpoints, and the gradients of the twin's torch autograd (θ, u, state0, with a nonzero ∂final), both
forms, F = 1 and 3, lengths that leave the last chunk partial or are shorter than one chunk, and L = 0;
each for both schedules over time (sequential, chunked), which are also tied to each other, and the choice
between them (auto threshold, keyword, $FOCUS_SCAN_SCHEDULE, the record); three channel blocks (D = 130), Θ per bin
(bin_size) against Θ repeated per step, and fp32 near the unit circle. Skipped without triton."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_focus.ops.tv_iir import FORMS, tv_iir_filter_ref
from fairseq_focus.ops.theta import theta_from_logits

# Choosing the interpreter. TRITON_INTERPRET must be set before triton is imported, and stay set: it is
# read (through triton.knobs, uncached) whenever @triton.jit decorates a function, and triton decorates
# its own library (tl.sum, tl.cdiv, …) when it is imported; an interpreted kernel cannot call a compiled
# tl.sum ("Cannot call @triton.jit'd outside of the scope of a kernel"), and the first launch reads it
# again (triton.experimental.gluon asserts the two agree). So it is a choice for the whole process, and
# an interpreted triton cannot compile GPU kernels. Hence: run here when this process chose the
# interpreter (triton imported with it, or TRITON_INTERPRET=1 from the start), or when triton is not
# imported yet and there is no GPU (set it now, before the import); otherwise (triton already imported
# for compiling, or a GPU whose tests need compiled kernels) rerun this file in a fresh process.
_triton = sys.modules.get("triton")
if _triton is not None:
    HERE = type(_triton.language.standard.sum).__name__ == "InterpretedFunction"
else:
    HERE = os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available()
if HERE:
    os.environ["TRITON_INTERPRET"] = "1"  # before the import below
triton = pytest.importorskip("triton")
from fairseq_focus.ops.tv_iir import triton as st  # noqa: E402  (after the interpreter is chosen)


@pytest.fixture(autouse=True)
def _in_the_interpreter_process(request):
    if not HERE and request.node.originalname != "test_in_a_fresh_interpreter_process":
        pytest.skip("triton is compiling in this process: run by test_in_a_fresh_interpreter_process")


def test_in_a_fresh_interpreter_process():
    if HERE:
        pytest.skip("this process runs the interpreter: the tests run here")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    run = subprocess.run(cmd, env=env, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert re.search(r"\b\d+ passed, 1 skipped in\b", run.stdout), run.stdout[-3000:]  # only this test skips there


CHUNK = 8


def inputs(b, n, d, f, form, seed, dtype=torch.float64):
    """θ (inside the stability triangle, as tests/test_selective_iir.py draws it), u, state0, ∂y, ∂final."""
    g = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    theta = theta_from_logits((2.0 if form == "lattice" else 1.0) * draw(b, n, d, f, 2), "stable")
    return [t.to(dtype) for t in (theta, draw(b, n, d), draw(b, d, f, 2), draw(b, n, d), draw(b, d, f, 2))]


def reference(theta, u, state0, dy, dfinal, form):
    """y (B, L, D), final and (∂θ, ∂u, ∂state0) of tv_iir_filter_ref by autograd (x = u, no gain)."""
    leaves = [t.clone().requires_grad_() for t in (theta, u, state0)]
    y, final = tv_iir_filter_ref(leaves[1].transpose(1, 2), leaves[0], None, leaves[2], return_state=True,
                                 form=form)
    loss = (y.transpose(1, 2) * dy).sum() + (final * dfinal).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(leaves, grads)]
    return y.transpose(1, 2).detach(), final.detach(), grads


def close(actual, expected, rtol=1e-9):
    """Elementwise within rtol, with an absolute floor of rtol · max|expected| (gradients near |k1| = 1
    reach 1e5 through 1/c1³, and their small neighbours inherit that rounding)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(1.0, float(expected.abs().max())))


def test_the_kernels_run_in_the_interpreter():
    assert st.interpreted() and st.available()
    assert type(st._fwd_kernel).__name__ == "InterpretedFunction"


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("nfilt", [1, 3])
@pytest.mark.parametrize("length", [1, 7, 37])
def test_matches_the_loop_twin_and_its_autograd(form, nfilt, length, schedule):
    """L = 1 and 7 fit in one chunk of 8, 37 = 4 chunks and a partial fifth."""
    theta, u, state0, dy, dfinal = inputs(2, length, 5, nfilt, form, seed=length + 10 * nfilt)
    lattice = form == "lattice"
    y, final, ckpt = st.fwd(theta, u, state0, lattice, CHUNK, schedule=schedule)
    assert st.last_schedule["fwd"] == schedule
    y_ref, final_ref, grads_ref = reference(theta, u, state0, dy, dfinal, form)
    close(y, y_ref)
    close(final, final_ref)
    assert ckpt.shape == (2, -(-length // CHUNK), 5, nfilt, 2)
    for n in range(ckpt.size(1)):  # ckpt[:, n] = the state after step n·chunk − 1 (state0 for n = 0)
        _, entering = tv_iir_filter_ref(u[:, :n * CHUNK].transpose(1, 2), theta[:, :n * CHUNK], None, state0,
                                        return_state=True, form=form)
        close(ckpt[:, n], entering)
    for got, want in zip(st.bwd(theta, u, ckpt, dy, dfinal, lattice, CHUNK, schedule=schedule), grads_ref):
        close(got, want)
    assert st.last_schedule["bwd"] == schedule


@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_several_channel_blocks_and_any_chunk_give_the_same_result(monkeypatch, chunk):
    """MAX_LANES = 4: F = 3 -> one channel per program, F = 1 -> blocks of 4 channels, the last one masked;
    chunk 1 (a checkpoint per step), 5 (partial last chunk), 100 (one chunk longer than L)."""
    monkeypatch.setattr(st, "MAX_LANES", 4)
    for nfilt in (1, 3):
        theta, u, state0, dy, dfinal = inputs(1, 11, 5, nfilt, "lattice", seed=chunk + nfilt)
        y, final, ckpt = st.fwd(theta, u, state0, True, chunk)
        y_ref, final_ref, grads_ref = reference(theta, u, state0, dy, dfinal, "lattice")
        close(y, y_ref)
        close(final, final_ref)
        for got, want in zip(st.bwd(theta, u, ckpt, dy, dfinal, True, chunk), grads_ref):
            close(got, want)


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("form", FORMS)
def test_float32_stays_float32_within_its_rounding(form, schedule):
    """Against the fp64 twin on the same (fp32-rounded) inputs: only the kernels' arithmetic differs."""
    theta, u, state0, dy, dfinal = inputs(2, 37, 3, 2, form, seed=3, dtype=torch.float32)
    y, final, ckpt = st.fwd(theta, u, state0, form == "lattice", CHUNK, schedule=schedule)
    grads = st.bwd(theta, u, ckpt, dy, dfinal, form == "lattice", CHUNK, schedule=schedule)
    y_ref, final_ref, grads_ref = reference(*(t.double() for t in (theta, u, state0, dy, dfinal)), form)
    for got, want in zip([y, final, *grads], [y_ref, final_ref, *grads_ref]):
        assert got.dtype == torch.float32
        close(got.double(), want, rtol=3e-4)  # the torch fp32 twin is as far (lattice: 9e-5, |k1| near 1)


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("form", FORMS)
def test_zero_length_gives_the_state_back(form, schedule):
    theta, u, state0, dy, dfinal = inputs(2, 0, 3, 2, form, seed=1)
    y, final, ckpt = st.fwd(theta, u, state0, form == "lattice", CHUNK, schedule=schedule)
    assert y.shape == (2, 0, 3) and ckpt.shape == (2, 0, 3, 2, 2)
    close(final, state0)
    dtheta, du, dstate0 = st.bwd(theta, u, ckpt, dy, dfinal, form == "lattice", CHUNK, schedule=schedule)
    assert dtheta.shape == theta.shape and du.shape == u.shape
    close(dstate0, dfinal)
    assert dstate0.data_ptr() != dfinal.data_ptr() and final.data_ptr() != state0.data_ptr()  # fresh tensors


def test_mixed_dtypes_and_bad_chunks_are_refused():
    theta, u, state0, _, _ = inputs(1, 4, 2, 1, "lattice", seed=0)
    with pytest.raises(ValueError, match="float64"):
        st.fwd(theta, u.float(), state0, True, CHUNK)
    with pytest.raises(ValueError, match="chunk"):
        st.fwd(theta, u, state0, True, 0)


@pytest.mark.parametrize("form, chunk", [("companion", 1), ("lattice", 4), ("lattice", 100)])
def test_the_chunked_schedule_matches_the_sequential_one(monkeypatch, form, chunk):
    """Tied to the sequential Triton schedule, with several channel blocks (MAX_LANES = 4: F = 1 -> blocks of
    4 channels, the last one masked) and B = 3 (grid axis 0 = b·NC + n): chunk 1 (a chunk per step), 4 (a
    partial last chunk), 100 (one chunk longer than L)."""
    monkeypatch.setattr(st, "MAX_LANES", 4)
    theta, u, state0, dy, dfinal = inputs(3, 10, 5, 1, form, seed=chunk)
    lattice = form == "lattice"
    seq = st.fwd(theta, u, state0, lattice, chunk, schedule="sequential")
    par = st.fwd(theta, u, state0, lattice, chunk, schedule="chunked")
    for got, want in zip(par, seq):  # y, final, ckpt
        close(got, want, rtol=1e-12)
    grads_seq = st.bwd(theta, u, seq[2], dy, dfinal, lattice, chunk, schedule="sequential")
    for got, want in zip(st.bwd(theta, u, par[2], dy, dfinal, lattice, chunk, schedule="chunked"), grads_seq):
        close(got, want, rtol=1e-12)


def test_the_schedule_is_chosen_by_length_keyword_or_environment(monkeypatch):
    monkeypatch.delenv(st.SCHEDULE_ENV, raising=False)
    limit = st.CHUNKED_ABOVE * CHUNK
    assert st.schedule_for(limit, CHUNK) == "sequential" and st.schedule_for(limit + 1, CHUNK) == "chunked"
    assert st.schedule_for(limit + 1, CHUNK, "sequential") == "sequential"
    assert st.schedule_for(1, CHUNK, "chunked") == "chunked"
    monkeypatch.setenv(st.SCHEDULE_ENV, "chunked")
    assert st.schedule_for(1, CHUNK) == "chunked" and st.schedule_for(limit + 1, CHUNK, "auto") == "chunked"
    assert st.schedule_for(1, CHUNK, "sequential") == "sequential"  # the keyword wins
    monkeypatch.setenv(st.SCHEDULE_ENV, "sequential")
    assert st.schedule_for(limit + 1, CHUNK) == "sequential"
    monkeypatch.setenv(st.SCHEDULE_ENV, "parallel")
    with pytest.raises(ValueError, match=st.SCHEDULE_ENV):
        st.schedule_for(1, CHUNK)
    theta, u, state0, dy, dfinal = inputs(1, 3, 1, 1, "lattice", seed=0)  # fwd and bwd ask schedule_for
    with pytest.raises(ValueError, match="schedule"):
        st.fwd(theta, u, state0, True, 1)
    monkeypatch.setenv(st.SCHEDULE_ENV, "auto")
    _, _, ckpt = st.fwd(theta, u, state0, True, 1)  # L = 3 > 2 · 1: chunked
    monkeypatch.setenv(st.SCHEDULE_ENV, "sequential")
    st.bwd(theta, u, ckpt, dy, dfinal, True, 1)
    assert st.last_schedule == {"fwd": "chunked", "bwd": "sequential"}
    monkeypatch.delenv(st.SCHEDULE_ENV)
    st.fwd(theta, u, state0, True, 2)  # L = 3 ≤ 2 · 2: sequential
    assert st.last_schedule["fwd"] == "sequential"


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("form", FORMS)
def test_three_channel_blocks_match_the_loop_twin(form, schedule):
    """D = 130, F = 1 at MAX_LANES 64: programs of 64, 64 and 2 channels (the last one masked); L = 11 in chunks of 4."""
    theta, u, state0, dy, dfinal = inputs(1, 11, 130, 1, form, seed=130)
    lattice = form == "lattice"
    y, final, ckpt = st.fwd(theta, u, state0, lattice, 4, schedule=schedule)
    y_ref, final_ref, grads_ref = reference(theta, u, state0, dy, dfinal, form)
    close(y, y_ref)
    close(final, final_ref)
    for got, want in zip(st.bwd(theta, u, ckpt, dy, dfinal, lattice, 4, schedule=schedule), grads_ref):
        close(got, want)


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("bin_size, nbins, chunk", [(3, 4, 5), (4, 2, 2)])
def test_theta_per_bin_equals_theta_repeated_at_every_sample(schedule, bin_size, nbins, chunk):
    """The per-bin heads' carry mode: Θ (B, NB, D, F, 2) read at row t // R, ∂Θ summed over each bin; chunks that
    straddle bins (chunk 5, bins of 3) and bins that straddle chunks (chunk 2, bins of 4)."""
    theta, _, state0, dy, dfinal = inputs(2, nbins, 3, 2, "companion", seed=bin_size)
    u, dy = (torch.randn(2, nbins * bin_size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
             for s in (1, 2))
    per_bin = st.fwd(theta, u, state0, False, chunk, bin_size, schedule=schedule)
    repeated_theta = theta.repeat_interleave(bin_size, 1).contiguous()
    repeated = st.fwd(repeated_theta, u, state0, False, chunk, schedule=schedule)
    for got, want in zip(per_bin, repeated):  # y, final, ckpt
        close(got, want, rtol=1e-12)
    dtheta, du, dstate0 = st.bwd(theta, u, per_bin[2], dy, dfinal, False, chunk, bin_size, schedule=schedule)
    dtheta_rep, du_rep, dstate0_rep = st.bwd(repeated_theta, u, repeated[2], dy, dfinal, False, chunk,
                                             schedule=schedule)
    close(dtheta, dtheta_rep.view(2, nbins, bin_size, 3, 2, 2).sum(2), rtol=1e-11)
    close(du, du_rep, rtol=1e-12)
    close(dstate0, dstate0_rep, rtol=1e-12)


# Measured (this draw: pole radius up to 0.9995, |k1| up to 0.9995, L 64, chunk 8): the fp32 kernels against the fp64
# twin on the same fp32-rounded inputs, max error / max|reference| over y, final and the three gradients: lattice
# 2.5e-5 (∂u; ∂θ 1.5e-5), companion 4.1e-7, either schedule. Tolerances ~10×.
NEAR_UNIT_TOL = {"lattice": 2.5e-4, "companion": 5e-6}


@pytest.mark.parametrize("schedule", st.SCHEDULES)
@pytest.mark.parametrize("form", FORMS)
def test_float32_near_the_unit_circle_within_its_rounding(form, schedule):
    g = torch.Generator().manual_seed(11)
    logits = 0.1 * torch.randn(2, 64, 5, 2, 2, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(2, 1, 5, 2, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    logits[..., 0] += sign * math.atanh(0.999)  # |k1| ≈ 0.999: c1 ≈ 0.045, 1/c1³ ≈ 1e4 in ∂θ
    theta = theta_from_logits(logits, "stable").float()
    u, state0, dy, dfinal = (torch.randn(*s, generator=g).float() for s in ((2, 64, 5), (2, 5, 2, 2), (2, 64, 5),
                                                                              (2, 5, 2, 2)))
    y, final, ckpt = st.fwd(theta, u, state0, form == "lattice", 8, schedule=schedule)
    grads = st.bwd(theta, u, ckpt, dy, dfinal, form == "lattice", 8, schedule=schedule)
    y_ref, final_ref, grads_ref = reference(*(t.double() for t in (theta, u, state0, dy, dfinal)), form)
    for got, want in zip([y, final, *grads], [y_ref, final_ref, *grads_ref]):
        assert got.dtype == torch.float32
        close(got.double(), want, rtol=NEAR_UNIT_TOL[form])
