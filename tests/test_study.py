"""The LM study driver of docs/RESULTS.md (recipes/study): prepare -> params -> train -> collect, end to
end at a tiny budget, plus its refusals (parameter mismatch, a result made with another budget)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "recipes" / "study"
TINY = ["--max-update", "2", "--max-tokens", "256", "--tokens-per-sample", "128", "--warmup-updates", "1"]


def run(args, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("study")
    run([STUDY / "run.py", "prepare", "--work", work])
    return work


def variants(tmp_path, lines):
    path = tmp_path / "variants.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_FOCUS = "--arch focus_lm --decoder-embed-dim 16 --decoder-hidden-dim 16 --decoder-z-dim 8 --decoder-ffn-embed-dim 16 --hyper-kernel-size 128"


@pytest.mark.slow
def test_train_and_collect_report_every_run(work, tmp_path):
    v = variants(tmp_path, [f"a {TINY_FOCUS} --iir-mode carry --theta-param stable",
                            f"b {TINY_FOCUS} --block-wiring mega --rel-pos-bias rotary"])
    proc = run([STUDY / "run.py", "train", "--work", work, "--variants", v, "--seeds", "1", "--jobs", "2", *TINY])
    assert proc.stdout.count("test BPC") == 2
    results = {p.parent.parent.name: json.loads(p.read_text()) for p in work.glob("runs/*/seed1/result.json")}
    assert set(results) == {"a", "b"}
    for r in results.values():
        assert r["updates"] == 2 and 0 < r["test_bpc"] < 20 and "--seed 1" in r["train_command"]
    table = run([STUDY / "collect.py", work]).stdout
    assert "| a |" in table and "| b |" in table
    # a result made with another budget is refused, not silently reused
    proc = run([STUDY / "run.py", "train", "--work", work, "--variants", v, "--seeds", "1", "--only", "a",
                *TINY[:-1], "2"], check=False)
    assert proc.returncode != 0 and "another budget" in proc.stdout


@pytest.mark.slow
def test_params_refuses_models_outside_ten_percent(work, tmp_path):
    v = variants(tmp_path, [f"small {TINY_FOCUS}", "big --arch focus_lm"])
    proc = run([STUDY / "run.py", "params", "--work", work, "--variants", v], check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: parameter counts outside")


def _recall_grid(tmp_path, variants_lines, extra_env=None):
    variants_file = tmp_path / "recall_variants.txt"
    variants_file.write_text("\n".join(variants_lines) + "\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PYTHON=sys.executable,
               CPU="1", JOBS="2", GRID_L="8", NUM_TRAIN="64", NUM_TEST="16", EPOCHS="2", WORK=str(tmp_path / "w"),
               VARIANTS=str(variants_file), **(extra_env or {}))
    return subprocess.run(["bash", str(STUDY / "recall_grid.sh")], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_recall_grid_trains_every_variant_and_tables_it(tmp_path):
    proc = _recall_grid(tmp_path, ["# a comment", "plain focus_recall --iir-mode carry --theta-param stable",
                                   "prod focus_recall --iir-mode carry --filter-input product --product-head-dim 2",
                                   "skipped focus_recall"], {"ONLY": "plain prod"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 8 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["plain", "prod"]
    for row in rows:  # 64 examples / batch 32 = 2 updates per epoch, 2 epochs
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[6] == "4" and cells[7] == "2", row
    assert (tmp_path / "w" / "prod" / "focus_recall" / "L8" / "train.log").is_file()
    assert not (tmp_path / "w" / "skipped").exists()


@pytest.mark.slow
def test_recall_grid_fails_when_a_run_fails(tmp_path):
    proc = _recall_grid(tmp_path, ["bad focus_recall --filter-input product --product-head-dim 3"])
    assert proc.returncode != 0
    assert "1 run(s) failed" in proc.stderr


def test_recall_collect_refuses_an_empty_directory(tmp_path):
    proc = run([STUDY / "recall_collect.py", tmp_path], check=False)
    assert proc.returncode != 0 and "no train.log" in proc.stderr


def test_stdlib_corpus_is_held_out_from_the_demo_and_has_no_codec_tables(tmp_path):
    """--corpus stdlib: 1,000,000 bytes that follow the demo's 3,000,000 in the same path-ordered stream,
    without encodings/ (whose codec tables filled that slice); the demo's bytes are unchanged by the skip."""
    sys.path.insert(0, str(STUDY))
    try:
        import run as study_run
    finally:
        sys.path.remove(str(STUDY))
    from fairseq_focus.data.byte_corpus import SKIPPED, stdlib_source
    data, info = study_run.corpus_bytes("stdlib")
    assert len(data) == 1_000_000 == info["bytes"] and "encodings/" in info["source"]
    full = stdlib_source(4_000_000, SKIPPED + study_run.STDLIB_SKIP)
    assert full[:3_000_000] == stdlib_source(3_000_000) and full[3_000_000:] == data
    assert b"ARABIC LETTER" not in data  # the cp864 codec table's comments, which the plain stream has here
    proc = run([STUDY / "run.py", "prepare", "--work", tmp_path / "w", "--corpus", "nope"], check=False)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr and not (tmp_path / "w").exists()
