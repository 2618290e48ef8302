"""The chunked SSD (see ``__init__``): exact, at matmul speed.

Cut the sequence into chunks of Q tokens and write Λ[t] = Σ_{r ≤ t in the chunk} dt[r] · A (a running
log-decay). For t, s in one chunk, the state path from s to t decays by exp(Λ[t] − Λ[s]), so

    y[t] = Σ_{s ≤ t, same chunk} exp(Λ[t] − Λ[s]) (C[t] · B[s]) dt[s] x[s]      (a masked Q × Q matmul)
         + exp(Λ[t]) S_prev C[t]                                                  (the state before the chunk)
    S_end = exp(Λ[Q−1]) S_prev + Σ_s exp(Λ[Q−1] − Λ[s]) dt[s] x[s] B[s]ᵀ          (the carry over chunks)

Padding the last chunk with dt = 0 leaves the state untouched (decay 1, input 0). Everything in fp32.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..precision import compute_dtype

from .naive import _expand_groups

DEFAULT_CHUNK = 64  # Mamba-2's CPU-friendly size: the (Q × Q) decay matrix stays small next to the state


def _pad_time(t: Tensor, pad: int) -> Tensor:
    """Zero-pad axis 1 (time) of a (B, L, ...) tensor at the end."""
    return F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) if pad else t


def _chunks(t: Tensor, q: int) -> Tensor:
    """(B, L, ...) -> (B, L / q, q, ...)."""
    return t.reshape(t.size(0), t.size(1) // q, q, *t.shape[2:])


def _scan_chunks(log_decay: Tensor, written: Tensor, s0: Tensor) -> Tuple[Tensor, Tensor]:
    """S_c = exp(log_decay[c]) S_{c−1} + written[c] over the chunks c, as one masked (chunks × chunks) product
    (flat in L in operator calls, as the rest of the op). log_decay (b, c, h), written (b, c, h, p, n), s0 (b, h, p, n)
    -> the state before each chunk (b, c, h, p, n), and the final state."""
    total = torch.cumsum(log_decay, dim=1)                                      # (b, c, h) through chunk c
    before = total - log_decay                                                  # (b, c, h) up to chunk c's start
    nc = log_decay.size(1)
    strict = torch.ones(nc, nc, dtype=torch.bool, device=written.device).tril(-1)  # [c, j]: j < c
    gap = (before.unsqueeze(2) - total.unsqueeze(1)).masked_fill(~strict[:, :, None], float("-inf"))  # (b, c, j, h)
    prev = torch.einsum("bcjh,bjhpn->bchpn", gap.exp(), written) + before.exp()[..., None, None] * s0.unsqueeze(1)
    tail = (total[:, -1:] - total).exp()                                        # (b, c, h) from chunk c to the end
    final = torch.einsum("bch,bchpn->bhpn", tail, written) + total[:, -1].exp()[..., None, None] * s0
    return prev, final


def ssd_chunk(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Optional[Tensor] = None,
              chunk: int = DEFAULT_CHUNK) -> Tuple[Tensor, Tensor]:
    """Same signature and result as :func:`ssd_recurrent` (x (Bt, L, H, P), dt (Bt, L, H), A (H,),
    B, C (Bt, L, G, N), state (Bt, H, P, N) or None) -> y (Bt, L, H, P), final state (fp32; fp64 for fp64 inputs)."""
    bsz, length, heads, hdim = x.shape
    dtype = compute_dtype(x)  # fp64 stays fp64 (the tests); everything else runs in fp32
    q = max(1, min(chunk, length))
    pad = (-length) % q
    xs = _chunks(_pad_time(x.to(dtype), pad), q)                                  # (b, c, q, h, p)
    dts = _chunks(_pad_time(dt.to(dtype), pad), q)                                # (b, c, q, h)
    Bs = _chunks(_pad_time(_expand_groups(B, heads).to(dtype), pad), q)           # (b, c, q, h, n)
    Cs = _chunks(_pad_time(_expand_groups(C, heads).to(dtype), pad), q)           # (b, c, q, h, n)
    lam = torch.cumsum(dts * A.to(dtype), dim=2)                                  # (b, c, q, h) running log-decay
    xdt = xs * dts.unsqueeze(-1)                                                # (b, c, q, h, p)
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()        # [t, s]: s ≤ t
    seg = (lam.unsqueeze(3) - lam.unsqueeze(2)).masked_fill(~causal[:, :, None], float("-inf"))  # (b, c, t, s, h)
    scores = torch.einsum("bcthn,bcshn->bctsh", Cs, Bs) * seg.exp()
    y = torch.einsum("bctsh,bcshp->bcthp", scores, xdt)                         # inside each chunk
    last = lam[:, :, -1:]                                                       # (b, c, 1, h)
    written = torch.einsum("bcshn,bcsh,bcshp->bchpn", Bs, (last - lam).exp(), xdt)  # each chunk's own input
    s0 = x.new_zeros(bsz, heads, hdim, B.size(-1), dtype=dtype) if state is None else state.to(dtype)
    prev, s = _scan_chunks(last[:, :, 0], written, s0)
    y = y + torch.einsum("bcthn,bchpn,bcth->bcthp", Cs, prev, lam.exp())        # from the state before the chunk
    return y.reshape(bsz, -1, heads, hdim)[:, :length].to(x.dtype), s
