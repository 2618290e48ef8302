"""`make demo`'s script, end to end at a tiny scale (the full run takes minutes; see README)."""
import re

import pytest

from helpers import REPO, TINY_LM, run

pytestmark = pytest.mark.slow


def test_demo_script_prints_bpc_next_to_mega_xz_and_a_sample(tmp_path):
    proc = run(["bash", str(REPO / "examples" / "demo.sh")], env={
        "WORK": str(tmp_path / "work"), "CORPUS_BYTES": "40000", "MAX_UPDATE": "4", "SAMPLE_BYTES": "40",
        "EXTRA_ARGS": " ".join(TINY_LM),
    })
    out = proc.stdout
    bpc = re.search(r"focus_lm \(default: selective IIR head\), ([\d,]+) params, (\d+) updates : ([0-9.]+) bits/byte", out)
    mega = re.search(r"MEGA's block and EMA, +([\d,]+) params, (\d+) updates +: ([0-9.]+) bits/byte", out)
    alone = re.search(r"xz -9e on the test bytes alone .*: ([0-9.]+) bits/byte", out)
    cond = re.search(r"xz -9e on the test bytes after the training bytes .*: ([0-9.]+) bits/byte", out)
    assert bpc and mega and alone and cond, out
    assert bpc.group(2) == mega.group(2) == "4"  # the same budget for both models
    assert 0 < float(bpc.group(3)) < 12 and 0 < float(mega.group(3)) < 12
    assert 0 < float(alone.group(1)) < 8 and 0 < float(cond.group(1)) < 8
    sample = out.split("sample (prompt 'def ', top-k 10, temperature 0.8, seed 0):\n", 1)
    assert len(sample) == 2 and sample[1].startswith("def ") and len(sample[1].strip()) > 4, out
    assert "filter=selective" in (tmp_path / "work" / "focus_lm" / "train.log").read_text()  # the default model
    assert list((tmp_path / "work" / "focus_lm" / "tensorboard").rglob("events.out.tfevents*"))


def test_demo_without_baseline_skips_mega(tmp_path):
    proc = run(["bash", str(REPO / "examples" / "demo.sh")], env={
        "WORK": str(tmp_path / "work"), "CORPUS_BYTES": "20000", "MAX_UPDATE": "2", "SAMPLE_BYTES": "10",
        "EXTRA_ARGS": " ".join(TINY_LM), "DEMO_BASELINE": "0",
    })
    assert "focus_lm (default" in proc.stdout and "MEGA's block" not in proc.stdout
    assert not (tmp_path / "work" / "mega").exists()


def test_demo_refuses_a_bad_baseline_switch(tmp_path):
    proc = run(["bash", str(REPO / "examples" / "demo.sh")], env={"WORK": str(tmp_path / "w"), "DEMO_BASELINE": "yes"},
               check=False)
    assert proc.returncode != 0 and "DEMO_BASELINE must be 0 or 1" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_demo_corpus_tool_rejects_a_missing_input(tmp_path):
    proc = run(["python", "-m", "fairseq_focus.data.byte_corpus", "--input", str(tmp_path / "nope.txt"),
                "--out-dir", str(tmp_path / "out")], check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()
