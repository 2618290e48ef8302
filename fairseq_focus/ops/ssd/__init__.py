"""SSD: the state-space dual of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs", §4–§6), as a peer of Focus.

One head h has a scalar decay per token and a state of P × N numbers written by an outer product:

    a[t]   = exp(dt[t] · A)                      A < 0, dt[t] > 0, so 0 < a[t] < 1
    S[t]   = a[t] · S[t−1] + dt[t] · x[t] B[t]ᵀ     S (P, N), x[t] (P,), B[t] (N,)
    y[t]   = S[t] C[t]                            y[t] (P,), C[t] (N,)

(Mamba-2 adds D · x[t] outside the operator.) In IIR words: one real pole a[t] per head, selective per
token, shared by a P × N bank of first-order sections whose inputs and outputs are mixed by B[t] and C[t].

Glossary: x (B, L, H, P) head inputs; dt (B, L, H) step sizes (after softplus); A (H,) log-decay rates;
B, C (B, L, G, N) input / output maps shared by the H / G heads of a group; S (B, H, P, N) the state.

- ``naive.py``: the reference, a loop over t (also the O(1)-per-token decoding step);
- ``chunk.py``: the chunked form — inside a chunk of Q tokens a masked (Q × Q) matmul with the decays
  exp(Σ a), across chunks one masked (chunks × chunks) product over the chunk states — at matmul speed, in
  operator calls flat in L.
Both take and return the state, so a stream cut anywhere gives the same outputs.
"""
from .chunk import ssd_chunk
from .naive import ssd_recurrent, ssd_step

__all__ = ["ssd_chunk", "ssd_recurrent", "ssd_step"]
