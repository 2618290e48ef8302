"""Collect the MQAR grid: the table (best over learning rates per model, cell and width) and the plot.

    python recipes/mqar/collect.py WORK [--out table.md] [--plot accuracy_vs_state.png]
    python recipes/mqar/collect.py WORK --below 90 --at-width 64      # what grid.sh WIDEN=1 reruns at 128

Reads WORK/<variant>/L<L>-N<N>/d<D>-lr<lr>/ as grid.sh writes them: train.log (fairseq JSON lines), test.log
(fairseq-validate on the test split), times (wall, user, system seconds per session), done, and the model
config stored in checkpoint_last.pt (for the state size: state_size.py). Per (variant, cell, width) the row
is the lr whose last validation accuracy is highest (ties: the fewer updates); "test" is that run's test
accuracy (the model of its last validation). Accuracies in percent of query positions. A run still going
shows "…" after its accuracy. The plot: test accuracy (valid where no test yet) against the state per
layer (fixed + length-dependent terms at the cell's L, log axis), one panel per cell, one series per variant.
"""
import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # state_size, and this checkout's fairseq_focus (not an installed one)
from state_size import state_per_layer  # noqa: E402

CELL = re.compile(r"L(\d+)-N(\d+)")
RUN = re.compile(r"d(\d+)-lr(.+)")


@dataclass
class Run:
    variant: str
    seq_len: int
    pairs: int
    width: int
    lr: str
    path: Path
    valid: Optional[float]
    best_valid: Optional[float]
    epochs: Optional[int]
    updates: Optional[int]
    test: Optional[float]
    cpu_seconds: Optional[float]
    wall_seconds: Optional[float]
    done: bool


def _json_lines(text: str, key: str) -> List[Dict]:
    return [json.loads(line[line.index("{"):]) for line in text.splitlines() if f'"{key}"' in line and "{" in line]


def read_run(path: Path, variant: str, seq_len: int, pairs: int, width: int, lr: str) -> Run:
    log = path / "train.log"
    valid = _json_lines(log.read_text(), "valid_accuracy") if log.exists() else []
    test_log = path / "test.log"
    test = _json_lines(test_log.read_text(), "test_accuracy") if test_log.exists() else []  # fairseq-validate's tag
    times = path / "times"
    sessions = [line.split() for line in times.read_text().splitlines() if re.fullmatch(r"[\d.]+ [\d.]+ [\d.]+", line)] \
        if times.exists() else []
    accs = [float(v["valid_accuracy"]) for v in valid]
    return Run(variant, seq_len, pairs, width, lr, path,
               valid=accs[-1] if accs else None, best_valid=max(accs) if accs else None,
               epochs=int(valid[-1]["epoch"]) if valid else None,
               updates=int(float(valid[-1]["valid_num_updates"])) if valid else None,
               test=float(test[-1]["test_accuracy"]) if test else None,
               cpu_seconds=sum(float(s[1]) + float(s[2]) for s in sessions) if sessions else None,
               wall_seconds=sum(float(s[0]) for s in sessions) if sessions else None,
               done=(path / "done").exists())


def find_runs(work: Path) -> List[Run]:
    runs = []
    for path in sorted(work.glob("*/L*-N*/d*-lr*")):
        cell, run = CELL.fullmatch(path.parent.name), RUN.fullmatch(path.name)
        if cell and run and path.is_dir():
            runs.append(read_run(path, path.parent.parent.name, int(cell.group(1)), int(cell.group(2)),
                                 int(run.group(1)), run.group(2)))
    return runs


def best_runs(runs: List[Run]) -> Dict[Tuple[str, int, int, int], Run]:
    """Per (variant, L, N, D): the run with the highest last validation accuracy (fewer updates on ties)."""
    best = {}
    for run in runs:
        if run.valid is None:
            continue
        key = (run.variant, run.seq_len, run.pairs, run.width)
        old = best.get(key)
        if old is None or (run.valid, -(run.updates or 0)) > (old.valid, -(old.updates or 0)):
            best[key] = run
    return best


def model_state(run: Run) -> Optional[Dict[str, int]]:
    """The state per layer of a run's model, from the config in its checkpoint; None without a checkpoint."""
    checkpoint = run.path / "checkpoint_last.pt"
    if not checkpoint.exists():
        return None
    from fairseq import checkpoint_utils
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY
    import fairseq_focus  # noqa: F401  registers the archs
    cfg = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))["cfg"]["model"]
    arch = cfg["_name"] if "_name" in cfg else cfg.arch
    return state_per_layer(ARCH_MODEL_NAME_REGISTRY[arch], cfg, run.seq_len)


def _pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(runs: List[Run], states: Dict[Path, Optional[Dict[str, int]]]) -> str:
    lrs: Dict[Tuple[str, int, int, int], List[str]] = {}
    for run in runs:
        lrs.setdefault((run.variant, run.seq_len, run.pairs, run.width), []).append(run.lr + ("" if run.done else "…"))
    head = ["variant", "L", "N", "D", "best lr", "valid acc", "test acc", "epochs", "updates", "CPU s",
            "state/layer fixed", "state/layer growing", "lrs run (… = not done)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, run in sorted(best_runs(runs).items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0], kv[0][3])):
        state = states.get(run.path)
        rows.append("| " + " | ".join([
            run.variant, str(run.seq_len), str(run.pairs), str(run.width), run.lr,
            _pct(run.valid) + ("" if run.done else "…"), _pct(run.test), str(run.epochs), str(run.updates),
            "—" if run.cpu_seconds is None else f"{run.cpu_seconds:.0f}",
            "—" if state is None else str(state["fixed"]), "—" if state is None else str(state["grows"]),
            " ".join(sorted(lrs[key], key=lambda s: float(s.rstrip("…")))),
        ]) + " |")
    return "\n".join(rows) + "\n"


def plot(runs: List[Run], states: Dict[Path, Optional[Dict[str, int]]], out: Path) -> None:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's logging setup lets its DEBUG lines through
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    best = best_runs(runs)
    cells = sorted({(k[1], k[2]) for k in best})
    variants = sorted({k[0] for k in best})
    colours = {v: f"C{i % 10}" for i, v in enumerate(variants)}  # one colour per model in every panel
    fig, axes = plt.subplots(1, len(cells), figsize=(4.5 * len(cells), 3.8), squeeze=False)
    for ax, (seq_len, pairs) in zip(axes[0], cells):
        xs = []
        for variant in variants:
            points = sorted((states[r.path]["total"], r.test if r.test is not None else r.valid)
                            for k, r in best.items() if k[0] == variant and k[1:3] == (seq_len, pairs)
                            and states.get(r.path) is not None)
            if points:
                ax.plot(*zip(*points), marker="o", color=colours[variant])
                xs += [x for x, _ in points]
        ax.set_xscale("log")
        if xs:  # whole decades, so that the axis has labelled ticks however close the points are
            ax.set_xlim(10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)) + 1e-9))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(-2, 102)
        ax.set_title(f"L = {seq_len}, {pairs} pairs")
        ax.set_xlabel("state per layer (numbers)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MQAR accuracy (%)")
    handles = [plt.Line2D([], [], marker="o", color=colours[v], label=v) for v in variants]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(variants), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the shared legend below the panels
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=120)
    tmp.replace(out)


def below(runs: List[Run], threshold: float, width: int) -> List[str]:
    """'variant L N' of every (variant, cell) whose best run at this width stayed under threshold."""
    return [f"{k[0]} {k[1]} {k[2]}" for k, r in sorted(best_runs(runs).items())
            if k[3] == width and r.valid is not None and r.valid < threshold]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the WORK directory grid.sh wrote into")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--plot", type=Path, help="write the accuracy-against-state plot (PNG) to this file")
    parser.add_argument("--below", type=float, help="list the (variant, cell) pairs whose best accuracy is under this")
    parser.add_argument("--at-width", type=int, default=64, help="the width --below looks at")
    args = parser.parse_args(argv)
    if not args.work.is_dir():
        print(f"error: {args.work} is not a directory", file=sys.stderr)
        return 2
    runs = find_runs(args.work)
    if args.below is not None:
        print("\n".join(below(runs, args.below, args.at_width)))
        return 0
    if not any(r.valid is not None for r in runs):
        print(f"error: no train.log with a validation accuracy under {args.work}/<variant>/L<L>-N<N>/d<D>-lr<lr>/",
              file=sys.stderr)
        return 2
    states = {r.path: model_state(r) for r in best_runs(runs).values()}
    text = table(runs, states)
    print(text, end="")
    if args.out:
        write_atomic(args.out, text)
    if args.plot:
        plot(runs, states, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
