"""``focus_lm`` task: fairseq's language modelling task that also logs bits per character.

With one token per byte/character (newlines kept as line breaks, so each line's end-of-sentence
token stands for the newline), the mean negative log-likelihood per token in base 2 is the BPC.
``fairseq-eval-lm`` prints it as "Loss (base 2)".

``--task-autocast-bf16`` runs the forward and loss of every training and validation step under
torch.autocast(bfloat16) by the plugin's rule (ops/precision.py: refused on a GPU without bf16 units),
whatever the arch: the bf16 path of fairseq's own ``transformer_lm`` (fairseq 0.12's ``--bf16`` means
TPU), so that it trains beside the Focus archs' ``--autocast-bf16`` in the same precision.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from fairseq import metrics
from fairseq.data import (AppendTokenDataset, IdDataset, ListDataset, NestedDictionaryDataset, NumelDataset,
                          PadDataset, PrependTokenDataset, StripTokenDataset)
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from ..ops.precision import model_autocast


@dataclass
class FocusLMTaskConfig(LanguageModelingConfig):
    task_autocast_bf16: bool = field(
        default=False,
        metadata={"help": "run each step's forward and loss under torch.autocast(bfloat16), for any arch: bf16 "
                          "for fairseq's transformer_lm (0.12's --bf16 means TPU); the Focus archs have their "
                          "own --autocast-bf16. Refused where the device cannot compute in bf16"})


@register_task("focus_lm", dataclass=FocusLMTaskConfig)
class FocusLMTask(LanguageModelingTask):
    def _autocast(self, model):
        """bf16 autocast on the model's device under --task-autocast-bf16, else a context that changes nothing."""
        enabled = bool(getattr(self.args, "task_autocast_bf16", False))
        return model_autocast(enabled, next(model.parameters()).device if enabled else None)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's step, the forward and loss under --task-autocast-bf16's autocast (backward outside it,
        as fairseq's --amp does)."""
        if not getattr(self.args, "task_autocast_bf16", False):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        model.train()
        model.set_num_updates(update_num)
        with torch.autograd.profiler.record_function("forward"), self._autocast(model):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        with self._autocast(model):
            return super().valid_step(sample, model, criterion)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        # nll_loss when the criterion smooths labels, else loss; both are sums in nats
        key = "nll_loss" if any("nll_loss" in log for log in logging_outputs) else "loss"
        nll = sum(float(log.get(key, 0.0)) for log in logging_outputs)
        ntokens = sum(int(log.get("ntokens", 0)) for log in logging_outputs)
        if ntokens > 0:
            metrics.log_scalar("bpc", nll / ntokens / math.log(2), ntokens, round=4)

    def build_dataset_for_inference(self, src_tokens, src_lengths, **kwargs):
        """Prompts for ``fairseq-interactive`` (and the hub): as fairseq's own method, one item per
        prompt, eos stripped, eos (or bos) prepended — but without TokenBlockDataset's "eos" mode,
        which calls ``np.compat.long``, gone in numpy 2 (the stock task fails there). One prompt
        per block is all that mode did here."""
        d = self.source_dictionary
        dataset = StripTokenDataset(ListDataset(src_tokens, np.array(src_lengths)), d.eos())
        start = d.bos() if getattr(self.args, "add_bos_token", False) else d.eos()
        src_dataset = PrependTokenDataset(dataset, token=start)
        tgt_dataset = AppendTokenDataset(dataset, token=d.pad())
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": PadDataset(src_dataset, pad_idx=d.pad(), left_pad=False),
                    "src_lengths": NumelDataset(src_dataset, reduce=False),
                },
                "target": PadDataset(tgt_dataset, pad_idx=d.pad(), left_pad=False),
            },
            sizes=[np.array(src_lengths)],
        )
