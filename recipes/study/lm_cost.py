"""What each LM of a study costs: parameters (with and without the embedding) and one training step's
forward + backward time, the models taking turns in one run.

    python recipes/study/lm_cost.py WORK/data-bin [--variants recipes/study/peers_variants.txt] [--only a b]
                                    [--tokens-per-sample 1024] [--batch-size 4] [--repeats 10] [--threads 1]

Builds every line of the variants file as ``fairseq-train --task focus_lm`` would on the study's data-bin
(its dictionary), then times forward + cross-entropy + backward on one batch of random tokens. Within each
repeat the models take turns, so a load that comes and goes touches them alike; the table gives the median
milliseconds, training tokens per second and each model's ratio to the first line, all from this run.
Prints a Markdown table (docs/RESULTS.md §3).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import read_variants  # noqa: E402  the study's own parser of variants files


def build(data_bin: Path, flags, tokens_per_sample: int):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_bin), "--user-dir", str(HERE.parent.parent / "fairseq_focus"), "--task", "focus_lm", "--cpu",
        "--tokens-per-sample", str(tokens_per_sample), *flags])
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task).build_model(cfg.model).train()


def step_ms(model, tokens) -> float:
    start = time.perf_counter()
    logits = model(tokens[:, :-1])[0]
    F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1)).backward()
    model.zero_grad(set_to_none=True)
    return 1000.0 * (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_bin", type=Path)
    parser.add_argument("--variants", type=Path, default=HERE / "peers_variants.txt")
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--tokens-per-sample", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not (args.data_bin / "dict.txt").exists():
        print(f"error: {args.data_bin}/dict.txt not found (run recipes/study/run.py prepare first)", file=sys.stderr)
        return 2
    variants = [(n, f) for n, f in read_variants(args.variants) if args.only is None or n in args.only]
    if not variants:
        print("error: no variant selected", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: build(args.data_bin, flags, args.tokens_per_sample) for name, flags in variants}
    vocab = len(next(iter(models.values())).decoder.dictionary)
    tokens = torch.randint(4, vocab, (args.batch_size, args.tokens_per_sample + 1))
    times = {name: [] for name in models}
    for name, model in models.items():
        step_ms(model, tokens)  # warm-up
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(step_ms(model, tokens))
    first = statistics.median(times[variants[0][0]])
    ntok = args.batch_size * args.tokens_per_sample
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size} × {args.tokens_per_sample} "
          f"tokens, median of {args.repeats} forward + backward passes, models in turn")
    print()
    print("| model | params | without embedding | ms / step | tokens / s | × first row |")
    print("|---|---|---|---|---|---|")
    for name, model in models.items():
        total = sum(p.numel() for p in model.parameters())
        embed = model.decoder.embed_tokens.weight.numel()
        ms = statistics.median(times[name])
        print(f"| {name} | {total:,} | {total - embed:,} | {ms:.0f} | {ntok / ms * 1000:,.0f} | {ms / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
