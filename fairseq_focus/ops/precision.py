"""The precision rule of the filter ops: their math runs in fp32 (fp64 stays fp64), whatever the
input dtype or an enclosing fp16/bf16 autocast says; results go back to the caller's dtype."""
import contextlib

import torch
from torch import Tensor


def compute_dtype(t: Tensor) -> torch.dtype:
    """fp64 for fp64 inputs, fp32 for everything else (fp32, fp16, bf16)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def no_autocast(t: Tensor) -> torch.autocast:
    """A context that switches autocast off on t's device, so the ops above really run in compute_dtype."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def bf16_autocast(device: torch.device) -> torch.autocast:
    """autocast to bfloat16 on ``device`` (``--autocast-bf16``); a one-line error where it cannot compute in bf16.

    torch.autocast itself only warns and runs in fp32 on such devices; a GPU older than Ampere would
    only emulate bf16, slowly, so it is refused too.
    """
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            raise RuntimeError(f"--autocast-bf16: {torch.cuda.get_device_name(device)} has no bfloat16 units "
                               f"(needs compute capability 8.0+, e.g. A100/H100); use --amp (fp16) or fp32")
    elif device.type != "cpu":
        raise RuntimeError(f"--autocast-bf16 runs on cuda or cpu devices, not {device.type}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def model_autocast(enabled: bool, device: torch.device):
    """:func:`bf16_autocast` when ``enabled``, else a context that changes nothing."""
    return bf16_autocast(device) if enabled else contextlib.nullcontext()
