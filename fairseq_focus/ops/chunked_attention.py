"""Chunked causal softmax attention with a relative position bias (paper eq. 9-10).

The sequence is cut into C = L / M non-overlapping chunks of M positions; inside each chunk
position i attends to positions j ≤ i of the same chunk, with scores q·k/√z + b[j − i] (MEGA's
"simple" relative position bias, one learned scalar per offset). Chunks never see each other;
the IIR filter in front of the attention is what carries information across chunks.

Shapes: q, k (B, L, Z); v (B, L, H); bias (2M − 1,) indexed by offset + M − 1;
key_padding_mask (B, L) bool, True at pads -> (B, L, H). L must be a multiple of M.

Streaming (:func:`attention_in_chunk`): new queries inside one chunk attend to the chunk's cached
keys/values plus their own — a KV cache never longer than M, emptied at every chunk start.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def relative_bias_matrix(bias: Tensor, m: int) -> Tensor:
    """(M, M) matrix B[i, j] = bias[j − i + M − 1]."""
    idx = torch.arange(m, device=bias.device)
    return bias[idx.view(1, -1) - idx.view(-1, 1) + m - 1]


def _mask(bias: Tensor, m: int, key_padding_mask: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """Additive mask (B or 1, C or 1, M, M): relative bias, −inf above the diagonal and at pad keys."""
    rel = relative_bias_matrix(bias, m).to(dtype)
    future = torch.ones(m, m, dtype=torch.bool, device=bias.device).triu(1)
    mask = rel.masked_fill(future, float("-inf")).view(1, 1, m, m)
    if key_padding_mask is not None:
        bsz = key_padding_mask.size(0)
        pads = key_padding_mask.view(bsz, -1, 1, m)  # (B, C, 1, M)
        # a query whose every key is padding would give NaN: leave its diagonal open (it is a pad itself)
        diag = torch.eye(m, dtype=torch.bool, device=bias.device).view(1, 1, m, m)
        mask = mask.masked_fill(pads & ~diag, float("-inf"))
    return mask


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                      key_padding_mask: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
    """Fast path through ``scaled_dot_product_attention`` (flash/efficient kernels where available)."""
    bsz, length, zdim = q.shape
    if length % chunk != 0:
        raise ValueError(f"length {length} is not a multiple of the chunk size {chunk}")
    c = length // chunk
    qc = q.view(bsz, c, chunk, zdim)  # (B, C, M, Z)
    kc = k.view(bsz, c, chunk, zdim)
    vc = v.view(bsz, c, chunk, v.size(-1))
    mask = _mask(bias, chunk, key_padding_mask, q.dtype)
    out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, dropout_p=dropout_p)
    return out.reshape(bsz, length, v.size(-1))


def chunked_attention_ref(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                          key_padding_mask: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
    """Reference twin: a loop over chunks and query positions with an explicit softmax (no dropout)."""
    assert dropout_p == 0.0, "the reference has no dropout"
    bsz, length, zdim = q.shape
    out = torch.zeros(bsz, length, v.size(-1), dtype=v.dtype, device=v.device)
    for start in range(0, length, chunk):
        for i in range(chunk):
            t = start + i
            keys = torch.arange(start, t + 1, device=q.device)
            scores = torch.einsum("bz,bjz->bj", q[:, t], k[:, keys]) / zdim ** 0.5
            scores = scores + bias[keys - t + chunk - 1]
            if key_padding_mask is not None:
                pad = key_padding_mask[:, keys] & (keys != t)
                scores = scores.masked_fill(pad, float("-inf"))
            out[:, t] = torch.einsum("bj,bjh->bh", scores.softmax(-1), v[:, keys])
    return out


def attention_in_chunk(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                       key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """n queries at chunk offsets o … o+n−1 over the chunk's keys at offsets 0 … o+n−1.

    q (B, n, Z); k (B, o+n, Z) and v (B, o+n, H): the cache followed by the new positions;
    o + n ≤ M; key_padding_mask (B, o+n). Returns (B, n, H), with the same scores and masking as
    :func:`chunked_attention` (a pad query keeps its own key, so no row is empty).
    """
    n, total = q.size(1), k.size(1)
    if total > chunk or n > total:
        raise ValueError(f"{n} queries over {total} keys do not fit a chunk of {chunk}")
    rows = torch.arange(total - n, total, device=q.device).view(-1, 1)  # query offsets in the chunk
    cols = torch.arange(total, device=q.device).view(1, -1)  # key offsets
    mask = bias[cols - rows + chunk - 1].to(q.dtype).masked_fill(cols > rows, float("-inf"))  # (n, o+n)
    if key_padding_mask is not None:
        pads = key_padding_mask.unsqueeze(1) & (cols != rows).unsqueeze(0)  # (B, n, o+n)
        mask = mask.unsqueeze(0).masked_fill(pads, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
