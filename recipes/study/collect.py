"""The study's table: test BPC per variant and seed, parameters, updates and wall-clock.

    python recipes/study/collect.py WORK [--out table.md]

Reads WORK/runs/<variant>/seed<k>/result.json (written by run.py only when a run's training and
evaluation both succeeded) and prints one markdown row per variant, in the order of
WORK/variants.txt: parameters, updates, test BPC of every seed, their mean, and the mean training
and evaluation seconds per run. Variants listed but without results are "—". Runs scored at more than
one block length (run.py --eval-blocks, e.g. --budget scale4x) get a column per further length and seed.
"""
import importlib.util
import json
import statistics
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "recall_table", Path(__file__).resolve().parent.parent / "associative_recall" / "collect.py")
recall_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recall_table)  # for its table_cli


def table(work: Path) -> str:
    results = {}
    for path in sorted(work.glob("runs/*/seed*/result.json")):
        r = json.loads(path.read_text())
        results.setdefault(r["variant"], []).append(r)
    if not results:
        raise SystemExit(f"error: no runs/*/seed*/result.json under {work}")
    order_file = work / "variants.txt"
    order = [line.split()[0] for line in order_file.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")] if order_file.exists() else []
    order += sorted(set(results) - set(order))
    seeds = sorted({r["seed"] for rs in results.values() for r in rs})
    trained = {str(r["budget"]["tokens_per_sample"]) for rs in results.values() for r in rs}
    extra = sorted({b for rs in results.values() for r in rs for b in r.get("test_bpc_by_block", {})} - trained, key=int)
    head = ["variant", "params", "updates"] + [f"BPC seed {s}" for s in seeds] + ["mean BPC"]
    head += [f"BPC@{b} seed {s}" for b in extra for s in seeds] + ["train s", "eval s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        rs = {r["seed"]: r for r in results.get(name, [])}
        if not rs:
            rows.append("| " + " | ".join([name] + ["—"] * (len(head) - 1)) + " |")
            continue
        any_r = next(iter(rs.values()))
        updates = "/".join(str(u) for u in sorted({r["updates"] for r in rs.values()}))
        cells = [name, f"{any_r['params']:,}", updates]
        cells += [f"{rs[s]['test_bpc']:.4f}" if s in rs else "—" for s in seeds]
        cells.append(f"{statistics.mean(r['test_bpc'] for r in rs.values()):.4f}")
        for b in extra:
            cells += [f"{rs[s]['test_bpc_by_block'][b]:.4f}" if b in rs.get(s, {}).get("test_bpc_by_block", {}) else "—"
                      for s in seeds]
        cells.append(f"{statistics.mean(r['train_seconds'] for r in rs.values()):.0f}")
        cells.append(f"{statistics.mean(r['eval_seconds'] for r in rs.values()):.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    return recall_table.table_cli(table, __doc__.splitlines()[0], "the WORK directory run.py wrote into", argv)


if __name__ == "__main__":
    sys.exit(main())
