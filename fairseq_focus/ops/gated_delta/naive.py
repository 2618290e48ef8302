"""The reference gated delta rule (see ``__init__``): a loop over tokens, and the one-token step."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..precision import compute_dtype


def gated_delta_step(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
    """One token: q, k (B, H, K), v (B, H, V), g, beta (B, H), state (B, H, K, V) -> o (B, H, V), state."""
    state = torch.exp(g)[..., None, None] * state
    recalled = torch.einsum("bhkv,bhk->bhv", state, k)                      # what the memory says for k
    state = state + torch.einsum("bhk,bhv->bhkv", k, beta[..., None] * (v - recalled))
    return torch.einsum("bhkv,bhk->bhv", state, q), state


def gated_delta_recurrent(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor,
                          state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """q, k (B, L, H, K), v (B, L, H, V), g, beta (B, L, H), state (B, H, K, V) or None (zeros)
    -> o (B, L, H, V), final state. Computed in fp32 (fp64 for fp64 inputs)."""
    bsz, length, heads, kdim = k.shape
    dtype = compute_dtype(v)
    if state is None:
        state = v.new_zeros(bsz, heads, kdim, v.size(-1), dtype=dtype)
    outs = []
    for t in range(length):
        o, state = gated_delta_step(q[:, t].to(dtype), k[:, t].to(dtype), v[:, t].to(dtype), g[:, t].to(dtype),
                                    beta[:, t].to(dtype), state)
        outs.append(o)
    return torch.stack(outs, dim=1).to(v.dtype), state
