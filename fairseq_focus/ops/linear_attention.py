"""Causal linear attention with Based's 2nd-order Taylor feature map, by chunks: O(L) time, a fixed-size state.

Based (Arora et al. 2024, "Simple linear attention language models balance the recall-throughput tradeoff",
arXiv 2402.18668, §3) replaces softmax attention's exp(q·k/√F) by its 2nd-order Taylor polynomial, which is
the dot product of two finite feature vectors:

    φ(x) = [1,  x / F^{1/4},  vec(x ⊗ x) / √(2F)]  ∈ R^P,   P = 1 + F + F²   (F = 16: P = 273)
    φ(q)·φ(k) = 1 + s + s²/2,   s = q·k / √F

and 1 + s + s²/2 = ((1 + s)² + 1) / 2 ≥ 1/2: every attention weight is positive.

Per head, with a decay γ ∈ (0, 1] (γ = 1 is Based's "no decay"; the ops take log γ ≤ 0):

    ṽ_t = m_t · [v_t, 1] ∈ R^{E+1}              m_t = 0 at a masked (padding) key, else 1
    S_t = γ S_{t−1} + φ(k_t) ṽ_tᵀ       (P, E+1) = [Σ γ^{t−j} φ(k_j) v_jᵀ | z_t = Σ γ^{t−j} φ(k_j)]
    o_t = S_tᵀ φ(q_t)                            (E+1)
    y_t = o_t[:E] / o_t[E]                       numerator over the normaliser z_tᵀ φ(q_t)

The state S (numerator and normaliser in one tensor) is what crosses chunks, segments and decoding steps. With
S_{−1} = 0 and key t unmasked the normaliser is ≥ 1/2 (the newest term alone); a query whose keys so far are
all masked has o_t = 0 and gets y_t = 0 (normaliser clamped at EPS).

Chunked form (:func:`linear_attention`; chunks of M, chunk c holds t = cM + i, i < M):

    o_t  = γ^{i+1} S_cᵀ φ(q_t)  +  Σ_{j ≤ i} γ^{i−j} (1 + s_tj + s_tj²/2) ṽ_{cM+j}     (across + within)
    A_c  = Σ_{j < M} γ^{M−1−j} φ(k_{cM+j}) ṽ_{cM+j}ᵀ                                   (what chunk c adds)
    S_c  = γ^{cM} S_init + Σ_{c' < c} γ^{M(c−1−c')} A_{c'}                              (the state entering c)
         = γ^M S_{c−1} + A_{c−1},   S_0 = S_init                                       (computed as this scan)

The within-chunk term is the masked quadratic form on the scores s (M × M per chunk and head, never of size
P); every power of γ has a non-negative exponent, so none overflows. The entering states come from a scan
over the N chunks (O(L) in all, 2 operator calls per chunk); the closed form's (H, N, N) weight over
chunk pairs (:func:`_entering_states_matrix`, the scan's twin) made decay quadratic in N. Reference twin:
:func:`linear_attention_ref`, the recurrence above one position at a time (:func:`linear_attention_step`,
which decoding uses for single tokens).

Glossary: B batch, L length, H heads, F q/k feature dim, P = 1 + F + F², E value dim per head, M chunk.
Shapes (every function): q, k (B, L, H, F); v (B, L, H, E); log_decay (H,) or None; key_mask (B, L) bool,
True where the key counts, or None; state (B, H, P, E+1) or None (zeros). Returns y (B, L, H, E) and the
state after the last position. The math runs in fp32 (fp64 stays fp64) under any autocast (ops/precision.py).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .precision import compute_dtype, no_autocast

EPS = 1e-6  # floor of the normaliser: reached only by a query whose every key so far is masked


def taylor_features(x: Tensor) -> Tensor:
    """φ(x) = [1, x / F^{1/4}, vec(x ⊗ x) / √(2F)]: (..., F) -> (..., 1 + F + F²)."""
    f = x.size(-1)
    second = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) / math.sqrt(2.0 * f)  # (..., F²)
    return torch.cat([torch.ones_like(x[..., :1]), x / f ** 0.25, second], dim=-1)


def feature_size(f: int) -> int:
    """P = 1 + F + F², the length of φ(x) for x ∈ R^F."""
    return 1 + f + f * f


def _check(q: Tensor, k: Tensor, v: Tensor, log_decay: Optional[Tensor], key_mask: Optional[Tensor],
           state: Optional[Tensor]) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"linear attention needs q, k (B, L, H, F) and v (B, L, H, E), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    bsz, length, heads, f = q.shape
    if log_decay is not None and log_decay.shape != (heads,):
        raise ValueError(f"log_decay must have one entry per head, shape ({heads},), got {tuple(log_decay.shape)}")
    if key_mask is not None and key_mask.shape != (bsz, length):
        raise ValueError(f"key_mask must be (B, L) = {(bsz, length)}, got {tuple(key_mask.shape)}")
    want = (bsz, heads, feature_size(f), v.size(-1) + 1)
    if state is not None and state.shape != want:
        raise ValueError(f"linear attention state must be (B, H, P, E+1) = {want}, got {tuple(state.shape)}")


def _augmented_values(v: Tensor, key_mask: Optional[Tensor]) -> Tensor:
    """ṽ = m · [v, 1]: (B, L, H, E) -> (B, L, H, E+1), zero at masked keys."""
    vt = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    return vt if key_mask is None else vt * key_mask[:, :, None, None].to(vt.dtype)


def _readout(o: Tensor) -> Tensor:
    """y = o[:E] / o[E] (..., E+1) -> (..., E)."""
    return o[..., :-1] / o[..., -1:].clamp_min(EPS)


def _zero_state(q: Tensor, v: Tensor) -> Tensor:
    bsz, _, heads, f = q.shape
    return q.new_zeros(bsz, heads, feature_size(f), v.size(-1) + 1)


def linear_attention_step(q: Tensor, k: Tensor, v: Tensor, log_decay: Optional[Tensor] = None,
                          key_mask: Optional[Tensor] = None, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One position (L = 1): S ← γ S + φ(k) ṽᵀ, y = readout(Sᵀ φ(q)); O(P·E) per head, for decoding."""
    _check(q, k, v, log_decay, key_mask, state)
    if q.size(1) != 1:
        raise ValueError(f"linear_attention_step takes one position, got {q.size(1)}")
    dtype = compute_dtype(q)
    with no_autocast(q):
        s = _zero_state(q, v).to(dtype) if state is None else state.to(dtype)
        if log_decay is not None:
            s = s * log_decay.to(dtype).exp().view(1, -1, 1, 1)
        vt = _augmented_values(v.to(dtype), key_mask)[:, 0]  # (B, H, E+1)
        s = s + torch.einsum("bhp,bhe->bhpe", taylor_features(k[:, 0].to(dtype)), vt)
        o = torch.einsum("bhp,bhpe->bhe", taylor_features(q[:, 0].to(dtype)), s)
    return _readout(o).unsqueeze(1).to(v.dtype), s


def linear_attention_ref(q: Tensor, k: Tensor, v: Tensor, log_decay: Optional[Tensor] = None,
                         key_mask: Optional[Tensor] = None, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Reference twin of :func:`linear_attention` (which also takes the chunk M): the recurrence one
    position at a time."""
    _check(q, k, v, log_decay, key_mask, state)
    outs = []
    for t in range(q.size(1)):
        mask = None if key_mask is None else key_mask[:, t:t + 1]
        y, state = linear_attention_step(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], log_decay, mask, state)
        outs.append(y)
    if not outs:
        return v.new_zeros(v.shape), _zero_state(q, v).to(compute_dtype(q)) if state is None else state
    return torch.cat(outs, dim=1), state


def _within_chunk_weights(qc: Tensor, kc: Tensor, log_decay: Optional[Tensor]) -> Tensor:
    """W[b, n, h, i, j] = γ^{i−j} (1 + s + s²/2) for j ≤ i, else 0; qc, kc (B, N, M, H, F)."""
    m = qc.size(2)
    s = torch.einsum("bnihf,bnjhf->bnhij", qc, kc) / math.sqrt(qc.size(-1))  # (B, N, H, M, M)
    idx = torch.arange(m, device=qc.device)
    lag = idx.view(-1, 1) - idx.view(1, -1)  # i − j
    causal = (lag >= 0).to(qc.dtype)  # (M, M)
    if log_decay is not None:
        causal = causal * torch.exp(lag.clamp_min(0).to(qc.dtype) * log_decay.view(-1, 1, 1))  # (H, M, M)
    return (1.0 + s + 0.5 * s * s) * causal


def _entering_states(a: Tensor, log_decay: Optional[Tensor], m: int, state: Optional[Tensor]) -> Tensor:
    """S_c for every chunk c from the chunk sums A (B, N, H, P, E+1) and S_init (B, H, P, E+1) or None: a
    scan over chunks, S_0 = S_init, S_c = γ^M S_{c−1} + A_{c−1}, O(N) (without decay one exclusive
    cumulative sum). Twin: :func:`_entering_states_matrix`, the closed form as one (H, N, N) weight."""
    if log_decay is None:
        entering = torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1].cumsum(dim=1)], dim=1)  # exclusive sum
        return entering if state is None else entering + state.unsqueeze(1)
    carry = torch.exp(m * log_decay).view(1, -1, 1, 1)  # γ^M per head: (1, H, 1, 1)
    s = torch.zeros_like(a[:, 0]) if state is None else state  # (B, H, P, E+1)
    entering = []
    for a_c in a.unbind(dim=1):  # unbind, not a[:, c]: its backward is one stack, not N full-size scatters
        entering.append(s)
        s = carry * s + a_c
    return torch.stack(entering, dim=1)  # (B, N, H, P, E+1)


def _entering_states_matrix(a: Tensor, log_decay: Optional[Tensor], m: int, state: Optional[Tensor]) -> Tensor:
    """Reference twin of :func:`_entering_states`, the module docstring's closed form
    S_c = γ^{cM} S_init + Σ_{c' < c} γ^{M(c−1−c')} A_{c'} as one (H, N, N) weight: O(N²) in the chunks."""
    if log_decay is None:
        return _entering_states(a, log_decay, m, state)
    c = torch.arange(a.size(1), device=a.device)
    lag = c.view(-1, 1) - 1 - c.view(1, -1)  # c − 1 − c'
    weights = torch.exp(lag.clamp_min(0).to(a.dtype) * m * log_decay.view(-1, 1, 1)) * (lag >= 0)  # (H, N, N)
    entering = torch.einsum("hnc,bchpe->bnhpe", weights, a)
    if state is None:
        return entering
    carried = torch.exp(c.to(a.dtype).view(-1, 1) * m * log_decay.view(1, -1))  # γ^{cM}: (N, H)
    return entering + carried[None, :, :, None, None] * state.unsqueeze(1)


def _decay_powers(log_decay: Optional[Tensor], exponents: Tensor) -> Optional[Tensor]:
    """γ^e per exponent and head: (n,) -> (n, H, 1), or None without decay."""
    if log_decay is None:
        return None
    return torch.exp(exponents.to(log_decay.dtype).view(-1, 1) * log_decay.view(1, -1)).unsqueeze(-1)


def _final_state(entering: Tensor, pk: Tensor, vt: Tensor, log_decay: Optional[Tensor]) -> Tensor:
    """State after the r real positions of the last chunk: γ^r S_enter + Σ_{j<r} γ^{r−1−j} φ(k_j) ṽ_jᵀ;
    entering (B, H, P, E+1), pk (B, r, H, P), vt (B, r, H, E+1)."""
    r = pk.size(1)
    kdec = _decay_powers(log_decay, torch.arange(r - 1, -1, -1, device=pk.device))  # (r, H, 1)
    added = torch.einsum("bjhp,bjhe->bhpe", pk if kdec is None else pk * kdec, vt)
    if log_decay is None:
        return entering + added
    return torch.exp(r * log_decay).view(1, -1, 1, 1) * entering + added


def _chunked(q: Tensor, k: Tensor, vt: Tensor, m: int, log_decay: Optional[Tensor],
             state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The chunked form (module docstring) on compute-dtype inputs; vt = ṽ (B, L, H, E+1)."""
    bsz, length, heads, _ = q.shape
    n = -(-length // m)  # chunks; the last one is padded with zero keys and values, which add nothing
    pad = n * m - length
    qc, kc, vc = (F.pad(t, (0, 0, 0, 0, 0, pad)).view(bsz, n, m, heads, t.size(-1)) for t in (q, k, vt))
    o = torch.einsum("bnhij,bnjhe->bnihe", _within_chunk_weights(qc, kc, log_decay), vc)  # (B, N, M, H, E+1)
    pq, pk = taylor_features(qc), taylor_features(kc)  # (B, N, M, H, P)
    idx = torch.arange(m, device=q.device)
    qdec, kdec = _decay_powers(log_decay, idx + 1), _decay_powers(log_decay, m - 1 - idx)  # (M, H, 1) or None
    a = torch.einsum("bnjhp,bnjhe->bnhpe", pk if kdec is None else pk * kdec, vc)  # (B, N, H, P, E+1)
    entering = _entering_states(a, log_decay, m, state)
    o = o + torch.einsum("bnihp,bnhpe->bnihe", pq if qdec is None else pq * qdec, entering)
    y = _readout(o.reshape(bsz, n * m, heads, -1)[:, :length])
    r = length - (n - 1) * m  # real positions in the last chunk
    return y, _final_state(entering[:, -1], pk[:, -1, :r], vc[:, -1, :r], log_decay)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int, log_decay: Optional[Tensor] = None,
                     key_mask: Optional[Tensor] = None, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Fast path: the chunked form with chunks of ``chunk`` (any L; the last chunk may be short).
    Given ``state`` (the one a previous call returned) it continues a stream: streaming == parallel."""
    _check(q, k, v, log_decay, key_mask, state)
    if chunk < 1:
        raise ValueError(f"linear attention chunk must be positive, got {chunk}")
    dtype = compute_dtype(q)
    if q.size(1) == 0:
        return v.new_zeros(v.shape), _zero_state(q, v).to(dtype) if state is None else state
    with no_autocast(q):
        ld = None if log_decay is None else log_decay.to(dtype)
        vt = _augmented_values(v.to(dtype), key_mask)
        y, s = _chunked(q.to(dtype), k.to(dtype), vt, chunk, ld, None if state is None else state.to(dtype))
    return y.to(v.dtype), s
