"""`make demo`'s script, end to end at a tiny scale (the full run takes minutes; see README)."""
import re

import pytest

from helpers import REPO, TINY_LM, run

pytestmark = pytest.mark.slow


def test_demo_script_prints_bpc_next_to_xz(tmp_path):
    proc = run(["bash", str(REPO / "examples" / "demo.sh")], env={
        "WORK": str(tmp_path / "work"), "CORPUS_BYTES": "40000", "MAX_UPDATE": "4",
        "EXTRA_ARGS": " ".join(TINY_LM),
    })
    out = proc.stdout
    bpc = re.search(r"focus_lm test BPC .*: ([0-9.]+) bits/byte", out)
    alone = re.search(r"xz -9e on the test bytes alone .*: ([0-9.]+) bits/byte", out)
    cond = re.search(r"xz -9e on the test bytes after the training bytes .*: ([0-9.]+) bits/byte", out)
    assert bpc and alone and cond, out
    assert 0 < float(bpc.group(1)) < 12 and 0 < float(alone.group(1)) < 8 and 0 < float(cond.group(1)) < 8
    assert list((tmp_path / "work" / "tensorboard").rglob("events.out.tfevents*"))


def test_demo_corpus_tool_rejects_a_missing_input(tmp_path):
    proc = run(["python", "-m", "fairseq_focus.data.byte_corpus", "--input", str(tmp_path / "nope.txt"),
                "--out-dir", str(tmp_path / "out")], check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()
