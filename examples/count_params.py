"""Print the parameter count of every registered focus_lm arch and peer for a byte vocabulary (256 + 4 specials),
built exactly as fairseq-train builds them (argument parsing, arch defaults, task, build_model).

    python examples/count_params.py
"""
import logging
import warnings
import sys
import tempfile
from pathlib import Path

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

ARCHS = ["focus_lm", "focus_lm_deep", "focus_lm_adaptive", "focus_lm_static", "focus_lm_mega_small",
         "focus_lm_paper"] + [
    f"focus_lm_{corpus}{suffix}" for corpus in ("enwik8", "text8")
    for suffix in ("", "_adaptive", "_static", "_paper", "_static_paper", "_ema", "_mega", "_mega_adaptive")] + [
    "mamba2_lm", "gated_deltanet_lm", "transformer_pp_lm"]  # the peers (models/peer_lm.py) at their defaults


def count(arch: str, data_dir: str) -> int:
    user_dir = str(Path(__file__).resolve().parents[1] / "fairseq_focus")
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [data_dir, "--user-dir", user_dir, "--task", "focus_lm", "--arch", arch, "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore", category=UserWarning)
    with tempfile.TemporaryDirectory() as data_dir:
        Path(data_dir, "dict.txt").write_text("".join(f"{b} 1\n" for b in range(256)))
        for arch in ARCHS:
            n = count(arch, data_dir)
            print(f"{arch:<30} {n:>12,}  ({n / 1e6:.1f}M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
