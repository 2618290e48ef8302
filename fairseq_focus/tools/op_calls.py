"""Operator calls of one layer's forward + backward: the launch count that sets a layer's time on a GPU.

On a GPU nearly every aten operator call is at least one kernel launch (~5-10 µs), so at the sizes users
train (a few thousand tokens per sequence, a few hundred channels) a layer that makes thousands of calls is
launch-bound whatever its FLOPs. The count is measured on any CPU with torch.profiler and is deterministic
(unlike a time), so tests may assert it. "compute" calls leave out those that move no data (views, reshapes,
dtype no-ops: :data:`NO_DATA`); "all" counts every ``aten::`` call.

    python -m fairseq_focus.tools.op_calls --lengths 1024,4096,16384 --dim 64
"""
import argparse
import types
from typing import Callable, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

from .bench_layers import build_layer

NO_DATA = frozenset({
    "view", "reshape", "_reshape_alias", "slice", "select", "unsqueeze", "squeeze", "transpose", "permute", "expand",
    "as_strided", "empty", "empty_like", "empty_strided", "unflatten", "flatten", "t", "detach", "alias", "split",
    "split_with_sizes", "chunk", "unbind", "narrow", "contiguous", "to", "_to_copy", "result_type", "lift_fresh",
    "resolve_conj", "resolve_neg", "_unsafe_view", "view_as_real", "view_as_complex", "numpy_T", "movedim",
    "expand_as", "view_as", "is_nonzero", "item", "_local_scalar_dense"})
LAYERS = "focus-selective-carry,focus-static-carry,focus-adaptive-carry,mega-ema,fairseq-layer"


def count_calls(step: Callable[[], None]) -> Tuple[int, int]:
    """(all aten calls, compute calls) that torch.profiler records while ``step()`` runs once."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    calls = [(e.key[len("aten::"):], e.count) for e in prof.key_averages() if e.key.startswith("aten::")]
    return sum(n for _, n in calls), sum(n for name, n in calls if name not in NO_DATA)


def layer_calls(name: str, length: int, dim: int = 64) -> Tuple[int, int]:
    """Calls of one forward + backward of bench's layer ``name`` (D = ``dim``, batch 1), after a warm-up pass."""
    args = types.SimpleNamespace(dim=dim, value_dim=dim, ffn=2 * dim, zdim=32, heads=4, filters=1, bin_size=128,
                                 chunk_size=128, kernel_size=1024, model_layers=1)
    torch.manual_seed(0)
    layer = build_layer(name, args)
    x = torch.randn(1, length, dim, requires_grad=True)

    def step():
        layer(x).square().mean().backward()
    step()
    return count_calls(step)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,4096,16384")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", default=LAYERS)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print("| layer | L | compute calls | all aten calls |\n|---|---|---|---|")
    for name in a.layers.split(","):
        for length in map(int, a.lengths.split(",")):
            n_all, n_compute = layer_calls(name, length, a.dim)
            print(f"| {name} | {length} | {n_compute} | {n_all} |")


if __name__ == "__main__":
    main()
