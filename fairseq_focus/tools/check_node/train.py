"""Check 2, **train**: a synthetic byte corpus through fairseq-preprocess, then a short fairseq-train run per
arch and precision, each judged by its log (exit 0, a finite last loss below the first), and the
whole-step throughput per precision."""
import json
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

from .process import last_line, run_logged, say, tool
from .settings import THROUGHPUT_RATIOS, TRANSFORMER_ARCH, USER_DIR, Config, RunError, model_flags


def synthetic_bytes(num_bytes: int, seed: int) -> bytes:
    """Random-ish bytes with structure: 64 words of 2-7 random bytes, each followed by one of 3 fixed
    successors, separated by a space (a newline one time in 10), with 5 % uniform noise bytes."""
    rng = random.Random(seed)
    words = [bytes(rng.randrange(256) for _ in range(rng.randint(2, 7))) for _ in range(64)]
    successors = [rng.sample(range(len(words)), 3) for _ in words]
    out, word = bytearray(), 0
    while len(out) < num_bytes:
        out += words[word]
        if rng.random() < 0.05:
            out.append(rng.randrange(256))
        out.append(10 if rng.random() < 0.1 else 32)
        word = rng.choice(successors[word])
    return bytes(out[:num_bytes])


def make_data_bin(cfg: Config, work: Path, logs: Path) -> Dict:
    """The synthetic corpus split 90/5/5, binarized by fairseq-preprocess into work/data-bin."""
    from ...data.byte_codec import bytes_to_lines
    from ...data.byte_corpus import split
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    data = synthetic_bytes(cfg.corpus_bytes, cfg.seed)
    parts = split(data)
    for name, part in parts.items():
        (corpus / f"{name}.txt").write_text(bytes_to_lines(part))
    data_bin = work / "data-bin"
    cmd = [tool("fairseq-preprocess"), "--only-source", "--trainpref", str(corpus / "train.txt"),
           "--validpref", str(corpus / "valid.txt"), "--testpref", str(corpus / "test.txt"),
           "--destdir", str(data_bin), "--workers", str(max(1, min(8, (os.cpu_count() or 1) // 2)))]
    status = run_logged(cmd, logs / "preprocess.log", work)
    if status != 0:
        raise RunError(f"fairseq-preprocess failed (exit {status}); see {logs / 'preprocess.log'}")
    vocabulary = sum(1 for _ in open(data_bin / "dict.txt")) + 4
    return {"data_bin": str(data_bin), "bytes": len(data), "vocabulary": vocabulary,
            **{f"{name}_bytes": len(part) for name, part in parts.items()}}


def precision_flags(precision: str, fp16_flag: str, arch: str) -> List[str]:
    """bf16: the Focus model's --autocast-bf16; for transformer_lm, the focus_lm task's --task-autocast-bf16."""
    bf16 = "--task-autocast-bf16" if arch == TRANSFORMER_ARCH else "--autocast-bf16"
    return {"fp32": [], "bf16": [bf16], "fp16": [fp16_flag]}[precision]


def no_bf16_units(device: str) -> bool:
    """A GPU older than Ampere: --autocast-bf16 refuses it (ops/precision.py)."""
    import torch
    return device == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False)


def skip_reason(precision: str, device: str) -> Optional[str]:
    if precision == "fp16" and device != "cuda":
        return "fairseq's --fp16 and --amp need CUDA; no CUDA device here"
    if precision == "bf16" and no_bf16_units(device):
        return "this GPU has no bfloat16 units (--autocast-bf16 refuses it); train in fp16"
    return None


def log_interval(steps: int) -> int:
    """About 20 logged points per run, so the first and the last are averages over a few updates."""
    return max(1, steps // 20)


def train_command(cfg: Config, arch: str, precision: str, data_bin: Path, save_dir: Path) -> List[str]:
    """fairseq-train for a short run: inverse_sqrt warmup, clip-norm 0.25, no checkpoints, JSON logs."""
    warmup = max(1, min(50, cfg.steps // 5))
    cmd = [tool("fairseq-train"), str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm", "--arch", arch,
           "--sample-break-mode", "none", "--tokens-per-sample", str(cfg.tokens),
           "--max-tokens", str(cfg.tokens * cfg.batch), "--required-batch-size-multiple", "1",
           "--criterion", "cross_entropy", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.25",
           "--lr", str(cfg.lr), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(warmup),
           "--warmup-init-lr", "1e-7", "--max-update", str(cfg.steps), "--stop-time-hours", str(cfg.train_minutes / 60),
           "--seed", str(cfg.seed), "--num-workers", "0", "--distributed-world-size", "1",
           "--no-save", "--save-dir", str(save_dir), "--disable-validation",
           "--log-format", "json", "--log-interval", str(log_interval(cfg.steps))]
    if cfg.device == "cpu":
        cmd.append("--cpu")
    return cmd + precision_flags(precision, cfg.fp16_flag, arch) + model_flags(arch, cfg.tiny)


LOG_ROW = re.compile(r"\| (train_inner|train) \| (\{.*\})\s*$")
PARAMS = re.compile(r"focus_lm: (\d+) parameters|num\. shared model params: ([\d,]+)")  # the first: Focus archs


def parse_train_log(text: str) -> Dict:
    """What a fairseq-train --log-format json log says: the train_inner losses (base 2) and updates, the
    final loss scale and words/s, overflow notes, the parameter count, a stop by the time cap."""
    inner = [json.loads(m.group(2)) for m in map(LOG_ROW.search, text.splitlines()) if m and m.group(1) == "train_inner"]
    params = PARAMS.search(text)
    return {
        "losses": [float(row["loss"]) for row in inner if "loss" in row],
        "updates": int(float(inner[-1]["num_updates"])) if inner and "num_updates" in inner[-1] else 0,
        "loss_scale": float(inner[-1]["loss_scale"]) if inner and "loss_scale" in inner[-1] else None,
        "wps": float(inner[-1]["wps"]) if inner and "wps" in inner[-1] else None,
        "overflows": sum("overflow detected" in line for line in text.splitlines()),
        "params": int((params.group(1) or params.group(2)).replace(",", "")) if params else None,
        "stopped_by_time_cap": "cumulative_training_time" in text,
    }


def judge_run(parsed: Dict, returncode: int, said: str = "") -> Optional[str]:
    """Why a run failed, or None: it must exit 0 and log a finite last loss below its first."""
    losses = parsed["losses"]
    if returncode != 0:
        return f"fairseq-train exited {returncode}" + (f": {said}" if said else "")
    if len(losses) < 2:
        return f"only {len(losses)} logged train loss(es); need 2 to see it fall"
    if not math.isfinite(losses[-1]):
        return f"final loss is {losses[-1]}"
    if not losses[-1] < losses[0]:
        return f"loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})"
    return None


def train_run(cfg: Config, arch: str, precision: str, data_bin: Path, work: Path, logs: Path) -> Dict:
    """One fairseq-train run, parsed and judged."""
    row = {"arch": arch, "precision": precision, "flags": precision_flags(precision, cfg.fp16_flag, arch)}
    reason = skip_reason(precision, cfg.device)
    if reason is not None:
        return {**row, "status": "skipped", "reason": reason}
    log = logs / f"train-{arch}-{precision}.log"
    start = time.time()
    returncode = run_logged(train_command(cfg, arch, precision, data_bin, work / f"save-{arch}-{precision}"), log, work)
    parsed = parse_train_log(log.read_text(errors="replace"))
    problem = judge_run(parsed, returncode, last_line(log) if returncode != 0 else "")
    row.update(parsed, returncode=returncode, seconds=round(time.time() - start, 1), log=str(log),
               first_loss=parsed["losses"][0] if parsed["losses"] else None,
               last_loss=parsed["losses"][-1] if parsed["losses"] else None,
               status="failed" if problem else "passed", reason=problem)
    return row


def train_all(cfg: Config, data_bin: Path, work: Path, logs: Path, failures: List[str]) -> List[Dict]:
    rows = []
    for arch in cfg.train_archs:
        for precision in cfg.precisions:
            say(f"training {arch} in {precision} ({cfg.steps} updates of {cfg.batch} x {cfg.tokens} tokens)")
            rows.append(train_run(cfg, arch, precision, data_bin, work, logs))
            r = rows[-1]
            say(f"  {r['status']}" + (f": loss {r['first_loss']} -> {r['last_loss']}" if r.get("losses") else "")
                + (f" ({r['reason']})" if r.get("reason") else ""))
            if r["status"] == "failed":
                failures.append(f"train {arch} {precision}: {r['reason']} (log {r['log']})")
    return rows


def throughput(train_rows: List[Dict], archs: List[str], precisions: List[str]) -> List[Dict]:
    """Per precision: each arch's whole-step tokens/s (fairseq's wps over the last logged interval, passed
    runs only) and the THROUGHPUT_RATIOS between archs of this run in that precision (None: a side missing)."""
    wps = {(r["arch"], r["precision"]): r.get("wps") for r in train_rows if r["status"] == "passed"}
    rows: List[Dict] = []
    if not train_rows:
        return rows
    for precision in precisions:
        speeds = {arch: wps.get((arch, precision)) for arch in archs}
        ratios = {f"{a} / {b}": speeds[a] / speeds[b] if speeds.get(a) and speeds.get(b) else None
                  for a, b in THROUGHPUT_RATIOS}
        rows.append({"precision": precision, "tokens_per_s": speeds, "ratios": ratios})
    return rows
