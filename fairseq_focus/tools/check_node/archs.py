"""Check 1, **archs**: every ``CHECK_ARCHS`` arch built as fairseq-train builds it, and its parameter count."""
from pathlib import Path
from typing import Dict, List

from .process import one_line, say
from .settings import BYTE_DICT_SIZE, USER_DIR, model_flags


def write_byte_dictionary(directory: Path) -> Path:
    """A data directory holding only dict.txt with the 256 byte symbols (examples/count_params.py's)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dict.txt").write_text("".join(f"{b} 1\n" for b in range(BYTE_DICT_SIZE)))
    return directory


def build_model(arch: str, flags: List[str], data_dir: Path, tokens: int):
    """The model exactly as fairseq-train builds it: its parser, the arch's defaults, the task."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data_dir), "--user-dir", str(USER_DIR), "--task", "focus_lm",
                                                "--arch", arch, "--cpu", "--tokens-per-sample", str(tokens)] + flags)
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task).build_model(cfg.model)


def count_archs(archs: List[str], dict_dir: Path, tokens: int, failures: List[str]) -> List[Dict]:
    """Build each arch at its registered size and count its parameters."""
    rows = []
    for arch in archs:
        try:
            model = build_model(arch, model_flags(arch, tiny=False), dict_dir, tokens)
        except (ValueError, RuntimeError, AssertionError, TypeError) as e:
            failures.append(f"arch {arch} does not build: {type(e).__name__}: {one_line(e)}")
            rows.append({"arch": arch, "params": None, "tokens_per_sample": tokens, "error": f"{type(e).__name__}: {one_line(e)}"})
            continue
        rows.append({"arch": arch, "params": sum(p.numel() for p in model.parameters()), "tokens_per_sample": tokens})
        say(f"{arch}: {rows[-1]['params']:,} parameters")
        del model
    return rows
