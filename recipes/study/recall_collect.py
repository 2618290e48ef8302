"""The recall study's table: one row per (variant, L) from recall_grid.sh's runs.

    python recipes/study/recall_collect.py WORK [--out table.md]

Reads WORK/<variant>/<arch>/L<L>/train.log through recipes/associative_recall/collect.py's reader and
prints, per run: held-out accuracy (%) after the last validation (best over validations in
parentheses), the accuracy on queries whose key lies before / inside the query's attention chunk,
the "most frequent value" rule on the same held-out examples, the updates and epochs reached and the
run's wall-clock seconds. "—" where a split is empty or a number was not logged.
"""
import importlib.util
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("recall_table", HERE.parent / "associative_recall" / "collect.py")
recall_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recall_table)

HEAD = ("L", "model", "accuracy: last (best)", "before chunk", "inside chunk", "freq rule: all / before",
        "updates", "epochs", "wall s")


def rows(work: Path):
    """(L, variant, run) for every run directory with a validation, sorted by L then variant name."""
    found = []
    for run_dir in work.glob("*/*/L*"):
        match = re.fullmatch(r"L(\d+)", run_dir.name)
        run = recall_table.read_run(run_dir) if match else None
        if run is not None:
            found.append((int(match.group(1)), run_dir.parent.parent.name, run))
    return sorted(found, key=lambda r: (r[0], r[1]))


def table(work: Path) -> str:
    found = rows(work)
    if not found:
        raise SystemExit(f"error: no train.log with validation accuracy under {work}/<variant>/<arch>/L<L>/")
    pct, lines = recall_table._pct, ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for length, name, r in found:
        cells = [str(length), name, f"{r['last']:.1f} ({r['best']:.1f})", pct(r["accuracy_before"]),
                 pct(r["accuracy_inside"]), f"{pct(r['freq_rule'])} / {pct(r['freq_rule_before'])}",
                 "—" if r["updates"] is None else str(r["updates"]), str(r["epochs"]),
                 "—" if r["wall"] is None else str(r["wall"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return recall_table.table_cli(table, __doc__.splitlines()[0], "the WORK directory recall_grid.sh wrote into", argv)


if __name__ == "__main__":
    sys.exit(main())
