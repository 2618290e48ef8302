"""``mqar`` task: Zoology's multi-query associative recall (Arora et al. 2023), for any decoder LM.

The examples come from :mod:`fairseq_focus.data.mqar` (the layout and rules are written there). A
decoder-only language model reads the L input tokens; the target of position t is the label of
position t: the value of the key queried there, at the N query positions, and pad elsewhere (no loss,
not counted). Train with ``--criterion focus_labelled_cross_entropy``
(criterions/labelled_cross_entropy.py), which computes logits only at the labelled positions and logs
``accuracy``: the percentage of query positions whose value is the model's arg-max over the whole
dictionary. fairseq's ``cross_entropy`` gives the same loss, with an output row at every position.

Token ids: fairseq's Dictionary reserves 0-3 (<s>, <pad>, </s>, <unk>); the MQAR tokens 0 … V − 1 are
added after them as the symbols "0" … "V−1", so fairseq index = MQAR id + 4: the blank "0" is index 4,
the keys [1, V/2) are 5 … V/2 + 3, the values [V/2, V) are V/2 + 4 … V + 3. Pad is never a token of an
example, and the dictionary holds V + 4 symbols.

Splits: ``train`` (``--num-train`` examples), ``valid`` (``--num-valid``) and ``test`` (``--num-test``),
each from its own generator seed (``data/mqar.split_seed``: 3·seed + 0 / 1 / 2), so no two splits share a
seed. Validation picks the stopping point; ``test`` is scored once at the end
(``fairseq-validate … --valid-subset test``). Every split is batched whole (data/equal_batches.py).

Stopping at a target accuracy (fairseq 0.12 has no such flag): validation also logs ``until_solved``,
0 once ``accuracy`` ≥ ``--stop-accuracy`` (99 by default) and otherwise the number of validations this
process has run (1, 2, …), so it grows at every validation until the target is met and then drops to 0.
With ``--best-checkpoint-metric until_solved --maximize-best-checkpoint-metric --patience 1`` fairseq's
own early stop (``should_stop_early``: stop after ``--patience`` validations without improvement) ends
the run at the first validation that reaches the target, and never before (unless the target was met
already at the first validation after a (re)start: then at the second). The checkpoint named
``checkpoint_best.pt`` is then meaningless; recipes/mqar/train.sh keeps ``checkpoint_last.pt`` only.
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch
from fairseq import metrics
from fairseq.data import Dictionary, FairseqDataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, open_dict

from ..data.equal_batches import equal_length_batches
from ..data.mqar import NO_LABEL, SPLITS, check_sizes, generate_mqar, split_seed

logger = logging.getLogger(__name__)

UNTIL_SOLVED = "until_solved"
VALIDATION_MARK = "mqar_validation"  # a logging-output key that only validation batches carry


@dataclass
class MQARConfig(FairseqDataclass):
    vocab_size: int = field(default=8192, metadata={"help": "V: MQAR tokens; keys from [1, V/2), values from [V/2, V)"})
    seq_len: int = field(default=64, metadata={"help": "L: input tokens per example (the context, then the queries)"})
    num_pairs: int = field(default=4, metadata={"help": "N: key-value pairs in the context, each queried once"})
    power_a: float = field(default=0.01, metadata={"help": "α: query slot s drawn with probability ∝ (s + 1)^(α − 1)"})
    random_non_queries: bool = field(
        default=False, metadata={"help": "fill the query region's non-query positions with tokens drawn from [0, V) "
                                         "(zoology's default) instead of the blank 0"})
    num_train: int = field(default=20000, metadata={"help": "training examples"})
    num_valid: int = field(default=1000, metadata={"help": "validation examples (they pick the stopping point)"})
    num_test: int = field(default=1000, metadata={"help": "test examples (scored once, at the end)"})
    seed: int = II("common.seed")  # --seed seeds the data generator as well as fairseq
    stop_accuracy: float = field(
        default=99.0, metadata={"help": "validation logs until_solved = 0 once accuracy (%%) reaches this; see the "
                                        "task's docstring for the early stop it drives"})
    tokens_per_sample: int = field(
        default=0, metadata={"help": "longest input a model must accept (its max_target_positions); 0: --seq-len"})
    max_target_positions: Optional[int] = field(
        default=None, metadata={"help": "read by transformer_lm; always set to --tokens-per-sample"})
    add_bos_token: bool = field(default=False, metadata={"help": "not supported (read by transformer_lm)"})


def mqar_dictionary(vocab_size: int) -> Dictionary:
    """fairseq's four specials, then the MQAR tokens "0" … str(V − 1): index = MQAR id + 4."""
    dictionary = Dictionary()
    for token in range(vocab_size):
        dictionary.add_symbol(str(token))
    return dictionary


@register_task("mqar", dataclass=MQARConfig)
class MQARTask(FairseqTask):
    def __init__(self, cfg: MQARConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.validations = 0  # validations run by this process (until_solved's count)

    @classmethod
    def setup_task(cls, cfg: MQARConfig, from_checkpoint: bool = False):
        """from_checkpoint: fairseq's call convention (checkpoint_utils passes it); nothing differs here."""
        check_sizes(cfg.vocab_size, cfg.seq_len, cfg.num_pairs, cfg.power_a)
        if min(cfg.num_train, cfg.num_valid, cfg.num_test) < 1:
            raise ValueError(f"--num-train, --num-valid and --num-test must be at least 1 (got {cfg.num_train}, "
                             f"{cfg.num_valid}, {cfg.num_test})")
        if cfg.tokens_per_sample and cfg.tokens_per_sample < cfg.seq_len:
            raise ValueError(f"--tokens-per-sample {cfg.tokens_per_sample} is shorter than --seq-len {cfg.seq_len}")
        if cfg.add_bos_token:
            raise ValueError("--add-bos-token is not supported by the mqar task")
        split_seed(cfg.seed, "train")  # refuses a negative seed
        return cls(cfg, mqar_dictionary(cfg.vocab_size))

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def max_positions(self) -> int:
        return self.cfg.tokens_per_sample or self.cfg.seq_len

    def split_size(self, split: str) -> int:
        return {"train": self.cfg.num_train, "valid": self.cfg.num_valid, "test": self.cfg.num_test}[split]

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, task_cfg=None, data_selector=None,
                     tpu: bool = False):
        """The signature is fairseq's call convention; epoch/combine/task_cfg/data_selector/tpu do not apply:
        the examples come from this task's own settings."""
        if split not in SPLITS:
            raise ValueError(f"mqar has splits {SPLITS}, not {split!r}")
        c, start = self.cfg, time.time()
        seed = split_seed(c.seed, split)
        inputs, labels = generate_mqar(self.split_size(split), c.vocab_size, c.seq_len, c.num_pairs, seed,
                                       c.power_a, c.random_non_queries)
        self.datasets[split] = MQARDataset(inputs, labels, self.dictionary, shuffle=split == "train")
        logger.info("mqar %s: %d examples (V=%d, L=%d, N=%d, α=%g, random non-queries: %s, generator seed %d) "
                    "generated in %.1fs", split, len(inputs), c.vocab_size, c.seq_len, c.num_pairs, c.power_a,
                    c.random_non_queries, seed, time.time() - start)

    def build_model(self, cfg, from_checkpoint: bool = False):
        """fairseq's LMs read their maximum length from task.tokens_per_sample / max_target_positions."""
        with open_dict(cfg):
            for name in ("tokens_per_sample", "max_target_positions"):
                if name in cfg:
                    cfg[name] = self.max_positions()
        return super().build_model(cfg, from_checkpoint)

    def begin_valid_epoch(self, epoch: int, model) -> None:
        super().begin_valid_epoch(epoch, model)
        self.validations += 1

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        logging_output[VALIDATION_MARK] = 1
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if any(VALIDATION_MARK in log for log in logging_outputs):
            metrics.log_derived(UNTIL_SOLVED, self.until_solved)

    def until_solved(self, meters) -> float:
        """0 once the validation accuracy reaches --stop-accuracy, else this process's validation count."""
        if "accuracy" not in meters:
            raise ValueError("the mqar task's until_solved needs the criterion to log accuracy: use "
                             "--criterion focus_labelled_cross_entropy")
        return 0.0 if meters["accuracy"].avg >= self.cfg.stop_accuracy else float(self.validations)


class MQARDataset(FairseqDataset):
    """Examples in fairseq indices: source = the input (L,), target = the label of each position, pad
    where there is none. Every item has length L; batches hold every example (data/equal_batches.py), and
    a batch's ``ntokens`` counts its labelled positions."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray, dictionary: Dictionary, shuffle: bool):
        offset, pad = dictionary.nspecial, dictionary.pad()
        dtype = np.int16 if len(dictionary) <= np.iinfo(np.int16).max else np.int32  # 1/4 of int64's memory
        self.source = (inputs + offset).astype(dtype)  # (n, L)
        self.target = np.where(labels == NO_LABEL, pad, labels + offset).astype(dtype)  # (n, L)
        self.pad, self.shuffle = pad, shuffle
        self.sizes = np.full(len(inputs), inputs.shape[1], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Dict:
        return {"id": index, "source": torch.from_numpy(self.source[index].astype(np.int64)),
                "target": torch.from_numpy(self.target[index].astype(np.int64))}

    def collater(self, samples) -> Dict:
        if not samples:
            return {}
        source = torch.stack([s["source"] for s in samples])  # (B, L)
        target = torch.stack([s["target"] for s in samples])  # (B, L)
        return {
            "id": torch.tensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": int(target.ne(self.pad).sum()),
            "net_input": {"src_tokens": source, "src_lengths": torch.full((len(samples),), source.size(1))},
            "target": target,
        }

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def ordered_indices(self) -> np.ndarray:
        """A permutation for training (fairseq seeds numpy around this call), the stored order otherwise."""
        return np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        return equal_length_batches(indices, int(self.sizes[0]), max_tokens, max_sentences,
                                    required_batch_size_multiple)

