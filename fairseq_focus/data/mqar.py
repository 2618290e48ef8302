"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", arXiv 2312.04927, §3).

Written from the paper's rules (and the reading of zoology's ``multiquery_ar``, not its code). One
example over the MQAR vocabulary 0 … V − 1, input length L, N key-value pairs::

    position   0   1   2   3  …  2N−2  2N−1 | 2N …                                   L − 1
    input      k1  v1  k2  v2 …  kN    vN   | 0 … k_a 0 … k_b 0 … (N queries)         0 = blank
    label      ⟂   ⟂   ⟂   ⟂  …  ⟂     ⟂    | ⟂ … v_a ⟂ … v_b ⟂ …                     ⟂ = no label

* keys: N distinct tokens drawn uniformly without replacement from [1, V/2); values: N distinct
  tokens from [V/2, V) (V/2 = ``vocab_size // 2``); the context is k1 v1 … kN vN.
* queries: every key is queried exactly once, in the query region after the context, which holds
  S = (L − 2N) // 2 slots at the even offsets 2N + 2s, s = 0 … S − 1. The N slots are drawn without
  replacement with probability ∝ (s + 1)^(α − 1), α = ``power_a`` = 0.01 (Zoology's power law: most
  queries come soon after the context, a few far from it), the i-th slot drawn taking the i-th key.
* labels: the value of the query's key, at the query's position: a language model reads the input
  and predicts the next token, and the next token after a query is its value (in zoology's
  layout the value is the label one position later, before the shift by one). No other position has a
  label; loss and accuracy count the N query positions only.
* every other position is the blank 0, or with ``random_non_queries`` a token drawn uniformly from
  [0, V) (zoology's default; its draws may repeat keys, which are then distractors).

Weighted sampling without replacement uses Efraimidis & Spirakis (2006): slot s gets E_s / p_s with
E_s ~ Exp(1), and the N smallest in increasing order are distributed as N successive draws, each
∝ p among the slots left (what ``numpy.random.choice(p=…, replace=False)`` does). The uniform draws of
keys and values are the same with equal weights.

Seeds: ``split_seed(seed, split)`` = 3·seed + (0, 1, 2) for (train, valid, test), so no two splits,
of one seed or of any two seeds, share a generator seed. Only seeded ``numpy.random.Generator``\\ s
are used; no global random state is read or changed. Exact repeats between splits are possible in
principle and not removed (at V = 8192 and N = 4 two examples share their keys with probability
below 1e-13).

Glossary: V ``vocab_size``, L ``seq_len``, N ``num_pairs``, S query slots, α ``power_a``.
"""
from typing import Tuple

import numpy as np

BLANK = 0
NO_LABEL = -100  # zoology's (and torch's cross_entropy's) ignore index
SPLITS = ("train", "valid", "test")
BLOCK_ELEMENTS = 1 << 22  # random numbers drawn at once (32 MiB of float64): bounds the memory per block


def split_seed(seed: int, split: str) -> int:
    """The generator seed of one split: 3·seed + its index in (train, valid, test)."""
    if split not in SPLITS:
        raise ValueError(f"MQAR has splits {SPLITS}, not {split!r}")
    if seed < 0:
        raise ValueError(f"--seed must not be negative, got {seed}")
    return 3 * seed + SPLITS.index(split)


def query_slots(seq_len: int, num_pairs: int) -> int:
    """S: the even offsets after the context where a query can stand."""
    return (seq_len - 2 * num_pairs) // 2


def check_sizes(vocab_size: int, seq_len: int, num_pairs: int, power_a: float) -> None:
    """One-line ValueError for settings that cannot make an example."""
    if num_pairs < 1:
        raise ValueError(f"--num-pairs must be at least 1, got {num_pairs}")
    if vocab_size // 2 - 1 < num_pairs:
        raise ValueError(f"--vocab-size {vocab_size} has {max(vocab_size // 2 - 1, 0)} keys ([1, V/2)); "
                         f"--num-pairs {num_pairs} needs that many distinct keys")
    if query_slots(seq_len, num_pairs) < num_pairs:
        raise ValueError(f"--seq-len {seq_len} is too short for --num-pairs {num_pairs}: the context takes "
                         f"2N = {2 * num_pairs} positions and the N queries need N even slots after it "
                         f"(L >= 4N = {4 * num_pairs})")
    if not power_a > 0:
        raise ValueError(f"--power-a must be positive, got {power_a}")


def slot_probabilities(slots: int, power_a: float) -> np.ndarray:
    """p_s ∝ (s + 1)^(α − 1) over the S slots, summing to 1."""
    p = np.arange(1, slots + 1, dtype=np.float64) ** (power_a - 1.0)
    return p / p.sum()


def ordered_draws(rng: np.random.Generator, rows: int, count: int, weights: np.ndarray) -> np.ndarray:
    """(rows, count) indices into ``weights``: per row, ``count`` successive draws without replacement,
    each ∝ weights among those left (Efraimidis–Spirakis keys E / w, the smallest first)."""
    keys = rng.exponential(size=(rows, weights.size)) / weights  # (rows, n)
    if count < weights.size:
        keys_part = np.argpartition(keys, count - 1, axis=1)[:, :count]  # the `count` smallest, unordered
    else:
        keys_part = np.broadcast_to(np.arange(weights.size), (rows, weights.size))
    order = np.argsort(np.take_along_axis(keys, keys_part, axis=1), axis=1)
    return np.take_along_axis(keys_part, order, axis=1)


def _generate_block(rng: np.random.Generator, rows: int, vocab_size: int, seq_len: int, num_pairs: int,
                    slot_p: np.ndarray, random_non_queries: bool) -> Tuple[np.ndarray, np.ndarray]:
    half, n = vocab_size // 2, num_pairs
    keys = 1 + ordered_draws(rng, rows, n, np.ones(half - 1))  # (rows, N) in [1, V/2)
    values = half + ordered_draws(rng, rows, n, np.ones(vocab_size - half))  # (rows, N) in [V/2, V)
    slots = ordered_draws(rng, rows, n, slot_p)  # (rows, N): the i-th draw takes key i
    inputs = np.full((rows, seq_len), BLANK, dtype=np.int64)
    labels = np.full((rows, seq_len), NO_LABEL, dtype=np.int64)
    inputs[:, 0:2 * n:2], inputs[:, 1:2 * n:2] = keys, values
    positions = 2 * n + 2 * slots  # (rows, N)
    np.put_along_axis(inputs, positions, keys, axis=1)
    np.put_along_axis(labels, positions, values, axis=1)
    if random_non_queries:
        blank = inputs == BLANK  # only in the query region: keys are >= 1, values >= V/2
        inputs[blank] = rng.integers(0, vocab_size, size=int(blank.sum()))
    return inputs, labels


def generate_mqar(num_examples: int, vocab_size: int, seq_len: int, num_pairs: int, seed: int,
                  power_a: float = 0.01, random_non_queries: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(inputs, labels), each (num_examples, L) int64: MQAR ids in [0, V), and the label of each
    position (a value at the N query positions, NO_LABEL elsewhere). Deterministic in ``seed``."""
    check_sizes(vocab_size, seq_len, num_pairs, power_a)
    if num_examples < 0:
        raise ValueError(f"the number of examples must not be negative, got {num_examples}")
    rng = np.random.default_rng(seed)
    slot_p = slot_probabilities(query_slots(seq_len, num_pairs), power_a)
    block = max(1, BLOCK_ELEMENTS // max(vocab_size, seq_len))
    parts = [_generate_block(rng, min(block, num_examples - start), vocab_size, seq_len, num_pairs, slot_p,
                             random_non_queries)
             for start in range(0, num_examples, block)]
    if not parts:
        return np.empty((0, seq_len), dtype=np.int64), np.empty((0, seq_len), dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
