"""ops/theta.py: the maps from logits to Θ (coverage, inverse, gradients, fp32 under autocast), and
ops/iir run on the poles the new map reaches (radius 0.999) against scipy and the loop twin."""
import math

import numpy as np
import pytest
import torch

from fairseq_focus.ops.iir import CAUSAL_MODES, iir_filter, iir_filter_ref
from fairseq_focus.ops.theta import (MAX_RADIUS, PARAMS, in_region, logits_from_theta, poles, ring_init_logits,
                                     ring_theta, theta_from_logits)
from test_iir import assert_close, lfilter_oracle

HALF = (torch.bfloat16, torch.float16)


def gains(theta):
    """|H(1)| (DC) and |H(−1)| (Nyquist) of H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²)."""
    t = theta.double()
    return 1.0 / (1.0 + t[..., 0] + t[..., 1]).abs(), 1.0 / (1.0 - t[..., 0] + t[..., 1]).abs()


def stability_room(theta):
    """min(1 − |θ1|, 1 + θ1 − |θ0|) in fp64: > 0 exactly when both poles lie inside the unit circle."""
    t = theta.double()
    return float(torch.minimum(1.0 - t[..., 1].abs(), 1.0 + t[..., 1] - t[..., 0].abs()).min())


def random_logits(n, scale, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


@pytest.mark.parametrize("param", PARAMS)
def test_every_theta_the_map_returns_is_stable(param):
    theta = theta_from_logits(random_logits(200_000, 10.0, 0), param)  # many saturate even in fp64
    assert stability_room(theta) >= 1.0 - MAX_RADIUS ** 2 - 1e-12
    assert float(poles(theta).abs().max()) <= MAX_RADIUS + 1e-9


def test_stable_map_reaches_the_whole_triangle():
    """Points drawn uniformly in the (shrunken) triangle come back from logits_from_theta."""
    rng = np.random.default_rng(1)
    rho2 = MAX_RADIUS ** 2
    pts = rng.uniform([-2.0, -1.0], [2.0, 1.0], size=(50_000, 2))
    pts = torch.tensor(pts[np.abs(pts[:, 0]) < 1.0 + pts[:, 1]] * rho2)
    assert len(pts) > 20_000
    logits = logits_from_theta(pts, "stable")
    assert torch.allclose(theta_from_logits(logits, "stable"), pts, rtol=0, atol=1e-9)
    # the triangle's four kinds of filter are all there: real poles of either sign, complex pairs
    # at every angle, a low-pass EMA-like single pole near 1
    p = poles(pts)
    assert float(p.real.max()) > 0.98 and float(p.real.min()) < -0.98
    angles = p.angle().abs()[p.imag.abs() > 1e-9]
    assert float(angles.min()) < 0.05 and float(angles.max()) > math.pi - 0.05


def test_paper_map_inverts_and_is_high_pass_only():
    theta = theta_from_logits(random_logits(100_000, 6.0, 2), "paper")
    assert torch.allclose(theta_from_logits(logits_from_theta(theta, "paper"), "paper"), theta, atol=1e-12)
    assert float(poles(theta).real.max()) < 0.0  # every pole has a negative real part (DESIGN §6)
    dc, nyquist = gains(theta)
    assert bool((nyquist > dc).all())


def test_stable_map_reaches_low_pass_filters():
    ema_like = torch.tensor([[-0.9, 0.0], [-1.8, 0.81], [-1.9, 0.95]], dtype=torch.float64)  # p=0.9; double 0.9; pair
    theta = theta_from_logits(logits_from_theta(ema_like, "stable"), "stable")
    assert torch.allclose(theta, ema_like, atol=1e-12)
    assert float(poles(theta).real.min()) >= 0.0 and float(poles(theta).real.max()) > 0.85
    dc, nyquist = gains(theta)
    assert bool((dc > nyquist).all())
    # and a sizeable share of random logits lands there (none do under eq. 5)
    dc, nyquist = gains(theta_from_logits(random_logits(10_000, 2.0, 3), "stable"))
    assert 0.3 < float((dc > nyquist).double().mean()) < 0.7


@pytest.mark.parametrize("param", PARAMS)
def test_gradcheck_of_the_map(param):
    logits = random_logits(12, 2.0, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda u: theta_from_logits(u, param), (logits,))


def ring_poles_theta(size, seed, dtype=torch.float64):
    """Θ (B, Nbins, D, F, 2) through the stable map from ring-init logits at radius 0.999."""
    b, nb, d, f = size
    gen = torch.Generator().manual_seed(seed)
    logits = ring_init_logits((b, nb, d, f), r_min=0.999, r_max=0.999, min_phase=0.02, generator=gen)
    return theta_from_logits(logits.to(dtype), "stable")


@pytest.mark.parametrize("mode", CAUSAL_MODES)
def test_iir_at_radius_0999_matches_lfilter_and_reference(mode):
    b, d, nb, r, f = 2, 3, 4, 33, 2
    logits = ring_init_logits((b, nb, d, f), r_min=0.999, r_max=0.999, min_phase=0.02,
                              generator=torch.Generator().manual_seed(5)).double().requires_grad_()
    theta = theta_from_logits(logits, "stable")
    assert torch.allclose(poles(theta).abs(), torch.full((b, nb, d, f, 2), 0.999, dtype=torch.float64), atol=1e-9)
    x = torch.randn(b, d, nb * r, generator=torch.Generator().manual_seed(6), dtype=torch.float64, requires_grad=True)
    y = iir_filter(x, theta, mode)
    assert_close(y, lfilter_oracle(x.detach(), theta.detach(), mode), rtol=1e-10)
    y_ref = iir_filter_ref(x, theta, mode)
    assert_close(y, y_ref.detach().numpy(), rtol=1e-10)
    weights = torch.randn_like(y)
    grads = torch.autograd.grad((y * weights).sum(), (x, logits), retain_graph=True)
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), (x, logits))
    for g, g_ref in zip(grads, grads_ref):
        assert_close(g, g_ref.numpy(), rtol=1e-9)


def test_long_fp32_carry_at_radius_0999_matches_lfilter():
    """2048 samples in fp32, state carried across 16 bins, poles at 0.999 (phases ≥ 0.02): the fast
    path stays near the fp64 oracle run on the same fp32 Θ. The problem is ill-conditioned there:
    moving Θ by 1e-7 relative (one fp32 ulp) moves the oracle's output by 2e-4 of its scale; measured
    errors: fast path 4.7e-4, the fp32 loop twin 2.1e-5 (8.7e-5 and 1.2e-5 at radius 0.99)."""
    theta = ring_poles_theta((1, 16, 2, 1), seed=7, dtype=torch.float32)
    x = torch.randn(1, 2, 16 * 128, generator=torch.Generator().manual_seed(8))
    y = iir_filter(x, theta, "carry")
    assert y.dtype == torch.float32
    assert_close(y, lfilter_oracle(x, theta, "carry"), rtol=1e-3)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("half", HALF)
def test_theta_is_fp32_and_stable_under_autocast_at_extreme_logits(param, half):
    corners = torch.tensor([[50.0, 50.0], [-50.0, 50.0], [50.0, -50.0], [-50.0, -50.0], [8.0, 8.0], [-9.0, 9.0]])
    logits = torch.cat([corners, random_logits(10_000, 30.0, 9).float()])
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(2))
        layer.bias.zero_()
    with torch.autocast("cpu", dtype=half):
        from_linear = layer(logits)  # what a hypernetwork's last layer hands over under autocast
        assert from_linear.dtype == half
        for u in (from_linear, logits.to(half), logits):
            theta = theta_from_logits(u, param)
            assert theta.dtype == torch.float32
            assert stability_room(theta) > 0.5 * (1.0 - MAX_RADIUS ** 2)  # rounding left nearly all the room
            assert float(poles(theta).abs().max()) <= MAX_RADIUS + 1e-6 < 1.0


@pytest.mark.parametrize("half,logit", [(torch.bfloat16, 8.0), (torch.float16, 8.5)])
def test_half_precision_sigmoid_puts_a_pole_on_the_circle_and_the_fp32_path_does_not(half, logit):
    u = torch.full((1, 2), logit, dtype=half)
    naive = torch.sigmoid(u)  # eq. 5 evaluated in the logits' own precision
    assert bool((naive == 1.0).all())
    assert float(poles(naive.float()).abs().max()) == pytest.approx(1.0, abs=1e-12)  # z² + z + 1: |p| = 1
    with torch.autocast("cpu", dtype=half):
        theta = theta_from_logits(u, "paper")
    assert theta.dtype == torch.float32 and bool((theta < 1.0).all())
    assert float(poles(theta).abs().max()) < 0.99999


def test_ring_init_puts_poles_on_the_ring():
    theta = ring_theta((4000,), 0.9, 0.999, max_phase=math.pi / 10, generator=torch.Generator().manual_seed(10))
    p = poles(theta)
    radius, phase = p.abs(), p.angle().abs()
    assert float(radius.min()) >= 0.9 - 1e-12 and float(radius.max()) <= 0.999 + 1e-12
    assert float(phase.max()) <= math.pi / 10 + 1e-12
    # uniform by area: the median radius² sits halfway between r_min² and r_max²
    assert float(radius[:, 0].square().median()) == pytest.approx((0.9 ** 2 + 0.999 ** 2) / 2, abs=0.01)
    logits = ring_init_logits((4000,), 0.9, 0.99, max_phase=math.pi / 10, generator=torch.Generator().manual_seed(10))
    assert logits.dtype == torch.float32
    back = poles(theta_from_logits(logits.double(), "stable")).abs()
    assert float(back.min()) > 0.9 - 1e-3 and float(back.max()) < 0.99 + 1e-3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one of"):
        theta_from_logits(torch.zeros(3, 2), "sigmoid")
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        theta_from_logits(torch.zeros(3, 3), "stable")
    with pytest.raises(ValueError, match="max_radius"):
        theta_from_logits(torch.zeros(3, 2), "stable", max_radius=1.0)
    with pytest.raises(ValueError, match="outside"):
        logits_from_theta(torch.tensor([[-0.5, 0.1]]), "paper")  # a low-pass Θ: not in eq. 5's square
    with pytest.raises(ValueError, match="outside"):
        logits_from_theta(torch.tensor([[2.5, 0.1]]), "stable")
    with pytest.raises(ValueError, match="outside"):
        ring_init_logits((3,), 0.5, 0.9, max_phase=1.0, param="paper")
    with pytest.raises(ValueError, match="r_max"):
        ring_theta((3,), 0.5, 1.0)
