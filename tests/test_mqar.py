"""MQAR (issue 31): the generator's invariants, the task's batches and token mapping, the labelled-positions
criterion on a hand-made example and against fairseq's cross_entropy, and end-to-end runs (marked slow)."""
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import REPO, USER_DIR, run

from fairseq_focus.data.mqar import (
    BLANK, NO_LABEL, SPLITS, check_sizes, generate_mqar, ordered_draws, query_slots, slot_probabilities, split_seed,
)

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
RECIPE = REPO / "recipes" / "mqar"


def _check_invariants(inputs, labels, vocab, seq_len, pairs, random_non_queries):
    half, n = vocab // 2, pairs
    assert inputs.shape == labels.shape == (len(inputs), seq_len)
    keys, values = inputs[:, 0:2 * n:2], inputs[:, 1:2 * n:2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < vocab)).all()
    for row in range(len(inputs)):
        assert len(set(keys[row])) == n and len(set(values[row])) == n  # drawn without replacement
        value_of = dict(zip(keys[row], values[row]))
        where = np.flatnonzero(labels[row] != NO_LABEL)
        assert len(where) == n and (where >= 2 * n).all() and ((where - 2 * n) % 2 == 0).all()  # even offsets
        queried = inputs[row, where]
        assert sorted(queried) == sorted(keys[row])  # every key queried exactly once
        for pos, key in zip(where, queried):
            assert list(inputs[row, :2 * n]).count(key) == 1  # and present exactly once in the context
            assert labels[row, pos] == value_of[key]  # its label is its value
        rest = np.ones(seq_len, dtype=bool)
        rest[:2 * n] = False
        rest[where] = False
        if random_non_queries:
            assert ((inputs[row, rest] >= 0) & (inputs[row, rest] < vocab)).all()
        else:
            assert (inputs[row, rest] == BLANK).all()


@pytest.mark.parametrize("vocab,seq_len,pairs,random_non_queries", [
    (8192, 64, 4, False), (8192, 256, 16, False), (8192, 512, 64, True), (16, 16, 4, False), (10, 17, 4, True),
])
def test_generator_invariants(vocab, seq_len, pairs, random_non_queries):
    inputs, labels = generate_mqar(50, vocab, seq_len, pairs, seed=3, random_non_queries=random_non_queries)
    _check_invariants(inputs, labels, vocab, seq_len, pairs, random_non_queries)


def test_random_non_queries_fills_the_blanks():
    blank, _ = generate_mqar(20, 8192, 64, 4, seed=1)
    filled, _ = generate_mqar(20, 8192, 64, 4, seed=1, random_non_queries=True)
    assert (blank == BLANK).sum() == 20 * (64 - 8 - 4) and (filled == BLANK).sum() < 5


def test_deterministic_and_global_state_untouched():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a = generate_mqar(30, 8192, 64, 4, seed=5)
    b = generate_mqar(30, 8192, 64, 4, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(np.random.get_state()[1], before)


def test_splits_never_share_a_seed_and_differ():
    seeds = [split_seed(s, split) for s in range(100) for split in SPLITS]
    assert len(set(seeds)) == len(seeds)
    data = {split: generate_mqar(50, 8192, 64, 4, split_seed(1, split))[0] for split in SPLITS}
    rows = {split: {r.tobytes() for r in data[split]} for split in SPLITS}
    assert not rows["train"] & rows["valid"] and not rows["train"] & rows["test"] and not rows["valid"] & rows["test"]
    with pytest.raises(ValueError, match="splits"):
        split_seed(1, "dev")
    with pytest.raises(ValueError, match="negative"):
        split_seed(-1, "train")


def test_weighted_draws_follow_successive_sampling():
    """The first draw ∝ w; the second ∝ w among the rest: P(2nd = j) = Σ_i p_i p_j / (1 − p_i)."""
    w = np.array([1.0, 2.0, 3.0, 4.0])
    p = w / w.sum()
    draws = ordered_draws(np.random.default_rng(0), 200_000, 2, w)
    assert (draws[:, 0] != draws[:, 1]).all()
    first = np.bincount(draws[:, 0], minlength=4) / len(draws)
    second = np.bincount(draws[:, 1], minlength=4) / len(draws)
    expected_second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)])
    assert np.allclose(first, p, atol=0.005) and np.allclose(second, expected_second, atol=0.005)


def test_query_slots_follow_the_power_law():
    """Query slots are N successive draws ∝ (s + 1)^(α − 1): the earliest query's slot is distributed as
    the smallest of N such draws."""
    seq_len, pairs = 64, 4
    p = slot_probabilities(query_slots(seq_len, pairs), 0.01)
    _, labels = generate_mqar(20_000, 8192, seq_len, pairs, seed=2)
    first = (np.argmax(labels != NO_LABEL, axis=1) - 2 * pairs) // 2  # the earliest query's slot
    assert p[0] > 2 * p[-1]
    # reference: numpy's own successive sampling without replacement
    rng = np.random.default_rng(9)
    reference = np.array([rng.choice(p.size, pairs, replace=False, p=p).min() for _ in range(20_000)])
    for slot in (0, 1, 5):
        assert abs(np.mean(first == slot) - np.mean(reference == slot)) < 0.015


@pytest.mark.parametrize("args,match", [
    ((8192, 15, 4, 0.01), "too short"), ((8, 64, 4, 0.01), "distinct keys"), ((8192, 64, 0, 0.01), "at least 1"),
    ((8192, 64, 4, 0.0), "power-a"),
])
def test_bad_sizes_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        check_sizes(*args)


def _task(**overrides):
    from fairseq.tasks import setup_task
    from omegaconf import OmegaConf
    from fairseq_focus.tasks.mqar import MQARConfig
    values = {"vocab_size": 64, "seq_len": 32, "num_pairs": 4, "num_train": 40, "num_valid": 20, "num_test": 20,
              "seed": 1, **overrides}
    return setup_task(OmegaConf.merge(OmegaConf.structured(MQARConfig), {"_name": "mqar", **values}))


def test_token_mapping_and_batches_hold_every_example():
    task = _task()
    d = task.dictionary
    assert len(d) == 64 + 4 and d.index("0") == 4 and d.index("63") == 67 and d.pad() == 1
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batches = task.get_batch_iterator(dataset, max_sentences=8, required_batch_size_multiple=8).next_epoch_itr(
        shuffle=False)
    seen = []
    for batch in batches:
        src, tgt = batch["net_input"]["src_tokens"], batch["target"]
        assert src.shape == tgt.shape and src.size(1) == 32
        assert (src >= 4).all() and (src < 68).all()  # MQAR ids + 4: pad (1) is never an input token
        assert batch["ntokens"] == 4 * src.size(0) == int(tgt.ne(d.pad()).sum())
        seen += batch["id"].tolist()
    assert sorted(seen) == list(range(20))
    inputs, labels = generate_mqar(20, 64, 32, 4, split_seed(1, "valid"))
    item = dataset[3]
    assert torch.equal(item["source"], torch.from_numpy(inputs[3] + 4))
    assert torch.equal(item["target"], torch.from_numpy(np.where(labels[3] == NO_LABEL, 1, labels[3] + 4)))


def test_registered_names_resolve_to_our_classes():
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.tasks import TASK_REGISTRY
    from fairseq_focus.criterions.labelled_cross_entropy import LabelledCrossEntropyCriterion
    from fairseq_focus.tasks.mqar import MQARTask
    assert TASK_REGISTRY["mqar"] is MQARTask
    assert CRITERION_REGISTRY["focus_labelled_cross_entropy"] is LabelledCrossEntropyCriterion


class _StubLM(nn.Module):
    """Features are the given logits; the output layer is the identity and records what it was given."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.calls = logits, []

    def forward(self, src_tokens, src_lengths=None, features_only=False):
        assert features_only, "the criterion must ask for features"
        return self.logits, None

    def output_layer(self, features):
        self.calls.append(tuple(features.shape))
        return features


def _reduce(criterion, logging_outputs):
    from fairseq import metrics
    with metrics.aggregate(new_root=True) as agg:
        criterion.reduce_metrics(logging_outputs)
    return agg.get_smoothed_values()


def test_criterion_scores_a_hand_made_example():
    from fairseq.data import Dictionary
    from fairseq_focus.criterions.labelled_cross_entropy import LabelledCrossEntropyCriterion
    d = Dictionary()  # pad = 1; 4 symbols, so V = 4 + 4 = 8 logits
    for s in "abcd":
        d.add_symbol(s)
    task = type("T", (), {"target_dictionary": d})()
    logits = torch.zeros(1, 4, 8)
    logits[0, 1, 5] = math.log(3)  # position 1, label 5: p = 3 / (3 + 7) = 0.3, arg-max right
    logits[0, 3, 7], logits[0, 3, 6] = math.log(4), math.log(2)  # position 3, label 6: p = 2 / 12, arg-max 7
    logits[0, 0, 2] = 50.0  # unlabelled positions must not count
    target = torch.tensor([[1, 5, 1, 6]])
    model = _StubLM(logits)
    sample = {"net_input": {"src_tokens": torch.full((1, 4), 4), "src_lengths": torch.tensor([4])},
              "target": target, "ntokens": 2}
    loss, size, log = LabelledCrossEntropyCriterion(task)(model, sample)
    assert model.calls == [(2, 8)]  # the output layer saw the two labelled rows only
    assert size == 2 and log["ncorrect"] == 1
    assert loss.item() == pytest.approx(-math.log(0.3) - math.log(2 / 12), rel=1e-6)  # = ln 20
    stats = _reduce(LabelledCrossEntropyCriterion, [log])
    assert stats["accuracy"] == pytest.approx(50.0)
    assert stats["loss"] == pytest.approx(math.log2(20) / 2, abs=1e-4)


@pytest.mark.parametrize("extra", [[], ["--autocast-bf16"], ["--arch", "mamba2_lm"], ["--arch", "gated_deltanet_lm"],
                                   ["--arch", "transformer_pp_lm"]])
def test_criterion_equals_cross_entropy_on_a_real_model(extra):
    """focus_recall through the task: the labelled-rows loss is fairseq's cross_entropy on the same sample
    (pad targets are ignored there), and the accuracy is the arg-max of the full logits at the queries; in fp32
    and under the model's bf16 autocast."""
    from fairseq import options
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_focus.criterions.labelled_cross_entropy import LabelledCrossEntropyCriterion
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["--user-dir", USER_DIR, "--task", "mqar", "--vocab-size", "64",
                                                "--seq-len", "32", "--num-pairs", "4", "--arch", "focus_recall",
                                                "--num-train", "8", "--num-valid", "8", "--num-test", "8",
                                                "--dropout", "0", "--cpu", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = __import__("fairseq.tasks", fromlist=["setup_task"]).setup_task(cfg.task)
    model = task.build_model(cfg.model).eval()
    task.load_dataset("valid")
    sample = task.dataset("valid").collater([task.dataset("valid")[i] for i in range(8)])
    ours = LabelledCrossEntropyCriterion(task)
    loss, size, log = ours(model, sample)
    ref_loss, ref_size, _ = CrossEntropyCriterion(task, sentence_avg=False)(model, sample)
    assert size == ref_size == 32
    # with --autocast-bf16 the features still come out fp32 (the final norm); the model's own forward runs its
    # output layer under bf16 autocast, the criterion in fp32: the losses agree to bf16 rounding
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-2 if "--autocast-bf16" in extra else 1e-5)
    full = model(**sample["net_input"])[0]
    mask = sample["target"].ne(task.dictionary.pad())
    assert log["ncorrect"] == int(full[mask].argmax(-1).eq(sample["target"][mask]).sum())


def test_half_features_meet_an_fp32_output_layer_under_autocast():
    """A model whose features come out bf16 (computed under autocast) gets its fp32 output layer under bf16
    autocast, as its own forward would run it, instead of a dtype error."""
    from fairseq.data import Dictionary
    from fairseq_focus.criterions.labelled_cross_entropy import LabelledCrossEntropyCriterion
    torch.manual_seed(0)
    d = Dictionary()
    model = _StubLM(torch.randn(2, 3, 16).bfloat16())
    model.output_layer = nn.Linear(16, len(d))  # fp32 weights
    sample = {"net_input": {"src_tokens": torch.full((2, 3), 4)}, "target": torch.tensor([[1, 2, 1], [3, 1, 0]]),
              "ntokens": 3}
    loss, size, _ = LabelledCrossEntropyCriterion(type("T", (), {"target_dictionary": d})())(model, sample)
    assert size == 3 and torch.isfinite(loss)


def test_until_solved_drops_to_zero_at_the_target():
    from fairseq import metrics
    from fairseq_focus.criterions.labelled_cross_entropy import LabelledCrossEntropyCriterion
    task = _task(stop_accuracy=90.0)
    criterion = LabelledCrossEntropyCriterion(task)
    for correct, expected in ((50, 1.0), (89, 2.0), (90, 0.0), (70, 4.0)):
        task.begin_valid_epoch(1, None)
        logs = [{"mqar_validation": 1, "loss": 1.0, "nlabelled": 60, "ncorrect": correct - 30, "ntokens": 60},
                {"mqar_validation": 1, "loss": 1.0, "nlabelled": 40, "ncorrect": 30, "ntokens": 40}]
        with metrics.aggregate(new_root=True) as agg:
            task.reduce_metrics(logs, criterion)
        assert agg.get_smoothed_values()["until_solved"] == expected
    with metrics.aggregate(new_root=True) as agg:  # training batches carry no mark: no until_solved
        task.reduce_metrics([{"loss": 1.0, "nlabelled": 10, "ncorrect": 10, "ntokens": 10}], criterion)
    assert "until_solved" not in agg.get_smoothed_values()


def _train(workdir: Path, *extra, check=True):
    return run(["fairseq-train", "--user-dir", USER_DIR, "--task", "mqar", "--vocab-size", "64", "--seq-len", "32",
                "--num-pairs", "4", "--num-train", "64", "--num-valid", "36", "--num-test", "20", "--seed", "1",
                "--criterion", "focus_labelled_cross_entropy", "--optimizer", "adam", "--lr", "3e-3",
                "--batch-size", "16", "--cpu", "--num-workers", "0", "--log-format", "json", "--log-interval", "2",
                "--best-checkpoint-metric", "until_solved", "--maximize-best-checkpoint-metric", "--patience", "1",
                "--no-epoch-checkpoints", "--save-dir", str(workdir / "ckpt"), *extra], env=ONE_THREAD, check=check)


def _valid_stats(text: str):
    return [json.loads(line[line.index("{"):]) for line in text.splitlines() if "| valid |" in line and "{" in line]


@pytest.mark.slow
def test_focus_recall_trains_validates_and_scores_the_test_split(tmp_path):
    proc = _train(tmp_path, "--arch", "focus_recall", "--max-epoch", "2")
    valid = _valid_stats(proc.stdout + proc.stderr)
    assert [int(v["epoch"]) for v in valid] == [1, 2]
    assert float(valid[-1]["valid_bsz"]) == pytest.approx(36 / 3)  # 16 + 16 + 4: every example scored
    assert 0.0 <= float(valid[-1]["valid_accuracy"]) <= 100.0 and float(valid[-1]["valid_until_solved"]) == 2
    proc = run(["fairseq-validate", "--user-dir", USER_DIR, "--task", "mqar", "--path",
                str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--valid-subset", "test", "--cpu", "--batch-size", "16",
                "--num-workers", "0", "--criterion", "focus_labelled_cross_entropy"], env=ONE_THREAD)
    assert "valid on 'test' subset" in proc.stdout + proc.stderr and "accuracy" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_reaching_the_target_stops_training(tmp_path):
    """--stop-accuracy 0 is met at once: fairseq's --patience 1 stops at the second validation, not the fifth."""
    proc = _train(tmp_path, "--arch", "focus_recall_paper", "--max-epoch", "5", "--stop-accuracy", "0")
    text = proc.stdout + proc.stderr
    assert [int(v["epoch"]) for v in _valid_stats(text)] == [1, 2] and "early stop" in text


@pytest.mark.slow
def test_bad_settings_fail_with_a_clear_error(tmp_path):
    proc = _train(tmp_path, "--arch", "focus_recall", "--max-epoch", "1", "--num-pairs", "9", check=False)
    assert proc.returncode != 0 and "--seq-len 32 is too short for --num-pairs 9" in proc.stderr
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


# --- the recipe (recipes/mqar): variants, state sizes, train.sh resuming, the grid and its table ---

def _recipe_module(name):
    import importlib
    import sys
    sys.path.insert(0, str(RECIPE))
    return importlib.import_module(name)


def test_variants_file_substitutes_widths_and_refuses_bad_lines(tmp_path):
    variants = _recipe_module("variants")
    read = variants.read_variants(RECIPE / "variants.txt")
    assert {"focus", "focus-paper", "based", "transformer"} <= {v.name for v in read}
    focus = next(v for v in read if v.name == "focus")
    flags = focus.flags(128)
    assert flags[flags.index("--decoder-embed-dim") + 1] == "128" and flags[flags.index("--decoder-z-dim") + 1] == "64"
    bad = tmp_path / "v.txt"
    bad.write_text("x focus_recall --decoder-embed-dim {3D}\n")
    with pytest.raises(ValueError, match="unknown placeholder"):
        variants.read_variants(bad)[0].flags(64)
    with pytest.raises(ValueError, match="no variant nope"):
        variants.read_variants(RECIPE / "variants.txt", ["nope"])


def test_state_size_of_focus_recall_by_hand():
    """focus_recall at D 64: IIR 2·64 = 128; Based 2 heads · 273 features · (64 + 1) + conv 2 · (2·2·16 + 128) =
    35,874; chunk cache 31 · (32 + 128) = 4,960; the shared hypernetwork's history at L = 64 (K = 66, R = 16, O = 4)
    ((65 + 16 + 4) · 64) / 2 layers = 2,720, which grows with L."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    state_size = _recipe_module("state_size")
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--user-dir", USER_DIR, "--task", "mqar", "--seq-len", "64", "--arch", "focus_recall"])
    cfg = convert_namespace_to_omegaconf(args).model
    state = state_size.state_per_layer("focus_lm", cfg, 64)
    assert state["iir"] == 128 and state["global_attn"] == 2 * 273 * 65 + 2 * 192 and state["chunk_kv"] == 4960
    assert state["hyper"] == (65 + 16 + 4) * 64 // 2 and state["grows"] == state["hyper"]
    assert state["fixed"] == 128 + 35874 + 4960
    assert state_size.state_per_layer("transformer_lm", {"decoder_embed_dim": 64}, 512)["total"] == 2 * 512 * 64
    with pytest.raises(KeyError, match="PEER_FIELDS"):
        state_size.state_per_layer("mamba2_lm", {"decoder_embed_dim": 64}, 64)


def test_state_size_of_the_peers_by_hand():
    """At D 64 with the archs' defaults: Mamba-2 SSD 2·64 · 64 = 8,192 and conv 3 · (128 + 2·64) = 768; Gated
    DeltaNet 2 heads · 64 · 128 = 16,384 and conv 3 · 2 · (2·64 + 128) = 1,536 — read from the built configs."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    state_size = _recipe_module("state_size")
    totals = {}
    for arch in ("mamba2_lm", "gated_deltanet_lm"):
        args = options.parse_args_and_arch(options.get_training_parser(), [
            "--user-dir", USER_DIR, "--task", "mqar", "--seq-len", "64", "--arch", arch, "--decoder-embed-dim", "64"])
        totals[arch] = state_size.state_per_layer(arch, convert_namespace_to_omegaconf(args).model, 64)["total"]
    assert totals == {"mamba2_lm": 8192 + 768, "gated_deltanet_lm": 16384 + 1536}


def _recipe_env(tmp_path):
    return {"VOCAB": "64", "NUM_TRAIN": "32", "NUM_VALID": "16", "NUM_TEST": "16", "BATCH": "16", "USER_DIR": USER_DIR,
            "PYTHON": os.sys.executable, **ONE_THREAD}


@pytest.mark.slow
def test_train_sh_resumes_and_skips_a_finished_run(tmp_path):
    out = tmp_path / "run"
    env = {**_recipe_env(tmp_path), "ARCH": "focus_recall_transformer", "L": "16", "N": "2", "EPOCHS": "1",
           "OUT": str(out)}
    run(["bash", str(RECIPE / "train.sh")], env=env)
    assert (out / "done").exists() and (out / "test.log").exists() and not (out / "checkpoint_best.pt").exists()
    again = run(["bash", str(RECIPE / "train.sh")], env=env)
    assert "done already" in again.stdout
    (out / "done").unlink()  # an unfinished run: the same command with more epochs continues from epoch 2
    resumed = run(["bash", str(RECIPE / "train.sh")], env={**env, "EPOCHS": "2"})
    assert "loaded checkpoint" in (resumed.stdout + resumed.stderr).lower()
    log = (out / "train.log").read_text()  # the --log-file holds the bare JSON objects
    epochs = [int(json.loads(line)["epoch"]) for line in log.splitlines() if '"valid_accuracy"' in line]
    assert epochs == [1, 2] and len((out / "times").read_text().splitlines()) == 2
    bad = run(["bash", str(RECIPE / "train.sh")], env={**env, "N": "0"}, check=False)
    assert bad.returncode == 2 and "N must be a positive integer" in bad.stderr


@pytest.mark.slow
def test_grid_runs_two_at_a_time_and_collects_a_table_and_plot(tmp_path):
    work = tmp_path / "work"
    env = {**_recipe_env(tmp_path), "WORK": str(work), "CELLS": "16:2:32:1", "LRS": "3e-3",
           "ONLY": "focus transformer", "JOBS": "2"}
    proc = run(["bash", str(RECIPE / "grid.sh")], env=env)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| focus |") or line.startswith("| transformer |")]
    assert len(rows) == 2, proc.stdout[-3000:]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:5] == ["16", "2", "64", "3e-3"] and re.fullmatch(r"[\d.]+", cells[6]), row  # test accuracy
    assert (work / "table.md").exists() and (work / "accuracy_vs_state.png").stat().st_size > 0
    again = run(["bash", str(RECIPE / "grid.sh")], env=env)
    assert again.stdout.count("done already") == 2
    bad = run(["bash", str(RECIPE / "grid.sh")], env={**env, "CELLS": "16:2"}, check=False)
    assert bad.returncode == 2 and "L:N:NUM_TRAIN:EPOCHS" in bad.stderr
