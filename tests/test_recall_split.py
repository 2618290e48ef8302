"""fairseq_focus/data/recall_split.py against hand-built examples and a plain-loop recount."""
import numpy as np
import pytest
import torch

from fairseq_focus.data.associative_recall import generate_recall_data
from fairseq_focus.data.recall_split import (inside_query_chunk, last_key_position, most_frequent_value,
                                             split_accuracy)


def test_hand_built_example():
    # k v k v k v => k_q with keys 10/11, values 20/21: positions 0..7, query at 7
    inputs = torch.tensor([[10, 20, 11, 21, 10, 20, 99, 11],    # key 11 last at position 2
                           [10, 20, 11, 21, 10, 20, 99, 10]])   # key 10 last at position 4
    assert last_key_position(inputs).tolist() == [2, 4]
    # chunks of 4: the query (7) sits in chunk [4, 8)
    assert inside_query_chunk(inputs, 4).tolist() == [False, True]
    assert inside_query_chunk(inputs, 8).tolist() == [True, True]
    assert inside_query_chunk(inputs, 2).tolist() == [False, False]
    assert most_frequent_value(inputs).tolist() == [20, 20]


def test_matches_a_plain_loop_on_generated_examples():
    test = generate_recall_data(64, 30, 10, 300, 3)[1]
    inputs = torch.from_numpy(test[:, :-1])
    for chunk in (16, 32, 64):
        inside = inside_query_chunk(inputs, chunk).numpy()
        for row, flag in zip(test, inside):
            inp = row[:-1]
            q = len(inp) - 1
            last = max(i for i in range(0, len(inp) - 2, 2) if inp[i] == inp[q])
            assert flag == (last >= q // chunk * chunk)
    rule = most_frequent_value(inputs).numpy()
    assert (rule == np.array([np.bincount(r[1:-3:2]).argmax() for r in test])).all()
    # the README's frequency-rule number for seed 1, vocabulary 10, L = 64 is 50.0%
    t1 = generate_recall_data(64, 10, 500, 200, 1)[1]
    assert float((most_frequent_value(torch.from_numpy(t1[:, :-1])).numpy() == t1[:, -1]).mean()) == pytest.approx(0.5)


def test_split_accuracy_counts():
    correct = torch.tensor([1, 0, 1, 1, 0])
    inside = torch.tensor([True, True, False, False, False])
    acc = split_accuracy(correct, inside)
    assert acc["all"] == pytest.approx(60.0) and acc["inside"] == pytest.approx(50.0)
    assert acc["before"] == pytest.approx(100 * 2 / 3) and (acc["n_inside"], acc["n_before"]) == (2, 3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="recall inputs"):
        last_key_position(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk size"):
        inside_query_chunk(torch.zeros(2, 6, dtype=torch.long), 0)
