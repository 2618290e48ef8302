"""Check 4, **bench**: ``python -m fairseq_focus.tools.bench`` over the check's layers and lengths, per precision."""
import json
import sys
from pathlib import Path
from typing import Dict, List

from .process import last_line, run_logged, say
from .settings import BENCH_TINY_FLAGS, Config
from .train import no_bf16_units, skip_reason


def bench_command(cfg: Config, dtype: str, out_dir: Path) -> List[str]:
    cmd = [sys.executable, "-m", "fairseq_focus.tools.bench", "--device", cfg.device,
           "--lengths", ",".join(map(str, cfg.lengths)), "--layers", ",".join(cfg.bench_layers),
           "--model-lengths", "", "--out", str(out_dir)]
    return cmd + (BENCH_TINY_FLAGS if cfg.tiny else []) + (["--autocast-bf16"] if dtype == "bf16" else [])


def bench_one(cfg: Config, dtype: str, work: Path, logs: Path) -> Dict:
    if dtype == "bf16" and no_bf16_units(cfg.device):
        return {"dtype": dtype, "status": "skipped", "reason": skip_reason("bf16", cfg.device), "rows": [], "errors": []}
    out_dir = work / f"bench-{dtype}"
    log = logs / f"bench-{dtype}.log"
    returncode = run_logged(bench_command(cfg, dtype, out_dir), log, work)
    result = {"dtype": dtype, "returncode": returncode, "log": str(log), "rows": []}
    if (out_dir / "bench.json").is_file():
        result["rows"] = [{k: v for k, v in r.items() if k != "times"}
                          for r in json.loads((out_dir / "bench.json").read_text())["layers"]]
        result["json"] = str(out_dir / "bench.json")
    errors = [f"{r['layer']} L={r['length']}: {r['error']}" for r in result["rows"] if "error" in r]
    if returncode != 0:
        errors.insert(0, f"bench exited {returncode}: {last_line(log)}")
    result.update(status="failed" if errors else "passed", errors=errors)
    return result


def bench_all(cfg: Config, work: Path, logs: Path, failures: List[str]) -> Dict[str, Dict]:
    results = {}
    if not cfg.lengths:
        return results
    for dtype in cfg.bench_dtypes:
        say(f"bench {dtype}: {', '.join(cfg.bench_layers)} at L = {', '.join(map(str, cfg.lengths))}")
        results[dtype] = bench_one(cfg, dtype, work, logs)
        if results[dtype]["errors"]:
            failures.append(f"bench {dtype}: {'; '.join(results[dtype]['errors'])} (log {results[dtype]['log']})")
    return results
