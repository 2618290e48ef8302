"""What each recall arch costs: parameters and the time of one training step's forward + backward.

    python recipes/study/recall_cost.py [--seq-len 64] [--batch-size 32] [--repeats 20] [--threads 1]
                                        [--archs focus_recall,focus_recall_paper,focus_recall_ema,...]

Builds every arch as ``fairseq-train --task associative_recall`` would (vocabulary 30, the given L),
then times forward + cross-entropy + backward on one batch of held-out examples. The archs take turns
within each repeat, so a load that comes and goes touches them alike; the table gives the median
milliseconds and each arch's ratio to the first one, measured in this run. Prints a markdown table.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ARCHS = "focus_recall,focus_recall_paper,focus_recall_static,focus_recall_ema,focus_recall_transformer"


def build(arch: str, seq_len: int, user_dir: str):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--user-dir", user_dir, "--task", "associative_recall", "--seq-len", str(seq_len), "--vocab-size", "30",
        "--num-train", "64", "--num-test", "64", "--arch", arch, "--criterion", "cross_entropy", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model).train()


def step_ms(model, inputs, targets) -> float:
    start = time.perf_counter()
    logits = model(inputs)[0]
    F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).backward()
    model.zero_grad(set_to_none=True)
    return 1000.0 * (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--archs", default=ARCHS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        print("error: --repeats and --batch-size must be positive", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    user_dir = str(Path(__file__).resolve().parents[2] / "fairseq_focus")
    built = {}
    for arch in args.archs.split(","):
        task, model = build(arch, args.seq_len, user_dir)
        held_out = torch.from_numpy(task.examples()[1][:args.batch_size]).long() + task.dictionary.nspecial
        built[arch] = (model, held_out[:, :-1], held_out[:, 1:])
    times = {arch: [] for arch in built}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for arch, (model, inputs, targets) in built.items():
            ms = step_ms(model, inputs, targets)
            if repeat:
                times[arch].append(ms)
    first = statistics.median(times[next(iter(built))])
    print(f"L = {args.seq_len}, batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}")
    print("| arch | parameters | forward + backward (ms) | time ÷ first row |\n|---|---|---|---|")
    for arch, (model, _, _) in built.items():
        ms = statistics.median(times[arch])
        print(f"| `{arch}` | {sum(p.numel() for p in model.parameters()):,} | {ms:.1f} | ×{ms / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
