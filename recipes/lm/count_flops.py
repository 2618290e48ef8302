"""FLOPs per token of one forward+backward of a focus_lm arch, as torch's FlopCounterMode counts them
(matmuls, bmm, convolutions; FFTs are not counted, so the result is a lower bound). The basis of
the time estimates in recipes/lm/README.md.

    python recipes/lm/count_flops.py DATA_BIN ARCH [LENGTH [FLAG ...]]    # e.g. data-bin/enwik8 focus_lm_enwik8 2048
    (FLAGs are fairseq-train model flags, e.g. the MODEL_ARGS of recipes/wikitext103/train.sh)
"""
import sys
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from torch.utils.flop_counter import FlopCounterMode

USER_DIR = str(Path(__file__).resolve().parents[2] / "fairseq_focus")


def main(data_bin: str, arch: str, length: int = 2048, flags: tuple = ()) -> None:
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [data_bin, "--user-dir", USER_DIR, "--task", "focus_lm",
                                                "--arch", arch, "--tokens-per-sample", str(length), "--cpu", *flags])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    vocab = len(task.source_dictionary)
    tokens = torch.randint(task.source_dictionary.nspecial, vocab, (1, length))
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(tokens)
        logits.float().logsumexp(-1).sum().backward()
    params = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {params / 1e6:.2f}M parameters (vocabulary {vocab}), length {length}: "
          f"{counter.get_total_flops() / length / 1e6:.1f} MFLOP per token (forward+backward, FFTs not counted)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2048, tuple(sys.argv[4:]))
