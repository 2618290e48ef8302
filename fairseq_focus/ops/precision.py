"""The precision rule of the filter ops: their math runs in fp32 (fp64 stays fp64), whatever the
input dtype or an enclosing fp16/bf16 autocast says; results go back to the caller's dtype."""
import torch
from torch import Tensor


def compute_dtype(t: Tensor) -> torch.dtype:
    """fp64 for fp64 inputs, fp32 for everything else (fp32, fp16, bf16)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def no_autocast(t: Tensor) -> torch.autocast:
    """A context that switches autocast off on t's device, so the ops above really run in compute_dtype."""
    return torch.autocast(device_type=t.device.type, enabled=False)
