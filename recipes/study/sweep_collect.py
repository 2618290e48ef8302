"""The lr sweep's table: test BPC of every model (rows) at every lr (columns), seed by seed, from the folders
that recipes/study/lr_sweep.sh writes (WORK/CORPUS-lrLR/runs/<variant>/seed<k>/result.json).

    python recipes/study/sweep_collect.py work/peers [--corpus pydoc] [--variants recipes/study/peers_variants.txt]

Rows follow the variants file; a cell is "—" where the run has not finished. Each row's best lr is in bold
(mean over the seeds it has there). Prints Markdown (docs/RESULTS.md §5).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import read_variants  # noqa: E402


def collect(work: Path, corpus: str):
    """{lr string: {variant: {seed: result}}} from WORK/CORPUS-lr*/."""
    found = {}
    for path in sorted(work.glob(f"{corpus}-lr*/runs/*/seed*/result.json")):
        r = json.loads(path.read_text())
        lr = path.parents[3].name[len(corpus) + 3:]
        found.setdefault(lr, {}).setdefault(r["variant"], {})[r["seed"]] = r
    return found


def table(work: Path, corpus: str, variants: Path) -> str:
    found = collect(work, corpus)
    if not found:
        raise SystemExit(f"error: no {corpus}-lr*/runs/*/seed*/result.json under {work}")
    lrs = sorted(found, key=float)
    names = [n for n, _ in read_variants(variants)]
    names += sorted({v for per in found.values() for v in per} - set(names))
    rows = ["| model | params | " + " | ".join(f"lr {lr}" for lr in lrs) + " |", "|---|---|" + "---|" * len(lrs)]
    for name in names:
        cells, means = [], {}
        for lr in lrs:
            runs = found.get(lr, {}).get(name, {})
            if runs:
                means[lr] = statistics.mean(r["test_bpc"] for r in runs.values())
            cells.append(runs)
        if not means:
            continue
        best = min(means, key=means.get)
        params = next(r["params"] for runs in cells for r in runs.values())
        out = []
        for lr, runs in zip(lrs, cells):
            if not runs:
                out.append("—")
                continue
            text = " / ".join(f"{runs[s]['test_bpc']:.4f}" for s in sorted(runs))
            text += f" (mean {means[lr]:.4f})" if len(runs) > 1 else ""
            out.append(f"**{text}**" if lr == best and len(means) > 1 else text)
        rows.append(f"| {name} | {params:,} | " + " | ".join(out) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--corpus", default="pydoc")
    parser.add_argument("--variants", type=Path, default=HERE / "peers_variants.txt")
    args = parser.parse_args(argv)
    print(table(args.work, args.corpus, args.variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
