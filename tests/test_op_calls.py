"""The operator-call budget of one layer (forward + backward), the launch count a GPU pays per layer.

Calls are deterministic (unlike wall-clock time), so they are asserted: the default (selective) layer,
Focus-H's static carry layer and the hypernetwork head's carry layer make a fixed number of calls whatever L,
at most 2× the same block with MEGA's EMA (issue 23's bound, 560 at D 64); and the counter sees a path whose calls grow with L (the chunked torch
scan the fused kernel replaced), so the bound can fail."""
import pytest
import torch

from fairseq_focus.ops.tv_iir import function as tv_iir_function
from fairseq_focus.tools.op_calls import count_calls, layer_calls

BOUND = 560  # 2 × mega-ema's 279 at D 64 (tools/op_calls.py), rounded as in the issue
LENGTHS = (1024, 4096)


@pytest.mark.parametrize("name", ["focus-selective-carry", "focus-static-carry", "focus-adaptive-carry"])
def test_layer_calls_are_fixed_and_within_twice_the_ema_block(name):
    counts = [layer_calls(name, length)[1] for length in LENGTHS]
    assert counts[0] == counts[1], f"{name}: compute calls grow with L: {counts}"
    assert counts[0] <= BOUND, f"{name}: {counts[0]} compute calls > {BOUND}"
    mega = layer_calls("mega-ema", LENGTHS[0])[1]
    assert counts[0] <= 2 * mega


def test_the_counter_sees_calls_that_grow_with_length(monkeypatch):
    """Without the fused kernel the selective layer takes the chunked scan: the count grows with L (and is
    far over the bound), so the assertion above is not vacuous."""
    monkeypatch.setattr(tv_iir_function, "_selective_cpu", None)
    counts = [layer_calls("focus-selective-carry", length)[1] for length in LENGTHS]
    assert counts[1] > counts[0] > BOUND


def test_count_calls_leaves_out_views():
    x = torch.randn(4, 4, requires_grad=True)
    n_all, n_compute = count_calls(lambda: x.view(16).sum().backward())
    assert n_compute < n_all and n_compute >= 2  # the sum and its backward count, the view does not
