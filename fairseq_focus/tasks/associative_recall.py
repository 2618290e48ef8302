"""``associative_recall`` task: the in-context-learning benchmark of the Focus paper (§5.1, Table 1).

Synthetic examples ``k v k v … => k_q v_q`` come from :mod:`fairseq_focus.data.associative_recall`
(deterministic in ``--seed``, compatible with Hyena's reference generator). A decoder-only language
model (``focus_lm`` in any ``--focus-filter`` variant, or fairseq's own ``transformer_lm``) reads
``ex[:-1]`` and predicts ``ex[1:]``; training uses the criterion's loss on every position (fairseq's
``cross_entropy``). Validation additionally logs ``accuracy``: the percentage of examples whose last
target — the value v_q of the query key — is the model's arg-max (chance ≈ 100 / number of values),
and ``freq_rule``: the same for the answer "the value seen most often in the context", which needs no
recall. Both are also logged per split (``data/recall_split.py``): ``accuracy_inside`` /
``freq_rule_inside`` over the examples whose query key last occurred inside the query's attention
chunk (chunk-local attention can answer), ``accuracy_before`` / ``freq_rule_before`` over those where
it occurred before that chunk (only what crosses chunks can); a split with no example is not logged.
The chunk length is ``--split-chunk-size``, or the model's ``--chunk-size``; a model without one (the
transformer) gets no split unless ``--split-chunk-size`` is given.

Splits: ``train`` holds ``--num-train`` examples; ``valid`` and ``test`` both hold the
``--num-test`` held-out examples (disjoint from train), as in the reference setup, whose validation
set is its test set.

Study options (the account of the paper's Table 1; none is on by default):

* ``--align-query-chunk``: every input (train and held-out) is left-filled with the no-op token "."
  so that the query key ends an attention chunk of M = ``--split-chunk-size``: the query's chunk is
  the last M input tokens (end-aligned chunks). The filler's targets are padding (no loss, not
  counted in ``ntokens``); the split counts "inside" when the query key last occurred among those M
  tokens. With ``--focus-filter none`` (nothing crosses chunks) this measures a window of W = M.
* ``--study-include-answer`` (with ``--study-allow-lookahead`` only): the model reads the whole
  example, the answer v_q included as its last input; its target is padding, and the accuracy is
  scored at the query key, whose target is v_q. A causal model cannot read the answer there; eq. 6
  taken literally (``--iir-mode paper``) can, from inside the query's bin. With both options the query
  still ends its chunk, and the answer opens the next one.

Layout of one item (n = 2P + 2 = ``input_length(--seq-len)``, f filler tokens, f = 0 without
``--align-query-chunk``)::

    source  . … .  k_1 v_1 … k_P v_P => k_q  [v_q]         f + n (+ 1) tokens
    target  ⟂ … ⟂  v_1 k_2 … v_P  => k_q v_q  [⟂]           ⟂ = pad; v_q at index f + n − 1
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from fairseq import metrics
from fairseq.data import Dictionary, MonolingualDataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, open_dict
from torch import Tensor

from ..data.associative_recall import NOOP, example_length, generate_recall_data, input_length, recall_vocab
from ..data.equal_batches import equal_length_batches
from ..data.recall_split import inside_query_chunk, most_frequent_value

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def last_token_correct(logits: Tensor, target: Tensor, pad: int) -> Tensor:
    """(B,) bool: each row's last non-pad target is the arg-max. logits (B, T, V), target (B, T) with
    pads anywhere (batch padding on the right, the filler's on the left, the included answer's target).
    No other position counts."""
    positions = torch.arange(target.size(1), device=target.device).expand_as(target)  # (B, T)
    last = torch.where(target.ne(pad), positions, -1).max(dim=1).values  # (B,) index of each row's final target
    rows = torch.arange(target.size(0), device=target.device)
    return logits[rows, last].argmax(dim=-1).eq(target[rows, last])


def last_token_hits(logits: Tensor, target: Tensor, pad: int) -> Tuple[int, int]:
    """(correct, total) of :func:`last_token_correct`."""
    return int(last_token_correct(logits, target, pad).sum()), int(target.size(0))


def model_chunk_size(model) -> Optional[int]:
    """The attention chunk length of a Focus/MEGA-style model (its first module with an int
    ``chunk_size``), or None for a model without chunks."""
    for module in model.modules():
        size = getattr(module, "chunk_size", None)
        if isinstance(size, int):
            return size
    return None


SPLIT_GROUPS = (("all", ""), ("inside", "_inside"), ("before", "_before"))  # (logging key, metric suffix)


def split_counts(inputs: Tensor, answers: Tensor, correct: Tensor, chunk_size: Optional[int],
                 offset: int = 0) -> Dict[str, int]:
    """Summable counts for the model's and the frequency rule's accuracy, overall and, given a chunk
    size, inside / before the query's chunk. inputs (B, 2P + 2): ex[:-1] without filler; answers and
    correct (B,); offset: the filler tokens the model read before ex[0] (chunks count from there)."""
    rule = most_frequent_value(inputs).eq(answers)
    groups = {"all": torch.ones_like(correct, dtype=torch.bool)}
    if chunk_size:
        inside = inside_query_chunk(inputs, chunk_size, offset)
        groups.update(inside=inside, before=~inside)
    counts = {}
    for name, mask in groups.items():
        counts[f"recall_{name}_total"] = int(mask.sum())
        counts[f"recall_{name}_correct"] = int((correct & mask).sum())
        counts[f"freq_{name}_correct"] = int((rule & mask).sum())
    return counts


@dataclass
class AssociativeRecallConfig(FairseqDataclass):
    seq_len: int = field(
        default=64, metadata={"help": "L: key and value tokens per example (L // 2 pairs); the model reads "
                                      "2·(L // 2) + 2 tokens (the pairs, the copy prefix, the query key)"})
    vocab_size: int = field(
        default=30, metadata={"help": "vocabulary size, counting the copy prefix and the no-op token; keys "
                                      "and values are the two halves of the rest"})
    num_train: int = field(default=2000, metadata={"help": "distinct training examples"})
    num_test: int = field(default=500, metadata={"help": "distinct held-out examples (the valid and test splits)"})
    seed: int = II("common.seed")  # --seed seeds the data generator as well as fairseq
    tokens_per_sample: int = field(
        default=0, metadata={"help": "longest input a model must accept (its max_target_positions); "
                                     "0: the input length 2·(L // 2) + 2"})
    max_target_positions: Optional[int] = field(
        default=None, metadata={"help": "read by transformer_lm; always set to --tokens-per-sample"})
    add_bos_token: bool = field(default=False, metadata={"help": "not supported (read by transformer_lm)"})
    split_chunk_size: int = field(
        default=0, metadata={"help": "M of the inside/before split of the validation accuracy; 0: the model's "
                                     "--chunk-size (no split for a model without one)"})
    study_allow_lookahead: bool = field(
        default=False,
        metadata={"help": "study only (the account of the paper's Table 1): let a Focus model use --iir-mode paper, "
                          "eq. 6 taken literally, whose per-bin circular filter lets a position see later inputs of "
                          "its bin. No language-modelling task has this switch; scores with it are not causal"},
    )
    align_query_chunk: bool = field(
        default=False,
        metadata={"help": "study option: left-fill every input with the no-op token '.' so that the query key ends an "
                          "attention chunk of --split-chunk-size M (required > 0; give the model the same "
                          "--chunk-size): the query's chunk is the last M input tokens, and the split is relative to "
                          "it. The filler's targets are padding (no loss)"},
    )
    study_include_answer: bool = field(
        default=False,
        metadata={"help": "study only, with --study-allow-lookahead: the input is the whole example, the answer v_q "
                          "as its last token (target: padding), and the accuracy is scored at the query key, whose "
                          "target is v_q, where eq. 6 taken literally (--iir-mode paper) can read it from its bin"},
    )


@register_task("associative_recall", dataclass=AssociativeRecallConfig)
class AssociativeRecallTask(FairseqTask):
    def __init__(self, cfg: AssociativeRecallConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self._examples = None  # (train, test) arrays of recall token ids, generated on first use

    @classmethod
    def setup_task(cls, cfg: AssociativeRecallConfig, from_checkpoint: bool = False):
        """from_checkpoint: fairseq's call convention (checkpoint_utils passes it); nothing differs here."""
        if cfg.align_query_chunk and cfg.split_chunk_size < 1:
            raise ValueError("--align-query-chunk needs --split-chunk-size M > 0: the chunk length the query must end")
        if cfg.study_include_answer and not cfg.study_allow_lookahead:
            raise ValueError("--study-include-answer puts the answer into the input; it needs --study-allow-lookahead")
        needed = model_input_length(cfg)
        if cfg.tokens_per_sample and cfg.tokens_per_sample < needed:
            raise ValueError(f"--tokens-per-sample {cfg.tokens_per_sample} is shorter than the input "
                             f"length {needed} of --seq-len {cfg.seq_len}")
        if cfg.add_bos_token:
            raise ValueError("--add-bos-token is not supported by the associative_recall task")
        if cfg.split_chunk_size < 0:
            raise ValueError(f"--split-chunk-size must be >= 0, got {cfg.split_chunk_size}")
        if cfg.seq_len < 2 or cfg.num_train < 1 or cfg.num_test < 1:
            raise ValueError(f"need --seq-len >= 2, --num-train >= 1 and --num-test >= 1 (got {cfg.seq_len}, "
                             f"{cfg.num_train}, {cfg.num_test})")
        return cls(cfg, cls.build_dictionary_for(cfg.vocab_size))

    @staticmethod
    def build_dictionary_for(vocab_size: int) -> Dictionary:
        """fairseq's specials (bos, pad, eos, unk) first, then the recall tokens in the reference's id
        order, so fairseq index = nspecial + reference id."""
        dictionary = Dictionary()
        for name in recall_vocab(vocab_size).names:
            dictionary.add_symbol(name)
        return dictionary

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def max_positions(self) -> int:
        return self.cfg.tokens_per_sample or model_input_length(self.cfg)

    def fill_length(self) -> int:
        """The "." tokens before each example (``--align-query-chunk``), 0 without."""
        return fill_length(self.cfg)

    def recall_view(self, src_tokens: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """What the split helpers read from a batch: ex[:-1] without filler (B, 2P + 2), and the scored
        target v_q (B,) (at the query key, index f + 2P + 1)."""
        start, n = self.fill_length(), input_length(self.cfg.seq_len)
        return src_tokens[:, start:start + n], target[:, start + n - 1]

    def examples(self) -> Tuple[np.ndarray, np.ndarray]:
        if self._examples is None:
            start = time.time()
            c = self.cfg
            self._examples = generate_recall_data(c.seq_len, c.vocab_size, c.num_train, c.num_test, c.seed)
            logger.info("associative_recall: %d train / %d test examples of %d tokens (L=%d, vocab %d, seed %d) "
                        "generated in %.1fs; the model reads %d tokens each (%d filler, answer included: %s)",
                        c.num_train, c.num_test, example_length(c.seq_len), c.seq_len, c.vocab_size, c.seed,
                        time.time() - start, model_input_length(c), fill_length(c), c.study_include_answer)
        return self._examples

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, task_cfg=None, data_selector=None,
                     tpu: bool = False):
        """The signature is fairseq's call convention; epoch/combine/task_cfg/data_selector/tpu do not apply:
        the examples come from this task's own settings."""
        if split not in SPLITS:
            raise ValueError(f"associative_recall has splits {SPLITS}, not {split!r}")
        examples = self.examples()[0 if split == "train" else 1]
        d = self.dictionary
        items = _ShiftedExamples(examples, d.nspecial, self.fill_length(), self.cfg.study_include_answer,
                                 d.index(NOOP), d.pad())
        self.datasets[split] = _RecallDataset(items, sizes=np.full(len(examples), model_input_length(self.cfg)),
                                              src_vocab=d, shuffle=split == "train", targets=["future"])

    def build_model(self, cfg, from_checkpoint: bool = False):
        """fairseq's LMs read their maximum length from task.tokens_per_sample /
        task.max_target_positions; fill in this task's input length. ``--align-query-chunk`` refuses a
        model whose chunks are not the ones it aligns."""
        with open_dict(cfg):
            for name in ("tokens_per_sample", "max_target_positions"):
                if name in cfg:
                    cfg[name] = self.max_positions()
        model = super().build_model(cfg, from_checkpoint)
        chunk = model_chunk_size(model)
        if self.cfg.align_query_chunk and chunk is not None and chunk != self.cfg.split_chunk_size:
            raise ValueError(f"--align-query-chunk ends the query's chunk for chunks of --split-chunk-size "
                             f"{self.cfg.split_chunk_size}, but the model's --chunk-size is {chunk}: "
                             f"give both the same M")
        return model

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        with torch.no_grad():
            logits = model(**sample["net_input"])[0]  # (B, T, V)
        target = sample["target"]
        correct = last_token_correct(logits, target, self.dictionary.pad())
        inputs, answers = self.recall_view(sample["net_input"]["src_tokens"], target)
        chunk = self.cfg.split_chunk_size or model_chunk_size(model)
        logging_output.update(split_counts(inputs, answers, correct, chunk, self.fill_length()))
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        for name, suffix in SPLIT_GROUPS:
            total = sum(int(log.get(f"recall_{name}_total", 0)) for log in logging_outputs)
            if total > 0:
                for key, metric in (("recall", "accuracy"), ("freq", "freq_rule")):
                    correct = sum(int(log.get(f"{key}_{name}_correct", 0)) for log in logging_outputs)
                    metrics.log_scalar(metric + suffix, 100.0 * correct / total, total, round=2)


def fill_length(cfg) -> int:
    """``--align-query-chunk``'s filler: the fewest "." tokens that make the query key (input token
    2P + 1) end a chunk of M = ``--split-chunk-size``; 0 without the flag."""
    return (-input_length(cfg.seq_len)) % cfg.split_chunk_size if cfg.align_query_chunk else 0


def model_input_length(cfg) -> int:
    """Tokens a model reads per example: the filler, ex[:-1], and the answer with ``--study-include-answer``."""
    return fill_length(cfg) + input_length(cfg.seq_len) + int(cfg.study_include_answer)


class _ShiftedExamples(torch.utils.data.Dataset):
    """Example i as MonolingualDataset wants it: (source, future target, no past target), in fairseq
    indices: source ex[:-1] (ex with ``include_answer``), target the source shifted by one (the
    answer's target is pad), both after ``fill`` filler tokens whose targets are pad."""

    def __init__(self, examples: np.ndarray, offset: int, fill: int = 0, include_answer: bool = False,
                 noop: int = -1, pad: int = -1):
        self.examples, self.offset, self.fill, self.include_answer = examples, offset, fill, include_answer
        self.noop, self.pad = noop, pad

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        ex = torch.from_numpy(self.examples[index]).long() + self.offset
        if self.include_answer:
            source, target = ex, torch.cat([ex[1:], ex.new_full((1,), self.pad)])
        else:
            source, target = ex[:-1], ex[1:]
        if self.fill:
            source = torch.cat([source.new_full((self.fill,), self.noop), source])
            target = torch.cat([target.new_full((self.fill,), self.pad), target])
        return source, target, None


class _RecallDataset(MonolingualDataset):
    """MonolingualDataset whose ``ntokens`` counts the targets that are not pad (the scored tokens: the
    filler and the included answer have none), so the loss stays per predicted token, and whose batches
    hold every example (every item has one length; data/equal_batches.py: fairseq's batcher dropped the
    last 4 of 500 held-out examples, so every accuracy logged before 2026-12-06 is over 496)."""

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        return equal_length_batches(indices, int(self.sizes[0]), max_tokens, max_sentences,
                                    required_batch_size_multiple)

    def collater(self, samples):
        batch = super().collater(samples)
        if batch:
            batch["ntokens"] = int(batch["target"].ne(self.vocab.pad()).sum())
        return batch
