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
    assert "'sitepkgs'" in proc.stderr.strip().splitlines()[-1]  # one line, naming every corpus


def _study_run():
    sys.path.insert(0, str(STUDY))
    try:
        import run as study_run
    finally:
        sys.path.remove(str(STUDY))
    return study_run


def test_sitepkgs_corpus_gives_every_split_a_part_of_every_package():
    """--corpus sitepkgs (the 4x check) on a tiny cap: each package's first bytes in sorted path order, split
    80/10/10 per package, laid out so that the study's positional split gives train, valid and test a part of
    every package; sources outside the stdlib tree the demo and the study read; the same bytes twice."""
    import importlib.util
    import sysconfig
    from fairseq_focus.data.byte_corpus import split
    r = _study_run()
    cap, n = 1000, len(r.SITEPKGS)
    data, info = r.sitepkgs_bytes(per_package=cap)
    assert len(data) == n * cap == info["bytes"] and [p["package"] for p in info["packages"]] == [p for p, _ in r.SITEPKGS]
    parts = split(data, r.FRACTIONS)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for i, (package, _) in enumerate(r.SITEPKGS):
        source, files = r.package_source(package, cap)
        assert files == sorted(files, key=lambda f: f.split("/", 1)[1]) and files[0] == info["packages"][i]["first_file"]
        assert parts["train"][800 * i:800 * (i + 1)] == source[:800]
        assert parts["valid"][100 * i:100 * (i + 1)] == source[800:900] and parts["test"][100 * i:100 * (i + 1)] == source[900:]
        root = Path(list(importlib.util.find_spec(package).submodule_search_locations)[0]).resolve()
        assert stdlib not in root.parents or "site-packages" in root.relative_to(stdlib).parts  # stdlib_source skips it
    assert r.valid_sample(parts["valid"], info) == b"".join(parts["valid"][100 * i:100 * i + 12] for i in range(n))
    assert r.sitepkgs_bytes(per_package=cap)[0] == data and r.sitepkgs_bytes(per_package=cap)[1]["sha256"] == info["sha256"]
    # at full size the train split holds every token the scale4x budget reads
    budget = r.make_budget("scale4x")
    assert budget["max_update"] * budget["max_tokens"] <= n * int(r.FRACTIONS[0] * r.SITEPKGS_BYTES)


def test_scale4x_budget_checkpoints_and_validates_and_the_study_budget_is_unchanged():
    r = _study_run()
    assert r.make_budget("study") == r.BUDGET  # results made before the presets still match their budget
    study = r.train_command(Path("d"), Path("o"), ["--arch", "focus_lm"], 1, r.make_budget("study"))
    assert "--disable-validation" in study and "--no-save-optimizer-state" in study
    b = r.make_budget("scale4x")
    assert (b["tokens_per_sample"], b["max_tokens"], b["max_update"]) == (2048, 8192, 1000)
    cmd = r.train_command(Path("d"), Path("o"), ["--arch", "focus_lm"], 1, b)
    assert "--disable-validation" not in cmd and "--no-save-optimizer-state" not in cmd  # Adam's state resumes too
    for flag, value in (("--save-interval-updates", "100"), ("--keep-interval-updates", "1"),
                        ("--validate-interval-updates", "100"), ("--valid-subset", "valid_sample")):
        assert cmd[cmd.index(flag) + 1] == value
    assert r.eval_blocks(b) == [2048, 8192] and r.make_budget("scale4x", max_update=5)["max_update"] == 5


@pytest.mark.slow
def test_an_interrupted_checkpointed_run_resumes_and_a_finished_training_is_not_repeated(work, tmp_path):
    v = variants(tmp_path, [f"resume {TINY_FOCUS}"])
    small = ["--budget", "scale4x", "--tokens-per-sample", "128", "--max-tokens", "256", "--warmup-updates", "1",
             "--save-interval-updates", "2", "--validate-interval-updates", "2", "--valid-subset", "valid",
             "--eval-blocks", "256"]
    base = [STUDY / "run.py", "train", "--work", work, "--variants", v, "--seeds", "1", "--jobs", "1", *small]
    run(base + ["--max-update", "2"])
    out = work / "runs" / "resume" / "seed1"
    (out / "result.json").unlink()
    (out / "train.done").unlink()  # as if stopped right after its checkpoint at update 2
    run(base + ["--max-update", "4"])
    log = (out / "train.log").read_text()
    assert log.count("$ fairseq-train") == 2 and "resuming from checkpoint_last.pt at update 2" in log
    assert "num_updates 2" in log and "num_updates 4" in log  # the first part's curve kept
    result = json.loads((out / "result.json").read_text())
    assert result["updates"] == 4 and set(result["test_bpc_by_block"]) == {"128", "256"}
    (out / "result.json").unlink()  # eval interrupted: rerunning scores again without training again
    run(base + ["--max-update", "4"])
    assert (out / "train.log").read_text().count("$ fairseq-train") == 2
    assert json.loads((out / "result.json").read_text())["test_bpc_by_block"] == result["test_bpc_by_block"]
    curves = run([STUDY / "plot_curves.py", work]).stdout
    assert "| 2 |" in curves and "| 4 |" in curves and "resume seed 1" in curves


def test_plot_curves_reads_valid_bpc_and_the_later_line_of_a_resumed_update_wins(tmp_path):
    line = "2026-12-05 22:06:27 | INFO | valid | epoch 001 | valid on '{s}' subset | loss {b} | bpc {b} | ppl 1 | num_updates {u}"
    for name, rows in (("b", [(100, 3.0), (200, 2.5), (200, 2.4)]), ("a", [(100, 3.2)])):
        out = tmp_path / "runs" / name / "seed1"
        out.mkdir(parents=True)
        (out / "train.log").write_text("\n".join(line.format(s="valid_sample", b=b, u=u) for u, b in rows) + "\n")
    (tmp_path / "variants.txt").write_text("# order\nb --arch focus_lm\na --arch focus_lm\n")
    proc = run([STUDY / "plot_curves.py", tmp_path, "--out", tmp_path / "c.png"])
    assert proc.stdout.splitlines()[:4] == ["| updates | b seed 1 | a seed 1 |", "|---|---|---|",
                                            "| 100 | 3.0000 | 3.2000 |", "| 200 | 2.4000 | — |"]
    assert (tmp_path / "c.png").stat().st_size > 1000
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run([STUDY / "plot_curves.py", empty], check=False).returncode != 0
