"""Chunked causal softmax attention with a relative position bias (paper eq. 9-10).

The sequence is cut into C = L / M non-overlapping chunks of M positions; inside each chunk
position i attends to positions j ≤ i of the same chunk, with scores q·k/√z + b[j − i] (MEGA's
"simple" relative position bias, one learned scalar per offset). Chunks never see each other;
the IIR filter in front of the attention is what carries information across chunks.

Shapes: q, k (B, L, Z); v (B, L, H); bias (2M − 1,) indexed by offset + M − 1;
padding_mask (B, L) bool, True at pads -> (B, L, H). L must be a multiple of M.

Streaming (:func:`chunked_attention_segment`, reference twin :func:`chunked_attention_segment_ref`):
n new positions pos … pos+n−1 of a stream, given the keys/values of the chunk in progress
(:class:`ChunkCache`, pos mod M of them — never more than M − 1, emptied at every chunk start).
The segment is cut at chunk boundaries (ops/segments.py); each piece is one call of
:func:`attention_in_chunk`: new queries inside one chunk over the chunk's keys so far.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .segments import split_at_boundaries


def relative_bias_matrix(bias: Tensor, m: int) -> Tensor:
    """(M, M) matrix B[i, j] = bias[j − i + M − 1]."""
    idx = torch.arange(m, device=bias.device)
    return bias[idx.view(1, -1) - idx.view(-1, 1) + m - 1]


def _mask(bias: Tensor, m: int, padding_mask: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """Additive mask (B or 1, C or 1, M, M): relative bias, −inf above the diagonal and at pad keys."""
    rel = relative_bias_matrix(bias, m).to(dtype)
    future = torch.ones(m, m, dtype=torch.bool, device=bias.device).triu(1)
    mask = rel.masked_fill(future, float("-inf")).view(1, 1, m, m)
    if padding_mask is not None:
        bsz = padding_mask.size(0)
        pads = padding_mask.view(bsz, -1, 1, m)  # (B, C, 1, M)
        # a query whose every key is padding would give NaN: leave its diagonal open (it is a pad itself)
        diag = torch.eye(m, dtype=torch.bool, device=bias.device).view(1, 1, m, m)
        mask = mask.masked_fill(pads & ~diag, float("-inf"))
    return mask


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                      padding_mask: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
    """Fast path through ``scaled_dot_product_attention`` (flash/efficient kernels where available)."""
    bsz, length, zdim = q.shape
    if length % chunk != 0:
        raise ValueError(f"length {length} is not a multiple of the chunk size {chunk}")
    c = length // chunk
    qc = q.view(bsz, c, chunk, zdim)  # (B, C, M, Z)
    kc = k.view(bsz, c, chunk, zdim)
    vc = v.view(bsz, c, chunk, v.size(-1))
    mask = _mask(bias, chunk, padding_mask, q.dtype)
    out = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, dropout_p=dropout_p)
    return out.reshape(bsz, length, v.size(-1))


def chunked_attention_ref(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                          padding_mask: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
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
            if padding_mask is not None:
                pad = padding_mask[:, keys] & (keys != t)
                scores = scores.masked_fill(pad, float("-inf"))
            out[:, t] = torch.einsum("bj,bjh->bh", scores.softmax(-1), v[:, keys])
    return out


def attention_in_chunk(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
    """n queries at chunk offsets o … o+n−1 over the chunk's keys at offsets 0 … o+n−1.

    q (B, n, Z); k (B, o+n, Z) and v (B, o+n, H): the cache followed by the new positions;
    o + n ≤ M; padding_mask (B, o+n). Returns (B, n, H), with the same scores and masking as
    :func:`chunked_attention` (a pad query keeps its own key, so no row is empty).
    """
    n, total = q.size(1), k.size(1)
    if total > chunk or n > total:
        raise ValueError(f"{n} queries over {total} keys do not fit a chunk of {chunk}")
    rows = torch.arange(total - n, total, device=q.device).view(-1, 1)  # query offsets in the chunk
    cols = torch.arange(total, device=q.device).view(1, -1)  # key offsets
    mask = bias[cols - rows + chunk - 1].to(q.dtype).masked_fill(cols > rows, float("-inf"))  # (n, o+n)
    if padding_mask is not None:
        pads = padding_mask.unsqueeze(1) & (cols != rows).unsqueeze(0)  # (B, n, o+n)
        mask = mask.unsqueeze(0).masked_fill(pads, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class ChunkCache(NamedTuple):
    """Keys, values and pad flags of the chunk in progress: o = pos mod M positions."""
    k: Tensor  # (B, o, Z)
    v: Tensor  # (B, o, H)
    padding_mask: Tensor  # (B, o) bool, True at pads


def _with_cache(k: Tensor, v: Tensor, pos: int, chunk: int, cache: Optional[ChunkCache],
                padding_mask: Optional[Tensor]) -> ChunkCache:
    """The cache followed by the n new positions: (B, o + n, ·), checking o = pos mod M."""
    pads = torch.zeros(k.shape[:2], dtype=torch.bool, device=k.device) if padding_mask is None else padding_mask
    offset = 0 if cache is None else cache.k.size(1)
    if offset != pos % chunk:
        raise ValueError(f"attention cache holds {offset} keys at position {pos} (chunk {chunk})")
    if cache is None:
        return ChunkCache(k, v, pads)
    return ChunkCache(torch.cat([cache.k, k], 1), torch.cat([cache.v, v], 1), torch.cat([cache.padding_mask, pads], 1))


def _chunk_pieces(offset: int, pos: int, n: int, chunk: int) -> List[Tuple[int, int, int]]:
    """(first key, end key, queries) per chunk the n new positions touch, indexing cache + new keys."""
    head, middle, tail = split_at_boundaries(pos, n, chunk)
    pieces = [(0, offset + head, head)] if head else []  # finish the chunk in progress
    pieces += [(offset + head + s, offset + head + s + chunk, chunk) for s in range(0, middle, chunk)]
    pieces += [(offset + n - tail, offset + n, tail)] if tail else []  # open a new chunk
    return pieces


def _next_cache(full: ChunkCache, pos: int, n: int, chunk: int) -> ChunkCache:
    """Keep the positions of the chunk left open after pos + n − 1."""
    start = full.k.size(1) - (pos + n) % chunk
    return ChunkCache(full.k[:, start:], full.v[:, start:], full.padding_mask[:, start:])


def chunked_attention_segment(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int, pos: int,
                              cache: Optional[ChunkCache], padding_mask: Optional[Tensor] = None
                              ) -> Tuple[Tensor, ChunkCache]:
    """Chunked causal attention for n new positions pos … pos+n−1 of a stream (fast path).

    q (B, n, Z), k (B, n, Z), v (B, n, H); bias (2M − 1,); cache: the chunk in progress (pos mod M
    positions) or None at a chunk start; padding_mask (B, n) or None. Returns y (B, n, H), equal to
    :func:`chunked_attention` on the whole stream, and the cache after the last position.
    """
    full = _with_cache(k, v, pos, chunk, cache, padding_mask)  # (B, o + n, ·)
    offset = full.k.size(1) - k.size(1)
    outputs = []
    for first, end, nq in _chunk_pieces(offset, pos, q.size(1), chunk):
        pads = full.padding_mask[:, first:end]
        outputs.append(attention_in_chunk(q[:, end - offset - nq:end - offset], full.k[:, first:end],
                                          full.v[:, first:end], bias, chunk, pads if pads.any() else None))
    y = torch.cat(outputs, dim=1) if outputs else q.new_zeros(q.size(0), 0, v.size(-1))
    return y, _next_cache(full, pos, q.size(1), chunk)


def chunked_attention_segment_ref(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, chunk: int, pos: int,
                                  cache: Optional[ChunkCache], padding_mask: Optional[Tensor] = None
                                  ) -> Tuple[Tensor, ChunkCache]:
    """Reference twin of :func:`chunked_attention_segment`: one explicit softmax per new query over
    the keys of its chunk so far (cache + new keys), recomputed from that history."""
    full = _with_cache(k, v, pos, chunk, cache, padding_mask)
    offset, zdim = full.k.size(1) - k.size(1), q.size(-1)
    out = []
    for i in range(q.size(1)):
        t = pos + i  # absolute position; full.k[:, j] sits at absolute position pos − offset + j
        keys = torch.arange(t - t % chunk - pos + offset, offset + i + 1, device=q.device)
        scores = torch.einsum("bz,bjz->bj", q[:, i], full.k[:, keys]) / zdim ** 0.5
        scores = scores + bias[keys - (offset + i) + chunk - 1]
        own = keys == offset + i  # a pad query keeps its own key, so no row is empty
        scores = scores.masked_fill(full.padding_mask[:, keys] & ~own, float("-inf"))
        out.append(torch.einsum("bj,bjh->bh", scores.softmax(-1), full.v[:, keys]))
    y = torch.stack(out, dim=1) if out else q.new_zeros(q.size(0), 0, v.size(-1))
    return y, _next_cache(full, pos, q.size(1), chunk)
