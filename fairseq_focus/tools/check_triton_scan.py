"""The Triton kernels of ops/tv_iir compiled on a CUDA GPU, checked and timed: a step of recipes/check_gpu.sh.

The test suite runs these kernels only under Triton's interpreter, on CPU; here they run compiled. For each schedule
over time (``sequential``, ``chunked``, forced through $FOCUS_SCAN_SCHEDULE) and each input dtype (fp32, bf16), the
op ``tv_iir_filter`` (which takes the Triton kernel on CUDA) against its chunked torch scan twin in fp64 on the same
rounded inputs: y, the final state and the gradients of x, Θ, the gain and the initial state, at B 2, D 130 (three
channel blocks), F 2, L 3000 (94 chunks of 32; the lattice form). Then forward + backward of the fused scan alone
(TVIIRScan) is timed under each schedule at the size of tools/bench_scan_threads.py (B 8, D 512, L 4096, fp32).

    python -m fairseq_focus.tools.check_triton_scan --out check-out/triton_scan.json

Writes the JSON (every number). Exit 0 when every comparison is within its tolerance, or when the step is skipped
(no CUDA device, or CHECK_DEVICE=cpu: "status": "skipped", nothing on stderr); 1 when one is not (one line
"error: ..." on --error-fd).

Tolerances (max error / max|reference| over the six tensors), NOT MEASURED on a GPU yet: on this draw the CPU kernel
(the same arithmetic in fp32) reaches 4.6e-5 with fp32 inputs and 3.2e-3 with bf16 ones (bf16 outputs and gradients
round to 2⁻⁹ relative); the tolerances are ~10× that: 5e-4 and 3e-2.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..ops.theta import theta_from_logits
from ..ops.tv_iir import TVIIRScan, tv_iir_filter, tv_iir_filter_scan

SCHEDULE_ENV = "FOCUS_SCAN_SCHEDULE"  # read by ops/tv_iir/triton.py (its SCHEDULE_ENV)
SCHEDULES = ("sequential", "chunked")
TOLERANCE = {"fp32": 5e-4, "bf16": 3e-2}  # module docstring: ~10× the CPU kernel on this draw
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TENSORS = ("y", "final", "dx", "dtheta", "dgain", "dstate")
CHECK_SIZE = (2, 130, 2, 3000)  # B, D, F, L
TIME_SIZE = (8, 512, 1, 4096)


def draw(size, device: torch.device) -> List[torch.Tensor]:
    """x (B, D, L), Θ (B, L, D, F, 2) inside the triangle (logits N(0, 1)), gain (B, L, D), state (B, D, F, 2)."""
    b, d, f, n = size
    g = torch.Generator().manual_seed(0)
    theta = theta_from_logits(torch.randn(b, n, d, f, 2, generator=g, dtype=torch.float64), "stable")
    tensors = (torch.randn(b, d, n, generator=g, dtype=torch.float64), theta,
               2 * torch.rand(b, n, d, generator=g, dtype=torch.float64),
               torch.randn(b, d, f, 2, generator=g, dtype=torch.float64))
    return [t.to(device) for t in tensors]


def run_op(fn, tensors: List[torch.Tensor], weights: torch.Tensor) -> List[torch.Tensor]:
    """y, final and the gradients of Σ w·y + Σ final² with respect to x, Θ, gain, state."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y, final = fn(*leaves, return_state=True)
    grads = torch.autograd.grad((y * weights.to(y.dtype)).sum() + final.float().pow(2).sum(), leaves)
    return [y.detach(), final.detach(), *grads]


def compare(device: torch.device, dtype: str, schedule: str) -> List[Dict]:
    """The op on ``dtype`` inputs under ``schedule`` against the fp64 scan on the same rounded inputs. Θ stays fp32
    as the model hands it over (ops/theta.py computes it in fp32 under autocast: a bf16 Θ can leave the triangle)."""
    tensors = [t.float() if i == 1 else t.to(DTYPES[dtype]) for i, t in enumerate(draw(CHECK_SIZE, device))]
    weights = torch.randn(CHECK_SIZE[0], CHECK_SIZE[1], CHECK_SIZE[3], generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64).to(device)
    os.environ[SCHEDULE_ENV] = schedule
    got = run_op(tv_iir_filter, tensors, weights)
    want = run_op(tv_iir_filter_scan, [t.double() for t in tensors], weights)
    rows = []
    for name, a, b in zip(TENSORS, got, want):
        scale = float(b.abs().max())
        relative = float((a.double() - b).abs().max()) / max(scale, 1e-30)
        rows.append({"schedule": schedule, "dtype": dtype, "tensor": name, "relative_error": relative,
                     "scale": scale, "tolerance": TOLERANCE[dtype], "ok": relative <= TOLERANCE[dtype]})
    return rows


def time_schedule(device: torch.device, schedule: str, repeats: int) -> Dict:
    """Median seconds of forward + backward of TVIIRScan (the lattice form, fp32) at TIME_SIZE under ``schedule``."""
    x, theta, _, state = (t.float() for t in draw(TIME_SIZE, device))
    theta, state = theta.requires_grad_(), state.contiguous().requires_grad_()
    u = x.transpose(1, 2).contiguous().requires_grad_()  # (B, L, D)
    os.environ[SCHEDULE_ENV] = schedule

    def once() -> float:
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        y, final = TVIIRScan.apply(theta, u, state, True, 32, 1)
        torch.autograd.backward([y, final], [torch.ones_like(y), torch.ones_like(final)])
        torch.cuda.synchronize(device)
        return time.perf_counter() - start
    once()  # compiles the kernels
    seconds = [once() for _ in range(repeats)]
    b, d, f, n = TIME_SIZE
    return {"schedule": schedule, "batch": b, "dim": d, "filters": f, "length": n, "dtype": "fp32",
            "seconds_median": statistics.median(seconds), "seconds": seconds}


def check(device: torch.device, repeats: int) -> Dict:
    """Every comparison and timing; restores $FOCUS_SCAN_SCHEDULE afterwards."""
    from ..ops.tv_iir import triton as kernels
    if kernels.interpreted():
        raise RuntimeError("TRITON_INTERPRET=1 is set: this step checks the compiled kernels; unset it")
    before = os.environ.get(SCHEDULE_ENV)
    try:
        rows = [row for schedule in SCHEDULES for dtype in DTYPES for row in compare(device, dtype, schedule)]
        timings = [time_schedule(device, schedule, repeats) for schedule in SCHEDULES]
    finally:
        if before is None:
            os.environ.pop(SCHEDULE_ENV, None)
        else:
            os.environ[SCHEDULE_ENV] = before
    failures = [f"{r['schedule']} {r['dtype']} {r['tensor']}: {r['relative_error']:.3g} > {r['tolerance']}"
                for r in rows if not r["ok"]]
    ratio = timings[0]["seconds_median"] / timings[1]["seconds_median"]
    return {"status": "failed" if failures else "passed", "device": torch.cuda.get_device_name(device),
            "triton": kernels.triton.__version__, "comparisons": rows, "timings": timings,
            "sequential_over_chunked": ratio, "failures": failures}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per schedule (after one warm-up)")
    p.add_argument("--error-fd", type=int, default=2, help="where the one-line verdict of a failure goes")
    args = p.parse_args(argv)
    device = os.environ.get("CHECK_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or not torch.cuda.is_available():
        result = {"status": "skipped", "reason": "no CUDA device (or CHECK_DEVICE=cpu): the Triton kernels need one"}
    else:
        result = check(torch.device("cuda"), args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"triton scan check: {result['status']}" + "".join(f"\n  {line}" for line in summary(result)))
    if result["status"] == "failed":
        with os.fdopen(os.dup(args.error_fd), "w") as errors:
            errors.write(f"error: triton scan check failed: {'; '.join(result['failures'])}\n")
        return 1
    return 0


def summary(result: Dict) -> List[str]:
    """A few lines for stdout: the reason of a skip, or the worst error per dtype and the timings."""
    if result["status"] == "skipped":
        return [result["reason"]]
    lines = []
    for dtype in DTYPES:
        worst = max((r for r in result["comparisons"] if r["dtype"] == dtype), key=lambda r: r["relative_error"])
        lines.append(f"{dtype}: worst {worst['tensor']} ({worst['schedule']}) {worst['relative_error']:.3g} of "
                     f"max|ref|, tolerance {worst['tolerance']}")
    lines += [f"{t['schedule']}: {t['seconds_median'] * 1e3:.2f} ms fwd+bwd at B {t['batch']} D {t['dim']} "
              f"L {t['length']}" for t in result["timings"]]
    return lines


if __name__ == "__main__":
    sys.exit(main())
