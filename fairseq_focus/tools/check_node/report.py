"""check.md (the verdict and one table per check) and check.json (strict JSON), each written at once."""
import math
import os
from pathlib import Path
from typing import Dict, List

from .settings import BYTE_DICT_SIZE


def fmt(value, spec: str = "") -> str:
    """A table cell: '—' for a missing value."""
    return "—" if value is None else format(value, spec)


def throughput_markdown(rows: List[Dict], tokens: int) -> List[str]:
    """check.md's table of ``throughput`` rows: one line per precision."""
    if not rows:
        return []
    archs, ratios = list(rows[0]["tokens_per_s"]), list(rows[0]["ratios"])
    out = ["", f"## Whole training step, tokens/s at {tokens} tokens per sample (fairseq's wps over the last "
               "logged interval; each ratio within this run and precision)", "",
           "| precision | " + " | ".join(archs + [r.replace(" / ", " ÷ ") for r in ratios]) + " |",
           "|---" * (1 + len(archs) + len(ratios)) + "|"]
    for r in rows:
        cells = [fmt(r["tokens_per_s"][a], ".0f") for a in archs]
        cells += ["—" if r["ratios"][k] is None else f"×{r['ratios'][k]:.2f}" for k in ratios]
        out.append(f"| {r['precision']} | " + " | ".join(cells) + " |")
    return out


def markdown(result: Dict) -> str:
    """check.md: the verdict, then one table per check."""
    from ..bench import table as bench_table  # torch is imported only once the checks have run
    node, cfg = result["node"], result["settings"]
    verdict = "PASSED" if result["ok"] else "FAILED"
    mode = "CPU smoke mode (no CUDA device: tiny sizes, fp16 skipped)" if cfg["smoke"] else f"GPU mode on {cfg['device']}"
    out = [f"# Node check: {verdict}", "",
           f"{mode}; host {node['host']}, {node.get('gpu', 'no GPU')}, torch {node['torch']} (CUDA {node['torch_cuda']}), "
           f"fairseq {node['fairseq']}, Python {node['python']}, {node['date']}; {result['seconds']:.0f} s.", ""]
    if result["failures"]:
        out += ["## Failures", ""] + [f"* {f}" for f in result["failures"]] + [""]
    out += [f"## Parameter counts ({BYTE_DICT_SIZE + 4} byte tokens, --tokens-per-sample {cfg['tokens']}, "
            "built as fairseq-train builds them)", "",
            "| arch | parameters |", "|---|---|"]
    out += [f"| {r['arch']} | {fmt(r['params'], ',') if r['params'] is not None else 'error: ' + r['error']} |"
            for r in result["archs"]]
    corpus = result.get("corpus") or {}
    out += ["", f"## Training ({cfg['steps']} updates of {cfg['batch']} x {cfg['tokens']} tokens, "
                f"{corpus.get('bytes', 0):,}-byte synthetic corpus{', tiny widths' if cfg['tiny'] else ''})", "",
            "| arch | precision | flag | status | params | updates | first loss | last loss | overflows | "
            "final loss scale | words/s | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["train"]:
        out.append(f"| {r['arch']} | {r['precision']} | {' '.join(r['flags']) or '—'} | {r['status']} | "
                   f"{fmt(r.get('params'), ',')} | {fmt(r.get('updates'))} | {fmt(r.get('first_loss'), '.3f')} | "
                   f"{fmt(r.get('last_loss'), '.3f')} | {fmt(r.get('overflows'))} | {fmt(r.get('loss_scale'), 'g')} | "
                   f"{fmt(r.get('wps'), '.0f')} | {r.get('reason') or ('stopped by the time cap' if r.get('stopped_by_time_cap') else '')} |")
    out += throughput_markdown(result.get("throughput", []), cfg["tokens"])
    out += ["", f"## Incremental decoding == parallel forward (fp32, TF32 off, on {cfg['device']})", "",
            "| arch | L | max abs Δ log p | tolerance | status |", "|---|---|---|---|---|"]
    out += [f"| {r['arch']} | {r['length']} | {fmt(r['max_abs_diff'], '.2e') if 'error' not in r else 'error: ' + r['error']} | "
            f"{r['tolerance']:g} | {r['status']} |" for r in result["incremental"]]
    for dtype, bench in result["bench"].items():
        out += ["", f"## Layer benchmark, {dtype} (python -m fairseq_focus.tools.bench"
                    f"{' --autocast-bf16' if dtype == 'bf16' else ''})", ""]
        out += [f"skipped: {bench['reason']}"] if bench["status"] == "skipped" else [bench_table(bench["rows"])]
        out += [f"* {e}" for e in bench["errors"]]
    return "\n".join(out) + "\n"


def strict_json(value):
    """``value`` with every non-finite float spelled as a string ('nan', 'inf'): check.json stays valid
    JSON for every reader (Python's json would write the non-standard NaN / Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it into place: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
