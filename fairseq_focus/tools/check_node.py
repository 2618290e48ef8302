"""First-run check of the node you are about to train on: one command, one verdict, every number kept.

    bash recipes/check_gpu.sh [OUT_DIR]                      # the check (default OUT_DIR: check-out)
    python -m fairseq_focus.tools.check_node --out OUT_DIR   # the same, without the wrapper

On a CUDA device it runs the real sizes on one GPU (budgeted for about 15 minutes: six training runs,
each stopped after ``CHECK_TRAIN_MINUTES`` of training even short of ``CHECK_STEPS``, and the bench of
five layers at three lengths in two precisions; the budget is an estimate, not yet timed on a GPU);
where torch sees no CUDA device it runs a CPU *smoke* mode of the very same steps at tiny sizes (a few
minutes), which is what the test suite runs. By default it fills the table of the GPU targets: the
selective (default) and the static carry layer beside MEGA's EMA layer and fairseq's layer, and a whole
training step of ``focus_lm_enwik8`` against ``focus_lm_enwik8_ema`` (MEGA) and fairseq's own
``transformer_lm`` at 4K tokens in bf16 (and fp16). What it checks, in order:

1. **archs**: builds every ``CHECK_ARCHS`` arch through fairseq's own parser, arch defaults and task, as
   ``fairseq-train`` would, for a 256-byte dictionary (260 tokens with fairseq's 4 specials, the
   vocabulary of README's table) at ``--tokens-per-sample CHECK_TOKENS``, and records its parameter
   count; ``transformer_lm`` is built at ``TRANSFORMER_FLAGS`` (pre-norm, tied, sized to within 3 % of
   ``focus_lm_enwik8``). An arch that does not build fails.
2. **train**: writes a synthetic byte corpus (words of random bytes chained by a fixed random successor
   table, 5 % noise bytes: structure a model learns within a few hundred updates), binarizes it with
   ``fairseq-preprocess --only-source`` (one token per byte, data/byte_codec.py) and runs
   ``fairseq-train --user-dir fairseq_focus --task focus_lm`` for every ``CHECK_TRAIN_ARCHS`` arch in
   every ``CHECK_PRECISIONS`` precision: ``bf16`` is the Focus model's ``--autocast-bf16`` and, for
   ``transformer_lm`` (no such model flag), the task's ``--task-autocast-bf16`` (fairseq 0.12's
   ``--bf16`` turns on TPU mode); ``fp16`` is fairseq's ``--fp16`` (``CHECK_FP16_FLAG=--amp`` checks
   what the recipes' ``PRECISION=fp16`` uses instead), ``fp32`` neither. A run passes when fairseq-train
   exits 0 and the last logged train loss is finite and below the first; fp16 runs also report how
   often fairseq logged "overflow detected" and the final loss scale. Without CUDA the fp16 runs are
   skipped, with the reason recorded (fairseq's fp16 and AMP paths need CUDA); so are the bf16 runs
   (and bench) on a GPU without bfloat16 units. One process on one GPU (``--distributed-world-size 1``).
   The report's whole-step table gives each passed run's tokens/s (fairseq's ``wps`` over the last
   logged interval) per precision, with ``focus_lm_enwik8 ÷ focus_lm_enwik8_ema`` and
   ``÷ transformer_lm`` within the run and precision ("—" where a run is missing, skipped or failed).
3. **incremental**: every ``CHECK_INCR_ARCHS`` arch, shrunk to 2 layers with bins and attention chunks
   that a ``CHECK_INCR_LENGTH``-token sequence crosses several times, in eval mode and fp32 (TF32 off)
   on the device: the log-probabilities of the parallel ``decoder(tokens)`` against fairseq's
   incremental contract (the whole prefix each step with an ``incremental_state``, the last position
   back, as tests/test_incremental.py:step_lprobs). Fails above ``CHECK_INCR_TOL`` (max abs difference).
4. **bench**: ``python -m fairseq_focus.tools.bench`` over ``CHECK_BENCH_LAYERS`` at ``CHECK_LENGTHS``,
   once in fp32 and once with ``--autocast-bf16`` (``CHECK_BENCH_DTYPES``). Fails when bench exits
   non-zero or a row holds an error; rows bench skips for their L×L memory are reported, not failed.
5. **node**: fails when ``nvidia-smi`` lists GPUs that torch cannot see (a CPU build of torch).

Writes OUT_DIR/check.json (every number) and OUT_DIR/check.md (the tables), each all at once; the logs
of every subprocess go to OUT_DIR/logs/, the corpus and bench outputs to OUT_DIR/work/ (both replaced
by each run). Exit status 0 when every check passed; 1 when one failed (check.json and check.md are
written all the same, ``"ok": false`` and the failures listed); 2 when the settings are wrong or the
check could not finish (then no check.json: one from an earlier run in OUT_DIR is removed as soon as a
run starts). Either way stderr receives one line, ``error: …``; progress, fairseq's chatter and
tracebacks go to stdout.

Settings (environment variables; defaults on a CUDA device / in the CPU smoke mode): see ``SETTINGS``
or ``--help``.
"""
import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, TextIO

REPO = Path(__file__).resolve().parents[2]
USER_DIR = REPO / "fairseq_focus"

ALL_PRECISIONS = ("fp32", "bf16", "fp16")
FP16_FLAGS = ("--fp16", "--amp")
BENCH_DTYPES = ("fp32", "bf16")
# tests/helpers.py:TINY_LM: a model that trains a few updates on a CPU in seconds (CHECK_TINY=1)
TINY_FLAGS = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-hidden-dim", "32",
              "--decoder-ffn-embed-dim", "32", "--decoder-z-dim", "16", "--bin-size", "16", "--chunk-size", "32",
              "--hyper-kernel-size", "64"]
# fairseq's own transformer_lm (arch transformer_lm, task focus_lm), pre-norm with tied embeddings, at about
# focus_lm_enwik8's parameter count: for 260 byte tokens at --tokens-per-sample 4096 (the check's arch
# count), focus_lm_enwik8 has 20,657,144 parameters and this 21,161,984 (x1.024); 6 layers with FFN 2048
# would be 19,048,448 (x0.922). Same width and FFN as focus_lm_enwik8, 10 layers instead of its 8.
TRANSFORMER_ARCH = "transformer_lm"
TRANSFORMER_FLAGS = ["--decoder-layers", "10", "--decoder-embed-dim", "512", "--decoder-input-dim", "512",
                     "--decoder-output-dim", "512", "--decoder-ffn-embed-dim", "1024", "--decoder-attention-heads", "8",
                     "--decoder-normalize-before", "--share-decoder-input-output-embed"]
# its CHECK_TINY=1 widths (TINY_FLAGS are Focus flags that transformer_lm does not know)
TRANSFORMER_TINY_FLAGS = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-input-dim", "32",
                          "--decoder-output-dim", "32", "--decoder-ffn-embed-dim", "64",
                          "--decoder-attention-heads", "2", "--decoder-normalize-before",
                          "--share-decoder-input-output-embed"]
# check.md's whole-step table: tokens/s of the first arch over the second's, same run and precision
THROUGHPUT_RATIOS = (("focus_lm_enwik8", "focus_lm_enwik8_ema"), ("focus_lm_enwik8", TRANSFORMER_ARCH))
# The incremental check's shrink of a full-size arch: 2 layers, bins and chunks a few hundred tokens cross.
SMALL_FLAGS = ["--decoder-layers", "2", "--bin-size", "32", "--chunk-size", "64", "--hyper-kernel-size", "256"]
# bench's widths at CHECK_TINY=1 (those of tests/test_bench.py), one repeat
BENCH_TINY_FLAGS = ["--dim", "32", "--ffn", "64", "--heads", "2", "--zdim", "16", "--value-dim", "32",
                    "--bin-size", "16", "--chunk-size", "32", "--kernel-size", "64", "--repeats", "1"]
BYTE_DICT_SIZE = 256


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default on a CUDA device, in the CPU smoke mode, and what it sets."""
    name: str
    gpu: str
    smoke: str
    help: str


SETTINGS = [
    Setting("CHECK_DEVICE", "cuda", "cpu", "cuda or cpu (default: cuda when torch sees one)"),
    Setting("CHECK_TINY", "0", "1", "1: tiny widths (tests/helpers.py:TINY_LM) for training, incremental and bench"),
    Setting("CHECK_ARCHS", "focus_lm,focus_lm_enwik8,focus_lm_enwik8_mega,focus_lm_enwik8_ema,focus_lm_enwik8_paper,"
            "transformer_lm", "focus_lm,focus_lm_enwik8,focus_lm_enwik8_mega,focus_lm_enwik8_ema,focus_lm_enwik8_paper,"
            "transformer_lm", "archs to build and count (always at their registered sizes; transformer_lm at "
            "TRANSFORMER_FLAGS, about focus_lm_enwik8's count)"),
    Setting("CHECK_TRAIN_ARCHS", "focus_lm_enwik8,focus_lm_enwik8_ema,transformer_lm",
            "focus_lm_enwik8,focus_lm_enwik8_ema,transformer_lm",
            "archs to train ('' skips training): any focus_lm arch, and fairseq's transformer_lm"),
    Setting("CHECK_PRECISIONS", "bf16,fp16", "bf16,fp16", "training precisions out of fp32, bf16, fp16"),
    Setting("CHECK_FP16_FLAG", "--fp16", "--fp16", "fairseq's flag for the fp16 runs: --fp16 or --amp"),
    Setting("CHECK_STEPS", "300", "16", "updates per training run"),
    Setting("CHECK_TOKENS", "4096", "128", "tokens per sample (--tokens-per-sample)"),
    Setting("CHECK_BATCH", "2", "2", "samples per update (--max-tokens = CHECK_BATCH x CHECK_TOKENS)"),
    Setting("CHECK_TRAIN_MINUTES", "1", "0", "cap on each run's training time (--stop-time-hours; 0: none)"),
    Setting("CHECK_LR", "1e-3", "3e-3", "peak learning rate (inverse_sqrt, warmup of steps/5, at most 50)"),
    Setting("CHECK_CORPUS_BYTES", "1000000", "40000", "bytes of synthetic corpus (split 90/5/5)"),
    Setting("CHECK_INCR_ARCHS", "focus_lm,focus_lm_enwik8,focus_lm_enwik8_mega,focus_lm_enwik8_mega_adaptive,focus_lm_enwik8_ema",
            "focus_lm,focus_lm_enwik8,focus_lm_enwik8_mega,focus_lm_enwik8_mega_adaptive,focus_lm_enwik8_ema",
            "archs of the incremental check ('' skips it): the selective and the hypernetwork head, and MEGA"),
    Setting("CHECK_INCR_LENGTH", "300", "70", "tokens decoded one by one in the incremental check"),
    Setting("CHECK_INCR_TOL", "1e-4", "1e-4", "largest allowed |log p| difference, incremental vs parallel (fp32)"),
    Setting("CHECK_LENGTHS", "1024,4096,16384", "64", "bench's L ('' skips the bench)"),
    Setting("CHECK_BENCH_LAYERS",
            "focus-selective-carry,focus-static-carry,focus-adaptive-carry,mega-ema,fairseq-layer",
            "focus-selective-carry,focus-static-carry,fairseq-layer",
            "bench's layers (the selective and the static carry head of the GPU targets; fairseq-layer is its "
            "baseline; add plain-attention for the paper's Table 5 reference)"),
    Setting("CHECK_BENCH_DTYPES", "fp32,bf16", "fp32,bf16", "bench precisions out of fp32, bf16"),
    Setting("CHECK_SEED", "1", "1", "seed of the corpus, the training runs and the incremental tokens"),
]


class InputError(ValueError):
    """A setting that cannot be used: reported before anything is written."""


class RunError(RuntimeError):
    """A step the checks depend on (the corpus, its binarization) could not run."""


@dataclass
class Config:
    device: str
    smoke: bool
    tiny: bool
    archs: List[str]
    train_archs: List[str]
    precisions: List[str]
    fp16_flag: str
    steps: int
    tokens: int
    batch: int
    train_minutes: float
    lr: float
    corpus_bytes: int
    incr_archs: List[str]
    incr_length: int
    incr_tol: float
    lengths: List[int]
    bench_layers: List[str]
    bench_dtypes: List[str]
    seed: int


# ---- settings -------------------------------------------------------------------------------------

def raw_settings(environ: Mapping[str, str], smoke: bool) -> Dict[str, str]:
    """Each setting from the environment, else its default for the mode."""
    return {s.name: environ.get(s.name, s.smoke if smoke else s.gpu).strip() for s in SETTINGS}


def positive_int(name: str, value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def name_list(name: str, value: str, allowed: Sequence[str]) -> List[str]:
    """A comma list, each item out of ``allowed``."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise InputError(f"{name}: unknown {', '.join(repr(u) for u in unknown)}; choose from {', '.join(allowed)}")
    return items


def focus_archs() -> List[str]:
    """Every arch registered for the focus_lm model (importing fairseq_focus registers them)."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY
    import fairseq_focus  # noqa: F401
    return sorted(arch for arch, model in ARCH_MODEL_NAME_REGISTRY.items() if model == "focus_lm")


def model_flags(arch: str, tiny: bool) -> List[str]:
    """An arch's size flags: CHECK_TINY's widths, else its registered size (transformer_lm: its own of both)."""
    if arch == TRANSFORMER_ARCH:
        return TRANSFORMER_TINY_FLAGS if tiny else TRANSFORMER_FLAGS
    return TINY_FLAGS if tiny else []


def parse_config(raw: Mapping[str, str], cuda_available: bool) -> Config:
    """Typed, validated settings; InputError on the first that cannot be used."""
    from . import bench
    device = raw["CHECK_DEVICE"]
    if device not in ("cuda", "cpu"):
        raise InputError(f"CHECK_DEVICE must be cuda or cpu, got {device!r}")
    if device == "cuda" and not cuda_available:
        raise InputError("CHECK_DEVICE=cuda but torch sees no CUDA device")
    if raw["CHECK_TINY"] not in ("0", "1"):
        raise InputError(f"CHECK_TINY must be 0 or 1, got {raw['CHECK_TINY']!r}")
    if raw["CHECK_FP16_FLAG"] not in FP16_FLAGS:
        raise InputError(f"CHECK_FP16_FLAG must be one of {', '.join(FP16_FLAGS)}, got {raw['CHECK_FP16_FLAG']!r}")
    archs = focus_archs()
    cfg = Config(
        device=device, smoke=device == "cpu", tiny=raw["CHECK_TINY"] == "1",
        archs=name_list("CHECK_ARCHS", raw["CHECK_ARCHS"], archs + [TRANSFORMER_ARCH]),
        train_archs=name_list("CHECK_TRAIN_ARCHS", raw["CHECK_TRAIN_ARCHS"], archs + [TRANSFORMER_ARCH]),
        precisions=name_list("CHECK_PRECISIONS", raw["CHECK_PRECISIONS"], ALL_PRECISIONS),
        fp16_flag=raw["CHECK_FP16_FLAG"],
        steps=positive_int("CHECK_STEPS", raw["CHECK_STEPS"]),
        tokens=positive_int("CHECK_TOKENS", raw["CHECK_TOKENS"]),
        batch=positive_int("CHECK_BATCH", raw["CHECK_BATCH"]),
        train_minutes=non_negative_float("CHECK_TRAIN_MINUTES", raw["CHECK_TRAIN_MINUTES"]),
        lr=non_negative_float("CHECK_LR", raw["CHECK_LR"]),
        corpus_bytes=positive_int("CHECK_CORPUS_BYTES", raw["CHECK_CORPUS_BYTES"]),
        incr_archs=name_list("CHECK_INCR_ARCHS", raw["CHECK_INCR_ARCHS"], archs),
        incr_length=positive_int("CHECK_INCR_LENGTH", raw["CHECK_INCR_LENGTH"]),
        incr_tol=non_negative_float("CHECK_INCR_TOL", raw["CHECK_INCR_TOL"]),
        lengths=[positive_int("CHECK_LENGTHS", v) for v in raw["CHECK_LENGTHS"].split(",") if v.strip()],
        bench_layers=name_list("CHECK_BENCH_LAYERS", raw["CHECK_BENCH_LAYERS"], bench.LAYERS),
        bench_dtypes=name_list("CHECK_BENCH_DTYPES", raw["CHECK_BENCH_DTYPES"], BENCH_DTYPES),
        seed=positive_int("CHECK_SEED", raw["CHECK_SEED"]),
    )
    if not cfg.archs:
        raise InputError("CHECK_ARCHS is empty: name at least one arch to build")
    if cfg.lengths and not cfg.bench_layers:
        raise InputError("CHECK_BENCH_LAYERS is empty but CHECK_LENGTHS is not ('' in CHECK_LENGTHS skips the bench)")
    return cfg


# ---- subprocesses -----------------------------------------------------------------------------------

def tool(name: str) -> str:
    """A console script of this Python's environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RunError(f"{name} is neither beside {sys.executable} nor on PATH (install fairseq into this environment)")
    return found


def child_env() -> Dict[str, str]:
    """The environment of every subprocess: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_logged(cmd: List[str], log: Path, cwd: Path) -> int:
    """Run ``cmd`` with stdout and stderr into ``log`` (the command line first); its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env()).returncode


def say(message: str) -> None:
    print(f"[check] {message}", flush=True)


# ---- 1. parameter counts -------------------------------------------------------------------------------

def write_byte_dictionary(directory: Path) -> Path:
    """A data directory holding only dict.txt with the 256 byte symbols (examples/count_params.py's)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dict.txt").write_text("".join(f"{b} 1\n" for b in range(BYTE_DICT_SIZE)))
    return directory


def build_model(arch: str, flags: List[str], data_dir: Path, tokens: int):
    """The model exactly as fairseq-train builds it: its parser, the arch's defaults, the task."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data_dir), "--user-dir", str(USER_DIR), "--task", "focus_lm",
                                                "--arch", arch, "--cpu", "--tokens-per-sample", str(tokens)] + flags)
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task).build_model(cfg.model)


def count_archs(archs: List[str], dict_dir: Path, tokens: int, failures: List[str]) -> List[Dict]:
    """Build each arch at its registered size and count its parameters."""
    rows = []
    for arch in archs:
        try:
            model = build_model(arch, model_flags(arch, tiny=False), dict_dir, tokens)
        except (ValueError, RuntimeError, AssertionError, TypeError) as e:
            failures.append(f"arch {arch} does not build: {type(e).__name__}: {one_line(e)}")
            rows.append({"arch": arch, "params": None, "tokens_per_sample": tokens, "error": f"{type(e).__name__}: {one_line(e)}"})
            continue
        rows.append({"arch": arch, "params": sum(p.numel() for p in model.parameters()), "tokens_per_sample": tokens})
        say(f"{arch}: {rows[-1]['params']:,} parameters")
        del model
    return rows


# ---- 2. corpus and training ----------------------------------------------------------------------------

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
    from ..data.byte_codec import bytes_to_lines
    from ..data.byte_corpus import split
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


def last_line(log: Path) -> str:
    """The log's last non-empty line, shortened: what a failed subprocess said last."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(empty log)"


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


# ---- 3. incremental decoding == parallel forward -------------------------------------------------------------

def incremental_difference(decoder, length: int, device: str, seed: int) -> float:
    """max |log p| difference between the parallel forward and token-by-token decoding with an
    incremental_state (fairseq's contract: the whole prefix each step, the last position back)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    nspecial = decoder.dictionary.nspecial
    tokens = torch.randint(nspecial, len(decoder.dictionary), (2, length), generator=generator).to(device)
    with torch.no_grad():
        full = decoder(tokens)[0].float().log_softmax(-1)
        state: Dict = {}
        steps = [decoder(tokens[:, :t + 1], incremental_state=state)[0].float().log_softmax(-1) for t in range(length)]
    return (torch.cat(steps, dim=1) - full).abs().max().item()


def check_incremental(cfg: Config, dict_dir: Path, failures: List[str]) -> List[Dict]:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would make both sides differ by ~1e-3 for no fault
    torch.backends.cudnn.allow_tf32 = False
    flags = TINY_FLAGS if cfg.tiny else SMALL_FLAGS
    rows = []
    for arch in cfg.incr_archs:
        row = {"arch": arch, "flags": flags, "length": cfg.incr_length, "batch": 2, "dtype": "fp32",
               "max_abs_diff": None, "tolerance": cfg.incr_tol}
        torch.manual_seed(cfg.seed)
        try:
            decoder = build_model(arch, flags, dict_dir, cfg.incr_length).decoder.to(cfg.device).eval()
            row["max_abs_diff"] = incremental_difference(decoder, cfg.incr_length, cfg.device, cfg.seed)
            del decoder
        except (ValueError, RuntimeError) as e:  # a model that does not build or run here (CUDA errors, OOM)
            row["error"] = f"{type(e).__name__}: {one_line(e)}"
        diff = row["max_abs_diff"]
        passed = diff is not None and math.isfinite(diff) and diff <= cfg.incr_tol
        rows.append({**row, "status": "passed" if passed else "failed"})
        say(f"incremental {arch}: " + (row.get("error") or f"max |Δ log p| = {diff:.2e}") + f" ({rows[-1]['status']})")
        if not passed:
            failures.append(f"incremental {arch}: " + (row.get("error") or f"max |log p| difference {diff:.2e} > {cfg.incr_tol:g}"))
    if cfg.device == "cuda":
        torch.cuda.empty_cache()  # the bench's subprocesses get the whole GPU
    return rows


# ---- 4. layer benchmark ---------------------------------------------------------------------------------

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


# ---- 5. the node, the report ------------------------------------------------------------------------------

def nvidia_smi_gpus() -> Optional[int]:
    """How many GPUs ``nvidia-smi -L`` lists (None without nvidia-smi or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(line.startswith("GPU") for line in proc.stdout.splitlines()) if proc.returncode == 0 else None


def node_info(failures: List[str]) -> Dict:
    import fairseq
    import torch
    info = {"host": socket.gethostname(), "python": platform.python_version(), "torch": torch.__version__,
            "fairseq": fairseq.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cpu_count": os.cpu_count(), "nvidia_smi_gpus": nvidia_smi_gpus(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    bf16_units=torch.cuda.is_bf16_supported(including_emulation=False))
    elif info["nvidia_smi_gpus"]:
        failures.append(f"nvidia-smi lists {info['nvidia_smi_gpus']} GPU(s) but torch {torch.__version__} sees none "
                        f"(a CPU build of torch?)")
    return info


def fmt(value, spec: str = "") -> str:
    """A table cell: '—' for a missing value."""
    return "—" if value is None else format(value, spec)


def markdown(result: Dict) -> str:
    """check.md: the verdict, then one table per check."""
    from .bench import table as bench_table
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


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    settings = "\n".join(f"  {s.name:<20} {s.gpu!r}" + (f" / {s.smoke!r}" if s.smoke != s.gpu else "") + f": {s.help}"
                         for s in SETTINGS)
    p = argparse.ArgumentParser(description=__doc__ + "\nSettings (GPU default / CPU smoke default):\n" + settings,
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


if __name__ == "__main__":
    sys.exit(main())
