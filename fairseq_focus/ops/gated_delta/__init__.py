"""The gated delta rule (Yang, Kautz & Hatamizadeh 2025, "Gated Delta Networks", eq. 10), a peer of Focus.

One head keeps a K × V memory S, read by a query and written by the delta rule with a decay gate:

    S[t] = a[t] (I − β[t] k[t] k[t]ᵀ) S[t−1] + β[t] k[t] v[t]ᵀ       a[t] = exp(g[t]) ∈ (0, 1], β[t] ∈ (0, 1)
    o[t] = S[t]ᵀ q[t]

Glossary: q, k (B, L, H, K) (unit-norm keys keep I − β k kᵀ a contraction); v (B, L, H, V); g (B, L, H)
log-decays; beta (B, L, H); S (B, H, K, V).

- ``naive.py``: the reference, a loop over t (also the decoding step);
- ``chunk.py``: the chunked form. Within a chunk the written values u[s] = β[s](v[s] − a[s] S[s−1]ᵀ k[s])
  solve a unit lower-triangular system (the WY / UT form of DeltaNet's chunked kernels), so
  U = T(β ⊙ V) − T(βγ ⊙ K) S₀ with T = (I + strict-lower(β (K Kᵀ) ⊙ γ_s/γ_r))⁻¹ and γ the running decay; then
  O = (γ ⊙ Q) S₀ + (Q Kᵀ ⊙ γ_t/γ_s ⊙ causal) U and S_end = γ_end S₀ + (K ⊙ γ_end/γ)ᵀ U.
Both take and return the state; ``tests/test_peer_ops.py`` ties them (values, state, gradients).
"""
from .chunk import gated_delta_chunk
from .naive import gated_delta_recurrent, gated_delta_step

__all__ = ["gated_delta_chunk", "gated_delta_recurrent", "gated_delta_step"]
