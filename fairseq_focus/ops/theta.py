"""The map from unconstrained outputs (logits) to IIR coefficients Θ = (θ0, θ1), always in fp32.

Every filter of ``ops/iir`` and ``ops/tv_iir`` runs the recursion (paper eq. 5 / 32)

    y[t] = x[t] − θ0·y[t−1] − θ1·y[t−2],    H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²),

whose poles p are the roots of z² + θ0 z + θ1: p1 + p2 = −θ0, p1·p2 = θ1. Two parameterisations:

* ``paper`` — eq. 5 as the paper writes it: θ = sigmoid(u) ∈ (0, 1)². Stable, but only high-pass:
  p1 + p2 = −θ0 < 0, so every pole has a negative real part and |H(−1)| > |H(1)|.
* ``stable`` — the whole stability triangle |θ1| < 1, |θ0| < 1 + θ1, through the reflection
  (Schur–Cohn / PARCOR) coefficients of the denominator: k1, k2 = tanh(u) ∈ (−1, 1),
  θ1 = k2, θ0 = k1·(1 + k2). The step-down recursion inverts it (k2 = θ1, k1 = θ0 / (1 + θ1)), so
  the map is a bijection from R² onto the open triangle. With this sign convention k1 < 0 gives
  θ0 < 0, i.e. poles with a positive real part: low-pass, EMA-like filters (a single real pole at
  p is k2 → 0, k1 = −p). k1 > 0 gives the high-pass side; the poles are a complex pair when
  θ0² < 4θ1, at any angle and any radius below 1.

Precision and a margin. Both maps run in fp32 (fp64 stays fp64) with autocast disabled, whatever
dtype the logits arrive in: a half-precision sigmoid rounds to exactly 1.0 (bf16 from a logit of
about 6, fp16 from about 8.3), which puts a pole on the unit circle. fp32 saturates too (tanh at a
logit of about 9, sigmoid at about 17), and near the corners θ' = (±2, 1) of the triangle a double
pole moves by √(rounding): one fp32 ulp of θ0 there moves it by ~5·10⁻⁴, onto or past |p| = 1. So
both maps shrink their region toward the origin by ρ², ρ = ``max_radius`` < 1:

    Θ = ρ²·Θ',   Θ' the output of the unit map above.

Then |θ1| ≤ ρ² and |θ0| ≤ ρ²(1 + θ1'), so both triangle inequalities hold with room ≥ 1 − ρ²
whatever the logits (±∞ included), far above fp32 rounding; every pole has |p| ≤ ρ (a complex pair
has |p|² = θ1 ≤ ρ²; the real poles of the shrunken triangle reach ±ρ at its lowest vertex). What
the margin costs: a double real pole can sit at most at 1 − √(1 − ρ²) (0.989 for the default); a
single real pole reaches ρ². The default ρ = 1 − 2⁻¹⁴ (room 1.2·10⁻⁴, ≈ 500 ulps of fp32 at 1;
complex pairs with time constants up to 16384 samples) changes eq. 5's Θ by 1.2·10⁻⁴ relative:
a departure, named in the README's departures.

Long-memory init (``ring_theta``): poles drawn uniformly (by area) on the ring r_min ≤ |p| ≤ r_max
with phase in [min_phase, max_phase], as the Linear Recurrent Unit's ring initialisation draws its
diagonal eigenvalues (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences", ICML 2023, the ring init of §3: |λ| = sqrt(u1·(r_max² − r_min²) + r_min²), arg λ = u2·θ_max). A real order-2
filter owns the conjugate pair p, p̄: z² − 2r·cos φ·z + r², i.e. θ0 = −2r cos φ, θ1 = r². Phases
below π/2 give low-pass / resonant filters, which only ``stable`` can express; ``logits_from_theta``
turns any Θ inside the region into the logits that produce it (``ring_init_logits`` does both).

Glossary: logits (..., 2) = (u0, u1); Θ (..., 2) = (θ0, θ1); k = (k1, k2) reflection coefficients.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .precision import compute_dtype, no_autocast

PARAMS = ("paper", "stable")
MAX_RADIUS = 1.0 - 2.0 ** -14  # ρ: every pole |p| ≤ ρ, whatever the logits (module docstring)


def _check(param: str, max_radius: float) -> None:
    if param not in PARAMS:
        raise ValueError(f"theta parameterisation must be one of {PARAMS}, got {param!r}")
    if not 0.0 < max_radius < 1.0:
        raise ValueError(f"max_radius must lie in (0, 1), got {max_radius}")


def theta_from_logits(logits: Tensor, param: str, max_radius: float = MAX_RADIUS) -> Tensor:
    """Θ (..., 2) from unconstrained logits (..., 2), in fp32 (fp64 for fp64 logits), autocast off."""
    _check(param, max_radius)
    if logits.size(-1) != 2:
        raise ValueError(f"expected logits (..., 2), got {tuple(logits.shape)}")
    with no_autocast(logits):
        u = logits.to(compute_dtype(logits))
        if param == "paper":
            unit = torch.sigmoid(u)  # eq. 5: θ' ∈ (0, 1)²
        else:
            k = torch.tanh(u)  # reflection coefficients (k1, k2) ∈ (−1, 1)²
            k1, k2 = k[..., 0], k[..., 1]
            unit = torch.stack([k1 * (1.0 + k2), k2], dim=-1)  # the stability triangle
        return (max_radius * max_radius) * unit


def in_region(theta: Tensor, param: str, max_radius: float = MAX_RADIUS) -> Tensor:
    """Whether each Θ (..., 2) lies strictly inside the region ``param`` maps onto (tested in fp64)."""
    _check(param, max_radius)
    t = theta.double() / (max_radius * max_radius)
    t0, t1 = t[..., 0], t[..., 1]
    if param == "paper":
        return (t0 > 0) & (t0 < 1) & (t1 > 0) & (t1 < 1)
    return (t1.abs() < 1) & (t0.abs() < 1 + t1)


def logits_from_theta(theta: Tensor, param: str, max_radius: float = MAX_RADIUS, clip: bool = False) -> Tensor:
    """The inverse map: float64 logits (..., 2) that produce Θ.

    Θ must lie strictly inside the region, or ``clip`` moves it onto the region's edge first (the
    reflection coefficients clamped, i.e. the same θ1 and the largest reachable |θ0|). Within ~1e-12
    of the edge the logits are capped at atanh/logit of 1 − 2⁻⁴⁰.
    """
    _check(param, max_radius)
    if not clip and not bool(in_region(theta, param, max_radius).all()):
        region = "eq. 5's square" if param == "paper" else "stability triangle"
        raise ValueError(f"theta outside the open {region} shrunk by max_radius² = {max_radius ** 2:.6g}")
    t = theta.double() / (max_radius * max_radius)
    limit = 1.0 - 2.0 ** -40
    if param == "paper":
        s = t.clamp(1.0 - limit, limit)
        return torch.log(s) - torch.log1p(-s)
    k2 = t[..., 1].clamp(-limit, limit)
    k1 = t[..., 0] / (1.0 + k2)  # the step-down recursion
    return torch.atanh(torch.stack([k1, k2], dim=-1).clamp(-limit, limit))


def poles(theta: Tensor) -> Tensor:
    """The two poles (..., 2), complex128, of H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²) for Θ (..., 2)."""
    t = theta.detach().to(torch.complex128)
    t0, t1 = t[..., 0], t[..., 1]
    root = torch.sqrt(t0 * t0 - 4.0 * t1)
    return torch.stack([(-t0 + root) / 2.0, (-t0 - root) / 2.0], dim=-1)


def ring_theta(shape: Tuple[int, ...], r_min: float, r_max: float, max_phase: float = math.pi,
               min_phase: float = 0.0, generator: Optional[torch.Generator] = None) -> Tensor:
    """Θ (*shape, 2), float64, of conjugate pole pairs drawn uniformly on a ring (LRU init, above)."""
    if not 0.0 <= r_min <= r_max < 1.0:
        raise ValueError(f"need 0 <= r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}")
    if not 0.0 <= min_phase <= max_phase <= math.pi:
        raise ValueError(f"need 0 <= min_phase <= max_phase <= pi, got {min_phase}, {max_phase}")
    u = torch.rand(*shape, 2, generator=generator, dtype=torch.float64)
    radius = torch.sqrt(u[..., 0] * (r_max ** 2 - r_min ** 2) + r_min ** 2)  # uniform by area
    phase = min_phase + u[..., 1] * (max_phase - min_phase)
    return torch.stack([-2.0 * radius * torch.cos(phase), radius * radius], dim=-1)


def ring_init_logits(shape: Tuple[int, ...], r_min: float = 0.9, r_max: float = 0.999, max_phase: float = math.pi,
                     min_phase: float = 0.0, param: str = "stable", max_radius: float = MAX_RADIUS,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Initial logits (*shape, 2), float32, whose Θ has its poles on the ring (LRU init, above).

    Defaults r ∈ [0.9, 0.999] are LRU's long-range setting. ``stable``: pairs the margin cannot hold
    (r = 0.999 at phases below ~0.011 rad for the default ρ) are moved onto the region's edge
    (``clip``). ``paper`` holds only high-pass pairs (phase above π/2, 2r|cos φ| < ρ²): other rings
    raise, since eq. 5's region does not contain them.
    """
    if r_max >= max_radius:
        raise ValueError(f"r_max {r_max} must be below max_radius {max_radius}")
    theta = ring_theta(shape, r_min, r_max, max_phase, min_phase, generator)
    return logits_from_theta(theta, param, max_radius, clip=param == "stable").float()
