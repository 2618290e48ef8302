"""associative_recall: the generator, the task's data and metric, the recall archs, causality, and
end-to-end runs through fairseq's CLIs (marked slow)."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, USER_DIR, run

from fairseq_focus.data.associative_recall import (
    example_length, generate_example, generate_recall_data, recall_vocab,
)
from fairseq_focus.tasks.associative_recall import AssociativeRecallTask, last_token_hits

RECIPE = REPO / "recipes" / "associative_recall"
# The CLI runs use one thread: these models are small, and two OpenMP threads on a busy 2-core
# machine made one 17 s run take minutes.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


# ---- generator -----------------------------------------------------------------------------------

def test_vocab_layout_matches_reference_ids():
    v = recall_vocab(30)
    assert len(v) == 30 and v.names[v.noop] == "." and v.names[v.copy_prefix] == "=>"
    assert v.noop == 0 and v.copy_prefix == 29  # names sorted as strings: "." < digits < "=>"
    assert len(v.keys) == len(v.values) == 14 and not set(v.keys) & set(v.values)
    assert [v.names[i] for i in v.keys[:3]] == ["0", "1", "10"]  # string order, as the reference


def test_golden_example_from_reference_generator():
    """The first training example of safari's ICLDataModule(num_examples=2, num_test_examples=1,
    vocab_size=30, input_seq_len=30, copy_method="assoc_recall", seed=0) after setup(): input ids
    then the last label. (Produced once by running the reference module; see the recipe README.)"""
    reference = [14, 23, 11, 24, 9, 17, 8, 15, 8, 15, 14, 23, 4, 18, 12, 27, 10, 26, 1, 26, 6, 15, 13, 22,
                 8, 15, 1, 26, 11, 24, 29, 11, 24]
    train, _ = generate_recall_data(30, 30, num_train=2, num_test=1, seed=0)
    assert train[0].tolist() == reference


def test_deterministic_per_seed():
    a = generate_recall_data(20, 30, 50, 10, seed=3)
    b = generate_recall_data(20, 30, 50, 10, seed=3)
    c = generate_recall_data(20, 30, 50, 10, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_global_random_state_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    generate_recall_data(20, 30, 20, 5, seed=0)
    assert np.array_equal(before, np.random.get_state()[1])


@pytest.mark.parametrize("seq_len,vocab_size", [(2, 4), (9, 8), (30, 30), (64, 30)])
def test_example_structure(seq_len, vocab_size):
    v = recall_vocab(vocab_size)
    rng = np.random.default_rng(seq_len)
    keys, values = set(v.keys.tolist()), set(v.values.tolist())
    for _ in range(200):
        ex = generate_example(rng, v, seq_len)
        assert len(ex) == example_length(seq_len) == 2 * (seq_len // 2) + 3
        pairs, (prefix, query, answer) = ex[:-3].reshape(-1, 2), ex[-3:]
        assert set(pairs[:, 0].tolist()) <= keys and set(pairs[:, 1].tolist()) <= values
        # special tokens only where they belong: one copy prefix, right before the query; no no-op
        assert prefix == v.copy_prefix and (ex == v.copy_prefix).sum() == 1 and (ex == v.noop).sum() == 0
        assert query in keys and answer in values
        # one key->value map per example, and the query key occurred earlier with the answer
        mapping = {}
        for k, val in pairs.tolist():
            assert mapping.setdefault(k, val) == val
        assert mapping[int(query)] == answer


def test_train_test_disjoint_and_distinct_even_when_collisions_are_likely():
    # L = 6, vocab 8: 3 keys, 3 values -> few possible examples; the reference's test set overlaps
    # its train set here (5 of 20 for seed 3); ours must not
    train, test = generate_recall_data(6, 8, 100, 20, seed=3)
    rows_train = {r.tobytes() for r in train}
    rows_test = {r.tobytes() for r in test}
    assert len(rows_train) == 100 and len(rows_test) == 20 and not rows_train & rows_test


def test_too_few_possible_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct examples"):
        generate_recall_data(2, 4, 5, 1, seed=0)  # one key, one value: a single possible example


@pytest.mark.parametrize("kwargs,match", [(dict(seq_len=1), "seq-len"), (dict(vocab_size=3), "vocab-size"),
                                          (dict(num_train=-1), "num-train")])
def test_bad_sizes_are_refused(kwargs, match):
    args = dict(seq_len=8, vocab_size=10, num_train=4, num_test=2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate_recall_data(**args)


# ---- metric and task data ---------------------------------------------------------------------------

def test_metric_counts_only_the_last_position():
    pad, bsz, length, vocab = 1, 3, 5, 12
    target = torch.randint(4, vocab, (bsz, length))
    target[2, -2:] = pad  # a right-padded row: its last real target is at index 2
    right_everywhere = torch.nn.functional.one_hot(target, vocab).float()
    wrong_last = right_everywhere.clone()
    rows, last = torch.arange(bsz), torch.tensor([4, 4, 2])
    wrong_last[rows, last] = torch.roll(wrong_last[rows, last], 1, dims=-1)
    assert last_token_hits(right_everywhere, target, pad) == (3, 3)
    assert last_token_hits(wrong_last, target, pad) == (0, 3)
    wrong_elsewhere = torch.roll(right_everywhere, 1, dims=-1)
    wrong_elsewhere[rows, last] = right_everywhere[rows, last]
    assert last_token_hits(wrong_elsewhere, target, pad) == (3, 3)


def _task(seq_len=12, vocab_size=10, num_train=40, num_test=10, seed=5):
    from fairseq.tasks import setup_task
    from omegaconf import OmegaConf
    from fairseq_focus.tasks.associative_recall import AssociativeRecallConfig
    cfg = OmegaConf.structured(AssociativeRecallConfig(seq_len=seq_len, vocab_size=vocab_size, num_train=num_train,
                                                       num_test=num_test, seed=seed))
    cfg._name = "associative_recall"
    return setup_task(cfg)


def test_registered_names_resolve_to_our_classes():
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.models.transformer_lm import TransformerLanguageModel
    from fairseq.tasks import TASK_REGISTRY
    from fairseq_focus.models.focus_lm import FocusLanguageModel
    assert TASK_REGISTRY["associative_recall"] is AssociativeRecallTask
    for arch in ("focus_recall", "focus_recall_paper", "focus_recall_static", "focus_recall_ema"):
        assert ARCH_MODEL_REGISTRY[arch] is FocusLanguageModel
    assert ARCH_MODEL_REGISTRY["focus_recall_transformer"] is TransformerLanguageModel


def test_task_batches_are_shifted_examples():
    task = _task()
    train, test = task.examples()
    for split, examples in (("train", train), ("valid", test), ("test", test)):
        task.load_dataset(split)
        ds = task.dataset(split)
        batch = ds.collater([ds[i] for i in range(len(ds))])
        tokens = torch.from_numpy(examples).long() + task.dictionary.nspecial
        assert torch.equal(batch["net_input"]["src_tokens"], tokens[:, :-1])
        assert torch.equal(batch["target"], tokens[:, 1:])
    names = recall_vocab(10).names
    assert [task.dictionary[i + task.dictionary.nspecial] for i in range(len(names))] == list(names)
    with pytest.raises(ValueError, match="splits"):
        task.load_dataset("valid1")


# ---- causality of the recall models ------------------------------------------------------------------

def _recall_model(arch: str, seq_len: int, extra=()):
    from fairseq import options, tasks
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", str(seq_len), "--vocab-size", "30",
        "--num-train", "8", "--num-test", "4", "--arch", arch, "--criterion", "cross_entropy", "--cpu",
        "--dropout", "0", *extra])
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model).eval()


@pytest.mark.parametrize("arch,extra", [("focus_recall", ()), ("focus_recall_paper", ()),
                                        ("focus_recall_paper", ("--iir-mode", "carry")),
                                        ("focus_recall_static", ()), ("focus_recall_ema", ())])
def test_recall_models_are_causal(arch, extra):
    """Changing input token s changes no logit at a position t < s (L = 62: 4 bins of 16 and a short
    fifth one; attention chunks of 32)."""
    task, model = _recall_model(arch, 62, extra)
    wiring = type(model.decoder.stack.blocks[0].attn).__name__
    assert wiring == ("MegaGatedAttention" if arch == "focus_recall_ema" else "FocusGatedAttention")
    tokens = torch.from_numpy(task.examples()[0][:2, :-1]).long() + task.dictionary.nspecial  # (2, 63)
    with torch.no_grad():
        base = model(tokens)[0]
        for s in (5, 16, 31, 40, 62):
            changed = tokens.clone()
            changed[:, s] = task.dictionary.nspecial + (changed[:, s] - task.dictionary.nspecial + 1) % 30
            out = model(changed)[0]
            assert torch.allclose(out[:, :s], base[:, :s], atol=1e-5), f"position < {s} saw token {s}"
            assert not torch.allclose(out[:, s], base[:, s])


def test_batches_hold_every_example():
    """fairseq's generic batch_by_size rounds the last batch down to --required-batch-size-multiple and drops
    the rest (60 = 32 + 28 -> 32 + 24 with fairseq's default 8); the task's dataset keeps every example of
    every split, with and without the filler of --align-query-chunk."""
    from fairseq.data import data_utils
    for extra in ((), ("--align-query-chunk", "--split-chunk-size", "32")):
        task, _ = _recall_model("focus_recall_ema", 14, ("--num-test", "60", "--num-train", "60", *extra))
        for split in ("train", "valid", "test"):
            task.load_dataset(split)
            batches = task.get_batch_iterator(task.dataset(split), max_sentences=32, required_batch_size_multiple=8,
                                              max_positions=task.max_positions()).next_epoch_itr(shuffle=False)
            assert sorted(int(i) for b in batches for i in b["id"]) == list(range(60)), (split, extra)
    generic = data_utils.batch_by_size(np.arange(60), lambda i: 16, max_sentences=32, required_batch_size_multiple=8)
    assert sum(len(b) for b in generic) == 56  # what the check above guards against


def test_validation_logs_accuracy_split_by_chunk_next_to_the_frequency_rule():
    """valid_step + reduce_metrics = a direct recount with data/recall_split.py (L = 62: 64 input
    tokens; M = 24 puts the query's chunk at 48 …, so both splits hold examples)."""
    from fairseq import metrics
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion
    from fairseq_focus.data.recall_split import inside_query_chunk, most_frequent_value
    from fairseq_focus.tasks.associative_recall import model_chunk_size
    task, model = _recall_model("focus_recall", 62, ("--split-chunk-size", "24", "--num-test", "60"))
    task.load_dataset("valid")
    ds = task.dataset("valid")
    sample = ds.collater([ds[i] for i in range(len(ds))])
    _, _, log = task.valid_step(sample, model, CrossEntropyCriterion(task, False))
    with metrics.aggregate() as agg:
        task.reduce_metrics([log], CrossEntropyCriterion(task, False))
    got = agg.get_smoothed_values()
    inputs, answer = sample["net_input"]["src_tokens"], sample["target"][:, -1]
    with torch.no_grad():
        correct = model(inputs)[0][:, -1].argmax(-1).eq(answer)
    rule, inside = most_frequent_value(inputs).eq(answer), inside_query_chunk(inputs, 24)
    assert 0 < int(inside.sum()) < len(inputs)
    for suffix, mask in (("", torch.ones_like(inside)), ("_inside", inside), ("_before", ~inside)):
        assert got["accuracy" + suffix] == pytest.approx(round(100.0 * float(correct[mask].double().mean()), 2))
        assert got["freq_rule" + suffix] == pytest.approx(round(100.0 * float(rule[mask].double().mean()), 2))
    assert model_chunk_size(model) == 32  # the default split uses the model's chunk
    assert model_chunk_size(_recall_model("focus_recall_transformer", 16)[1]) is None


def test_recall_archs_follow_table6():
    _, model = _recall_model("focus_recall_paper", 1024)
    n_params = sum(p.numel() for p in model.parameters())
    _, ours = _recall_model("focus_recall", 1024)  # + the global linear attention (q/k/v projections, convs, norms)
    assert 1.1 * n_params < sum(p.numel() for p in ours.parameters()) < 1.3 * n_params
    assert model.decoder.embed_tokens.embedding_dim == 64 and len(model.decoder.stack.blocks) == 2
    assert model.decoder.stack.bin_size == 256  # NFFT = L / 4
    assert model.decoder.stack.multiple == 256  # lcm(R, M = 32): chunks of 32 tile the bins
    assert model.decoder.max_positions() == 1026 and 50_000 < n_params < 200_000
    _, tlm = _recall_model("focus_recall_transformer", 64)
    assert tlm.decoder.embed_tokens.embedding_dim == 64 and len(tlm.decoder.layers) == 2
    assert tlm.decoder.output_projection.weight.shape[1] == 64 and tlm.decoder.layers[0].self_attn.num_heads == 1


def test_the_study_switch_builds_eq6_literally_and_the_checker_sees_its_lookahead():
    """--study-allow-lookahead (associative_recall only) builds --iir-mode paper, which looks ahead inside a
    bin: the perturbation check that the causal models pass finds it; without the switch it is refused."""
    with pytest.raises(ValueError, match="is not causal"):
        _recall_model("focus_recall", 62, ("--iir-mode", "paper"))
    task, model = _recall_model("focus_recall", 62, ("--iir-mode", "paper", "--study-allow-lookahead"))
    tokens = torch.from_numpy(task.examples()[0][:2, :-1]).long() + task.dictionary.nspecial
    changed = tokens.clone()
    changed[:, 40] = task.dictionary.nspecial + (changed[:, 40] - task.dictionary.nspecial + 1) % 30
    with torch.no_grad():
        moved = (model(changed)[0][:, 32:40] - model(tokens)[0][:, 32:40]).abs().max()
    assert moved > 1e-4  # positions 32..39 (bin 3: 32..47) saw token 40


def test_no_language_model_task_has_the_study_switch():
    from fairseq import options
    parser = options.get_training_parser()
    with pytest.raises(SystemExit):
        options.parse_args_and_arch(parser, [str(REPO), "--user-dir", USER_DIR, "--task", "focus_lm",
                                             "--arch", "focus_lm", "--study-allow-lookahead"])


# ---- end to end through the CLIs -------------------------------------------------------------------

def _train_cmd(arch, seq_len, workdir, *extra):
    return ["fairseq-train", "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", str(seq_len),
            "--vocab-size", "30", "--num-train", "64", "--num-test", "32", "--arch", arch,
            "--criterion", "cross_entropy", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32",
            "--max-epoch", "1", "--cpu", "--num-workers", "0", "--log-format", "json",
            "--save-dir", str(workdir / "ckpt"), *extra]


@pytest.mark.slow
def test_paper_mode_is_refused_through_the_cli(tmp_path):
    proc = run(_train_cmd("focus_recall", 16, tmp_path, "--iir-mode", "paper"), env=ONE_THREAD, check=False)
    assert proc.returncode != 0
    assert "--iir-mode paper is not causal" in proc.stderr + proc.stdout
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["focus_recall", "focus_recall_static", "focus_recall_ema", "focus_recall_transformer"])
def test_every_model_trains_and_reports_accuracy(tmp_path, arch):
    proc = run(_train_cmd(arch, 16, tmp_path), env=ONE_THREAD)
    valid = [json.loads(line[line.index("{"):]) for line in proc.stdout.splitlines() + proc.stderr.splitlines()
             if "| valid |" in line and "{" in line]
    assert valid and 0.0 <= float(valid[-1]["valid_accuracy"]) <= 100.0
    proc = run(["fairseq-validate", "--user-dir", USER_DIR, "--task", "associative_recall", "--path",
                str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--valid-subset", "test", "--cpu",
                "--batch-size", "32", "--num-workers", "0"], env=ONE_THREAD)
    assert re.search(r"accuracy \d", proc.stdout + proc.stderr)


# Focus learns recall: L = 16 (8 pairs, one attention chunk), vocabulary 10 (4 keys, 4 values:
# chance 25%), 500 training examples, 12 epochs (192 updates). Final accuracies measured with this
# command: 99.0 / 100.0 / 100.0 for seeds 1 / 2 / 3 (recipe README). The threshold sits well above
# chance and above what guessing the most frequent value of the context scores on these held-out
# sets (47.5 / 51.5 / 50.0%), which needs no recall; and ~20 points below what every seed reached.
LEARN_THRESHOLD = 80.0


def _last_valid_accuracy(log_text: str) -> float:
    accs = [float(json.loads(line[line.index("{"):])["valid_accuracy"])
            for line in log_text.splitlines() if '"valid_accuracy"' in line]
    assert accs, log_text[-2000:]
    return accs[-1]


@pytest.mark.slow
def test_focus_learns_recall_above_chance(tmp_path):
    proc = run(["fairseq-train", "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "16",
                "--vocab-size", "10", "--num-train", "500", "--num-test", "200", "--seed", "1",
                "--arch", "focus_recall_paper", "--criterion", "cross_entropy", "--optimizer", "adam",
                "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt",
                "--warmup-updates", "50", "--batch-size", "32", "--max-epoch", "12", "--no-save", "--cpu",
                "--num-workers", "0", "--log-format", "json"], env=ONE_THREAD)
    assert _last_valid_accuracy(proc.stdout + proc.stderr) >= LEARN_THRESHOLD


@pytest.mark.slow
def test_focus_recall_recalls_keys_that_lie_before_the_query_chunk(tmp_path):
    """Issue 25's headline at a test's budget: L = 64, vocabulary 30, chunks of 32, so every held-out
    query's key lies before the query's chunk and only a path across chunks can answer. With the default
    global linear attention, 500 updates reach the target (measured: 96.5% after 375, 100% after 625 in
    the study runs); the paper's Focus stays near the frequency rule (18.4%, docs/RESULTS.md §2)."""
    proc = run(["fairseq-train", "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "64",
                "--vocab-size", "30", "--num-train", "4000", "--num-test", "200", "--seed", "1",
                "--arch", "focus_recall", "--criterion", "cross_entropy", "--optimizer", "adam",
                "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "polynomial_decay",
                "--warmup-updates", "50", "--total-num-update", "500", "--batch-size", "32", "--max-epoch", "4",
                "--no-save", "--cpu", "--num-workers", "0", "--log-format", "json"], env=ONE_THREAD)
    log = proc.stdout + proc.stderr
    last = [json.loads(line[line.index("{"):]) for line in log.splitlines() if '"valid_accuracy"' in line][-1]
    assert "valid_accuracy_inside" not in last  # no query has its key in its own chunk
    assert float(last["valid_accuracy_before"]) >= 90.0 > float(last["valid_freq_rule_before"]) + 40


@pytest.mark.slow
def test_recipe_grid_runs_and_collects_a_table(tmp_path):
    env = {"GRID_L": "8 12", "ARCHS": "focus_recall focus_recall_transformer", "VOCAB": "10", "NUM_TRAIN": "32",
           "NUM_TEST": "16", "EPOCHS": "2", "WARMUP_EPOCHS": "1", "LR": "1e-3", "CPU": "1",
           "WORK": str(tmp_path / "work"), "USER_DIR": USER_DIR, "PYTHON": os.sys.executable, **ONE_THREAD}
    proc = run(["bash", str(RECIPE / "grid.sh")], env=env)
    rows = [line for line in proc.stdout.splitlines() if re.match(r"\| (8|12) \|", line)]
    assert len(rows) == 2, proc.stdout[-3000:]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # columns: L, ours, the paper's Focus, Focus-H, MEGA-EMA, transformer, epochs, ...
        assert re.fullmatch(r"[\d.]+ \([\d.]+\)", cells[1]) and cells[2] == "—" and cells[6] == "2"
        assert re.fullmatch(r"[\d.]+ \([\d.]+\)", cells[5])
    bad = run(["bash", str(RECIPE / "train.sh")], env={**env, "PRECISION": "fp8"}, check=False)
    assert bad.returncode != 0 and "PRECISION" in bad.stderr
    bad = run(["bash", str(RECIPE / "train.sh")], env={**env, "PRECISION": "bf16", "ARCH": "focus_recall_transformer"},
              check=False)
    assert bad.returncode == 2 and "PRECISION=bf16 needs a Focus arch" in bad.stderr
