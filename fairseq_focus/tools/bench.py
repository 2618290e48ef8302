"""Speed and memory of one Focus layer against attention and MEGA's EMA (paper Table 5, Fig. 3).

    python -m fairseq_focus.tools.bench --out bench-out                 # CPU, L = 256 … 16K
    python -m fairseq_focus.tools.bench --device cuda --out bench-out   # the same on a GPU

Times forward + backward of one layer at the same model dimension for every L and reports the median
over repeats, peak memory, tokens/s, the operator calls of one pass (``tools/op_calls.py``: on a GPU each is
a kernel launch), and each as a ratio to attention and to MEGA's EMA layer *measured in the same run*:

* ``focus-<filter>-<mode>``: a Focus block (filter + chunked attention + gates + NFFN);
* ``mega-ema``: the same block with MEGA's multi-head EMA as its filter;
* ``fairseq-layer``: fairseq's ``TransformerDecoderLayer`` with a causal mask (torch's fused attention,
  which never materialises the L×L matrix on CPU);
* ``plain-attention``: a pre-norm attention + FFN layer that materialises the L×L scores (the setting of
  the paper's Table 5).

Every (layer, L) runs in a fresh subprocess so that peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of the process's peak resident set size
(``ru_maxrss``) over its size just before the first forward — "peak RSS growth", which includes
allocator caching. A configuration whose L×L scores would not fit the memory budget is skipped and
says so. Also times a whole ``focus_lm`` training step (forward, loss, backward, Adam) against a
``transformer_lm`` of about the same parameter count, with its peak memory; ``--checkpoint-activations``
adds the same steps with activation checkpointing per layer (fairseq's ``checkpoint_wrapper``, in both
models), so the saving is measured in the same run:

    python -m fairseq_focus.tools.bench --threads 1 --layers '' --model-lengths 1024,4096 --checkpoint-activations

(One layer alone gains nothing from checkpointing: backward recomputes that very layer's activations.)
``--autocast-bf16`` runs every forward under ``torch.autocast(bfloat16)`` (the model flag's rule; default
fp32). Writes ``bench.json`` and ``bench.png``. On CUDA, $FOCUS_SCAN_SCHEDULE=sequential|chunked|auto forces the
Triton scan's schedule over time (ops/tv_iir/triton.py), and a layer row records the one that ran
(``scan_schedule``): run once with each to set the threshold.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .bench_layers import LAYERS, build_layer, focus_config
from .op_calls import count_calls

BASELINE = "fairseq-layer"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_base(device: torch.device) -> int:
    """Where peak memory is counted from: CUDA's allocated bytes (peak stats reset), or the RSS now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return _rss_bytes()


def memory_peak(device: torch.device, base: int) -> int:
    """Peak bytes above ``base``: torch.cuda.max_memory_allocated, or the growth of the peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() - base
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def timed_repeats(reset, step, device: torch.device, repeats: int):
    """Median-ready times of ``repeats`` calls of ``step`` after one warm-up call (``reset`` runs before
    each, untimed), and the peak memory above what was in use before the warm-up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base = memory_base(device)
    times = []
    for i in range(repeats + 1):
        reset()
        sync()
        start = time.perf_counter()
        step()
        sync()
        if i > 0:  # the first pass is a warm-up
            times.append(time.perf_counter() - start)
    return times, memory_peak(device, base)


def forward_precision(args, device: torch.device):
    """``--autocast-bf16``: the forward under torch.autocast(bfloat16), by the plugin's own rule (refused
    on a GPU without bf16 units); backward follows the dtypes autocast chose. Without it, fp32."""
    from ..ops.precision import model_autocast
    return model_autocast(args.autocast_bf16, device)


def measure(name: str, length: int, args) -> Dict:
    """Run in a child process: warm up, then time `repeats` forward+backward passes."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    layer = build_layer(name, args).to(device)
    x = torch.randn(args.batch, length, args.dim, device=device, requires_grad=True)

    def reset():
        layer.zero_grad(set_to_none=True)
        x.grad = None

    def step():
        with forward_precision(args, device):
            y = layer(x)
        y.float().square().mean().backward()

    times, peak = timed_repeats(reset, step, device, args.repeats)
    median = statistics.median(times)
    calls_all, calls = count_calls(lambda: (reset(), step()))  # one more pass, under the profiler, untimed
    return {"layer": name, "length": length, "seconds": median, "times": times,
            "tokens_per_s": args.batch * length / median, "peak_bytes": peak, "calls": calls, "calls_all": calls_all,
            **scan_schedule()}


def scan_schedule() -> Dict:
    """{"scan_schedule": {"fwd": …, "bwd": …}}: the schedules over time the Triton scan ran last in this process
    (ops/tv_iir/triton.py; $FOCUS_SCAN_SCHEDULE forces one), or {} where it did not run."""
    triton_scan = sys.modules.get("fairseq_focus.ops.tv_iir.triton")
    ran = getattr(triton_scan, "last_schedule", None)
    return {"scan_schedule": dict(ran)} if ran else {}


def build_lm_decoder(kind: str, length: int, checkpoint: bool, dictionary, args) -> nn.Module:
    """The decoder of a ``focus_lm`` (``focus_config``'s widths) or a ``transformer_lm`` of
    ``--transformer-layers``, optionally with activation checkpointing per layer."""
    if kind == "focus_lm":
        from ..models.focus_lm import FocusDecoder
        return FocusDecoder(replace(focus_config(args), max_target_positions=length,
                                    checkpoint_activations=checkpoint), dictionary)
    from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
    from types import SimpleNamespace
    cfg = TransformerLanguageModelConfig(
        decoder_embed_dim=args.dim, decoder_input_dim=args.dim, decoder_output_dim=args.dim,
        decoder_ffn_embed_dim=args.ffn, decoder_layers=args.transformer_layers,
        decoder_attention_heads=args.heads, dropout=0.0, tokens_per_sample=length,
        max_target_positions=length, share_decoder_input_output_embed=True, checkpoint_activations=checkpoint,
    )
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return TransformerLanguageModel.build_model(cfg, task).decoder


def model_step(kind: str, length: int, checkpoint: bool, args) -> Dict:
    """tokens/s and peak memory of one whole training step (forward, cross-entropy, backward, Adam) of
    an LM; ``checkpoint``: with activation checkpointing per layer (fairseq's checkpoint_wrapper)."""
    from ..data.byte_codec import byte_dictionary
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dictionary = byte_dictionary()
    decoder = build_lm_decoder(kind, length, checkpoint, dictionary, args).to(device)
    params = sum(p.numel() for p in decoder.parameters())
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-4)
    tokens = torch.randint(4, len(dictionary), (args.batch, length + 1), device=device)

    def step():
        with forward_precision(args, device):
            logits = decoder(tokens[:, :-1])[0]
        F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten()).backward()
        opt.step()

    # Adam's state is made in the first step, so it counts in the peak too
    times, peak = timed_repeats(lambda: opt.zero_grad(set_to_none=True), step, device, args.repeats)
    median = statistics.median(times)
    return {"model": kind, "length": length, "checkpoint": checkpoint, "params": params, "seconds": median,
            "tokens_per_s": args.batch * length / median, "peak_bytes": peak}


def estimated_scores_bytes(length: int, args) -> int:
    """The L×L scores, their softmax and masked copy, and their gradients: ~4 (B, H, L, L) fp32 tensors."""
    return 4 * 4 * args.batch * args.heads * length * length


def run_child(job: Dict, args) -> Optional[Dict]:
    cmd = [sys.executable, "-m", "fairseq_focus.tools.bench", "--child", json.dumps(job)] + args.passthrough
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], **job}
    return json.loads(lines[-1])


def add_ratios(rows: List[Dict]) -> None:
    """Ratios (time, memory) to the fairseq layer, MEGA's EMA layer and plain attention, same L, same run."""
    by_key = {(r["layer"], r["length"]): r for r in rows if "seconds" in r}
    for r in rows:
        if "seconds" not in r:
            continue
        for ref_name, tag in ((BASELINE, "fairseq"), ("mega-ema", "mega"), ("plain-attention", "plain")):
            ref = by_key.get((ref_name, r["length"]))
            if ref is not None:
                r[f"time_ratio_{tag}"] = r["seconds"] / ref["seconds"]
                r[f"memory_ratio_{tag}"] = r["peak_bytes"] / max(ref["peak_bytes"], 1)


def table(rows: List[Dict]) -> str:
    out = ["| layer | L | ms (median) | tokens/s | peak MiB | compute calls | time ÷ fairseq | mem ÷ fairseq | "
           "time ÷ mega-ema | mem ÷ mega-ema | mem ÷ plain attn |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "seconds" not in r:
            out.append(f"| {r['layer']} | {r['length']} | {r.get('skipped') or 'error: ' + r.get('error', '?')} "
                       f"| | | | | | | | |")
            continue
        fmt = lambda k: f"×{r[k]:.2f}" if k in r else "—"  # noqa: E731
        out.append(f"| {r['layer']} | {r['length']} | {1e3 * r['seconds']:.1f} | {r['tokens_per_s']:.0f} | "
                   f"{r['peak_bytes'] / 2**20:.0f} | {r.get('calls', '—')} | {fmt('time_ratio_fairseq')} | "
                   f"{fmt('memory_ratio_fairseq')} | {fmt('time_ratio_mega')} | {fmt('memory_ratio_mega')} | "
                   f"{fmt('memory_ratio_plain')} |")
    return "\n".join(out)


def step_table(steps: List[Dict]) -> str:
    """The whole-model steps, each against transformer_lm at the same L and checkpointing, and against
    itself without checkpointing — all measured in the same run."""
    by_key = {(s["model"], s["length"], s["checkpoint"]): s for s in steps if "seconds" in s}
    out = ["| model | L | checkpoint activations | parameters | tokens/s | peak MiB | tokens/s ÷ transformer_lm | "
           "mem ÷ transformer_lm | mem ÷ same model without checkpointing |", "|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        if "seconds" not in s:
            out.append(f"| {s['model']} | {s['length']} | {s['checkpoint']} | error: {s.get('error', '?')} | | | | | |")
            continue
        ref = by_key.get(("transformer_lm", s["length"], s["checkpoint"]))
        plain = by_key.get((s["model"], s["length"], False))
        ratio = lambda num, den: f"×{num / max(den, 1):.2f}" if den is not None else "—"  # noqa: E731
        out.append(f"| {s['model']} | {s['length']} | {'yes' if s['checkpoint'] else 'no'} | {s['params']:,} | "
                   f"{s['tokens_per_s']:.0f} | {s['peak_bytes'] / 2**20:.0f} | "
                   f"{ratio(s['tokens_per_s'], ref and ref['tokens_per_s'])} | "
                   f"{ratio(s['peak_bytes'], ref and ref['peak_bytes'])} | "
                   f"{ratio(s['peak_bytes'], plain and plain['peak_bytes'])} |")
    return "\n".join(out)


def plot(rows: List[Dict], path: Path) -> None:
    import logging
    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for name in sorted({r["layer"] for r in rows}):
        pts = sorted((r["length"], r["seconds"], r["peak_bytes"]) for r in rows if r["layer"] == name and "seconds" in r)
        if pts:
            ax_t.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], marker="o", label=name)
            ax_m.plot([p[0] for p in pts], [p[2] / 2**20 for p in pts], marker="o", label=name)
    for ax, label in ((ax_t, "forward+backward (ms)"), (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def profile_layer(args) -> int:
    """Where one layer's forward + backward spends its time (after one warm-up pass)."""
    from torch.profiler import ProfilerActivity, profile
    name, _, length = args.profile.partition(":")
    if name not in LAYERS or not length.isdigit():
        print(f"error: --profile wants LAYER:L with LAYER in {LAYERS}, got {args.profile!r}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    layer = build_layer(name, args).to(args.device)
    x = torch.randn(args.batch, int(length), args.dim, device=args.device, requires_grad=True)
    layer(x).float().square().mean().backward()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        layer(x).float().square().mean().backward()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="256,1024,4096,8192,16384")
    p.add_argument("--layers", default=",".join(LAYERS), help=f"comma list out of {LAYERS}")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--zdim", type=int, default=128)
    p.add_argument("--value-dim", type=int, default=512)
    p.add_argument("--filters", type=int, default=1)
    p.add_argument("--bin-size", type=int, default=128)
    p.add_argument("--chunk-size", type=int, default=128)
    p.add_argument("--kernel-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--memory-budget-gb", type=float, default=12.0,
                   help="skip plain attention where its L×L tensors would exceed this")
    p.add_argument("--model-lengths", default="1024,4096", help="L for the whole-model training step ('' to skip)")
    p.add_argument("--model-layers", type=int, default=4, help="focus_lm depth for the training-step comparison")
    p.add_argument("--transformer-layers", type=int, default=5, help="transformer_lm depth (≈ equal parameters)")
    p.add_argument("--checkpoint-activations", action="store_true",
                   help="also run each whole-model step with activation checkpointing per layer (both models)")
    p.add_argument("--autocast-bf16", action="store_true",
                   help="run every forward under torch.autocast(bfloat16) (the model flag's rule; default fp32)")
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    p.add_argument("--profile", metavar="LAYER:L",
                   help="instead of the benchmark, print torch.profiler's table for one layer at one length")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    flags = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--child" in flags:
        i = flags.index("--child")
        flags = flags[:i] + flags[i + 2:]
    args.passthrough = flags
    return args


def run_job(job: Dict, args) -> Dict:
    """What a ``--child`` process measures: one layer at one L, or one whole-model training step."""
    if "model" in job:
        return model_step(job["model"], job["length"], job["checkpoint"], args)
    return measure(job["layer"], job["length"], args)


def layer_rows(layers: List[str], lengths: List[int], args) -> List[Dict]:
    """Every layer at every L, each in its own child process (plain attention skipped over budget)."""
    rows = []
    for length in lengths:
        for name in layers:
            if name == "plain-attention" and estimated_scores_bytes(length, args) > args.memory_budget_gb * 2**30:
                rows.append({"layer": name, "length": length,
                             "skipped": f"skipped: L×L tensors ≈ {estimated_scores_bytes(length, args) / 2**30:.0f} GiB"})
                continue
            row = run_child({"layer": name, "length": length}, args)
            rows.append(row)
            status = f"{1e3 * row['seconds']:.1f} ms" if "seconds" in row else row.get("error")
            print(f"{name:>20} L={length:<6} {status}", flush=True)
    add_ratios(rows)
    return rows


def model_steps(args) -> List[Dict]:
    """focus_lm and transformer_lm training steps at every ``--model-lengths`` L (with and without
    checkpointing under ``--checkpoint-activations``), each in its own child process."""
    steps = []
    for length in [int(v) for v in args.model_lengths.split(",") if v]:
        for checkpoint in (False, True) if args.checkpoint_activations else (False,):
            for kind in ("focus_lm", "transformer_lm"):
                steps.append(run_child({"model": kind, "length": length, "checkpoint": checkpoint}, args))
                print(f"{kind:>20} L={length:<6} checkpoint={checkpoint!s:<5} training step: "
                      f"{steps[-1].get('tokens_per_s', steps[-1].get('error'))}", flush=True)
    return steps


def write_results(rows: List[Dict], steps: List[Dict], args) -> None:
    """bench.json (with the run's settings and versions) and bench.png under ``--out``; the tables to stdout."""
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in vars(args).items() if k not in ("out", "child", "passthrough")}
    meta.update(torch=torch.__version__, date=time.strftime("%Y-%m-%d %H:%M"), cpu_count=os.cpu_count(),
                focus_scan_schedule=os.environ.get("FOCUS_SCAN_SCHEDULE", "auto"))
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    (args.out / "bench.json").write_text(json.dumps({"meta": meta, "layers": rows, "model_steps": steps}, indent=1))
    plot(rows, args.out / "bench.png")
    print(table(rows))
    print(step_table(steps))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_job(json.loads(args.child), args)))
        return 0
    if args.profile:
        return profile_layer(args)
    layers = [name for name in args.layers.split(",") if name]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        print(f"error: unknown layers {sorted(unknown)}; choose from {LAYERS}", file=sys.stderr)
        return 2
    rows = layer_rows(layers, [int(v) for v in args.lengths.split(",") if v], args)
    write_results(rows, model_steps(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
