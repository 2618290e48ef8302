"""Time per token of ``--global-attention based``'s op (ops/linear_attention.py) with and without decay,
forward + backward, at a few lengths: is the decayed form linear in L?

    python -m fairseq_focus.tools.bench_based --threads 1 --lengths 4096,32768

Prints one row per (decay, L) with the median time of ``--repeats`` passes and the time per token, then
for each decay the longest length's time per token over the shortest's (1.0: linear in L) and, per
length, decay over no decay. Shapes: batch 1, ``--heads`` heads of ``--feature-dim`` q/k features
(P = 1 + F + F² Taylor features) and ``--value-dim`` values in all, chunks of ``--chunk``; fp32 on the CPU
(or ``--device cuda``). Nothing here is asserted by a test: times depend on the machine and its load.
"""
import argparse
import statistics
import time
from typing import Dict, List, Optional

import torch

from ..ops.linear_attention import linear_attention

DECAYS = ("none", "learned")


def inputs(length: int, args, decay: str) -> List[Optional[torch.Tensor]]:
    """q, k (1, L, H, F), v (1, L, H, E) and log γ (H,) or None, all requiring gradients."""
    gen = torch.Generator().manual_seed(0)
    heads, f, e = args.heads, args.feature_dim, args.value_dim // args.heads
    shapes = ((1, length, heads, f), (1, length, heads, f), (1, length, heads, e))
    q, k, v = (torch.randn(s, generator=gen).to(args.device).requires_grad_() for s in shapes)
    log_decay = None
    if decay == "learned":  # the module's init, γ_h = 1 − 2^{−(7+h)}
        gamma = 1.0 - 2.0 ** -(7.0 + torch.arange(heads, dtype=torch.float32))
        log_decay = gamma.log().to(args.device).requires_grad_()
    return [q, k, v, log_decay]


def time_pass(length: int, args, decay: str) -> float:
    """Median seconds of one forward + backward of the op at length L (after one warm-up pass)."""
    q, k, v, log_decay = inputs(length, args, decay)
    times = []
    for _ in range(args.repeats + 1):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        y, _ = linear_attention(q, k, v, args.chunk, log_decay)
        y.square().mean().backward()
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def report(rows: Dict[str, Dict[int, float]], lengths: List[int]) -> List[str]:
    lines = ["| decay | L | ms per pass | µs per token |", "|---|---|---|---|"]
    for decay, by_length in rows.items():
        lines += [f"| {decay} | {n} | {1e3 * t:.1f} | {1e6 * t / n:.2f} |" for n, t in by_length.items()]
    short, long = lengths[0], lengths[-1]
    for decay, by_length in rows.items():
        ratio = (by_length[long] / long) / (by_length[short] / short)
        lines.append(f"{decay}: time per token at {long} / at {short} = x{ratio:.2f}")
    if set(DECAYS) <= set(rows):
        lines += [f"L={n}: learned decay / none = x{rows['learned'][n] / rows['none'][n]:.2f}" for n in lengths]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="4096,32768", help="comma list of L, shortest first")
    p.add_argument("--decays", default=",".join(DECAYS), help=f"comma list out of {', '.join(DECAYS)}")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--feature-dim", type=int, default=16)
    p.add_argument("--value-dim", type=int, default=128, help="values of all heads together")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = sorted(int(n) for n in args.lengths.split(","))
    decays = [d for d in args.decays.split(",") if d]
    if not lengths or not set(decays) <= set(DECAYS):
        p.error(f"need lengths and decays out of {DECAYS}")
    rows = {decay: {n: time_pass(n, args, decay) for n in lengths} for decay in decays}
    print("\n".join(report(rows, lengths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
