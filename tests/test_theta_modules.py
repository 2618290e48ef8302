"""--theta-param / --theta-init in the filters and the model: Θ against hand-written twins of both
maps (paper: what main computed, times the ρ² margin), the filters' outputs against scipy's lfilter
and the loop twin, gradients by finite differences, the ring init, and every pole of every layer
strictly inside the unit circle under CPU bf16/fp16 autocast at extreme weights. Focus-H in carry mode:
its one-convolution path against its per-bin scan (values, gradients), and a fixed operator count."""
import math
from dataclasses import replace

import pytest
import torch
from torch.func import functional_call

from fairseq_focus.modules.config import FocusStackConfig, validate
from fairseq_focus.modules.focus_stack import FocusStack
from fairseq_focus.modules.global_filter import StaticIIRFilter
from fairseq_focus.ops.iir import iir_filter_ref
from fairseq_focus.ops.theta import MAX_RADIUS, poles
from test_iir import assert_close, lfilter_oracle

RHO2 = MAX_RADIUS ** 2
THETA = {"paper": {}, "stable": {"theta_param": "stable"}, "ring": {"theta_param": "stable", "theta_init": "ring"}}


def stack_cfg(filt, mode="carry", theta="paper", **overrides):
    cfg = FocusStackConfig(decoder_layers=2, decoder_embed_dim=4, decoder_hidden_dim=8, decoder_ffn_embed_dim=8,
                           decoder_z_dim=4, focus_filter=filt, iir_mode=mode, num_filters=2, bin_size=8,
                           oversampling=4, hyper_hidden_dim=6, hyper_kernel_size=12, chunk_size=8, dropout=0.0)
    return replace(cfg, **THETA[theta], **overrides)


def build_stack(filt, theta, seed=0, **overrides):
    torch.manual_seed(seed)
    return FocusStack(stack_cfg(filt, theta=theta, **overrides)).eval()


def hand_map(logits, theta):
    """Both maps written out again: eq. 5's sigmoid, or reflection coefficients; then × ρ²."""
    if theta == "paper":
        return RHO2 * torch.sigmoid(logits)
    k1, k2 = torch.tanh(logits[..., 0]), torch.tanh(logits[..., 1])
    return RHO2 * torch.stack([k1 * (1 + k2), k2], dim=-1)


def hand_theta(stack, layer, x):
    """Θ (B, Nbins, D, F, 2) of one layer for stack input x, recomputed from its parameters without
    the module's code."""
    filt = stack.blocks[layer].attn.filter
    theta = "paper" if filt_param(filt) == "paper" else "stable"
    if hasattr(filt, "logits"):  # static
        return hand_map(filt.logits, theta).expand(x.size(0), x.size(1) // 8, -1, -1, -1)
    mlp, e = filt.local, stack.shared_encoder(x)  # e (B, Nbins, D, O), from the stack's input
    logits = mlp.fc2(torch.sigmoid(mlp.fc1(e)))  # main's H_local up to its last sigmoid
    shaped = logits.view(*logits.shape[:-1], 2, 2)
    first = hand_map(mlp.first_bin_logits, theta).expand(x.size(0), 1, -1, -1, -1)
    return torch.cat([first, hand_map(shaped, theta)[:, :-1]], dim=1)


def filt_param(filt):
    return filt.theta_param if hasattr(filt, "theta_param") else filt.local.theta_param


@pytest.mark.parametrize("filt", ["adaptive", "static"])
@pytest.mark.parametrize("theta", ["paper", "stable", "ring"])
def test_filter_equals_its_hand_written_twin_and_lfilter(filt, theta):
    """Θ as the module computes it = the formulas by hand (for paper: main's computation × ρ²); the
    filter's output = scipy's lfilter and the loop twin on that Θ (fp64)."""
    stack = build_stack(filt, theta).double()
    x = torch.randn(2, 32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3.0
    block = stack.blocks[0].attn
    with torch.no_grad():
        got = stack.theta(x)[0]
        expected = hand_theta(stack, 0, x)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
        assert float(got.std()) > 0.05  # the check sees spread-out Θ, not a constant
        xin = block.filter_input(x)
        y = block.filter(xin, stack.shared_encoder(x) if stack.shared_encoder is not None else None)  # (B, L, D)
    channels_first = xin.transpose(1, 2)
    assert_close(y.transpose(1, 2), lfilter_oracle(channels_first, expected, "carry"), rtol=1e-10)
    assert_close(y.transpose(1, 2), iir_filter_ref(channels_first, expected, "carry").numpy(), rtol=1e-10)


@pytest.mark.parametrize("filt", ["adaptive", "static"])
@pytest.mark.parametrize("theta", ["paper", "ring"])
def test_filter_gradients_match_finite_differences(filt, theta):
    stack = build_stack(filt, theta, bin_size=4, hyper_kernel_size=6).double()
    module = stack.blocks[0].attn.filter
    names, params = zip(*[(n, p.detach().requires_grad_()) for n, p in module.named_parameters()])
    x = torch.randn(1, 12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)

    def run(x, *ps):
        e = stack.shared_encoder(x) if stack.shared_encoder is not None else None
        return functional_call(module, dict(zip(names, ps)), (x, e))

    assert torch.autograd.gradcheck(run, (x, *params), fast_mode=True)  # random projections of the Jacobian


def test_ring_init_starts_on_the_ring():
    """Focus-H's Θ and the first bin's Θ have their poles in 0.9 ≤ |p| ≤ 0.999 at init; the
    adaptive bins' too, up to what the last layer's weights add to its bias."""
    static = build_stack("static", "ring")
    radius = poles(static.theta(torch.randn(1, 16, 4))[0]).abs()
    assert float(radius.min()) >= 0.9 - 1e-6 and float(radius.max()) <= 0.999 + 1e-6
    adaptive = build_stack("adaptive", "ring")
    theta = adaptive.theta(torch.randn(2, 64, 4))[0]  # (B, 8 bins, D, F, 2)
    first = poles(theta[:, 0]).abs()
    assert float(first.min()) >= 0.9 - 1e-6 and float(first.max()) <= 0.999 + 1e-6
    rest = poles(theta[:, 1:]).abs()
    assert float(rest.min()) > 0.8 and float(rest.max()) < MAX_RADIUS
    default = poles(build_stack("adaptive", "stable").theta(torch.randn(2, 64, 4))[0][:, 1:]).abs()
    assert float(default.max()) < 0.8  # the default init starts far from the circle: the ring is what moved it


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("filt", ["adaptive", "static"])
@pytest.mark.parametrize("theta", ["paper", "stable"])
def test_every_pole_stays_inside_under_autocast_at_extreme_weights(half, filt, theta):
    stack = build_stack(filt, theta)
    with torch.no_grad():  # logits in the hundreds: a half-precision sigmoid/tanh returns exactly ±1
        for block in stack.blocks:
            f = block.attn.filter
            if filt == "static":
                f.logits.mul_(300.0)
            else:
                f.local.fc2.weight.mul_(500.0)
                f.local.fc2.bias.uniform_(-100.0, 100.0)
                f.local.first_bin_logits.mul_(300.0)
    x = torch.randn(2, 64, 4, generator=torch.Generator().manual_seed(3)) * 10.0
    with torch.no_grad(), torch.autocast("cpu", dtype=half):
        thetas = stack.theta(x)
        assert stack.blocks[0].attn.q_proj(x).dtype == half  # autocast is really on
        if filt == "adaptive":
            local = stack.blocks[0].attn.filter.local
            assert local.fc1(torch.randn(3, 4)).dtype == half
            assert local.logits(torch.randn(3, 4)).dtype == torch.float32  # the last layer ran in fp32
        out = stack(x)
    # bf16 has fp32's range; in fp16 a filter near the edge (gain up to 1/(1 − ρ²) ≈ 8192) can push
    # x_f past 65504 in the next projection (measured: |x_f| = 2.4e6 for stable-adaptive here) —
    # a range limit of fp16, not a pole outside the circle
    assert half == torch.float16 or torch.isfinite(out).all()
    for theta_layer in thetas:
        assert theta_layer.dtype == torch.float32
        t = theta_layer.double()
        room = torch.minimum(1.0 - t[..., 1].abs(), 1.0 + t[..., 1] - t[..., 0].abs())
        assert float(room.min()) > 0.5 * (1.0 - RHO2)  # both triangle inequalities hold with room
        assert float(poles(theta_layer).abs().max()) < 1.0
        assert float(t.abs().max()) > 0.99  # the weights did drive Θ to the region's edge
    naive = torch.sigmoid(torch.tensor([300.0], dtype=half))  # what eq. 5 in half precision gives there
    assert float(naive) == 1.0


def test_bad_theta_settings_are_refused():
    with pytest.raises(ValueError, match="needs --theta-param stable"):
        validate(stack_cfg("static", theta_init="ring"))
    with pytest.raises(ValueError, match="theta-ring-rmax"):
        validate(stack_cfg("static", theta="ring", theta_ring_rmax=1.0))
    with pytest.raises(ValueError, match="theta-param must be one of"):
        validate(stack_cfg("static", theta_param="sigmoid"))


def _init_poles(stack):
    """Poles of every initial Θ the ring init sets: Focus-H's logits, or the hypernetwork's bias and first bin."""
    from fairseq_focus.ops.theta import theta_from_logits
    out = []
    for block in stack.blocks:
        filt = block.attn.filter
        tensors = [filt.logits] if hasattr(filt, "logits") else [filt.local.first_bin_logits,
                                                                  filt.local.fc2.bias.view(-1, 2)]
        out += [poles(theta_from_logits(t.detach().double(), "stable")).flatten() for t in tensors]
    return torch.cat(out)


@pytest.mark.parametrize("filt", ["static", "adaptive"])
def test_ring_max_phase_bounds_the_initial_pole_angles(filt):
    wide = _init_poles(build_stack(filt, "ring", decoder_embed_dim=16, theta_ring_max_phase=math.pi))
    narrow = _init_poles(build_stack(filt, "ring", decoder_embed_dim=16, theta_ring_max_phase=0.3))
    assert float(narrow.angle().abs().max()) <= 0.3 + 1e-6
    assert float(wide.angle().abs().max()) > 1.0  # the default (π) reaches far beyond: the bound is not vacuous
    assert 0.9 - 1e-6 <= float(narrow.abs().min()) and float(narrow.abs().max()) < 1.0


def test_ring_max_phase_default_keeps_the_old_draws():
    cfg = stack_cfg("static", theta="ring")
    assert cfg.theta_ring_max_phase == math.pi
    old = build_stack("static", "ring", seed=3).state_dict()
    new = build_stack("static", "ring", seed=3, theta_ring_max_phase=math.pi).state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old)
    from fairseq_focus.ops.theta import ring_init_logits
    torch.manual_seed(3)
    expected = ring_init_logits((4, 2), 0.9, 0.999, param="stable")  # the op's own default phase range
    torch.manual_seed(3)
    assert torch.equal(expected, ring_init_logits((4, 2), 0.9, 0.999, max_phase=math.pi, param="stable"))


def test_bad_ring_max_phase_is_refused():
    for bad in (0.0, -1.0, 3.2):
        with pytest.raises(ValueError, match="theta-ring-max-phase"):
            validate(stack_cfg("static", theta="ring", theta_ring_max_phase=bad))


def static_carry_filter(theta, dtype, seed=0, bin_size=9):
    """A StaticIIRFilter in carry mode (D 5, F 2), logits from ``theta``'s init (ring: poles near |p| = 0.999)."""
    torch.manual_seed(seed)
    ring = (0.9, 0.999, math.pi) if theta == "ring" else None
    return StaticIIRFilter(5, 2, bin_size, "carry", "paper" if theta == "paper" else "stable", ring).to(dtype)


@pytest.mark.parametrize("theta", ["paper", "stable", "ring"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_static_carry_fft_path_equals_the_bin_scan(theta, dtype, tol):
    """The one-convolution path (forward) = the per-bin scan (forward_bins): values and the gradients
    w.r.t. x and the logits, B 2, an odd L (15 bins of 9)."""
    filt = static_carry_filter(theta, dtype)
    x = torch.randn(2, 135, 5, dtype=dtype, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    weights = torch.randn(2, 135, 5, dtype=dtype, generator=torch.Generator().manual_seed(4))
    outputs, grads = [], []
    for path in (filt.forward, filt.forward_bins):
        y = path(x, None)
        outputs.append(y)
        grads.append(torch.autograd.grad((y * weights).sum(), (x, filt.logits)))
    scale = outputs[1].abs().max().item()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=tol, atol=tol * scale)
    for got, expected in zip(grads[0], grads[1]):
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol * expected.abs().max().item())


def aten_calls(step):
    """Compute aten:: calls that torch.profiler records during ``step()`` (views and dtype no-ops left out,
    as ../shared/tools/op_count.py counts them)."""
    free = {"view", "reshape", "_reshape_alias", "slice", "select", "unsqueeze", "squeeze", "transpose", "permute",
            "expand", "as_strided", "empty", "empty_like", "empty_strided", "unflatten", "flatten", "t", "detach",
            "alias", "to", "_to_copy", "result_type", "lift_fresh", "resolve_conj", "resolve_neg", "_unsafe_view",
            "view_as_real", "view_as_complex", "expand_as", "view_as", "contiguous"}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::") and e.key[6:] not in free)


def test_static_carry_makes_the_same_operator_calls_at_every_length():
    """Forward + backward of the static carry filter: the same number of operator calls at L 1024 and
    4096 (deterministic, unlike a time); the per-bin scan's count grows with L, so the check can fail."""
    filt = static_carry_filter("stable", torch.float32, bin_size=128)

    def calls(path, length):
        x = torch.randn(1, length, 5, requires_grad=True)
        path(x, None).square().mean().backward()  # warm-up
        return aten_calls(lambda: path(x, None).square().mean().backward())
    fast = [calls(filt.forward, length) for length in (1024, 4096)]
    assert fast[0] == fast[1], f"compute calls grow with L: {fast}"
    scan = [calls(filt.forward_bins, length) for length in (1024, 4096)]
    assert scan[1] > scan[0] > fast[0]
