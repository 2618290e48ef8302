"""Shared test helpers: running fairseq's real CLIs and building tiny byte-level corpora."""
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_focus")
BIN = Path(sys.executable).parent  # the venv's console scripts (fairseq-train, ...)

# A model small enough to train a few updates on CPU in seconds.
TINY_LM = [
    "--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-hidden-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--decoder-z-dim", "16", "--bin-size", "16", "--chunk-size", "32",
    "--hyper-kernel-size", "64",
]


def run(cmd: List[str], cwd: Optional[Path] = None, env: Optional[dict] = None, check: bool = True,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its whole output so the test log shows why."""
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.setdefault("OMP_NUM_THREADS", "2")
    if env:
        full_env.update(env)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def bytes_to_lines(data: bytes) -> str:
    """One token per byte in decimal; newline bytes become line breaks (fairseq's </s>)."""
    return "".join(" ".join(str(b) for b in line) + "\n" for line in data.split(b"\n"))


def make_byte_corpus(root: Path, text: bytes) -> Path:
    """Split text 90/5/5 into byte-token files and binarize them with fairseq-preprocess."""
    n = len(text)
    cuts = [0, int(0.9 * n), int(0.95 * n), n]
    for name, lo, hi in zip(("train", "valid", "test"), cuts[:-1], cuts[1:]):
        (root / f"{name}.txt").write_text(bytes_to_lines(text[lo:hi]))
    dest = root / "data-bin"
    run(["fairseq-preprocess", "--only-source", "--trainpref", str(root / "train.txt"),
         "--validpref", str(root / "valid.txt"), "--testpref", str(root / "test.txt"),
         "--destdir", str(dest), "--workers", "1"])
    return dest


def stdlib_text(num_bytes: int) -> bytes:
    """Real text present on every machine: the source of Python's argparse module."""
    import argparse
    return Path(argparse.__file__).read_bytes()[:num_bytes]


def stir(module, scale: float = 0.7) -> None:
    """Give the zero-initialised input parts of --focus-filter selective / adaptive-residual random weights,
    so that Θ really moves with the input (at init both are exactly the static filter)."""
    import torch
    from fairseq_focus.modules.global_filter import SelectiveIIRFilter
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, SelectiveIIRFilter):
                m.up.weight.normal_(0.0, scale)
            if getattr(m, "residual", False):
                m.fc2.weight.normal_(0.0, scale)
