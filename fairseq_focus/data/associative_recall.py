"""Associative recall examples (Focus paper §5.1 and Table 1; Hyena's synthetic suite).

An example over a vocabulary of ``vocab_size`` tokens, two of which are special (the copy prefix
``=>`` and the no-op ``.``)::

    k_1 v_1 k_2 v_2 … k_P v_P  =>  k_q  v_q          P = seq_len // 2 pairs, 2P + 3 tokens

A fresh key→value map is drawn for every example: each key (from the first half of the ordinary
tokens) gets a value (from the second half), independently and with replacement. The P keys are
drawn with replacement; the query k_q is a key that occurred among them, and the example ends with
its value. A language model reads ``ex[:-1]`` and predicts ``ex[1:]``; recall accuracy is scored
on the last target, v_q (chance ≈ 1 / number of values).

Compatibility with the reference generator (HazyResearch/safari ``src/dataloaders/synthetics.py``,
``copy_method="assoc_recall"``, ``num_keys=1``, ``allow_dot=False``): the same token ids (the
ordinary tokens are named "0" … str(vocab_size − 3) and every token's id is its rank among the names
sorted as strings, so "." = 0, "=>" = vocab_size − 1, and keys/values are the two halves of the
ordinary names in that order), the same draws in the same order from one ``numpy.random.Generator``
seeded with ``seed`` (per example: one value per key in key order; one key per pair; one query
key from all keys, redrawn from the keys that occurred, in order of first occurrence, until it
occurred), and the same de-duplication and shuffling of the training set. So for a given seed our
training set equals the reference's; our test set does too unless the reference's test set holds an
example that is also in the training set: we redraw such examples, so train and test are disjoint.

Only a seeded ``numpy.random.Generator`` is used; no global random state is read or changed.
"""
from dataclasses import dataclass
from typing import Set, Tuple

import numpy as np

COPY_PREFIX = "=>"
NOOP = "."
MAX_DRAWS_PER_EXAMPLE = 100  # give up when distinct examples are this hard to find


@dataclass(frozen=True)
class RecallVocab:
    """Token names by id, and the ids of the keys, the values and the two special tokens."""
    names: Tuple[str, ...]
    keys: np.ndarray
    values: np.ndarray
    copy_prefix: int
    noop: int

    def __len__(self) -> int:
        return len(self.names)


def recall_vocab(vocab_size: int) -> RecallVocab:
    if vocab_size < 4:
        raise ValueError(f"--vocab-size {vocab_size} is too small: it counts 2 special tokens and needs "
                         f"at least one key and one value")
    ordinary = sorted(str(i) for i in range(vocab_size - 2))  # sorted as strings, as the reference does
    names = tuple(sorted(ordinary + [COPY_PREFIX, NOOP]))
    ids = {name: i for i, name in enumerate(names)}
    half = len(ordinary) // 2
    return RecallVocab(
        names=names,
        keys=np.array([ids[n] for n in ordinary[:half]], dtype=np.int64),
        values=np.array([ids[n] for n in ordinary[half:]], dtype=np.int64),
        copy_prefix=ids[COPY_PREFIX],
        noop=ids[NOOP],
    )


def example_length(seq_len: int) -> int:
    """Tokens in one example: seq_len // 2 pairs, the prefix, the query key and its value."""
    return 2 * (seq_len // 2) + 3


def input_length(seq_len: int) -> int:
    """Tokens a model reads per example: ex[:-1]."""
    return example_length(seq_len) - 1


def _pick(rng: np.random.Generator, n: int) -> int:
    """One uniform index below n, drawn as ``rng.choice`` over n items draws it."""
    return int(rng.integers(0, n))


def generate_example(rng: np.random.Generator, vocab: RecallVocab, seq_len: int) -> np.ndarray:
    """One example of ``example_length(seq_len)`` token ids."""
    if seq_len < 2:
        raise ValueError(f"--seq-len {seq_len} must be at least 2 (one key-value pair)")
    n_keys, n_values = len(vocab.keys), len(vocab.values)
    value_of = [vocab.values[_pick(rng, n_values)] for _ in range(n_keys)]  # this example's map
    ex = np.empty(example_length(seq_len), dtype=np.int32)  # 4 bytes a token: 0.5 GB at L = 64K
    first_seen = {}  # key index -> order of first occurrence
    for p in range(seq_len // 2):
        k = _pick(rng, n_keys)
        ex[2 * p], ex[2 * p + 1] = vocab.keys[k], value_of[k]
        first_seen.setdefault(k, len(first_seen))
    query = _pick(rng, n_keys)
    present = list(first_seen)  # key indices in order of first occurrence
    while query not in first_seen:
        query = present[_pick(rng, len(present))]
    ex[-3:] = vocab.copy_prefix, vocab.keys[query], value_of[query]
    return ex


def _generate_split(rng: np.random.Generator, vocab: RecallVocab, seq_len: int, count: int,
                    exclude: Set[bytes]) -> np.ndarray:
    """``count`` distinct examples not in ``exclude``, shuffled: (count, example_length) int32."""
    drawn = np.stack([generate_example(rng, vocab, seq_len) for _ in range(count)]) if count else \
        np.empty((0, example_length(seq_len)), dtype=np.int32)
    rows = [r for r in np.unique(drawn, axis=0) if r.tobytes() not in exclude]  # sorted, as the reference
    seen = {r.tobytes() for r in rows}
    draws = 0
    while len(rows) < count:
        draws += 1
        if draws > MAX_DRAWS_PER_EXAMPLE * count:
            raise ValueError(f"cannot draw {count} distinct examples with --seq-len {seq_len} and "
                             f"--vocab-size {len(vocab)}: there are too few possible examples")
        ex = generate_example(rng, vocab, seq_len)
        key = ex.tobytes()
        if key not in seen and key not in exclude:
            rows.append(ex)
            seen.add(key)
    rng.shuffle(rows)
    return np.stack(rows) if rows else drawn


def generate_recall_data(seq_len: int, vocab_size: int, num_train: int, num_test: int,
                         seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Train and test examples, (num_train, n) and (num_test, n) token ids, disjoint, deterministic
    in ``seed``."""
    if num_train < 0 or num_test < 0:
        raise ValueError(f"--num-train {num_train} and --num-test {num_test} must not be negative")
    vocab = recall_vocab(vocab_size)
    rng = np.random.default_rng(seed)
    train = _generate_split(rng, vocab, seq_len, num_train, exclude=set())
    test = _generate_split(rng, vocab, seq_len, num_test, exclude={r.tobytes() for r in train})
    return train, test
