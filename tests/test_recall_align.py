"""The associative_recall task's study options for the account of Table 1: --align-query-chunk (the
query ends an attention chunk: windows of the last M tokens) with --focus-filter none, and
--study-include-answer (the answer in the input, scored at the query key) with eq. 6 taken literally;
recall_eval.py scoring a checkpoint at another length (marked slow)."""
import json
import sys

import numpy as np
import pytest
import torch

from helpers import REPO, USER_DIR, run
from test_associative_recall import ONE_THREAD, _recall_model

from fairseq_focus.data.recall_split import inside_query_chunk
from fairseq_focus.tasks.associative_recall import last_token_correct, last_token_hits

WINDOW = ("--focus-filter", "none", "--align-query-chunk")


def _window(seq_len: int, chunk: int, *extra):
    """MEGA's block without its EMA, chunks of M = chunk ending at the query."""
    return _recall_model("focus_recall_ema", seq_len, (*WINDOW, "--chunk-size", str(chunk), "--split-chunk-size",
                                                      str(chunk), *extra))


def _batch(task, split="valid", count=None):
    task.load_dataset(split)
    ds = task.dataset(split)
    return ds.collater([ds[i] for i in range(count or len(ds))])


def _numpy_inside(examples: np.ndarray, window: int) -> np.ndarray:
    """The query key's last occurrence among the last `window` input tokens, by a plain loop."""
    flags = []
    for ex in examples:
        inputs = ex[:-1]
        q = len(inputs) - 1
        last = max(i for i in range(0, q - 1, 2) if inputs[i] == inputs[q])
        flags.append(last >= q + 1 - window)
    return np.array(flags)


# ---- --align-query-chunk --------------------------------------------------------------------------

@pytest.mark.parametrize("seq_len,chunk", [(64, 32), (62, 32), (64, 8), (30, 256), (17, 5)])
def test_filler_ends_the_query_chunk_and_costs_no_loss(seq_len, chunk):
    task, _ = _window(seq_len, chunk)
    d, fill = task.dictionary, task.fill_length()
    batch = _batch(task)
    src, target = batch["net_input"]["src_tokens"], batch["target"]
    ex = torch.from_numpy(task.examples()[1]).long() + d.nspecial  # (N, 2P + 3)
    assert src.size(1) % chunk == 0 and src.size(1) == fill + ex.size(1) - 1 == task.max_positions()
    assert 0 <= fill < chunk and (src[:, :fill] == d.index(".")).all() and (target[:, :fill] == d.pad()).all()
    assert torch.equal(src[:, fill:], ex[:, :-1]) and torch.equal(target[:, fill:], ex[:, 1:])
    assert batch["ntokens"] == ex[:, 1:].numel()  # the filler's pad targets are not counted
    # the last-token metric still scores v_q at the query key, the last input token
    logits = torch.nn.functional.one_hot(target, len(d)).float()
    assert last_token_hits(logits, target, d.pad()) == (len(ex), len(ex))
    logits[:, -1] = logits[:, -1].roll(1, dims=-1)
    assert last_token_hits(logits, target, d.pad()) == (0, len(ex))
    inputs, answers = task.recall_view(src, target)
    assert torch.equal(inputs, ex[:, :-1]) and torch.equal(answers, ex[:, -1])


def test_without_the_flag_nothing_is_filled():
    task, _ = _recall_model("focus_recall_ema", 64, ("--split-chunk-size", "32"))
    assert task.fill_length() == 0 and task.max_positions() == 66


@pytest.mark.parametrize("window", [8, 32])
def test_split_and_freq_rule_match_numpy_on_end_aligned_chunks(window):
    """valid_step's inside/before counts = a plain loop over the generated examples (the key within the
    last M input tokens); the frequency rule is the same with and without the filler."""
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion
    task, model = _window(64, window, "--num-test", "200")
    batch = _batch(task)
    _, _, log = task.valid_step(batch, model, CrossEntropyCriterion(task, False))
    expected = _numpy_inside(task.examples()[1], window)
    assert 0 < expected.sum() < len(expected)
    assert (log["recall_inside_total"], log["recall_before_total"]) == (expected.sum(), (~expected).sum())
    inputs, _ = task.recall_view(batch["net_input"]["src_tokens"], batch["target"])
    assert np.array_equal(inside_query_chunk(inputs, window, task.fill_length()).numpy(), expected)
    plain_task, plain_model = _recall_model("focus_recall_ema", 64, ("--focus-filter", "none", "--chunk-size",
                                                                    str(window), "--num-test", "200"))
    _, _, plain = plain_task.valid_step(_batch(plain_task), plain_model, CrossEntropyCriterion(plain_task, False))
    assert plain["freq_all_correct"] == log["freq_all_correct"] and plain["recall_all_total"] == 200


def test_offset_counts_chunks_from_the_filler():
    # k v k v k v => k_q (8 tokens); key 11 last at 2, key 10 last at 4; chunks of 4
    inputs = torch.tensor([[10, 20, 11, 21, 10, 20, 99, 11], [10, 20, 11, 21, 10, 20, 99, 10]])
    assert inside_query_chunk(inputs, 4, offset=0).tolist() == [False, True]  # query chunk 4..7
    assert inside_query_chunk(inputs, 4, offset=2).tolist() == [False, False]  # chunk 8..11 = positions 6..9
    assert inside_query_chunk(inputs, 6, offset=4).tolist() == [True, True]  # chunk 6..11 = positions 2..7
    with pytest.raises(ValueError, match="offset"):
        inside_query_chunk(inputs, 4, offset=-1)


def test_last_token_correct_finds_the_last_target_between_pads():
    pad, vocab = 1, 9
    target = torch.tensor([[pad, pad, 5, 6, 7], [pad, 4, 5, 8, pad]])
    logits = torch.nn.functional.one_hot(target, vocab).float()
    assert last_token_correct(logits, target, pad).tolist() == [True, True]
    logits[1, 3] = logits[1, 3].roll(1)  # row 1's scored position is 3 (its last non-pad target)
    logits[0, 1] = logits[0, 1].roll(1)  # a filler position: not scored
    assert last_token_correct(logits, target, pad).tolist() == [True, False]


def test_a_window_model_reads_only_the_last_m_tokens():
    """--focus-filter none with the query's chunk end-aligned: the scored logit moves with a token among
    the last M inputs and with none before them — the accuracy follows what lies in the window."""
    task, model = _window(64, 32)
    src = _batch(task, count=4)["net_input"]["src_tokens"]
    nspecial, length = task.dictionary.nspecial, src.size(1)
    with torch.no_grad():
        base = model(src)[0][:, -1]
        for s in (0, task.fill_length(), length - 33, length - 32, length - 2):
            changed = src.clone()
            changed[:, s] = nspecial + (changed[:, s] - nspecial + 1) % 30
            moved = (model(changed)[0][:, -1] - base).abs().max().item()
            assert (moved == 0.0) == (s < length - 32), (s, moved)


@pytest.mark.parametrize("extra,match", [
    (("--align-query-chunk",), "--align-query-chunk needs --split-chunk-size M > 0"),
    (("--align-query-chunk", "--split-chunk-size", "16"), "the model's --chunk-size is 32"),
    (("--study-include-answer",), "it needs --study-allow-lookahead"),
])
def test_study_options_are_refused_where_they_make_no_sense(extra, match):
    with pytest.raises(ValueError, match=match):
        _recall_model("focus_recall_ema", 64, extra)


def test_a_later_split_chunk_size_wins():
    """recall_grid.sh passes --split-chunk-size 32 before a variant's flags: the variant's must win."""
    from fairseq import options
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--user-dir", USER_DIR, "--task", "associative_recall", "--arch", "focus_recall_ema", "--split-chunk-size",
        "32", "--focus-filter", "none", "--chunk-size", "64", "--split-chunk-size", "64", "--align-query-chunk"])
    assert (args.split_chunk_size, args.chunk_size, args.align_query_chunk) == (64, 64, True)


# ---- --study-include-answer -----------------------------------------------------------------------

def _answer_model(mode: str, *extra):
    """The paper's Focus (no global attention, whatever focus_recall's default) reading the answer too."""
    return _recall_model("focus_recall", 64, ("--global-attention", "none", "--iir-mode", mode,
                                              "--study-allow-lookahead", "--study-include-answer", *extra))


@pytest.mark.parametrize("extra", [(), ("--align-query-chunk", "--split-chunk-size", "32")])
def test_the_answer_is_an_input_and_the_query_key_is_scored(extra):
    task, _ = _answer_model("carry", *extra)
    d, fill = task.dictionary, task.fill_length()
    batch = _batch(task)
    src, target = batch["net_input"]["src_tokens"], batch["target"]
    ex = torch.from_numpy(task.examples()[1]).long() + d.nspecial
    assert torch.equal(src[:, fill:], ex) and (target[:, -1] == d.pad()).all()
    scored = ex.size(1) - 2 + fill  # the query key's position
    assert torch.equal(target[:, scored], ex[:, -1]) and (target[:, scored + 1:] == d.pad()).all()
    assert task.max_positions() == src.size(1) == fill + ex.size(1)
    assert not extra or (scored + 1) % 32 == 0  # aligned: the query key ends a chunk, the answer opens the next
    logits = torch.nn.functional.one_hot(target, len(d)).float()
    logits[:, scored] = logits[:, scored].roll(1, dims=-1)  # wrong only at the query key
    assert last_token_hits(logits, target, d.pad()) == (0, len(ex))
    inputs, answers = task.recall_view(src, target)
    assert torch.equal(inputs, ex[:, :-1]) and torch.equal(answers, ex[:, -1])


@pytest.mark.parametrize("mode,sees", [("carry", False), ("causal", False), ("paper", True)])
def test_only_eq6_literally_reads_the_answer_at_the_query(mode, sees):
    """L = 64: bins of 16, the query key (65) and the answer (66) share bin 4 (64 … 79)."""
    task, model = _answer_model(mode)
    batch = _batch(task, count=4)
    src, scored = batch["net_input"]["src_tokens"], batch["net_input"]["src_tokens"].size(1) - 2
    assert torch.equal(batch["target"][:, scored], src[:, -1])  # the scored target is the answer input
    nspecial = task.dictionary.nspecial
    changed = src.clone()
    changed[:, -1] = nspecial + (changed[:, -1] - nspecial + 1) % 30
    with torch.no_grad():
        moved = (model(changed)[0][:, scored] - model(src)[0][:, scored]).abs().max().item()
    assert (moved > 1e-4) if sees else (moved < 1e-5), moved  # FFTs may mix in rounding, as in the causality tests


# ---- recall_eval.py at another length -------------------------------------------------------------

@pytest.mark.slow
def test_recall_eval_scores_a_checkpoint_at_another_length(tmp_path):
    """A 2-update checkpoint (L = 16, chunks of 8 ending at the query) scored at L = 32: the model keeps
    its bins, kernel and chunks; the filler follows the new length; the split matches numpy."""
    run(["fairseq-train", "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "16", "--vocab-size",
         "30", "--num-train", "64", "--num-test", "16", "--arch", "focus_recall", "--global-attention", "none",
         "--chunk-size", "8", "--split-chunk-size", "8", "--align-query-chunk", "--criterion", "cross_entropy",
         "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32", "--max-update", "2", "--cpu", "--num-workers",
         "0", "--save-dir", str(tmp_path / "ckpt"), "--no-epoch-checkpoints"], env=ONE_THREAD)
    ckpt = tmp_path / "ckpt" / "checkpoint_last.pt"
    proc = run([sys.executable, str(REPO / "recipes" / "study" / "recall_eval.py"), str(ckpt), "--seq-len", "32",
                "--num-test", "120", "--json", str(tmp_path / "r.json")], env=ONE_THREAD)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "r.json").read_text())
    assert (result["seq_len"], result["trained_seq_len"], result["num_test"]) == (32, 16, 120)
    assert (result["bin_size"], result["hyper_kernel_size"], result["model_chunk_size"]) == (4, 18, 8)  # L = 16's
    assert result["arch"] == "focus_recall" and result["focus_filter"] == "adaptive"
    assert result["align_query_chunk"] and result["fill"] == (-34) % 8 == 6 and result["chunk_size"] == 8
    from fairseq_focus.data.associative_recall import generate_recall_data
    held_out = generate_recall_data(32, 30, 64, 120, 1)[1]  # fairseq's default --seed 1
    inside = _numpy_inside(held_out, 8)
    assert (result["model"]["n"], result["model"]["n_inside"]) == (120, int(inside.sum()))
    assert result["most_frequent_value"]["n_inside"] == int(inside.sum())
    bad = run([sys.executable, str(REPO / "recipes" / "study" / "recall_eval.py"), str(ckpt), "--seq-len", "1"],
              env=ONE_THREAD, check=False)
    assert bad.returncode != 0 and "seq-len" in bad.stderr.strip().splitlines()[-1]
