"""Collect associative-recall accuracies into a table like the paper's Table 1.

    python recipes/associative_recall/collect.py WORK_DIR [--out table.md]

Reads WORK_DIR/<arch>/L<L>/train.log (fairseq's ``--log-format json`` output, as train.sh writes
it) and prints one markdown row per L: for each model the validation accuracy (%) on the held-out
examples after the last epoch, the best over epochs in parentheses, then the epochs and the
wall-clock seconds each run took. A missing run is "—". The last two columns come from the last
validation's split (``fairseq_focus/tasks/associative_recall.py``): each model's accuracy on the
queries whose key lies inside / before the query's attention chunk, and the "most frequent value"
rule's accuracy overall / inside / before; "—" where a split is empty or was not logged.
"""
import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, Optional

MODELS = (("focus_recall", "Focus + global attn"), ("focus_recall_paper", "Focus"), ("focus_recall_static", "Focus-H"),
          ("focus_recall_ema", "MEGA-EMA"), ("focus_recall_transformer", "Transformer"))
SPLIT_KEYS = ("accuracy_inside", "accuracy_before", "freq_rule", "freq_rule_inside", "freq_rule_before")


def read_run(run_dir: Path) -> Optional[Dict]:
    """{'last': acc, 'best': acc, 'epochs': n, 'updates': n, 'wall': s, splits} from one run's train.log, or None."""
    log = run_dir / "train.log"
    if not log.exists():
        return None
    accs, stats = [], {}
    for line in log.read_text().splitlines():
        if '"valid_accuracy"' in line:  # one JSON object per validation (printed twice at an epoch's end)
            stats = json.loads(line[line.index("{"):])
            accs.append((int(stats["epoch"]), float(stats["valid_accuracy"])))
    if not accs:
        return None
    wall_file = run_dir / "wall_seconds"
    wall = int(wall_file.read_text()) if wall_file.exists() else None
    split = {key: float(stats[f"valid_{key}"]) if f"valid_{key}" in stats else None for key in SPLIT_KEYS}
    updates = int(float(stats["valid_num_updates"])) if "valid_num_updates" in stats else None
    return {"last": accs[-1][1], "best": max(a for _, a in accs), "epochs": accs[-1][0], "updates": updates,
            "wall": wall, **split}


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(work: Path) -> str:
    runs = {}
    for run_dir in work.glob("*/L*"):
        match = re.fullmatch(r"L(\d+)", run_dir.name)
        result = read_run(run_dir) if match else None
        if result is not None:
            runs[(run_dir.parent.name, int(match.group(1)))] = result
    if not runs:
        raise SystemExit(f"error: no train.log with validation accuracy under {work}/<arch>/L<L>/")
    lengths = sorted({length for _, length in runs})
    head = ["L"] + [name for _, name in MODELS] + ["epochs", "wall-clock (s) per model",
                                                   "inside / before chunk per model", "freq rule: all / inside / before"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for length in lengths:
        cells, epochs, walls, splits, rule = [str(length)], set(), [], [], None
        for arch, _ in MODELS:
            r = runs.get((arch, length))
            cells.append("—" if r is None else f"{r['last']:.1f} ({r['best']:.1f})")
            if r is not None:
                epochs.add(r["epochs"])
                walls.append("?" if r["wall"] is None else str(r["wall"]))
                splits.append(f"{_pct(r['accuracy_inside'])}/{_pct(r['accuracy_before'])}")
                if rule is None and r["freq_rule"] is not None:  # the same held-out set for every model
                    rule = " / ".join(_pct(r[k]) for k in ("freq_rule", "freq_rule_inside", "freq_rule_before"))
            else:
                walls.append("—")
                splits.append("—")
        cells += ["/".join(str(e) for e in sorted(epochs)), " / ".join(walls), " · ".join(splits), rule or "—"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def table_cli(make_table, description: str, work_help: str, argv=None) -> int:
    """``WORK [--out FILE]``: print make_table(WORK) and, with --out, also write it (atomically)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("work", type=Path, help=work_help)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if not args.work.is_dir():
        print(f"error: {args.work} is not a directory", file=sys.stderr)
        return 2
    text = make_table(args.work)
    print(text, end="")
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    return 0


def main(argv=None) -> int:
    return table_cli(table, __doc__.splitlines()[0], "the WORK directory train.sh wrote into", argv)


if __name__ == "__main__":
    sys.exit(main())
