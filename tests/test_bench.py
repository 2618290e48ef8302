"""The benchmark runs at tiny sizes and writes valid JSON and a plot (its numbers live in docs/)."""
import json

import pytest

from helpers import run

pytestmark = pytest.mark.slow


def test_bench_runs_and_writes_json_and_png(tmp_path):
    out = tmp_path / "bench"
    proc = run(["python", "-m", "fairseq_focus.tools.bench", "--lengths", "64", "--layers",
                "focus-adaptive-causal,focus-static-carry,mega-ema,fairseq-layer,plain-attention",
                "--dim", "32", "--ffn", "64", "--heads", "2", "--zdim", "16", "--value-dim", "32",
                "--bin-size", "16", "--chunk-size", "32", "--kernel-size", "64", "--repeats", "1",
                "--model-lengths", "64", "--model-layers", "1", "--transformer-layers", "1", "--checkpoint-activations",
                "--out", str(out)])
    result = json.loads((out / "bench.json").read_text())
    rows = {r["layer"]: r for r in result["layers"]}
    assert set(rows) == {"focus-adaptive-causal", "focus-static-carry", "mega-ema", "fairseq-layer", "plain-attention"}
    for row in rows.values():
        assert row["seconds"] > 0 and row["tokens_per_s"] > 0 and "time_ratio_fairseq" in row
        assert 0 < row["calls"] < row["calls_all"] and "time_ratio_mega" in row
    assert rows["fairseq-layer"]["time_ratio_fairseq"] == 1.0 and rows["mega-ema"]["memory_ratio_mega"] == 1.0
    steps = {(s["model"], s["checkpoint"]) for s in result["model_steps"]}
    assert steps == {(m, c) for m in ("focus_lm", "transformer_lm") for c in (False, True)}
    assert all(s["tokens_per_s"] > 0 and s["params"] > 0 and s["peak_bytes"] >= 0 for s in result["model_steps"])
    assert "| focus_lm | 64 | yes |" in proc.stdout
    assert (out / "bench.png").stat().st_size > 1000
    assert "| focus-adaptive-causal | 64 |" in proc.stdout


def test_bench_refuses_an_unknown_layer(tmp_path):
    proc = run(["python", "-m", "fairseq_focus.tools.bench", "--layers", "nope", "--out", str(tmp_path)], check=False)
    assert proc.returncode == 2 and "unknown layers" in proc.stderr


def test_bench_profile_prints_the_profiler_table(tmp_path):
    proc = run(["python", "-m", "fairseq_focus.tools.bench", "--profile", "focus-static-causal:64", "--dim", "32",
                "--ffn", "64", "--heads", "2", "--zdim", "16", "--value-dim", "32", "--bin-size", "16",
                "--chunk-size", "32", "--kernel-size", "64", "--threads", "1", "--out", str(tmp_path)])
    assert "aten::" in proc.stdout and "Self CPU time total" in proc.stdout
    bad = run(["python", "-m", "fairseq_focus.tools.bench", "--profile", "nope:64", "--out", str(tmp_path)], check=False)
    assert bad.returncode == 2 and "--profile wants LAYER:L" in bad.stderr


def test_bench_based_prints_its_rows_and_ratios():
    """tools/bench_based.py at tiny sizes: a row per (decay, L), both ratios; its times are not asserted."""
    proc = run(["python", "-m", "fairseq_focus.tools.bench_based", "--lengths", "64,256", "--chunk", "16",
                "--feature-dim", "2", "--value-dim", "8", "--repeats", "1", "--threads", "1"])
    for decay in ("none", "learned"):
        assert f"| {decay} | 64 |" in proc.stdout and f"| {decay} | 256 |" in proc.stdout
        assert f"{decay}: time per token at 256 / at 64 = x" in proc.stdout
    assert "L=256: learned decay / none = x" in proc.stdout
