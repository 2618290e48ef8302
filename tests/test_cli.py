"""End to end through fairseq's real command-line tools with --user-dir fairseq_focus."""
import math
import re

import pytest
import torch

from helpers import TINY_LM, USER_DIR, run

pytestmark = pytest.mark.slow

TRAIN = ["--user-dir", USER_DIR, "--task", "focus_lm", "--arch", "focus_lm", "--cpu", "--num-workers", "0",
         "--tokens-per-sample", "128", "--max-tokens", "1024", "--optimizer", "adam", "--lr", "3e-3",
         "--log-format", "simple", "--log-interval", "1", "--no-epoch-checkpoints", "--seed", "1"] + TINY_LM


def train(data, save_dir, updates, extra=()):
    return run(["fairseq-train", str(data), "--save-dir", str(save_dir), "--max-update", str(updates), *TRAIN, *extra])


def eval_lm(data, ckpt, extra=()):
    out = run(["fairseq-eval-lm", str(data), "--user-dir", USER_DIR, "--path", str(ckpt), "--cpu",
               "--gen-subset", "test", "--tokens-per-sample", "128", "--max-tokens", "2048", "--num-workers", "0", *extra])
    match = re.search(r"Loss \(base 2\): ([0-9.]+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    return float(match.group(1))


MEGA_ARCHS = {"selective": "focus_lm_enwik8_mega", "adaptive": "focus_lm_enwik8_mega_adaptive"}


@pytest.mark.parametrize("filt,wiring", [("selective", "paper"), ("adaptive", "paper"), ("static", "paper"),
                                         ("ema", "paper"), ("ema", "mega"), ("selective", "mega"), ("adaptive", "mega")])
def test_train_then_eval_lm_reports_bpc(byte_corpus, tmp_path, filt, wiring):
    """The default (--arch focus_lm, no filter flag) is the selective head; the mega wiring comes from its flag
    (MEGA: ema) and from the named archs (MEGA with an IIR head, at the tiny size the flags give)."""
    if filt == "selective" and wiring == "paper":
        model = []
    elif filt == "ema" or wiring == "paper":
        model = ["--focus-filter", filt, "--block-wiring", wiring]
    else:
        model = ["--arch", MEGA_ARCHS[filt]]
    proc = train(byte_corpus, tmp_path / "ckpt", 6, [*model, "--tensorboard-logdir", str(tmp_path / "tb")])
    log = proc.stdout + proc.stderr
    assert f"filter={filt}" in log and f"wiring={wiring}" in log and re.search(r"focus_lm: \d+ parameters", log)
    assert re.search(r"valid on 'valid' subset .*\| bpc [0-9.]+", log), "the task logs valid BPC"
    assert list((tmp_path / "tb").rglob("events.out.tfevents*")), "tensorboard logs were written"
    bpc = eval_lm(byte_corpus, tmp_path / "ckpt" / "checkpoint_best.pt")
    assert math.isfinite(bpc) and 0 < bpc < 9  # an untrained byte model starts near log2(260) ≈ 8
    # the stock language_modeling task scores the same checkpoint identically
    assert eval_lm(byte_corpus, tmp_path / "ckpt" / "checkpoint_best.pt", ["--task", "language_modeling"]) == bpc


def test_resume_continues_from_checkpoint_last(byte_corpus, tmp_path):
    train(byte_corpus, tmp_path, 3)
    proc = train(byte_corpus, tmp_path, 7)
    log = proc.stdout + proc.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 3 updates\)", log), log[-3000:]
    assert "num_updates 7" in log or "num_updates=7" in log
    state = torch.load(tmp_path / "checkpoint_last.pt")  # torch >= 2.6: weights_only=True by default
    assert state["optimizer_history"][-1]["num_updates"] == 7


def test_causal_lm_refuses_the_paper_filter(byte_corpus, tmp_path):
    proc = run(["fairseq-train", str(byte_corpus), "--save-dir", str(tmp_path), "--max-update", "1",
                *TRAIN, "--iir-mode", "paper"], check=False)
    assert proc.returncode != 0
    assert "--iir-mode paper is not causal" in proc.stderr
    assert not list(tmp_path.glob("*.pt"))
