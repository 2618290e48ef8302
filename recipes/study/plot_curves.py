"""Learning curves of a run.py work directory: valid BPC against updates for every run, in one plot.

    python recipes/study/plot_curves.py WORK --out docs/scale4x-curves.png

Reads WORK/runs/<variant>/seed<k>/train.log (fairseq-train's "valid on '<subset>' subset | … | bpc B | …
| num_updates N" lines, which run.py's --validate-interval-updates asks for; runs still training are
plotted as far as they got) and prints the same numbers as a markdown table, one column per run. A run
that was interrupted and resumed logs some updates twice; the later line wins. Rows in the order of
WORK/variants.txt.
"""
import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

VALID = re.compile(r"valid on '[^']+' subset \|.*?\| bpc ([0-9.]+) \|.*?\| num_updates (\d+)")


def valid_curve(log: Path) -> Dict[int, float]:
    """{update: valid BPC} from one train.log (a later line for the same update replaces an earlier one)."""
    curve = {}
    for line in log.read_text(errors="replace").splitlines():
        m = VALID.search(line)
        if m:
            curve[int(m.group(2))] = float(m.group(1))
    return dict(sorted(curve.items()))


def curves(work: Path) -> List[Tuple[str, Dict[int, float]]]:
    """[(label 'variant seed k', curve)] for every run with at least one validation, in variants.txt order."""
    order_file = work / "variants.txt"
    order = [line.split()[0] for line in order_file.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")] if order_file.exists() else []
    found = []
    for log in work.glob("runs/*/seed*/train.log"):
        variant, seed = log.parent.parent.name, log.parent.name
        curve = valid_curve(log)
        if curve:
            found.append((variant, seed, curve))
    rank = {name: i for i, name in enumerate(order)}
    found.sort(key=lambda r: (rank.get(r[0], len(rank)), r[0], int(r[1][4:]) if r[1][4:].isdigit() else 0))
    return [(f"{variant} {seed.replace('seed', 'seed ')}", curve) for variant, seed, curve in found]


def table(runs: List[Tuple[str, Dict[int, float]]]) -> str:
    updates = sorted({u for _, c in runs for u in c})
    rows = ["| updates | " + " | ".join(label for label, _ in runs) + " |", "|---|" + "---|" * len(runs)]
    for u in updates:
        rows.append(f"| {u} | " + " | ".join(f"{c[u]:.4f}" if u in c else "—" for _, c in runs) + " |")
    return "\n".join(rows) + "\n"


def plot(runs, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, c in runs:
        ax.plot(list(c), list(c.values()), marker="o", markersize=3, label=label)
    ax.set_xlabel("updates")
    ax.set_ylabel("valid BPC (bits per byte)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="the WORK directory run.py wrote into")
    parser.add_argument("--out", type=Path, default=None, help="the plot (PNG); without it, only the table")
    parser.add_argument("--title", default="valid BPC every 100 updates")
    args = parser.parse_args(argv)
    runs = curves(args.work)
    if not runs:
        print(f"error: no train.log with a validation line under {args.work}/runs", file=sys.stderr)
        return 1
    print(table(runs), end="")
    if args.out is not None:
        plot(runs, args.out, args.title)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
