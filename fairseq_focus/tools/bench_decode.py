"""Decoding speed: ms per generated token, incremental state vs recomputing the whole prefix.

    python -m fairseq_focus.tools.bench_decode [--arch focus_lm_enwik8] [--prefix 1024 4096] [--steps 32]

For each prefix length P, with a randomly initialised model of the named arch (speed does not
depend on the weights) and a 256-byte vocabulary:

* recompute: one parallel forward over P + 1 tokens per new token — what a decoder without state
  does under fairseq's incremental contract (the whole prefix each step);
* incremental: the prefix is fed once through ``forward_stream``, then single-token steps through
  ``decoder(prefix, incremental_state=state)`` as fairseq's SequenceGenerator calls it, timed in
  --repeats blocks of --steps steps (mean per step within a block).

Both report the minimum over the --repeats timings, the figure least disturbed by other processes
on a shared machine.

Prints a Markdown table (used in docs/BENCHMARKS.md).
"""
import argparse
import platform
import time
from argparse import Namespace
from dataclasses import fields
from typing import Optional, Sequence

import torch


def build_decoder(arch: str):
    """A focus_lm arch's decoder, or a peer's (models/peer_lm.py: mamba2_lm, gated_deltanet_lm, transformer_pp_lm)
    at its defaults, on a 256-byte vocabulary."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    from ..data.byte_codec import byte_dictionary
    from ..models.focus_lm import FocusDecoder, FocusLMConfig  # also registers the focus_lm archs
    from ..models.peer_lm import PeerDecoder, PeerLanguageModel
    model = ARCH_MODEL_REGISTRY.get(arch)
    if model is not None and issubclass(model, PeerLanguageModel):
        cfg = model.__dataclass()
        cfg.max_target_positions = 1 << 20
        return PeerDecoder(cfg, byte_dictionary(), model.make_mixer).eval()
    if model is None or model.__name__ != "FocusLanguageModel":
        raise ValueError(f"{arch!r} is neither a focus_lm arch nor a peer (mamba2_lm, gated_deltanet_lm, transformer_pp_lm)")
    args = Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    cfg = FocusLMConfig(**{f.name: getattr(args, f.name) for f in fields(FocusLMConfig) if hasattr(args, f.name)})
    cfg.max_target_positions, cfg.dropout = 1 << 20, 0.0
    return FocusDecoder(cfg, byte_dictionary()).eval()


@torch.no_grad()
def measure(decoder, prefix: int, steps: int, repeats: int):
    tokens = torch.randint(decoder.dictionary.nspecial, len(decoder.dictionary), (1, prefix + repeats * steps))
    recompute = []
    for _ in range(repeats):
        start = time.perf_counter()
        decoder(tokens[:, :prefix + 1])  # the whole prefix, once per generated token
        recompute.append(time.perf_counter() - start)
    state: dict = {}
    decoder(tokens[:, :prefix], incremental_state=state)  # prompt, not timed
    incremental = []
    for block in range(repeats):
        start = time.perf_counter()
        for t in range(prefix + block * steps, prefix + (block + 1) * steps):
            decoder(tokens[:, :t + 1], incremental_state=state)
        incremental.append((time.perf_counter() - start) / steps)
    return min(recompute) * 1e3, min(incremental) * 1e3


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fairseq_focus.tools.bench_decode", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=["focus_lm_enwik8"], help="focus_lm archs or peers to time")
    parser.add_argument("--prefix", type=int, nargs="+", default=[1024, 4096], help="prefix lengths")
    parser.add_argument("--steps", type=int, default=16, help="incremental steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed recompute forwards / incremental blocks (min)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, fp32, batch 1, "
          f"min of {args.repeats} timings (incremental: blocks of {args.steps} steps)")
    print()
    print("| arch | params | prefix | recompute ms/token | incremental ms/token | speed-up |")
    print("|---|---|---|---|---|---|")
    for arch in args.arch:
        decoder = build_decoder(arch)
        params = sum(p.numel() for p in decoder.parameters()) / 1e6
        for prefix in args.prefix:
            recompute, incremental = measure(decoder, prefix, args.steps, args.repeats)
            print(f"| {arch} | {params:.1f}M | {prefix} | {recompute:.1f} | {incremental:.2f} | {recompute / incremental:.0f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
