"""ops/tv_iir (the per-token order-2 IIR of --focus-filter selective) against scipy's
time-varying oracle, its loop twin (values, final state, gradients), streaming, stability under
autocast; and the SelectiveIIRFilter / adaptive-residual modules: they start as the static filter,
their input part moves Θ per token, and no output depends on a later input."""
import numpy as np
import pytest
import torch

from fairseq_focus.modules.config import FocusStackConfig
from fairseq_focus.modules.focus_stack import FocusStack
from fairseq_focus.modules.global_filter import SelectiveIIRFilter, StaticIIRFilter
from fairseq_focus.ops.tv_iir import (FORMS, kernel_for, lattice_coefficients, tv_iir_filter, tv_iir_filter_ref,
                                      tv_iir_filter_scan, tv_iir_stream)
from fairseq_focus.ops.theta import MAX_RADIUS, poles, theta_from_logits
from helpers import stir

SIZES = [(1, 1, 1, 1), (2, 3, 2, 37), (1, 2, 1, 64), (3, 4, 3, 100)]  # B, D, F, L
# the two fast paths: tv_iir_filter takes the fused kernel (ops/tv_iir/function.py) on this CPU, the chunked
# torch scan is its second twin; both are tied to the numpy oracle and to the loop twin below
FAST = {"fused": tv_iir_filter, "scan": tv_iir_filter_scan}


def inputs(size, seed, dtype=torch.float64, scale=2.0):
    b, d, f, n = size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, n, generator=g, dtype=dtype)
    theta = theta_from_logits(scale * torch.randn(b, n, d, f, 2, generator=g, dtype=dtype), "stable")
    gain = 2 * torch.rand(b, n, d, generator=g, dtype=dtype)
    state = torch.randn(b, d, f, 2, generator=g, dtype=dtype)
    return x, theta, gain, state


def oracle(x, theta, gain, state, form):
    """A direct numpy evaluation (no torch): the companion recursion y_f[t] = g[t]x[t] − θ0[t]y_f[t−1] −
    θ1[t]y_f[t−2], or the normalized lattice's two rotations per sample (k2 = θ1, k1 = θ0 / (1 + θ1))."""
    x, th, g, st = (t.double().numpy() for t in (x, theta, gain, state))
    b, d, n = x.shape
    f = th.shape[3]
    y = np.zeros_like(x)
    for bi in range(b):
        for di in range(d):
            for fi in range(f):
                s0, s1 = st[bi, di, fi]
                for t in range(n):
                    t0, t1 = th[bi, t, di, fi]
                    u = g[bi, t, di] * x[bi, di, t]
                    if form == "companion":
                        cur = u - t0 * s0 - t1 * s1
                        s0, s1 = cur, s0
                    else:
                        k2, k1 = t1, t0 / (1 + t1)
                        c1, c2 = np.sqrt(1 - k1 * k1), np.sqrt(1 - k2 * k2)
                        f1 = c2 * (u / (c1 * c2)) - k2 * s1
                        cur = c1 * f1 - k1 * s0
                        s0, s1 = cur, k1 * f1 + c1 * s0
                    y[bi, di, t] += cur
    return y


def test_the_compiled_cpu_kernel_is_built_and_taken():
    """`make setup` builds ops/tv_iir/scan_cpu.cpp (setup.py): without it every test here would tie the
    scan to itself, and users would get the slow path."""
    from fairseq_focus.ops.tv_iir import function
    assert function._selective_cpu is not None, "fairseq_focus._selective_cpu was not built (setup.py build_ext)"
    assert kernel_for(torch.device("cpu")) is function._selective_cpu


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [1, 4, 16, 1000])
def test_fast_paths_equal_oracle_and_loop_twin(size, chunk, form, impl):
    x, theta, gain, state = inputs(size, seed=sum(size) + chunk, scale=2.0 if form == "lattice" else 1.0)
    y, final = FAST[impl](x, theta, gain, state, return_state=True, chunk=chunk, form=form)
    y_ref, final_ref = tv_iir_filter_ref(x, theta, gain, state, return_state=True, form=form)
    np.testing.assert_allclose(y.numpy(), oracle(x, theta, gain, state, form), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(final, final_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", FORMS)
def test_constant_theta_is_the_static_all_pole_filter(form):
    """With the same Θ at every sample, g = 1 and a zero start, both forms are the static head's filter
    1 / A(z): ops/iir's carry recursion, and scipy's lfilter (F = 2 filters summed)."""
    import scipy.signal
    from fairseq_focus.ops.iir import iir_filter
    x, theta, _, _ = inputs((2, 3, 2, 40), seed=5)
    static = theta[:, :1].expand(-1, 40, -1, -1, -1)
    y = tv_iir_filter(x, static, form=form)
    torch.testing.assert_close(y, iir_filter(x, static[:, :1], "carry"), rtol=1e-9, atol=1e-9)
    oracle_sum = sum(scipy.signal.lfilter([1.0], [1.0] + static[0, 0, 1, f].tolist(), x[0, 1].numpy()) for f in range(2))
    np.testing.assert_allclose(y[0, 1].numpy(), oracle_sum, rtol=1e-9, atol=1e-9)


def test_the_lattice_is_stable_under_any_time_variation_and_the_companion_form_is_not():
    """Θ drawn afresh at every sample (every frozen-time pole inside |p| ≤ ρ): the lattice's state never
    holds more energy than the input put in, while the companion form's impulse response explodes (the
    reason the lattice is the default)."""
    from fairseq_focus.ops.theta import ring_init_logits
    g = torch.Generator().manual_seed(0)
    impulse = torch.zeros(1, 64, 2048, dtype=torch.float64)
    impulse[..., 0] = 1.0
    wild = theta_from_logits(2.0 * torch.randn(1, 2048, 64, 1, 2, generator=g, dtype=torch.float64), "stable")
    ring = theta_from_logits(ring_init_logits((64, 1), 0.9, 0.999).double()
                             + torch.randn(1, 2048, 64, 1, 2, generator=g, dtype=torch.float64), "stable")
    for theta in (wild, ring):
        y, final = tv_iir_filter(impulse, theta, return_state=True, form="lattice")
        _, _, c1, c2 = lattice_coefficients(theta[0, 0, :, 0])  # the input enters scaled by 1 / (c1·c2)
        bound = 1.0 / (c1 * c2)  # (D,): ‖s[t]‖ ≤ ‖s[0]‖ ≤ that, so |y[t]| too
        assert torch.isfinite(y).all() and bool((y[0].abs().amax(-1) <= bound * (1 + 1e-9)).all())
        assert bool((torch.linalg.vector_norm(final[0, :, 0], dim=-1) <= bound * (1 + 1e-9)).all())
    blown = tv_iir_filter(impulse, wild, form="companion")
    assert float(blown.abs().max()) > 1e6  # 1.3e14 here; 9e33 at L = 4096, D = 256 in the module docstring


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("form", FORMS)
def test_gradients_match_the_loop_twin(form, impl):
    x, theta_logits, gain, state = inputs((2, 2, 2, 29), seed=3)
    logits = 2.0 * torch.randn(2, 29, 2, 2, 2, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, logits, gain, state)]
    w = torch.randn(2, 2, 29, dtype=torch.float64)

    def loss(fn, x_, lg, g_, s_):
        y, fin = fn(x_, theta_from_logits(lg, "stable"), g_, s_, return_state=True, chunk=8, form=form)
        return (y * w[..., :y.size(-1)]).sum() + fin.pow(2).sum()
    fast = torch.autograd.grad(loss(FAST[impl], *leaves), leaves)
    ref = torch.autograd.grad(loss(tv_iir_filter_ref, *leaves), leaves)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
    assert torch.autograd.gradcheck(lambda *t: loss(FAST[impl], *t), [t.detach().requires_grad_() for t in
                                                                       (x[..., :9], logits[:, :9], gain[:, :9], state)])


@pytest.mark.parametrize("form", FORMS)
def test_fused_kernel_in_fp32_matches_the_fp64_twin_at_length(form):
    """fp32 at L = 3000 (many checkpoint chunks, the recomputed states in the backward): values and
    gradients within fp32 rounding of the fp64 loop twin."""
    x, theta, gain, state = inputs((1, 8, 1, 3000), seed=4, scale=1.0)
    w = torch.randn(1, 8, 3000, dtype=torch.float64)
    grads = []
    for dtype, fn in ((torch.float32, tv_iir_filter), (torch.float64, tv_iir_filter_ref)):
        leaves = [t.to(dtype).requires_grad_() for t in (x, theta, gain, state)]
        y, fin = fn(*leaves, return_state=True, form=form)
        grads.append([y, fin, *torch.autograd.grad((y * w.to(dtype)).sum() + fin.sum(), leaves)])
    for a, b in zip(*grads):
        scale = float(b.abs().max())
        torch.testing.assert_close(a.double(), b, rtol=0, atol=2e-4 * max(scale, 1.0))


@pytest.mark.parametrize("fn", [tv_iir_filter, tv_iir_filter_scan, tv_iir_filter_ref])
def test_zero_length_input_gives_empty_output_and_the_state_back(fn):
    x, theta, gain, state = inputs((2, 3, 2, 0), seed=1)
    y, final = fn(x, theta, gain, state, return_state=True)
    assert y.shape == (2, 3, 0)
    torch.testing.assert_close(final, state)
    y, final = fn(x, theta, gain, None, return_state=True)
    assert torch.count_nonzero(final) == 0 and final.shape == (2, 3, 2, 2)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("cuts", [[1] * 23, [5, 1, 17], [23], [7, 7, 9]])
def test_streaming_pieces_equal_one_pass(cuts, form):
    x, theta, gain, _ = inputs((2, 3, 2, 23), seed=11)
    whole, final = tv_iir_filter(x, theta, gain, return_state=True, form=form)
    outs, state, start = [], None, 0
    for n in cuts:
        y, state = tv_iir_stream(x[..., start:start + n], theta[:, start:start + n], gain[:, start:start + n], state,
                                 form)
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, -1), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, final, rtol=1e-10, atol=1e-10)


def test_bad_shapes_are_refused():
    x, theta, gain, state = inputs((2, 3, 2, 10), seed=1)
    with pytest.raises(ValueError, match="one Θ per sample"):
        tv_iir_filter(x, theta[:, :9])
    with pytest.raises(ValueError, match="gain"):
        tv_iir_filter(x, theta, gain[:, :, :2])
    with pytest.raises(ValueError, match="state"):
        tv_iir_filter(x, theta, gain, state[:, :, :1])
    with pytest.raises(ValueError, match="chunk"):
        tv_iir_filter(x, theta, chunk=0)
    with pytest.raises(ValueError, match="form must be one of"):
        tv_iir_filter(x, theta, form="direct")


# ---- the modules -----------------------------------------------------------------------------------

def stack_cfg(filt, **overrides):
    base = dict(decoder_layers=2, decoder_embed_dim=8, decoder_hidden_dim=8, decoder_ffn_embed_dim=16, decoder_z_dim=4,
                focus_filter=filt, iir_mode="carry", theta_param="stable", num_filters=2, bin_size=8, oversampling=4,
                hyper_hidden_dim=8, hyper_kernel_size=16, chunk_size=8, dropout=0.0, selective_rank=3)
    base.update(overrides)
    return FocusStackConfig(**base)


@pytest.mark.parametrize("filt", ["selective", "adaptive-residual"])
def test_input_part_starts_at_zero_so_the_filter_starts_static(filt):
    torch.manual_seed(0)
    stack = FocusStack(stack_cfg(filt)).eval()
    x = torch.randn(2, 32, 8)
    for theta in stack.theta(x):  # (B, bins or tokens, D, F, 2): every bin/token has the same Θ
        torch.testing.assert_close(theta, theta[:1, :1].expand_as(theta))
    stir(stack)
    theta = stack.theta(x)[0]
    assert float((theta - theta[:1, :1]).abs().max()) > 1e-2  # the input part moves Θ once it has weights


def test_selective_at_init_equals_the_static_filter_with_the_same_logits():
    torch.manual_seed(0)
    sel = SelectiveIIRFilter(6, 2, rank=3, theta_param="stable")
    static = StaticIIRFilter(6, 2, bin_size=1, mode="carry", theta_param="stable")
    with torch.no_grad():
        static.logits.copy_(sel.logits)
    x = torch.randn(2, 20, 6)
    torch.testing.assert_close(sel(x, None), static(x, None), rtol=1e-5, atol=1e-5)


def test_selective_theta_depends_on_the_current_token_only():
    torch.manual_seed(1)
    sel = SelectiveIIRFilter(6, 2, rank=3)
    stir(sel)
    x = torch.randn(1, 12, 6)
    theta = sel.theta(x, None)
    x2 = x.clone()
    x2[:, 7] += 1.0
    moved = (sel.theta(x2, None) - theta).abs().amax(dim=(0, 2, 3, 4))
    assert float(moved[7]) > 1e-3 and float(moved[:7].max()) == 0.0 and float(moved[8:].max()) == 0.0


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_selective_poles_stay_inside_under_autocast_at_extreme_weights(half):
    torch.manual_seed(2)
    stack = FocusStack(stack_cfg("selective"))
    stir(stack, scale=300.0)  # projections in the hundreds: a half-precision tanh returns exactly ±1
    x = 10.0 * torch.randn(2, 40, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=half):
        thetas = stack.theta(x)
        out = stack(x)
    assert half == torch.float16 or torch.isfinite(out).all()
    # fp16: a layer's output can pass 65504 (the gain of a filter at the edge, as in test_theta_modules), so the
    # next layer's Θ would see inf; the first layer's Θ is what the half-precision map would have broken
    for theta in thetas[:1] if half == torch.float16 else thetas:
        assert theta.dtype == torch.float32
        assert float(poles(theta).abs().max()) <= MAX_RADIUS + 1e-6
        assert float(theta.double().abs().max()) > 0.99  # the weights did reach the region's edge


def test_selective_needs_carry_and_a_positive_rank():
    from fairseq_focus.modules.config import validate
    with pytest.raises(ValueError, match="needs --iir-mode carry"):
        validate(stack_cfg("selective", iir_mode="causal"))
    with pytest.raises(ValueError, match="--selective-rank must be positive"):
        validate(stack_cfg("selective", selective_rank=0))


def test_causality_checker_catches_a_selective_filter_that_reads_the_next_token(monkeypatch):
    """The model tests assert causality of --focus-filter selective by perturbation; a Θ that reads x[t+1]
    is caught by the same checker (and the honest one passes)."""
    from causality import assert_causal
    from test_model import VOCAB, build, log_probs, random_tokens
    decoder = build("selective", "carry", theta="stable")
    tokens = random_tokens(2, 40)
    assert_causal(log_probs(decoder), tokens, 17, VOCAB)
    honest = SelectiveIIRFilter.theta_and_gain
    monkeypatch.setattr(SelectiveIIRFilter, "theta_and_gain", lambda self, x: honest(self, x.roll(-1, dims=1)))
    with pytest.raises(AssertionError, match="moved by"):
        assert_causal(log_probs(decoder), tokens, 17, VOCAB)


def test_on_the_product_path_the_block_input_selects():
    """--filter-input product: kv is filtered, but Θ and the gain come from the block input x (control)."""
    from fairseq_focus.modules.product_filter import ProductFilter
    torch.manual_seed(4)
    product = ProductFilter(8, 2, SelectiveIIRFilter(8, 1, rank=3))
    stir(product)
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(product.theta(x, None), product.inner.theta_and_gain(x)[0])
    assert float((product.theta(x, None) - product.inner.theta_and_gain(product.kv(x))[0]).abs().max()) > 1e-3
