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

``--corpus sitepkgs`` (docs/RESULTS.md §1c, the 4× check): 10,500,000 bytes of the Python sources of
seven packages that ``make setup`` installs into .venv at the versions of requirements/lock.txt, so
large that a model reading 1,000 updates × 8,192 tokens sees no byte twice. ``--budget scale4x``
picks that check's budget (2048-token samples, 8,192 tokens per update, 1,000 updates, valid BPC and
a checkpoint every 100 updates, test BPC at 2048- and 8192-token blocks). A run with checkpoints
that was interrupted resumes from its checkpoint_last.pt when the same command is rerun.
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
# Settings beyond the study's budget, off there (0 / none). A run's budget (result.json) lists only those
# that are on, so the study's results keep matching its budget.
#   validate_interval_updates: valid BPC every N updates on valid_subset (its first max_valid_steps + 1
#     batches, always the same ones; 0 = all of it), the learning curve;
#   save_interval_updates: a checkpoint (with the optimizer state) every N updates, only the newest kept,
#     so that rerunning the same command resumes an interrupted run from checkpoint_last.pt;
#   eval_blocks: test BPC at these block lengths too, besides the training length.
EXTRAS = {"validate_interval_updates": 0, "valid_subset": "valid", "max_valid_steps": 0, "save_interval_updates": 0,
          "eval_blocks": []}
# --budget: named budgets. scale4x is the 4x check (docs/RESULTS.md §1c): 2048-token samples, 8,192 tokens per
# update, 1,000 updates (8,192,000 tokens, under the 8,400,000 of --corpus sitepkgs's train split), the study's
# optimiser and schedule; valid BPC (on --corpus sitepkgs's valid_sample) and a checkpoint every 100 updates;
# test BPC at 2048 and 8192.
BUDGETS = {
    "study": {},
    "scale4x": {"tokens_per_sample": 2048, "max_tokens": 8192, "max_update": 1000,
                "validate_interval_updates": 100, "valid_subset": "valid_sample", "save_interval_updates": 100,
                "eval_blocks": [8192]},
}


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- corpus ---------------------------------------------------------------------------------------

CORPORA = ("pydoc", "stdlib", "sitepkgs")
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
    if kind == "sitepkgs":
        return sitepkgs_bytes()
    return pydoc_bytes()


# --corpus sitepkgs: the .py sources of these packages of .venv (all installed by `make setup`, versions
# pinned by requirements/lock.txt), in this order, SITEPKGS_BYTES from each: its files in sorted relative
# path order, test folders left out (byte_corpus.SKIPPED), and matplotlib's colormap tables (float
# literals, not code). Each package's slice is split 80/10/10 by position, and the corpus is every train
# part, then every valid part, then every test part, so that the study's positional split (split(),
# FRACTIONS) gives each split a part of every package. Disjoint from the demo's and the study's corpora:
# those read CPython's standard library (byte_corpus.stdlib_source skips site-packages), these files
# live in .venv's site-packages.
SITEPKGS = (("fairseq", "fairseq-fixed"), ("matplotlib", "matplotlib"), ("numpy", "numpy"), ("scipy", "scipy"),
            ("sklearn", "scikit-learn"), ("sympy", "sympy"), ("torch", "torch"))  # (import name, distribution)
SITEPKGS_BYTES = 1_500_000  # × 7 = 10,500,000: train 8,400,000 >= 1,000 updates × 8,192 tokens
SITEPKGS_SKIP_FILES = ("matplotlib/_cm.py", "matplotlib/_cm_bivar.py", "matplotlib/_cm_listed.py",
                       "matplotlib/_cm_multivar.py")
# The learning curve's subset (data-bin/valid_sample, --valid-subset valid_sample): the first eighth of every
# package's valid part, 131,250 bytes, so that validating every 100 updates costs 1/8 of the valid split and
# still reads every package (the valid split's first eighth would be fairseq's sources alone).
VALID_SAMPLE_DIVISOR = 8


def package_source(package: str, max_bytes: int) -> Tuple[bytes, List[str]]:
    """The first ``max_bytes`` of an installed package's .py files, in sorted relative path order (test
    folders and SITEPKGS_SKIP_FILES left out), and the files read. Finds the package without importing it."""
    import importlib.util
    from fairseq_focus.data.byte_corpus import SKIPPED
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        die(f"package {package} is not installed here (--corpus sitepkgs reads the sources `make setup` installs)")
    root = Path(list(spec.submodule_search_locations)[0])
    parts, files, total = [], [], 0
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root.parent).as_posix()
        if any(p in SKIPPED for p in path.relative_to(root).parts) or rel in SITEPKGS_SKIP_FILES:
            continue
        data = path.read_bytes()
        parts.append(data)
        files.append(rel)
        total += len(data)
        if total >= max_bytes:
            break
    data = b"".join(parts)[:max_bytes]
    if len(data) < max_bytes:
        die(f"package {package} holds only {len(data):,} bytes of .py source here; need {max_bytes:,}")
    return data, files


def sitepkgs_bytes(per_package: int = SITEPKGS_BYTES) -> Tuple[bytes, Dict]:
    """The sitepkgs corpus: SITEPKGS' sources, ``per_package`` bytes each, ordered so that split(FRACTIONS)
    gives each split the matching part of every package (see SITEPKGS)."""
    from importlib.metadata import version
    from fairseq_focus.data.byte_corpus import split
    parts = {"train": [], "valid": [], "test": []}
    packages = []
    for package, dist in SITEPKGS:
        data, files = package_source(package, per_package)
        for name, part in split(data, FRACTIONS).items():
            parts[name].append(part)
        packages.append({"package": package, "version": version(dist), "bytes": len(data), "files": len(files),
                         "first_file": files[0], "last_file": files[-1], "valid_bytes": len(parts["valid"][-1]),
                         "sha256": hashlib.sha256(data).hexdigest()})
    data = b"".join(b"".join(parts[name]) for name in ("train", "valid", "test"))
    resplit = split(data, FRACTIONS)
    if any(resplit[name] != b"".join(parts[name]) for name in parts):
        die(f"{per_package} bytes per package do not split 80/10/10 into whole bytes; use a multiple of 10")
    return data, {"source": f".py sources of {', '.join(p for p, _ in SITEPKGS)} in .venv's site-packages "
                            f"({per_package:,} bytes each, sorted paths, no test folders, no matplotlib colormap "
                            f"tables); each package split 80/10/10, train parts then valid then test parts",
                  "python": sys.version.split()[0], "packages": packages, "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest(), "split": list(FRACTIONS)}


def valid_sample(valid: bytes, info: Dict) -> bytes:
    """--corpus sitepkgs: the first 1/VALID_SAMPLE_DIVISOR of every package's part of the valid split."""
    parts, start = [], 0
    for package in info["packages"]:
        parts.append(valid[start:start + package["valid_bytes"] // VALID_SAMPLE_DIVISOR])
        start += package["valid_bytes"]
    return b"".join(parts)


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
        parts = split(data, FRACTIONS)
        if "packages" in info:  # sitepkgs: also the learning curve's valid subset
            parts["valid_sample"] = valid_sample(parts["valid"], info)
            info["valid_sample_sha256"] = hashlib.sha256(parts["valid_sample"]).hexdigest()
        for name, part in parts.items():
            (corpus / f"{name}.raw").write_bytes(part)
            (corpus / f"{name}.txt").write_text(bytes_to_lines(part))
            info[f"{name}_bytes"] = len(part)
        (corpus / "SOURCE.json").write_text(json.dumps(info, indent=1) + "\n")
        validpref = ",".join(str(corpus / f"{name}.txt") for name in ("valid", "valid_sample") if name in parts)
        proc = subprocess.run(
            ["fairseq-preprocess", "--only-source", "--trainpref", str(corpus / "train.txt"),
             "--validpref", validpref, "--testpref", str(corpus / "test.txt"),
             "--destdir", str(tmp / "data-bin"), "--workers", "1"], capture_output=True, text=True)
        if proc.returncode != 0:
            die(f"fairseq-preprocess failed:\n{proc.stdout}{proc.stderr}")
        if "valid_sample" in parts:  # fairseq-preprocess names a second valid prefix valid1
            for ext in ("bin", "idx"):
                os.replace(tmp / "data-bin" / f"valid1.{ext}", tmp / "data-bin" / f"valid_sample.{ext}")
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

def make_budget(preset: str = "study", **overrides) -> Dict:
    """BUDGET, then the named preset, then the overrides that are not None; EXTRAS only where on."""
    full = {**BUDGET, **EXTRAS, **BUDGETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return {k: v for k, v in full.items() if k in BUDGET or v != EXTRAS[k]}


def train_command(data_bin: Path, out: Path, flags: List[str], seed: int, budget: Dict,
                  log_interval: int = 50) -> List[str]:
    b = {**EXTRAS, **budget}
    if b["validate_interval_updates"]:
        valid = ["--valid-subset", b["valid_subset"], "--validate-interval-updates", str(b["validate_interval_updates"])]
        valid += ["--max-valid-steps", str(b["max_valid_steps"])] if b["max_valid_steps"] else []
    else:
        valid = ["--disable-validation"]
    if b["save_interval_updates"]:  # resumable: the optimizer state is saved, only the newest interval checkpoint kept
        save = ["--save-interval-updates", str(b["save_interval_updates"]), "--keep-interval-updates", "1"]
    else:
        save = ["--no-save-optimizer-state"]
    return ["fairseq-train", str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm", *flags,
            "--cpu", "--num-workers", "0", "--seed", str(seed),
            "--tokens-per-sample", str(budget["tokens_per_sample"]), "--sample-break-mode", "none",
            "--max-tokens", str(budget["max_tokens"]), "--required-batch-size-multiple", "1",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01", "--clip-norm", "0.25",
            "--lr", str(budget["lr"]), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(budget["warmup_updates"]),
            "--max-update", str(budget["max_update"]), *valid,
            "--save-dir", str(out), "--no-epoch-checkpoints", *save,
            "--log-format", "simple", "--log-interval", str(log_interval)]


def eval_command(data_bin: Path, out: Path, budget: Dict, block: int = 0) -> List[str]:
    """Non-overlapping blocks of ``block`` tokens (default: the training length); each token's context is
    the earlier part of its block."""
    block = block or budget["tokens_per_sample"]
    return ["fairseq-eval-lm", str(data_bin), "--user-dir", str(USER_DIR), "--task", "focus_lm",
            "--path", str(out / "checkpoint_last.pt"), "--cpu", "--num-workers", "0", "--gen-subset", "test",
            "--tokens-per-sample", str(block), "--sample-break-mode", "none",
            "--max-tokens", str(4 * block), "--required-batch-size-multiple", "1"]


def eval_blocks(budget: Dict) -> List[int]:
    """The test block lengths of a budget: the training length first, then eval_blocks."""
    blocks = [budget["tokens_per_sample"]]
    return blocks + [b for b in budget.get("eval_blocks", []) if b not in blocks]


def _run_logged(cmd: List[str], log: Path, env: Dict, append: bool = False, note: str = "") -> float:
    """Run cmd with its output in log, the command on the first line (after any earlier attempts' lines
    when ``append``: an interrupted training that resumes keeps its earlier learning curve)."""
    start = time.time()
    with open(log, "a" if append else "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.write(f"# started {time.strftime('%Y-%m-%d %H:%M:%S %z')}{note}\n")
        fh.flush()
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise RuntimeError(f"{cmd[0]} exited with {code}; see {log}")
    return time.time() - start


def checkpoint_updates(path: Path) -> int:
    """The update count stored in a fairseq checkpoint (0 when it cannot be read)."""
    try:
        import torch
        state = torch.load(path, map_location="cpu", weights_only=False)
        return int(state["optimizer_history"][-1]["num_updates"])
    except Exception:  # a checkpoint written half-way is no checkpoint: fairseq would fail on it too
        return 0


def one_run(work: Path, name: str, flags: List[str], seed: int, budget: Dict, log_interval: int = 50) -> Dict:
    """Train, then score. Rerunning after an interruption: a finished training (train.done) is not
    repeated (fairseq would take one more update past --max-update), and an unfinished one resumes from
    its checkpoint_last.pt (fairseq's default --restore-file) with train.log appended, not rewritten;
    nothing in the run's folder is deleted before result.json exists."""
    out = work / "runs" / name / f"seed{seed}"
    if (out / "result.json").exists():
        done = json.loads((out / "result.json").read_text())
        if done["budget"] != budget or done["flags"] != flags:
            raise RuntimeError(f"{out}/result.json was made with another budget or flags; delete it to rerun")
        return done
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    data_bin = work / "data-bin"
    train_cmd = train_command(data_bin, out, flags, seed, budget, log_interval)
    done_file = out / "train.done"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done["train_command"] != shlex.join(train_cmd):
            raise RuntimeError(f"{done_file} was made by another command; delete the run's folder to rerun")
        train_s = done["train_seconds"]
    else:
        resume = checkpoint_updates(out / "checkpoint_last.pt") if (out / "checkpoint_last.pt").exists() else 0
        note = f", resuming from checkpoint_last.pt at update {resume}" if resume else ""
        train_s = _run_logged(train_cmd, out / "train.log", env, append=True, note=note)
        done_file.write_text(json.dumps({"train_command": shlex.join(train_cmd), "train_seconds": round(train_s, 1),
                                         "resumed_from_update": resume}) + "\n")
    log = (out / "train.log").read_text()
    updates = [int(u) for u in re.findall(r"num_updates (\d+)", log)]
    params = re.findall(r"num\. shared model params: ([\d,]+)", log)
    eval_cmds, bpcs, eval_s = [], {}, 0.0
    for i, block in enumerate(eval_blocks(budget)):
        eval_cmd = eval_command(data_bin, out, budget, block)
        log_path = out / ("eval.log" if i == 0 else f"eval{block}.log")
        eval_s += _run_logged(eval_cmd, log_path, env)
        found = re.findall(r"Loss \(base 2\): ([0-9.]+)", log_path.read_text())
        if not found:
            raise RuntimeError(f"{out}: no BPC in {log_path.name}")
        bpcs[str(block)] = float(found[-1])
        eval_cmds.append(shlex.join(eval_cmd))
    if not updates or not params:
        raise RuntimeError(f"{out}: no update count / parameter count in train.log")
    first = str(eval_blocks(budget)[0])
    result = {"variant": name, "seed": seed, "flags": flags, "params": int(params[-1].replace(",", "")),
              "updates": max(updates), "test_bpc": bpcs[first], "test_bpc_by_block": bpcs,
              "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1), "budget": budget,
              "train_command": shlex.join(train_cmd), "eval_command": eval_cmds[0], "eval_commands": eval_cmds}
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out / "result.json")
    if not budget.get("save_interval_updates"):
        (out / "checkpoint_last.pt").unlink(missing_ok=True)  # 2-7 MB each; the logs hold the numbers
    return result


def train(work: Path, variants, seeds: List[int], jobs: int, budget: Dict, log_interval: int = 50) -> int:
    """Every (variant, seed), ``jobs`` at a time, in the order of the variants file (seed by seed)."""
    todo = [(name, flags, seed) for seed in seeds for name, flags in variants]
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one_run, work, name, flags, seed, budget, log_interval): (name, seed)
                   for name, flags, seed in todo}
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
                        help="prepare: pydoc (the reference documentation, prose), stdlib (library source, code) or "
                             "sitepkgs (10.5 MB of .venv's package sources, for the 4x check)")
    parser.add_argument("--variants", type=Path, default=HERE / "variants.txt", help="the models, one per line")
    parser.add_argument("--only", nargs="+", default=None, help="run only these variants (names)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one torch thread each)")
    parser.add_argument("--budget", choices=tuple(BUDGETS), default="study",
                        help="named budget: study (§1, §1b) or scale4x (§1c); the flags below override it")
    for key, value in {**BUDGET, **EXTRAS}.items():
        if isinstance(value, list):
            parser.add_argument("--" + key.replace("_", "-"), type=int, nargs="*", default=None)
        elif key == "valid_subset":
            parser.add_argument("--valid-subset", default=None, help="valid (default) or valid_sample (sitepkgs)")
        else:
            parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    parser.add_argument("--log-interval", type=int, default=50, help="fairseq-train's log interval (updates)")
    args = parser.parse_args(argv)
    budget = make_budget(args.budget, **{key: getattr(args, key) for key in {**BUDGET, **EXTRAS}})
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
        return train(work, variants, args.seeds, args.jobs, budget, args.log_interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
