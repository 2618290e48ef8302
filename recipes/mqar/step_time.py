"""Seconds per training update of each MQAR variant and cell, to size the grid (one thread).

    OMP_NUM_THREADS=1 python recipes/mqar/step_time.py [--variants recipes/mqar/variants.txt] [--only focus ...]
        [--cells 64:4 256:16 512:64] [--width 64] [--batch 64] [--steps 6]

For every variant and cell: builds the model through fairseq (the same flags grid.sh passes), then times
``--steps`` updates (forward, the labelled-positions loss, backward, an AdamW step) after two untimed ones,
and one validation forward of a batch. Prints one markdown row per run with the process CPU time per update
(``time.process_time``: what one thread spends, nearly independent of other jobs sharing the cores) and the
wall-clock time per update (inflated when the cores are shared), and the parameter count.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Tuple

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]  # variants, and this checkout's fairseq_focus (not an installed one)
from variants import Variant, read_variants  # noqa: E402


def build(variant: Variant, seq_len: int, pairs: int, width: int, batch: int, steps: int, vocab: int):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    argv = ["--user-dir", str(REPO / "fairseq_focus"), "--task", "mqar", "--vocab-size", str(vocab),
            "--seq-len", str(seq_len), "--num-pairs", str(pairs), "--num-train", str(batch * (steps + 2)),
            "--num-valid", str(batch), "--num-test", str(batch), "--arch", variant.arch, "--cpu", "--dropout", "0",
            *variant.flags(width)]
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       argv + ["--criterion", "focus_labelled_cross_entropy"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    for split in ("train", "valid"):
        task.load_dataset(split)
    return task, model, criterion


def batches(task, split: str, batch: int) -> List[dict]:
    data = task.dataset(split)
    return [data.collater([data[i] for i in range(start, start + batch)]) for start in range(0, len(data), batch)]


def time_run(variant: Variant, seq_len: int, pairs: int, width: int, batch: int, steps: int,
             vocab: int) -> Tuple[int, float, float, float]:
    """(parameters, CPU s / update, wall s / update, CPU s per validation batch)."""
    task, model, criterion = build(variant, seq_len, pairs, width, batch, steps, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = batches(task, "train", batch)
    model.train()
    for i, sample in enumerate(train):
        if i == 2:
            cpu, wall = time.process_time(), time.perf_counter()
        optimizer.zero_grad()
        loss, _, _ = criterion(model, sample)
        loss.backward()
        optimizer.step()
    cpu, wall = (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps
    model.eval()
    start = time.process_time()
    with torch.no_grad():
        criterion(model, batches(task, "valid", batch)[0])
    return sum(p.numel() for p in model.parameters()), cpu, wall, time.process_time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=Path, default=HERE / "variants.txt")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (default: every one)")
    parser.add_argument("--cells", nargs="*", default=["64:4", "256:16", "512:64"], help="L:N pairs")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8192)
    args = parser.parse_args(argv)
    try:
        variants = read_variants(args.variants, args.only)
        cells = [tuple(int(x) for x in cell.split(":")) for cell in args.cells]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    print(f"| variant | arch | L | N | D | params | CPU s/update | wall s/update | CPU s/valid batch |  (batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s))")
    print("|---|---|---|---|---|---|---|---|---|")
    for seq_len, pairs in cells:
        for variant in variants:
            params, cpu, wall, valid = time_run(variant, seq_len, pairs, args.width, args.batch, args.steps, args.vocab)
            print(f"| {variant.name} | {variant.arch} | {seq_len} | {pairs} | {args.width} | {params} | {cpu:.3f} | "
                  f"{wall:.3f} | {valid:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
