"""Score a whole subset as one stream, in segments, carrying the model's state across them.

    python -m fairseq_focus.tools.score_stream DATA_BIN --path CKPT [--gen-subset test] [--segment-len N] [--cpu]

How the stream is formed and fed: ``fairseq_focus.inference.stream_scoring``. Prints

    streaming BPC = 1.2345 over 12345 tokens (segments of N, state carried)

(bits per token; per byte for byte corpora).
"""
import argparse
import math
import sys
from typing import Optional, Sequence

from ..inference.stream_scoring import load_model, load_stream, stream_nll


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_focus.tools.score_stream", description=__doc__.split("\n")[0])
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
