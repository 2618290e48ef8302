"""The byte-level LM study of docs/RESULTS.md: every model of variants.txt, equal parameters (±10%)
and equal updates, several seeds, test BPC from fairseq-eval-lm and wall-clock per run.

    python recipes/study/run.py prepare --work W            # corpus -> W/corpus, W/data-bin
    python recipes/study/run.py params  --work W            # parameter counts, ±10% check
    python recipes/study/run.py train   --work W --seeds 1 2 --jobs 2
    python recipes/study/collect.py W                       # the table

``all`` runs the three steps. Each run is one ``fairseq-train`` (CPU, one torch thread, so ``--jobs
2`` runs two side by side on two cores) followed by one ``fairseq-eval-lm`` on the test split; its
files go to W/runs/<variant>/seed<k>/ (train.log, eval.log, checkpoint_last.pt) and, only when both
succeeded, result.json. Runs that already have a result.json are skipped (delete it to rerun).

The corpus: the Python documentation that ships inside every CPython installation
(``pydoc_data.topics``, the Language and Library Reference sections ``help()`` prints): English
prose with code samples, present wherever python3 is (Debian's libpython3.x-stdlib included, even
on slim images that strip /usr/share/man and /usr/share/doc), and not the demo's corpus (the
stdlib's .py sources). Its size follows the Python version (466 KB for 3.11.7); ``prepare``
records the version, size and SHA-256 in W/corpus/SOURCE.json. Split by position 80/10/10 so the
test split is large enough to rank models (≈47 KB).
"""
import argparse
import concurrent.futures
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USER_DIR = REPO / "fairseq_focus"
FRACTIONS = (0.8, 0.1, 0.1)
PARAM_TOLERANCE = 0.10

# The budget every model gets (run.py train --max-update etc. override it).
BUDGET = {
    "tokens_per_sample": 1024,  # training length: 8 attention chunks of 128, 16 bins of 64
    "max_tokens": 4096,         # 4 sequences per update
    "max_update": 600,
    "lr": 3e-3,
    "warmup_updates": 100,
}


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- corpus ---------------------------------------------------------------------------------------

CORPORA = ("pydoc", "stdlib")
# --corpus stdlib: CPython's standard-library source (the demo's kind of text, code), held out from the
# demo: the demo reads the first 3,000,000 bytes of the path-ordered stream; the study reads the next
# 1,000,000, without the encodings/ package (codec tables, not code: in path order they fill most of
# that slice, and a model scored 0.43 BPC on them). Both streams agree on their first 3,000,000 bytes.
STDLIB_SLICE = (3_000_000, 4_000_000)
STDLIB_SKIP = ("encodings",)


def corpus_bytes(kind: str = "pydoc") -> Tuple[bytes, Dict]:
    """The corpus ``kind`` as bytes, with a description (source, Python version, size, SHA-256)."""
    if kind == "stdlib":
        from fairseq_focus.data.byte_corpus import SKIPPED, stdlib_source
        data = stdlib_source(STDLIB_SLICE[1], SKIPPED + STDLIB_SKIP)[STDLIB_SLICE[0]:]
        if len(data) < STDLIB_SLICE[1] - STDLIB_SLICE[0]:
            die(f"the standard library here holds only {STDLIB_SLICE[0] + len(data):,} bytes of source; need {STDLIB_SLICE[1]:,}")
        return data, {"source": f"CPython standard-library .py source (no test suites, no encodings/), path order, "
                                f"bytes {STDLIB_SLICE[0]:,}-{STDLIB_SLICE[1]:,} (after the demo's 3,000,000)",
                      "python": sys.version.split()[0], "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest(), "split": list(FRACTIONS)}
    return pydoc_bytes()


def pydoc_bytes() -> Tuple[bytes, Dict]:
    """The documentation topics in sorted order, one after another, UTF-8."""
    import pydoc_data.topics as module
    topics = module.topics
    data = "\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    info = {"source": "pydoc_data.topics (CPython's reference documentation for help())",
            "file": module.__file__, "python": sys.version.split()[0], "topics": len(topics),
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "split": list(FRACTIONS)}
    return data, info


def prepare(work: Path, kind: str = "pydoc") -> None:
    from fairseq_focus.data.byte_corpus import bytes_to_lines, split
    data, info = corpus_bytes(kind)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare.", dir=work))
    try:
        corpus = tmp / "corpus"
        corpus.mkdir()
        for name, part in split(data, FRACTIONS).items():
            (corpus / f"{name}.raw").write_bytes(part)
            (corpus / f"{name}.txt").write_text(bytes_to_lines(part))
            info[f"{name}_bytes"] = len(part)
        (corpus / "SOURCE.json").write_text(json.dumps(info, indent=1) + "\n")
        proc = subprocess.run(
            ["fairseq-preprocess", "--only-source", "--trainpref", str(corpus / "train.txt"),
             "--validpref", str(corpus / "valid.txt"), "--testpref", str(corpus / "test.txt"),
             "--destdir", str(tmp / "data-bin"), "--workers", "1"], capture_output=True, text=True)
        if proc.returncode != 0:
            die(f"fairseq-preprocess failed:\n{proc.stdout}{proc.stderr}")
        for name in ("corpus", "data-bin"):
            if (work / name).exists():
                shutil.rmtree(work / name)
            os.replace(tmp / name, work / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"corpus: {info['bytes']:,} bytes of {info['source']}, Python {info['python']}, sha256 {info['sha256'][:16]}…; "
          f"train/valid/test {info['train_bytes']:,}/{info['valid_bytes']:,}/{info['test_bytes']:,} -> {work}/data-bin")


# ---- variants and parameter counts ------------------------------------------------------------------

def read_variants(path: Path) -> List[Tuple[str, List[str]]]:
    """[(name, flags)] from a variants file: 'name --arch ARCH flags…' per line, '#' comments."""
    if not path.is_file():
        die(f"variants file {path} does not exist")
    variants, seen = [], set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, *flags = shlex.split(line)
        if "--arch" not in flags:
            die(f"{path}:{lineno}: variant {name!r} has no --arch")
        if name in seen:
            die(f"{path}:{lineno}: variant {name!r} appears twice")
        seen.add(name)
        variants.append((name, flags))
    if not variants:
        die(f"{path} lists no variant")
    return variants


def count_parameters(flags: List[str], data_bin: Path) -> int:
    """Build the model exactly as fairseq-train would (parser, arch defaults, task) and count."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm",
                                                "--cpu", "--tokens-per-sample", str(BUDGET["tokens_per_sample"])] + flags)
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    return sum(p.numel() for p in model.parameters())


def check_parameters(variants, data_bin: Path, quiet: bool = False) -> Dict[str, int]:
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore", category=UserWarning)
    counts = {name: count_parameters(flags, data_bin) for name, flags in variants}
    reference = counts[variants[0][0]]
    bad = []
    for name, n in counts.items():
        ratio = n / reference
        if not quiet:
            print(f"{name:<32} {n:>10,}  ({ratio:6.1%} of {variants[0][0]})")
        if abs(ratio - 1.0) > PARAM_TOLERANCE:
            bad.append(f"{name} ({ratio:.1%})")
    logging.disable(logging.NOTSET)
    if bad:
        die(f"parameter counts outside ±{PARAM_TOLERANCE:.0%} of {variants[0][0]}: {', '.join(bad)}")
    return counts


# ---- training and evaluation --------------------------------------------------------------------------

def train_command(data_bin: Path, out: Path, flags: List[str], seed: int, budget: Dict) -> List[str]:
    return ["fairseq-train", str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm", *flags,
            "--cpu", "--num-workers", "0", "--seed", str(seed),
            "--tokens-per-sample", str(budget["tokens_per_sample"]), "--sample-break-mode", "none",
            "--max-tokens", str(budget["max_tokens"]), "--required-batch-size-multiple", "1",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01", "--clip-norm", "0.25",
            "--lr", str(budget["lr"]), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(budget["warmup_updates"]),
            "--max-update", str(budget["max_update"]), "--disable-validation",
            "--save-dir", str(out), "--no-epoch-checkpoints", "--no-save-optimizer-state",
            "--log-format", "simple", "--log-interval", "50"]


def eval_command(data_bin: Path, out: Path, budget: Dict) -> List[str]:
    """Non-overlapping blocks of the training length; each token's context is the earlier part of its block."""
    return ["fairseq-eval-lm", str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm",
            "--path", str(out / "checkpoint_last.pt"), "--cpu", "--num-workers", "0", "--gen-subset", "test",
            "--tokens-per-sample", str(budget["tokens_per_sample"]), "--sample-break-mode", "none",
            "--max-tokens", str(4 * budget["tokens_per_sample"]), "--required-batch-size-multiple", "1"]


def _run_logged(cmd: List[str], log: Path, env: Dict) -> float:
    start = time.time()
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise RuntimeError(f"{cmd[0]} exited with {code}; see {log}")
    return time.time() - start


def one_run(work: Path, name: str, flags: List[str], seed: int, budget: Dict) -> Dict:
    out = work / "runs" / name / f"seed{seed}"
    if (out / "result.json").exists():
        done = json.loads((out / "result.json").read_text())
        if done["budget"] != budget or done["flags"] != flags:
            raise RuntimeError(f"{out}/result.json was made with another budget or flags; delete it to rerun")
        return done
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    data_bin = work / "data-bin"
    train_cmd = train_command(data_bin, out, flags, seed, budget)
    train_s = _run_logged(train_cmd, out / "train.log", env)
    log = (out / "train.log").read_text()
    updates = [int(u) for u in re.findall(r"num_updates (\d+)", log)]
    params = re.findall(r"num\. shared model params: ([\d,]+)", log)
    eval_cmd = eval_command(data_bin, out, budget)
    eval_s = _run_logged(eval_cmd, out / "eval.log", env)
    found = re.findall(r"Loss \(base 2\): ([0-9.]+)", (out / "eval.log").read_text())
    if not found or not updates or not params:
        raise RuntimeError(f"{out}: no BPC in eval.log, or no update count / parameter count in train.log")
    result = {"variant": name, "seed": seed, "flags": flags, "params": int(params[-1].replace(",", "")),
              "updates": max(updates), "test_bpc": float(found[-1]), "train_seconds": round(train_s, 1),
              "eval_seconds": round(eval_s, 1), "budget": budget,
              "train_command": shlex.join(train_cmd), "eval_command": shlex.join(eval_cmd)}
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out / "result.json")
    (out / "checkpoint_last.pt").unlink(missing_ok=True)  # 2-7 MB each; the logs hold the numbers
    return result


def train(work: Path, variants, seeds: List[int], jobs: int, budget: Dict) -> int:
    todo = [(name, flags, seed) for seed in seeds for name, flags in variants]
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one_run, work, name, flags, seed, budget): (name, seed) for name, flags, seed in todo}
        for fut in concurrent.futures.as_completed(futures):
            name, seed = futures[fut]
            try:
                r = fut.result()
                print(f"{name:<32} seed {seed}: test BPC {r['test_bpc']:.4f}, {r['updates']} updates, "
                      f"train {r['train_seconds']:.0f}s + eval {r['eval_seconds']:.0f}s", flush=True)
            except RuntimeError as exc:
                failures += 1
                print(f"{name:<32} seed {seed}: FAILED: {exc}", flush=True)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "params", "train", "all"))
    parser.add_argument("--work", type=Path, required=True, help="output directory")
    parser.add_argument("--corpus", choices=CORPORA, default="pydoc",
                        help="prepare: pydoc (the reference documentation, prose) or stdlib (library source, code)")
    parser.add_argument("--variants", type=Path, default=HERE / "variants.txt", help="the models, one per line")
    parser.add_argument("--only", nargs="+", default=None, help="run only these variants (names)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one torch thread each)")
    for key, value in BUDGET.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    budget = {key: getattr(args, key) for key in BUDGET}
    all_variants = variants = read_variants(args.variants)
    if args.only:
        unknown = set(args.only) - {name for name, _ in variants}
        if unknown:
            die(f"--only names unknown variants: {', '.join(sorted(unknown))}")
        variants = [(n, f) for n, f in variants if n in args.only]
    if shutil.which("fairseq-train") is None:
        die("fairseq-train not on PATH (activate the environment with fairseq installed)")
    work = args.work.resolve()
    if args.step in ("prepare", "all"):
        prepare(work, args.corpus)
        if args.step == "prepare":
            return 0
    if not (work / "data-bin" / "dict.txt").exists():
        die(f"{work}/data-bin is missing: run 'prepare' first")
    check_parameters(all_variants, work / "data-bin")  # every line against the first, whatever --only says
    if args.step in ("train", "all"):
        if args.variants.resolve() != (work / "variants.txt").resolve():
            shutil.copy(args.variants, work / "variants.txt")  # collect.py orders the table by it
        return train(work, variants, args.seeds, args.jobs, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
