"""ops/iir against independent oracles (scipy.signal.lfilter, a direct numpy evaluation of
eq. 4-8), against its loop reference twin (values, final state, gradients), and for stability; the
closed-form impulse response against the companion powers and lfilter over the whole stability
triangle up to L 16384, and the time-invariant carry path (iir_filter_lti) against carry mode."""
import math

import numpy as np
import pytest
import scipy.signal
import torch

from fairseq_focus.ops.iir import (companion_rows, iir_filter, iir_filter_bins, iir_filter_lti, iir_filter_lti_ref, iir_filter_ref,
                                   iir_step, impulse_response)
from fairseq_focus.ops.theta import MAX_RADIUS

SIZES = [(1, 1, 1, 1, 1), (2, 3, 4, 7, 1), (2, 5, 3, 13, 3), (1, 2, 6, 1, 2), (3, 1, 2, 33, 4)]  # B, D, Nbins, R, F
# iir_filter runs ``carry`` on the fused per-sample scan on this CPU; iir_filter_bins is the per-bin path (the
# only one for causal / paper): both are tied to the oracles and the loop twin
FAST = {"dispatch": iir_filter, "bins": iir_filter_bins}


def random_theta(shape, rng, dtype=torch.float64):
    """Θ in (0, 1), a third of the entries pushed near 0 or near 1 (poles close to the unit circle)."""
    theta = rng.uniform(0.0, 1.0, size=shape)
    pick = rng.uniform(size=shape)
    theta = np.where(pick < 0.15, rng.uniform(1e-4, 1e-2, size=shape), theta)
    theta = np.where(pick > 0.85, 1.0 - rng.uniform(1e-4, 1e-2, size=shape), theta)
    return torch.tensor(theta, dtype=dtype)


def make_inputs(size, seed, dtype=torch.float64):
    b, d, nb, r, f = size
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((b, d, nb * r)), dtype=dtype)
    return x, random_theta((b, nb, d, f, 2), rng, dtype)


def lfilter_oracle(x, theta, mode, state=None):
    """scipy.signal.lfilter per bin and filter; 'carry' hands the last two outputs over as initial
    conditions (scipy.signal.lfiltic) for the next bin's coefficients."""
    x, theta = x.double().numpy(), theta.double().numpy()
    b, d, length = x.shape
    nb, f = theta.shape[1], theta.shape[3]
    r = length // nb
    y = np.zeros_like(x)
    for bi in range(b):
        for di in range(d):
            for fi in range(f):
                hist = [] if state is None else [state[bi, di, fi, 0].item(), state[bi, di, fi, 1].item()]
                for i in range(nb):
                    a = [1.0, theta[bi, i, di, fi, 0], theta[bi, i, di, fi, 1]]
                    seg = x[bi, di, i * r:(i + 1) * r]
                    if mode == "carry" and hist:
                        out, _ = scipy.signal.lfilter([1.0], a, seg, zi=scipy.signal.lfiltic([1.0], a, hist))
                    else:
                        out = scipy.signal.lfilter([1.0], a, seg)
                    y[bi, di, i * r:(i + 1) * r] += out
                    full = np.concatenate([np.array(hist[::-1]), out]) if hist else out
                    hist = [full[-1], full[-2]] if len(full) >= 2 else [full[-1], hist[0] if hist else 0.0]
    return y


def paper_oracle(x, theta):
    """Eq. 4-8 evaluated directly: X[k] = Σ_n x[n] e^{-j2πkn/R}; X_f = X · conj(IIR_imp(k/R));
    X_c = Σ_F X_f; x_f[n] = (1/R) Σ_k X_c[k] e^{+j2πkn/R}."""
    x, theta = x.double().numpy(), theta.double().numpy()
    b, d, length = x.shape
    nb = theta.shape[1]
    r = length // nb
    n = np.arange(r)
    w = np.exp(-2j * np.pi * np.outer(n, n) / r)  # w[k, n]
    e = np.exp(-2j * np.pi * n / r)  # e^{-j2πf}, f = k/R
    y = np.zeros_like(x)
    for i in range(nb):
        seg = x[..., i * r:(i + 1) * r]  # (B, D, R)
        spectrum = seg @ w.T  # eq. 4
        t0, t1 = theta[:, i, :, :, 0:1], theta[:, i, :, :, 1:2]  # (B, D, F, 1)
        response = 1.0 / (1.0 + t0 * e + t1 * e ** 2)  # eq. 5
        collapsed = (spectrum[:, :, None, :] * np.conj(response)).sum(2)  # eq. 6-7
        y[..., i * r:(i + 1) * r] = (collapsed @ np.conj(w) / r).real  # eq. 8 (w symmetric)
    return y


def assert_close(actual, expected, rtol):
    """Max error relative to the oracle's scale (outputs near a pole on the unit circle are large)."""
    actual = actual.detach().double().numpy() if torch.is_tensor(actual) else actual
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} × scale {scale:.3g}"


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["causal", "carry"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_recursive_modes_match_lfilter(size, mode, dtype, rtol, impl):
    for seed in range(3):
        x, theta = make_inputs(size, seed, dtype)
        expected = lfilter_oracle(x, theta, mode)
        assert_close(FAST[impl](x, theta, mode), expected, rtol)
        assert_close(iir_filter_ref(x, theta, mode), expected, rtol)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_paper_mode_matches_direct_equations(size, dtype, rtol):
    for seed in range(3):
        x, theta = make_inputs(size, seed, dtype)
        expected = paper_oracle(x, theta)
        assert_close(iir_filter(x, theta, "paper"), expected, rtol)
        assert_close(iir_filter_ref(x, theta, "paper"), expected, rtol)


@pytest.mark.parametrize("impl", FAST)
def test_carry_with_initial_state_matches_lfilter(impl):
    x, theta = make_inputs((2, 3, 5, 6, 2), 7)
    state = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    expected = lfilter_oracle(x, theta, "carry", state=state)
    y, final = FAST[impl](x, theta, "carry", state=state, return_state=True)
    assert_close(y, expected, 1e-9)
    y_ref, final_ref = iir_filter_ref(x, theta, "carry", state=state, return_state=True)
    torch.testing.assert_close(final, final_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("mode", ["causal", "carry"])
@pytest.mark.parametrize("size", SIZES)
def test_fast_path_matches_reference_values_and_state(mode, size, impl):
    x, theta = make_inputs(size, 11)
    y, state = FAST[impl](x, theta, mode, return_state=True)
    y_ref, state_ref = iir_filter_ref(x, theta, mode, return_state=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(state, state_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("mode", ["causal", "carry", "paper"])
def test_fast_path_gradients_match_reference(mode, impl):
    x, theta = make_inputs((2, 3, 3, 5, 2), 3)
    x.requires_grad_(True)
    theta.requires_grad_(True)
    weights = torch.randn(x.shape, dtype=torch.float64)
    grads = torch.autograd.grad((FAST[impl](x, theta, mode) * weights).sum(), (x, theta))
    grads_ref = torch.autograd.grad((iir_filter_ref(x, theta, mode) * weights).sum(), (x, theta))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("mode", ["causal", "carry", "paper"])
def test_gradcheck(mode):
    x, theta = make_inputs((1, 2, 3, 4, 2), 5)
    theta = theta.clamp(0.05, 0.95)  # keep finite differences away from the (0, 1) boundary
    x.requires_grad_(True)
    theta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: iir_filter(a, b, mode), (x, theta))


@pytest.mark.parametrize("impl", FAST)
def test_carry_state_gradient_matches_reference(impl):
    x, theta = make_inputs((1, 2, 3, 4, 2), 9)
    state = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    out = FAST[impl](x, theta, "carry", state=state, return_state=True)
    ref = iir_filter_ref(x, theta, "carry", state=state, return_state=True)
    g = torch.autograd.grad(out[0].sum() + out[1].sum(), state)[0]
    g_ref = torch.autograd.grad(ref[0].sum() + ref[1].sum(), state)[0]
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("mode", ["causal", "carry"])
def test_causal_modes_are_causal_and_paper_mode_is_not(mode):
    x, theta = make_inputs((1, 2, 2, 16, 1), 1)
    t = 9
    x2 = x.clone()
    x2[..., t + 1:] += torch.randn_like(x2[..., t + 1:])
    moved = (iir_filter(x2, theta, mode) - iir_filter(x, theta, mode))[..., : t + 1].abs().max()
    assert moved < 1e-12
    leak = (iir_filter(x2, theta, "paper") - iir_filter(x, theta, "paper"))[..., : t + 1].abs().max()
    assert leak > 1e-3, "paper mode (eq. 6) should mix future samples of the bin into the past"


def test_poles_inside_unit_circle():
    rng = np.random.default_rng(0)
    theta = random_theta((5000, 2), rng).numpy()
    radii = np.array([np.abs(np.roots([1.0, t0, t1])).max() for t0, t1 in theta])
    assert radii.max() < 1.0
    # and the impulse response decays: |p|² = θ1 for complex poles
    complex_poles = theta[:, 0] ** 2 < 4 * theta[:, 1]
    sel = theta[complex_poles]
    np.testing.assert_allclose(
        [np.abs(np.roots([1.0, t0, t1])).max() ** 2 for t0, t1 in sel[:200]], sel[:200, 1], rtol=1e-9)


@pytest.mark.parametrize("mode", ["causal", "carry"])
def test_long_sequence_fp32_is_finite(mode):
    torch.manual_seed(0)
    length = 65_536
    x = torch.randn(1, 2, length)
    for nbins in (1, 256):
        theta = torch.rand(1, nbins, 2, 2, 2) * 0.9998 + 1e-4
        y = iir_filter(x, theta, mode)
        assert torch.isfinite(y).all()


def test_filter_math_stays_fp32_under_autocast():
    x, theta = make_inputs((2, 3, 4, 8, 2), 2, torch.float32)
    expected = iir_filter(x, theta, "carry")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = iir_filter(x, theta, "carry")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_step_matches_one_sample_of_the_recursion():
    x_t = torch.randn(2, 3, dtype=torch.float64)
    theta = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    state = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    y, new_state = iir_step(x_t, theta, state)
    y_f = x_t.unsqueeze(-1) - theta[..., 0] * state[..., 0] - theta[..., 1] * state[..., 1]
    torch.testing.assert_close(y, y_f.sum(-1))
    torch.testing.assert_close(new_state[..., 1], state[..., 0])


def test_bad_arguments_are_refused():
    x, theta = make_inputs((1, 2, 3, 4, 1), 0)
    with pytest.raises(ValueError, match="mode"):
        iir_filter(x, theta, "fir")
    with pytest.raises(ValueError, match="multiple of Nbins"):
        iir_filter(x[..., :-1], theta)
    with pytest.raises(ValueError, match="carry"):
        iir_filter(x, theta, "causal", state=torch.zeros(1, 2, 1, 2, dtype=x.dtype))
    with pytest.raises(ValueError, match="theta"):
        iir_filter_lti(x, theta[0, 0, ..., :1])


# ---- the closed-form impulse response and the time-invariant carry path (iir_filter_lti) ----

RHO = MAX_RADIUS


def edge_thetas():
    """Θ (N, 2), float64, over the whole stability triangle: complex pairs at |p| = ρ (the theta map's
    largest radius) at small and large angles, real poles at ±ρ, near-double and exactly double poles,
    θ1 → 0 and θ1 = 0, both poles 0, and poles of opposite sign."""
    pairs = [[-2 * RHO * math.cos(a), RHO * RHO] for a in (1e-3, 0.01, 0.5, 2.0, math.pi - 1e-3)]
    real = [[-(RHO + 0.5), 0.5 * RHO], [-(2 * RHO - 1e-3), RHO * (RHO - 1e-3)], [RHO - 0.3, -0.3 * RHO],
            [2 * RHO - 1e-3, RHO * (RHO - 1e-3)]]
    double = [[-1.8, 0.81 + 1e-9], [1.8, 0.81 - 1e-9], [-1.8, 0.81], [-2 * RHO, RHO * RHO], [1.98, 0.99 ** 2]]
    small = [[-0.9, 1e-8], [0.9, -1e-8], [0.5, 0.0], [-RHO, 1e-30], [0.0, 0.0], [0.0, 1e-7]]
    opposite = [[0.05, -0.9], [1e-4, -0.999 * RHO * RHO], [0.0, -0.5]]
    return torch.tensor(pairs + real + double + small + opposite, dtype=torch.float64)


def triangle_thetas(count, seed):
    """Θ (count, 2), float64, uniform in the reflection coefficients (k1, k2) of the stability triangle."""
    k = torch.rand(count, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    return torch.stack([k[:, 0] * (1 + k[:, 1]), k[:, 1]], dim=-1) * RHO * RHO


def lfilter_impulse(theta, n):
    """scipy.signal.lfilter on a unit impulse, in float64, for each Θ (N, 2) -> (N, n)."""
    impulse = np.zeros(n)
    impulse[0] = 1.0
    return np.stack([scipy.signal.lfilter([1.0], [1.0, t0, t1], impulse) for t0, t1 in theta.double().tolist()])


def assert_rows_close(actual, expected, rtol):
    """Each row's max error relative to that row's scale (max |h|, at least 1)."""
    expected = expected.detach().double().numpy() if torch.is_tensor(expected) else expected
    err = np.abs(actual.detach().double().numpy() - expected).max(-1) / np.maximum(np.abs(expected).max(-1), 1.0)
    assert err.max() <= rtol, f"row errors {err}"


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_impulse_response_matches_companion_rows_and_lfilter(dtype, rtol):
    """Against lfilter to rounding (fp32: ~t·ε·|arg p| at tap t); against the companion powers (fp64)
    within their own error, which reaches ~3e-11 at a double pole on |p| = ρ (the closed form is 1e-13
    from lfilter there)."""
    theta = torch.cat([triangle_thetas(64, 0), edge_thetas()]).to(dtype)
    h = impulse_response(theta, 300)
    assert h.dtype == dtype and h.shape == (theta.size(0), 300)
    assert_rows_close(h, lfilter_impulse(theta, 300), rtol)
    assert_rows_close(h, companion_rows(theta.double(), 300, impulse_only=True), max(rtol, 1e-9))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 3e-3)])
def test_impulse_response_at_16k_near_the_unit_circle(dtype, rtol):
    """L 16384 at the edge cases: fp64 to rounding; fp32 within ~L·ε·|arg p| (the pole's angle rounded to
    fp32, turned L times), a bound the fp32 recursion itself does not beat."""
    theta = edge_thetas().to(dtype)
    h = impulse_response(theta, 16384)
    assert torch.isfinite(h).all()
    assert_rows_close(h, lfilter_impulse(theta, 16384), rtol)


def test_impulse_response_gradcheck():
    theta = torch.tensor([[-1.2, 0.5], [0.3, 0.8], [-1.8, 0.81 + 1e-7], [0.4, -0.3], [-0.9, 1e-6], [0.05, -0.9],
                          [-2 * RHO * math.cos(0.3), RHO * RHO]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: impulse_response(t, 37), (theta,))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_impulse_response_gradients_match_companion_rows(dtype, rtol):
    """∂h/∂Θ against autograd through the companion powers (fp64), double poles and θ1 = 0 included."""
    theta = torch.cat([triangle_thetas(16, 1), edge_thetas()])
    weights = torch.randn(theta.size(0), 512, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = theta.to(dtype).double().requires_grad_(True)
    expected = torch.autograd.grad((companion_rows(ref, 512, impulse_only=True) * weights).sum(), ref)[0]
    got_theta = theta.to(dtype).requires_grad_(True)
    got = torch.autograd.grad((impulse_response(got_theta, 512) * weights.to(dtype)).sum(), got_theta)[0]
    assert torch.isfinite(got).all()
    assert_rows_close(got, expected, rtol)


@pytest.mark.parametrize("length", [1, 2, 45, 128])
def test_lti_filter_matches_carry_mode_and_its_loop_twin(length):
    x, theta = make_inputs((2, 3, 1, length, 2), 4)
    static = theta[:, 0]  # (B, D, F, 2): one Θ for the whole sequence
    y = iir_filter_lti(x, static)
    torch.testing.assert_close(y, iir_filter(x, theta, "carry"), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, iir_filter_lti_ref(x, static), rtol=1e-9, atol=1e-9)
    assert_close(y, lfilter_oracle(x, theta, "carry"), 1e-9)


def test_lti_filter_stays_fp32_under_autocast():
    x, theta = make_inputs((2, 3, 1, 40, 2), 6, torch.float32)
    expected = iir_filter_lti(x, theta[0, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = iir_filter_lti(x, theta[0, 0])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
