"""Score a whole subset as one stream, in segments, carrying the model's state across them.

Its command line is ``python -m fairseq_focus.tools.score_stream``. The subset's tokens (every line
followed by its end-of-sentence token, the newline of a byte corpus) form one stream; token i is
predicted from tokens 0 … i−1, the first from an initial end-of-sentence token, as
``fairseq-eval-lm --sample-break-mode none`` does inside one block. The stream is fed in
consecutive segments of N tokens through ``FocusDecoder.forward_stream``, so the IIR/EMA state, the
hypernetwork's history and the attention chunk cache carry over: the result is the loss of one
parallel forward over the whole stream (tests/test_incremental.py checks it), in O(N) memory, as
MEGA's enwik8 evaluation and fairseq's examples/truncated_bptt do. How far back the model can see
is its own reach (docs/INFERENCE.md): the whole past for ``carry`` IIR modes and the EMA, the
attention chunk plus Θ for the adaptive ``causal`` filter, the chunk alone for the static one.
"""
import os

import torch
from torch import Tensor


@torch.no_grad()
def stream_nll(decoder, tokens: Tensor, eos: int, segment_len: int) -> float:
    """Σ −ln p(token_i | tokens_<i) over a 1-D stream, run in segments with carried state (nats)."""
    if segment_len < 1:
        raise ValueError(f"--segment-len must be positive, got {segment_len}")
    inputs = torch.cat([tokens.new_full((1,), eos), tokens[:-1]])  # token i is predicted from inputs[: i+1]
    state: dict = {}
    total = 0.0
    for start in range(0, tokens.numel(), segment_len):
        end = min(start + segment_len, tokens.numel())
        logits = decoder.forward_stream(inputs[start:end].unsqueeze(0), state)  # (1, n, V)
        lprobs = torch.log_softmax(logits[0].float(), dim=-1)
        total -= lprobs.gather(-1, tokens[start:end].unsqueeze(-1)).double().sum().item()
    return total


def load_stream(data: str, subset: str, dictionary) -> Tensor:
    """All items of a binarized subset, concatenated: (N,) token ids."""
    from fairseq.data import data_utils
    path = os.path.join(data.split(os.pathsep)[0], subset)
    dataset = data_utils.load_indexed_dataset(path, dictionary)
    if dataset is None or len(dataset) == 0:
        raise FileNotFoundError(f"no binarized subset {subset!r} at {path}")
    return torch.cat([dataset[i] for i in range(len(dataset))]).long()


def load_model(path: str, data: str, cpu: bool):
    """The checkpoint's model and task (fairseq's loader), ready for inference on CPU or CUDA."""
    from fairseq import checkpoint_utils

    from ..models import focus_lm as _focus_lm_model  # noqa: F401  (registers the focus_lm model and archs)
    from ..tasks import focus_lm as _focus_lm_task  # noqa: F401  (registers the focus_lm task)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
    model = models[0]
    if not hasattr(getattr(model, "decoder", None), "forward_stream"):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a focus_lm model")
    model.eval()
    if not cpu and torch.cuda.is_available():
        model.cuda()
    return model, task
