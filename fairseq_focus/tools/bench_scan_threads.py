"""Time the fused per-token IIR scan alone (ops/tv_iir: TVIIRScan on the compiled CPU kernel), forward + backward,
on 1 and 2 (``--threads``) of torch's intra-op threads in one run; prints one JSON object.

    python -m fairseq_focus.tools.bench_scan_threads          # B 8, D 512, L 4096, F 1, fp32, lattice, threads 1,2
    python -m fairseq_focus.tools.bench_scan_threads --threads 1,2,4 --repeats 7

The kernel splits its work items, batch × blocks of 64 channels (64 items at the defaults), over the threads
(OpenMP, setup.py). Times compare only within one run on a quiet machine: no other process on those cores.
"""
import argparse
import json
import statistics
import time
from typing import Dict, List, Optional

import torch

from ..ops.theta import theta_from_logits
from ..ops.tv_iir.function import TVIIRScan, kernel_for
from ..ops.tv_iir.naive import CHUNK


def scan_inputs(bsz: int, dim: int, length: int, filters: int, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """θ (B, L, D, F, 2) inside the stability triangle, u (B, L, D), state0 (B, D, F, 2), all requiring grad."""
    g = torch.Generator().manual_seed(0)
    theta = theta_from_logits(torch.randn(bsz, length, dim, filters, 2, generator=g), "stable")
    tensors = {"theta": theta, "u": torch.randn(bsz, length, dim, generator=g),
               "state0": torch.randn(bsz, dim, filters, 2, generator=g)}
    return {name: t.to(dtype).contiguous().requires_grad_() for name, t in tensors.items()}


def fwd_bwd_seconds(inputs: Dict[str, torch.Tensor], lattice: bool, chunk: int) -> float:
    """Wall seconds of one forward + backward of the scan (the loss: Σ y + Σ final)."""
    start = time.perf_counter()
    y, final = TVIIRScan.apply(inputs["theta"], inputs["u"], inputs["state0"], lattice, chunk, 1)
    torch.autograd.backward([y, final], [torch.ones_like(y), torch.ones_like(final)])
    return time.perf_counter() - start


def measure(inputs: Dict[str, torch.Tensor], threads: int, repeats: int, lattice: bool, chunk: int) -> Dict:
    """One row: ``threads`` intra-op threads, a warm-up pass, then ``repeats`` timed passes."""
    torch.set_num_threads(threads)
    fwd_bwd_seconds(inputs, lattice, chunk)
    seconds = [fwd_bwd_seconds(inputs, lattice, chunk) for _ in range(repeats)]
    tokens = inputs["u"].size(0) * inputs["u"].size(1)
    median = statistics.median(seconds)
    return {"threads": threads, "seconds_median": median, "seconds": seconds, "tokens_per_s": tokens / median}


def parallel_backend() -> str:
    """ATen's parallel backend as torch reports it (OpenMP for the pip wheels)."""
    lines = [line for line in torch.__config__.parallel_info().splitlines() if "parallel backend" in line]
    return lines[0].split(":", 1)[1].strip() if lines else "unknown"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--filters", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--form", choices=["lattice", "companion"], default="lattice")
    p.add_argument("--chunk", type=int, default=CHUNK, help="the kernel's checkpoint interval")
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts, timed in this order")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per thread count (after one warm-up)")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    kernel = kernel_for(torch.device("cpu"))
    if kernel is None:
        raise SystemExit("error: the compiled CPU kernel is not built (python setup.py build_ext --inplace)")
    inputs = scan_inputs(args.batch, args.dim, args.length, args.filters, getattr(torch, args.dtype))
    before = torch.get_num_threads()
    try:
        rows = [measure(inputs, int(n), args.repeats, args.form == "lattice", args.chunk)
                for n in args.threads.split(",")]
    finally:
        torch.set_num_threads(before)
    result = {"op": "TVIIRScan forward + backward (fused CPU kernel)", "kernel": kernel.__name__,
              "batch": args.batch, "dim": args.dim, "length": args.length, "filters": args.filters,
              "dtype": args.dtype, "form": args.form, "chunk": args.chunk, "torch": torch.__version__,
              "parallel_backend": parallel_backend(), "rows": rows}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
