"""``focus_labelled_cross_entropy``: next-token cross-entropy at the labelled positions only, logging accuracy.

For tasks whose targets are pad except at a few positions (MQAR: the N query positions of L). The loss
is fairseq's ``cross_entropy`` on the same sample, but the output layer runs on the labelled rows only:

    h      = model(**net_input, features_only=True)[0]             (B, T, D)
    logits = output_layer(h[target ≠ pad])                         (n, V)   n labelled positions
    loss   = Σ −log softmax(logits)[target] / n / ln 2              (bits per labelled token)
    accuracy = 100 · #(argmax logits = target) / n                   (percent)

At V = 8,196 and L = 512 the full output layer would be (B, 512, 8196) per batch, where n is N = 4 … 64
rows per example. The output layer is the model's ``output_layer`` (FairseqLanguageModel's, which calls
its decoder's), else its ``decoder.output_layer``: every decoder LM of this package (``focus_lm`` and the
``focus_recall`` archs), fairseq's ``transformer_lm``, and any model following FairseqLanguageModel's
interface (``forward(src_tokens, …, features_only=…)`` returning ``(features, extra)``). A model that
computed its features under autocast (``--autocast-bf16``) gets its output layer under the same
precision, as its own forward would have run it. Sums of counts: exact over batches and workers.
"""
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from torch import Tensor

HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass
class LabelledCrossEntropyConfig(FairseqDataclass):
    pass


def output_layer_of(model) -> Callable[[Tensor], Tensor]:
    """The model's map from features to logits."""
    layer = getattr(model, "output_layer", None) or getattr(getattr(model, "decoder", None), "output_layer", None)
    if layer is None:
        raise TypeError(f"focus_labelled_cross_entropy needs a model with output_layer (or decoder.output_layer); "
                        f"{type(model).__name__} has neither")
    return layer


def labelled_logits(model, net_input: dict, target: Tensor, pad: int) -> Tensor:
    """(n, V) logits at the n positions whose target is not pad, in row-major order."""
    features = model(**net_input, features_only=True)[0]  # (B, T, D)
    if features.shape[:2] != target.shape:
        raise ValueError(f"the model's features {tuple(features.shape)} do not line up with the target "
                         f"{tuple(target.shape)}")
    rows = features[target.ne(pad)]  # (n, D)
    half = rows.dtype in HALF_DTYPES
    with torch.autocast(device_type=rows.device.type, dtype=rows.dtype if half else torch.bfloat16, enabled=half):
        return output_layer_of(model)(rows)


@register_criterion("focus_labelled_cross_entropy", dataclass=LabelledCrossEntropyConfig)
class LabelledCrossEntropyCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce: bool = True):
        target = sample["target"]  # (B, T), pad where unlabelled
        labels = target[target.ne(self.padding_idx)]  # (n,)
        logits = labelled_logits(model, sample["net_input"], target, self.padding_idx)  # (n, V)
        loss = F.cross_entropy(logits.float(), labels, reduction="sum" if reduce else "none")
        n = labels.numel()
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": target.size(0),
            "sample_size": n,
            "nlabelled": n,
            "ncorrect": int(logits.argmax(dim=-1).eq(labels).sum()),
        }
        return loss, n, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(float(log.get("loss", 0.0)) for log in logging_outputs)
        labelled = sum(int(log.get("nlabelled", 0)) for log in logging_outputs)
        correct = sum(int(log.get("ncorrect", 0)) for log in logging_outputs)
        if labelled > 0:
            metrics.log_scalar("loss", loss / labelled / math.log(2), labelled, round=4)
            metrics.log_scalar("accuracy", 100.0 * correct / labelled, labelled, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
