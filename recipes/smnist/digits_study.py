"""The digits study (issue 26): Focus's heads against MEGA's block and a transformer encoder on
scikit-learn's 1,797 real 8x8 digits read as 64-pixel sequences, in raster order and permuted, with
attention chunks of 16 pixels (a quarter of the image), at equal parameters (±10%), equal updates
and the same data, through the pixel recipes' own train.sh and eval.sh.

    python recipes/smnist/digits_study.py run --work W --model focus --order sequential --seed 1
    python recipes/smnist/digits_study.py collect --work W          # the table, from W/results/*.json
    python recipes/smnist/digits_study.py models                    # what each --model is
    python recipes/smnist/digits_study.py reference --work W        # logistic regression, RBF SVM, same split

``run`` prepares W/data once (train 1,257 / valid 180 / test 360 images, in the dataset's order),
trains one model with ``recipes/pixels_common/train.sh``, scores the checkpoint of best valid
accuracy on the test split with ``eval.sh`` and writes W/results/<model>-<order>-seed<S>.json with
both commands, the parameter count, the train accuracy of every epoch, the valid and test accuracy
and the wall time. One torch thread per run (OMP_NUM_THREADS=1); run one at a time on a shared
machine (``nice -n 5``). Errors: one line on stderr, exit status 1.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMMON = REPO / "recipes" / "pixels_common"
SPLIT = ["--valid-size", "180", "--test-size", "360"]
# every model: 2 blocks of D 64, chunks of 16 pixels (a quarter of the 64-pixel image), dropout 0.1
SIZE = ("--decoder-layers 2 --decoder-embed-dim 64 --decoder-hidden-dim 128 --decoder-ffn-embed-dim 128 "
        "--decoder-z-dim 32 --chunk-size 16 --dropout 0.1")
MODELS: Dict[str, str] = {  # "--arch A" first: ARCH=A for train.sh, the rest EXTRA_ARGS
    # the selective head, run both ways (MEGA's bidirectional form for images), mean pooling: 126,280 params
    "focus": "--arch focus_classifier_selective --bidirectional-filter --pooling mean",
    # the same head causal (carry), label read at the last pixel: 117,832 params
    "focus-causal": "--arch focus_classifier_selective --pooling last",
    # Focus-H (static Θ, stable + carry), both ways: 109,896 params
    "focus-static": "--arch focus_classifier_static --bidirectional-filter --pooling mean",
    # MEGA's block and multi-head EMA, both ways as MEGA's image models: 122,120 params
    "mega": "--arch focus_classifier_ema --bidirectional-filter --pooling mean",
    # a pre-norm transformer encoder, full attention over the 64 pixels, FFN 320: 121,482 params
    "transformer": "--arch focus_classifier_transformer --decoder-ffn-embed-dim 320 --pooling mean",
    # the paper's head as the image archs ran it before issue 26 (hypernetwork, --iir-mode paper) at chunk 16
    "focus-paper": "--arch focus_classifier_paper --bin-size 16 --hyper-kernel-size 64 --pooling mean",
}
ORDERS = {"sequential": "", "permuted": "1"}  # PERMUTE_SEED
TRAIN_ENV = {"BATCH_SIZE": "32", "LR": "0.005", "WARMUP": "50", "WEIGHT_DECAY": "0.01", "CLIP_NORM": "1.0",
             "LOG_INTERVAL": "40", "NUM_WORKERS": "0", "GPUS": "1", "PIXEL_MEAN": "0.3059", "PIXEL_STD": "0.3753"}


UPDATES = 2000  # the study's budget: the default's training accuracy is flat (≥ 99.5%) over its last third


class StudyError(Exception):
    """A one-line reason to stop."""


def run_name(model: str, order: str, seed: int, lr: str = TRAIN_ENV["LR"], updates: int = UPDATES) -> str:
    """<model>-<order>-seed<S>, with -lr<lr> / -u<updates> where those differ from the study's."""
    return (f"{model}-{order}-seed{seed}" + ("" if lr == TRAIN_ENV["LR"] else f"-lr{lr}")
            + ("" if updates == UPDATES else f"-u{updates}"))


def prepare(work: Path) -> Path:
    data = work / "data"
    if not (data / "test-labels.idx").is_file():
        work.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "fairseq_focus.data.prepare_pixels", "digits", "--out", str(data), *SPLIT]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env({}))
        if proc.returncode != 0:
            raise StudyError(f"preparing the digits failed: {proc.stderr.strip().splitlines()[-1:]}")
    return data


def _env(extra: Dict[str, str]) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def shell_line(env: Dict[str, str], script: Path) -> str:
    """The command as one could type it from the repository root."""
    pairs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{pairs} bash {script.relative_to(REPO)}"


def parse_train_log(log: str) -> Dict[str, object]:
    params = re.search(r"focus_classifier: (\d+) parameters", log)
    if params is None:
        raise StudyError("no 'focus_classifier: N parameters' line in the training log")
    train = [float(v) for v in re.findall(r"\| train \| epoch \d+ \|.*?\| accuracy ([0-9.]+)", log)]
    valid = [float(v) for v in re.findall(r"valid on 'valid' subset \|.*?\| accuracy ([0-9.]+)", log)]
    seconds = re.search(r"done training in ([0-9.]+) seconds", log)
    return {"params": int(params.group(1)), "train_accuracy_by_epoch": train, "valid_accuracy_by_epoch": valid,
            "best_valid_accuracy": max(valid) if valid else None,
            "train_seconds": float(seconds.group(1)) if seconds else None}


def train_and_eval(work: Path, model: str, order: str, seed: int, max_update: int, lr: str) -> Dict[str, object]:
    data, name = prepare(work), run_name(model, order, seed, lr, max_update)
    _, arch, flags = MODELS[model].split(" ", 2)  # "--arch", the arch, its flags
    save = work / "checkpoints" / name
    if save.exists():
        raise StudyError(f"{save} exists from an earlier run; remove it to run {name} again")
    env = {**TRAIN_ENV, "LR": lr, "DATA": str(data), "ARCH": arch, "SAVE_DIR": str(save),
           "MAX_UPDATE": str(max_update), "SEED": str(seed), "PERMUTE_SEED": ORDERS[order],
           "EXTRA_ARGS": f"{SIZE} {flags}"}
    start = time.time()
    proc = subprocess.run(["bash", str(COMMON / "train.sh")], cwd=REPO, env=_env(env), capture_output=True, text=True)
    (work / "logs").mkdir(exist_ok=True)
    (work / "logs" / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise StudyError(f"training {name} failed (log: {work / 'logs' / (name + '.log')})")
    wall = time.time() - start
    eval_env = {"DATA": str(data), "SAVE_DIR": str(save), "SUBSET": "test"}
    res = subprocess.run(["bash", str(COMMON / "eval.sh")], cwd=REPO, env=_env(eval_env), capture_output=True, text=True)
    match = re.search(r"^test accuracy = ([0-9.]+)$", res.stdout, re.M)
    if res.returncode != 0 or match is None:
        raise StudyError(f"evaluating {name} failed: {res.stderr.strip().splitlines()[-1:] or res.stdout}")
    return {"run": name, "model": model, "order": order, "seed": seed, "max_update": max_update, "lr": lr,
            "test_accuracy": float(match.group(1)), **parse_train_log(proc.stdout + proc.stderr),
            "wall_seconds": round(wall, 1), "train_command": shell_line(env, COMMON / "train.sh"),
            "eval_command": shell_line(eval_env, COMMON / "eval.sh"),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def load_results(work: Path) -> List[Dict[str, object]]:
    files = sorted((work / "results").glob("*.json"))
    if not files:
        raise StudyError(f"no results in {work / 'results'}")
    return [json.loads(f.read_text()) for f in files]


def _mean(values: List[float]) -> float:
    return sum(values) / len(values)


def _label(result: Dict[str, object]) -> str:
    """The model's name, with its lr where that is not the study's default."""
    lr, updates = result.get("lr", TRAIN_ENV["LR"]), result["max_update"]
    return (result["model"] + ("" if lr == TRAIN_ENV["LR"] else f" (lr {lr})")
            + ("" if updates == UPDATES else f" ({updates} updates)"))


def table(results: List[Dict[str, object]]) -> str:
    """One row per (model, order): params, updates, test accuracy per seed and their mean."""
    rows = {}
    for r in results:
        rows.setdefault((r["order"], _label(r), r["params"], r["max_update"]), {})[r["seed"]] = r
    lines = ["| order | model | params | updates | test accuracy per seed (360 images) | mean | "
             "train accuracy, last epoch | best valid |", "|---|---|---|---|---|---|---|---|"]
    for (order, model, params, updates), seeds in sorted(rows.items()):
        runs = [seeds[s] for s in sorted(seeds)]
        per_seed = ", ".join(f"s{r['seed']} {r['test_accuracy']:.2f}" for r in runs)
        train = ", ".join(f"{r['train_accuracy_by_epoch'][-1]:.1f}" for r in runs)
        valid = ", ".join(f"{r['best_valid_accuracy']:.1f}" for r in runs)
        mean = _mean([r["test_accuracy"] for r in runs])
        lines.append(f"| {order} | {model} | {params:,} | {updates} | {per_seed} | {mean:.2f} | {train} | {valid} |")
    return "\n".join(lines)


def head_to_head(results: List[Dict[str, object]], model: str = "focus") -> str:
    """For each order and seed where ``model`` ran: is it above every other model of that seed?"""
    by = {(r["order"], r["seed"], _label(r)): r["test_accuracy"] for r in results}
    lines = []
    for (order, seed, name), acc in sorted(by.items()):
        if name != model:
            continue
        others = {m: a for (o, s, m), a in by.items() if o == order and s == seed and m != model}
        beaten = ", ".join(f"{m} {a:.2f}" + (" (not below)" if a >= acc else "") for m, a in sorted(others.items()))
        lines.append(f"{order} seed {seed}: {model} {acc:.2f} vs {beaten or 'nothing yet'}")
    return "\n".join(lines)


def reference_classifiers(work: Path) -> str:
    """Two pixel-order-free classifiers on the same split, for scale: logistic regression and an RBF SVM
    (scikit-learn's defaults) on the 64 grey levels in [0, 1]."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC
    from fairseq_focus.data.pixel_splits import read_split
    data = prepare(work)
    splits = {s: read_split(data, s) for s in ("train", "valid", "test")}
    x = {s: images.reshape(len(images), -1).astype(np.float64) / 255.0 for s, (images, _) in splits.items()}
    lines = []
    for name, clf in (("logistic regression", LogisticRegression(max_iter=5000)), ("RBF SVM", SVC(gamma="scale"))):
        clf.fit(x["train"], splits["train"][1])
        scores = {s: 100.0 * clf.score(x[s], splits[s][1]) for s in ("valid", "test")}
        lines.append(f"{name}: valid {scores['valid']:.2f}, test {scores['test']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="digits_study.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="train and score one model, order and seed")
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--model", choices=sorted(MODELS), required=True)
    run.add_argument("--order", choices=sorted(ORDERS), required=True)
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--max-update", type=int, default=UPDATES)
    run.add_argument("--lr", default=TRAIN_ENV["LR"], help="peak learning rate (default %(default)s)")
    collect = sub.add_parser("collect", help="print the table of every result in W/results")
    collect.add_argument("--work", type=Path, required=True)
    sub.add_parser("models", help="print each --model's flags")
    ref = sub.add_parser("reference", help="logistic regression and an RBF SVM on the same split, for scale")
    ref.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _dispatch(args) -> int:
    if args.cmd == "models":
        print("\n".join(f"{name}: {SIZE} {flags}" for name, flags in MODELS.items()))
    elif args.cmd == "reference":
        print(reference_classifiers(args.work))
    elif args.cmd == "collect":
        results = load_results(args.work)
        print(table(results) + "\n\n" + head_to_head(results))
    else:
        out = args.work / "results" / f"{run_name(args.model, args.order, args.seed, args.lr, args.max_update)}.json"
        if out.exists():
            raise StudyError(f"{out} exists; remove it to run again")
        result = train_and_eval(args.work, args.model, args.order, args.seed, args.max_update, args.lr)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{result['run']}: test accuracy {result['test_accuracy']:.2f} ({result['params']:,} params, "
              f"{args.max_update} updates, {result['wall_seconds']:.0f} s) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
