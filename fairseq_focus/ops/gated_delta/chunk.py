"""The chunked gated delta rule (the derivation is in ``__init__``): exact, at matmul speed."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..precision import compute_dtype

DEFAULT_CHUNK = 64


def _chunks(t: Tensor, q: int, pad: int) -> Tensor:
    """(B, L, H, ...) -> (B, H, L / q, q, ...), zero-padded at the end (g = 0, β = 0: the state is untouched)."""
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    t = t.transpose(1, 2)                                                    # (B, H, L, ...)
    return t.reshape(t.size(0), t.size(1), -1, q, *t.shape[3:])


def gated_delta_chunk(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Optional[Tensor] = None,
                      chunk: int = DEFAULT_CHUNK) -> Tuple[Tensor, Tensor]:
    """Same signature and result as :func:`gated_delta_recurrent` -> o (B, L, H, V), final state (fp32; fp64 for fp64 inputs)."""
    bsz, length, heads, kdim = k.shape
    dtype = compute_dtype(v)  # fp64 stays fp64 (the tests); everything else runs in fp32
    c = max(1, min(chunk, length))
    pad = (-length) % c
    qs, ks, vs = (_chunks(t.to(dtype), c, pad) for t in (q, k, v))            # (b, h, n, c, K|V)
    gs, bs = (_chunks(t.to(dtype), c, pad) for t in (g, beta))                # (b, h, n, c)
    lam = gs.cumsum(-1)                                                      # log γ within the chunk
    lower = torch.ones(c, c, dtype=torch.bool, device=k.device).tril()      # [t, s]: s ≤ t
    decay = (lam[..., :, None] - lam[..., None, :]).masked_fill(~lower, float("-inf")).exp()  # γ_t / γ_s
    strict = (bs[..., :, None] * (ks @ ks.transpose(-1, -2)) * decay).tril(-1)
    eye = torch.eye(c, dtype=strict.dtype, device=k.device)
    rhs = torch.cat([bs[..., None] * vs, (bs * lam.exp())[..., None] * ks], dim=-1)  # [β v | βγ k]
    solved = torch.linalg.solve_triangular(eye + strict, rhs, upper=False, unitriangular=True)
    u0, w = solved.split([v.size(-1), kdim], dim=-1)                         # U = u0 − w S₀
    attn = (qs @ ks.transpose(-1, -2)) * decay                              # (b, h, n, c, c), causal by decay
    s = v.new_zeros(bsz, heads, kdim, v.size(-1), dtype=dtype) if state is None else state.to(dtype)
    outs = []
    for i in range(ks.size(2)):  # L / c steps, each a handful of (c × K) · (K × V) products
        u = u0[:, :, i] - w[:, :, i] @ s
        outs.append((qs[:, :, i] * lam[:, :, i, :, None].exp()) @ s + attn[:, :, i] @ u)
        tail = (lam[:, :, i, -1:] - lam[:, :, i]).exp()                     # γ_end / γ_s
        s = lam[:, :, i, -1, None, None].exp() * s + (ks[:, :, i] * tail[..., None]).transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2).flatten(2, 3)[:, :, :length]                # (b, h, L, V)
    return o.transpose(1, 2).to(v.dtype), s
