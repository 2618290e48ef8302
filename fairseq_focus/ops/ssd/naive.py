"""The reference SSD recurrence (see ``__init__``): a loop over tokens, and the one-token step."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..precision import compute_dtype


def _expand_groups(m: Tensor, heads: int) -> Tensor:
    """(B, L, G, N) -> (B, L, H, N): every head of a group reads its group's map."""
    return m.repeat_interleave(heads // m.size(2), dim=2)


def ssd_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
    """One token: x (Bt, H, P), dt (Bt, H), A (H,), B, C (Bt, H, N), state (Bt, H, P, N) -> y (Bt, H, P), state."""
    decay = torch.exp(dt * A)  # (Bt, H)
    state = decay[..., None, None] * state + (dt[..., None] * x)[..., None] * B[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, C)
    return y, state


def ssd_recurrent(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """x (Bt, L, H, P), dt (Bt, L, H), A (H,), B, C (Bt, L, G, N), state (Bt, H, P, N) or None (zeros)
    -> y (Bt, L, H, P), final state. Computed in fp32 (fp64 for fp64 inputs)."""
    bsz, length, heads, hdim = x.shape
    dtype = compute_dtype(x)
    Bh, Ch = _expand_groups(B, heads).to(dtype), _expand_groups(C, heads).to(dtype)
    if state is None:
        state = x.new_zeros(bsz, heads, hdim, B.size(-1), dtype=dtype)
    ys = []
    for t in range(length):
        y, state = ssd_step(x[:, t].to(dtype), dt[:, t].to(dtype), A.to(dtype), Bh[:, t], Ch[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1).to(x.dtype), state
