"""Where the query's key sits, for associative recall: inside the query's attention chunk, or before it.

A model reads ``ex[:-1]`` = k_1 v_1 … k_P v_P => k_q (2P + 2 tokens, positions 0 … 2P + 1) and must
output v_q at the last position q = 2P + 1. Attention is cut into chunks of M positions from
position 0 (``ops/chunked_attention.py``), so the query attends only to positions ≥ ⌊q / M⌋·M. The
example is *inside* when the query key's last occurrence among the key positions 0, 2, …, 2P − 2
lies in that chunk (then its value, one position later, does too): chunk-local attention alone
can answer it. Otherwise it is *before*: only what crosses chunks (the IIR/EMA state, the
hypernetwork's Θ) can carry the answer — the number that needs long context. With the associative
recall task's ``--align-query-chunk`` the model reads ``offset`` filler tokens before ex[0], chosen so
that the query ends its chunk: then "inside" means "among the last M input tokens".

Also the baseline that needs no recall at all: answer the value seen most often in the context
(ties to the smallest token id, as ``numpy.bincount(...).argmax()`` picks).

All functions take input tokens (B, T) as fairseq feeds them (recall ids + nspecial, no padding;
a constant offset changes nothing here) or the generator's recall ids.
"""
from typing import Dict, Optional

import torch
from torch import Tensor


def _check(inputs: Tensor) -> int:
    if inputs.dim() != 2 or inputs.size(1) < 4 or inputs.size(1) % 2:
        raise ValueError(f"expected recall inputs (B, 2P + 2) with P >= 1, got {tuple(inputs.shape)}")
    return (inputs.size(1) - 2) // 2


def last_key_position(inputs: Tensor) -> Tensor:
    """(B,) position of the query key's last occurrence among the key positions; −1 if it never occurs."""
    pairs = _check(inputs)
    keys = inputs[:, 0:2 * pairs:2]  # (B, P) tokens at key positions 0, 2, …
    hit = keys.eq(inputs[:, -1:])  # (B, P)
    index = torch.arange(pairs, device=inputs.device).expand_as(hit)
    return torch.where(hit, 2 * index, torch.full_like(index, -1)).max(dim=1).values


def inside_query_chunk(inputs: Tensor, chunk_size: int, offset: int = 0) -> Tensor:
    """(B,) bool: the query key's last occurrence lies in the query's attention chunk. offset: tokens
    the model read before ex[0] (``--align-query-chunk``'s filler), so chunks start at −offset here."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    last, query = last_key_position(inputs), inputs.size(1) - 1 + offset
    return (last >= 0) & (last + offset >= (query // chunk_size) * chunk_size)


def most_frequent_value(inputs: Tensor) -> Tensor:
    """(B,) the value token that occurs most often at the value positions 1, 3, …, 2P − 1."""
    pairs = _check(inputs)
    values = inputs[:, 1:2 * pairs:2].long()  # (B, P)
    counts = torch.zeros(inputs.size(0), int(inputs.max()) + 1, dtype=torch.long, device=inputs.device)
    counts.scatter_add_(1, values, torch.ones_like(values))
    return counts.argmax(dim=1)  # the first (smallest id) of equal counts


def split_accuracy(correct: Tensor, inside: Tensor) -> Dict[str, float]:
    """Accuracy (%) overall, inside and before the chunk (None where no example falls), and the counts."""
    correct, inside = correct.bool(), inside.bool()

    def pct(mask: Tensor) -> Optional[float]:
        n = int(mask.sum())
        return None if n == 0 else 100.0 * int((correct & mask).sum()) / n

    everything = torch.ones_like(inside)
    return {"all": pct(everything), "inside": pct(inside), "before": pct(~inside),
            "n": int(inside.numel()), "n_inside": int(inside.sum()), "n_before": int((~inside).sum())}
