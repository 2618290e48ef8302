"""``focus_classification``: cross-entropy of one label per sequence, logging accuracy.

The model maps ``net_input`` to logits (B, num_classes). Logged per batch and aggregated exactly
over any number of batches and workers (sums of counts):

    loss     = Σ −log softmax(logits)[target] / B / ln 2     (bits per example, fairseq's convention)
    accuracy = 100 · #(argmax logits = target) / B            (percent)

fairseq's own ``sentence_prediction`` criterion assumes RoBERTa's classification-head interface, so
it does not fit a model whose forward returns the logits directly.
"""
import math
from dataclasses import dataclass

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass


@dataclass
class FocusClassificationConfig(FairseqDataclass):
    pass


@register_criterion("focus_classification", dataclass=FocusClassificationConfig)
class FocusClassificationCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce: bool = True):
        logits = model(**sample["net_input"])  # (B, num_classes)
        target = sample["target"]  # (B,)
        loss = F.cross_entropy(logits.float(), target, reduction="sum" if reduce else "none")
        sample_size = target.numel()
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample_size,
            "sample_size": sample_size,
            "ncorrect": (logits.argmax(dim=-1) == target).sum().data,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(float(log.get("loss", 0.0)) for log in logging_outputs)
        nsentences = sum(int(log.get("nsentences", 0)) for log in logging_outputs)
        ncorrect = sum(int(log.get("ncorrect", 0)) for log in logging_outputs)
        if nsentences > 0:
            metrics.log_scalar("loss", loss / nsentences / math.log(2), nsentences, round=4)
            metrics.log_scalar("accuracy", 100.0 * ncorrect / nsentences, nsentences, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
