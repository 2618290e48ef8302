"""Score a whole subset as one stream, in segments, carrying the model's state across them.

    python -m fairseq_focus.score_stream DATA_BIN --path CKPT [--gen-subset test] [--segment-len N] [--cpu]

The subset's tokens (every line followed by its end-of-sentence token, the newline of a byte
corpus) form one stream; token i is predicted from tokens 0 … i−1, the first from an initial
end-of-sentence token, as ``fairseq-eval-lm --sample-break-mode none`` does inside one block. The
stream is fed in consecutive segments of N tokens through ``FocusDecoder.forward_stream``, so the
IIR/EMA state, the hypernetwork's history and the attention chunk cache carry over: the result is
the loss of one parallel forward over the whole stream (tests/test_incremental.py checks it), in
O(N) memory, as MEGA's enwik8 evaluation and fairseq's examples/truncated_bptt do. Prints

    streaming BPC = 1.2345 over 12345 tokens (segments of N, state carried)

(bits per token; per byte for byte corpora).
"""
import argparse
import math
import os
import sys
from typing import Optional, Sequence

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

    import fairseq_focus  # noqa: F401  (registers focus_lm)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_focus.score_stream", description=__doc__.split("\n")[0])
    parser.add_argument("data", metavar="DATA_BIN", help="fairseq-preprocess output directory")
    parser.add_argument("--path", required=True, help="focus_lm checkpoint")
    parser.add_argument("--gen-subset", default="test", help="subset to score (default: test)")
    parser.add_argument("--segment-len", type=int, default=2048, help="tokens per segment (default: 2048)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    args = parser.parse_args(argv)
    try:
        if args.segment_len < 1:
            raise ValueError(f"--segment-len must be positive, got {args.segment_len}")
        model, task = load_model(args.path, args.data, args.cpu)
        dictionary = task.target_dictionary
        tokens = load_stream(args.data, args.gen_subset, dictionary).to(next(model.parameters()).device)
        nll = stream_nll(model.decoder, tokens, dictionary.eos(), args.segment_len)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    bpc = nll / tokens.numel() / math.log(2)
    print(f"streaming BPC = {bpc:.4f} over {tokens.numel()} tokens (segments of {args.segment_len}, state carried)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
