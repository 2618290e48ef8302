"""The check's settings: environment variables (``SETTINGS``, each with its CUDA and its CPU smoke default),
parsed into a typed :class:`Config`, and the fixed flags of the models and tools it runs."""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

REPO = Path(__file__).resolve().parents[3]

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
    from ..bench_layers import LAYERS
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
        bench_layers=name_list("CHECK_BENCH_LAYERS", raw["CHECK_BENCH_LAYERS"], LAYERS),
        bench_dtypes=name_list("CHECK_BENCH_DTYPES", raw["CHECK_BENCH_DTYPES"], BENCH_DTYPES),
        seed=positive_int("CHECK_SEED", raw["CHECK_SEED"]),
    )
    if not cfg.archs:
        raise InputError("CHECK_ARCHS is empty: name at least one arch to build")
    if cfg.lengths and not cfg.bench_layers:
        raise InputError("CHECK_BENCH_LAYERS is empty but CHECK_LENGTHS is not ('' in CHECK_LENGTHS skips the bench)")
    return cfg
