"""The command line: settings, every check in order, the report, the exit status and the one-line verdict
(the package docstring is its ``--help``)."""
import argparse
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, TextIO

from .archs import count_archs, write_byte_dictionary
from .incremental import check_incremental
from .layer_bench import bench_all
from .node import node_info
from .process import one_line, say
from .report import markdown, strict_json, write_atomically
from .settings import SETTINGS, Config, InputError, RunError, parse_config, raw_settings
from .train import make_data_bin, throughput, train_all


def run_checks(cfg: Config, raw: Mapping[str, str], out_dir: Path) -> Dict:
    """Every check in order; the result dict that becomes check.json."""
    start = time.time()
    work, logs = out_dir / "work", out_dir / "logs"
    for path in (work, logs):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    failures: List[str] = []
    timings: Dict[str, float] = {}
    result: Dict = {"ok": False, "failures": failures, "settings": {**asdict(cfg), "env": dict(raw)},
                    "node": node_info(failures), "timings_s": timings}
    dict_dir = write_byte_dictionary(work / "byte-dict")
    say(f"1/4 parameter counts of {', '.join(cfg.archs)}")
    result["archs"] = count_archs(cfg.archs, dict_dir, cfg.tokens, failures)
    timings["archs"] = round(time.time() - start, 1)
    result["corpus"], result["train"] = None, []
    if cfg.train_archs and cfg.precisions:
        say(f"2/4 corpus: {cfg.corpus_bytes:,} synthetic bytes through fairseq-preprocess")
        result["corpus"] = make_data_bin(cfg, work, logs)
        result["train"] = train_all(cfg, Path(result["corpus"]["data_bin"]), work, logs, failures)
    result["throughput"] = throughput(result["train"], cfg.train_archs, cfg.precisions)
    timings["train"] = round(time.time() - start - sum(timings.values()), 1)
    say(f"3/4 incremental == parallel on {cfg.device}")
    result["incremental"] = check_incremental(cfg, dict_dir, failures)
    timings["incremental"] = round(time.time() - start - sum(timings.values()), 1)
    say("4/4 layer benchmark")
    result["bench"] = bench_all(cfg, work, logs, failures)
    timings["bench"] = round(time.time() - start - sum(timings.values()), 1)
    result["ok"] = not failures
    result["seconds"] = round(time.time() - start, 1)
    return result


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    settings = "\n".join(f"  {s.name:<20} {s.gpu!r}" + (f" / {s.smoke!r}" if s.smoke != s.gpu else "") + f": {s.help}"
                         for s in SETTINGS)
    description = importlib.import_module(__package__).__doc__ + "\nSettings (GPU default / CPU smoke default):\n"
    p = argparse.ArgumentParser(prog=f"python -m {__package__}", description=description + settings,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where check.json, check.md, logs/ and work/ go")
    p.add_argument("--error-fd", type=int, default=2,
                   help="file descriptor for the one-line verdict on failure (recipes/check_gpu.sh passes the "
                        "caller's stderr here and sends everything else to stdout)")
    return p.parse_args(argv)


def error_stream(fd: int) -> TextIO:
    return sys.__stderr__ if fd == 2 else os.fdopen(fd, "w")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()  # the subprocesses run in OUT_DIR/work
    errors = error_stream(args.error_fd)
    sys.stderr = sys.stdout  # warnings, logging and tracebacks to stdout: stderr keeps the verdict only
    try:
        import torch
        cuda = torch.cuda.is_available()
        raw = raw_settings(os.environ, smoke=os.environ.get("CHECK_DEVICE", "cuda" if cuda else "cpu") == "cpu")
        cfg = parse_config(raw, cuda)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("check.json", "check.md"):  # an earlier run's verdict must not pass for this one's
            (args.out / name).unlink(missing_ok=True)
        say(("CPU smoke mode: torch sees no CUDA device" if cfg.smoke else f"GPU mode on {cfg.device}") + f" -> {args.out}")
        result = run_checks(cfg, raw, args.out)
    except (InputError, RunError) as e:
        print(f"error: {one_line(e)}", file=errors, flush=True)
        return 2
    except Exception as e:  # noqa: BLE001 - anything else: the traceback to stdout, one line to stderr
        traceback.print_exc(file=sys.stdout)
        print(f"error: the check could not finish: {type(e).__name__}: {one_line(e)} (traceback on stdout)",
              file=errors, flush=True)
        return 2
    write_atomically(args.out / "check.md", markdown(result))
    write_atomically(args.out / "check.json", json.dumps(strict_json(result), indent=1, allow_nan=False) + "\n")
    say(f"{'PASSED' if result['ok'] else 'FAILED'}: wrote {args.out / 'check.json'} and {args.out / 'check.md'}")
    if not result["ok"]:
        print(f"error: {len(result['failures'])} check(s) failed: {one_line('; '.join(result['failures']))} "
              f"(see {args.out / 'check.md'})", file=errors, flush=True)
        return 1
    return 0
