"""``focus_lm`` task: fairseq's language modelling task that also logs bits per character.

With one token per byte/character (newlines kept as line breaks, so each line's end-of-sentence
token stands for the newline), the mean negative log-likelihood per token in base 2 is the BPC.
``fairseq-eval-lm`` prints it as "Loss (base 2)".
"""
import math
from dataclasses import dataclass

import numpy as np
from fairseq import metrics
from fairseq.data import (AppendTokenDataset, IdDataset, ListDataset, NestedDictionaryDataset, NumelDataset,
                          PadDataset, PrependTokenDataset, StripTokenDataset)
from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask


@dataclass
class FocusLMTaskConfig(LanguageModelingConfig):
    pass


@register_task("focus_lm", dataclass=FocusLMTaskConfig)
class FocusLMTask(LanguageModelingTask):
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
