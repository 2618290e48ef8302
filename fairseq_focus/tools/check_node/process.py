"""Running the check's subprocesses (fairseq's console scripts, bench) with their logs, and its messages."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from .settings import REPO, RunError


def tool(name: str) -> str:
    """A console script of this Python's environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RunError(f"{name} is neither beside {sys.executable} nor on PATH (install fairseq into this environment)")
    return found


def child_env() -> Dict[str, str]:
    """The environment of every subprocess: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_logged(cmd: List[str], log: Path, cwd: Path) -> int:
    """Run ``cmd`` with stdout and stderr into ``log`` (the command line first); its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env()).returncode


def say(message: str) -> None:
    print(f"[check] {message}", flush=True)


def last_line(log: Path) -> str:
    """The log's last non-empty line, shortened: what a failed subprocess said last."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(empty log)"


def one_line(text: str) -> str:
    return " ".join(str(text).split())
