"""fairseq's own language-model test path, run with ``--user-dir fairseq_focus --arch focus_lm``.

The sequence is the one of fairseq's ``tests/test_binaries.py`` ``TestLanguageModeling::test_transformer_lm``
(via its ``tests/utils.py`` helpers, which fairseq does not install, so the steps are written here): random
letter lines, ``preprocess --only-source``, train one epoch with ``--add-bos-token --nval 1``, ``validate``
the last checkpoint, ``eval-lm`` with and without ``--context-window 25``, then ``generate`` with
``--sample-break-mode eos --tokens-per-sample 500`` and ``interactive`` on one line. Every step calls
fairseq's own ``fairseq_cli`` entry points in-process, as fairseq's tests do, for each filter, IIR mode
and both tasks. ``--sample-break-mode eos`` goes through ``TokenBlockDataset(break_mode="eos")``, which
needs numpy < 2 (requirements/pins.txt).
"""
import contextlib
import io
import math
import random
import re
from pathlib import Path

import pytest
import torch
from fairseq import options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils
from fairseq_cli import eval_lm, generate, interactive, preprocess, train, validate

from helpers import USER_DIR

pytestmark = pytest.mark.slow

LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
LINES_PER_SPLIT = 100
TINY = ["--decoder-layers", "2", "--decoder-embed-dim", "16", "--decoder-hidden-dim", "16",
        "--decoder-ffn-embed-dim", "16", "--decoder-z-dim", "8", "--bin-size", "16", "--chunk-size", "32",
        "--hyper-kernel-size", "64"]
VARIANTS = [("adaptive", "causal"), ("adaptive", "carry"), ("static", "causal"), ("static", "carry"), ("ema", None)]


def write_letter_lines(path: Path, rng: random.Random, num_lines: int, max_len: int = 20) -> None:
    """Lines of 1..max_len random lowercase letters separated by spaces (fairseq's dummy LM data)."""
    lines = (" ".join(rng.choice(LETTERS) for _ in range(rng.randint(1, max_len))) for _ in range(num_lines))
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture(scope="module")
def letter_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("peer_lm")
    rng = random.Random(0)
    for split in ("train", "valid", "test"):
        write_letter_lines(root / f"{split}.out", rng, LINES_PER_SPLIT)
    args = options.get_preprocessing_parser().parse_args(
        ["--only-source", "--trainpref", str(root / "train.out"), "--validpref", str(root / "valid.out"),
         "--testpref", str(root / "test.out"), "--destdir", str(root), "--workers", "1"])
    preprocess.main(args)
    return root


def parse(parser, argv):
    return options.parse_args_and_arch(parser, argv)


def train_lm(data: Path, save_dir: Path, task: str, variant) -> None:
    filt, mode = variant
    argv = ["--task", task, str(data), "--user-dir", USER_DIR, "--arch", "focus_lm", "--cpu",
            "--optimizer", "adam", "--lr", "0.0001", "--max-tokens", "500", "--tokens-per-sample", "500",
            "--save-dir", str(save_dir), "--max-epoch", "1", "--no-progress-bar", "--distributed-world-size", "1",
            "--ddp-backend", "no_c10d", "--num-workers", "0", "--add-bos-token", "--nval", "1",
            "--focus-filter", filt, *(["--iir-mode", mode] if mode else []), *TINY]
    cfg = convert_namespace_to_omegaconf(parse(options.get_training_parser(), argv))
    distributed_utils.call_main(cfg, train.main)


def common_eval(data: Path, ckpt: Path):
    return [str(data), "--user-dir", USER_DIR, "--path", str(ckpt), "--cpu", "--no-progress-bar", "--num-workers", "0"]


@pytest.mark.parametrize("task", ["language_modeling", "focus_lm"])
@pytest.mark.parametrize("variant", VARIANTS, ids=["-".join(filter(None, v)) for v in VARIANTS])
def test_fairseq_lm_sequence(letter_data, tmp_path, capfd, monkeypatch, task, variant):
    ckpt = tmp_path / "checkpoint_last.pt"

    # train, as fairseq's train_language_model(..., ["--add-bos-token", "--nval", "1"], run_validation=True)
    train_lm(letter_data, tmp_path, task, variant)
    state = torch.load(ckpt, weights_only=False)
    cfg = state["cfg"]
    assert cfg["task"]["_name"] == task and cfg["task"]["add_bos_token"]
    assert cfg["model"]["_name"] == "focus_lm" and cfg["model"]["focus_filter"] == variant[0]
    if variant[1]:
        assert cfg["model"]["iir_mode"] == variant[1]
    assert state["optimizer_history"][-1]["num_updates"] > 0

    capfd.readouterr()
    validate.main(parse(options.get_validation_parser(),
                        ["--task", task, *common_eval(letter_data, ckpt), "--valid-subset", "valid", "--max-tokens", "500"]))
    log = "".join(capfd.readouterr())  # fairseq's log handler writes to the process's stdout
    match = re.search(r"valid on 'valid' subset \| loss ([0-9.]+)", log)
    assert match and math.isfinite(float(match.group(1))), log[-2000:]

    # eval-lm, without and with a context window: the base-2 loss per token of a barely trained model
    # is finite and within twice the uniform guess, log2(V)
    uniform_bits = math.log2(len(Dictionary.load(str(letter_data / "dict.txt"))))
    for extra in ([], ["--context-window", "25"]):
        results = eval_lm.main(convert_namespace_to_omegaconf(
            parse(options.get_eval_lm_parser(), common_eval(letter_data, ckpt) + extra)))
        assert math.isfinite(results["loss"]) and 0 < results["loss"] < 2 * uniform_bits, (extra, results)

    # generate (batch) and interactive on one line, as fairseq's generate_main
    gen_args = parse(options.get_generation_parser(),
                     [*common_eval(letter_data, ckpt), "--beam", "3", "--batch-size", "64", "--max-len-b", "5",
                      "--gen-subset", "valid", "--task", task, "--sample-break-mode", "eos",
                      "--tokens-per-sample", "500"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        generate.main(gen_args)
    lines = out.getvalue().splitlines()
    sources = {l.split("\t")[0][2:]: l.split("\t")[1].split() for l in lines if l.startswith("S-")}
    hyps = {l.split("\t")[0][2:]: l.split("\t")[2].split() for l in lines if l.startswith("H-")}
    # fairseq prints 96 of the 100 valid lines here, stock transformer_lm too (checked by hand with
    # fairseq-generate on both); each hypothesis is forced to start with its source prefix (--max-len-b 5)
    assert len(sources) >= 90 and hyps.keys() == sources.keys(), out.getvalue()[-2000:]
    for key, src in sources.items():
        assert hyps[key][:min(len(src), 5)] == src[:5], (key, src, hyps[key])

    gen_args.buffer_size, gen_args.input, gen_args.batch_size = 0, "-", None
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO("h e l l o\n"))
    with contextlib.redirect_stdout(out):
        interactive.main(convert_namespace_to_omegaconf(gen_args))
    assert sum(line.startswith("H-") for line in out.getvalue().splitlines()) == 1, out.getvalue()[-2000:]

