"""recipes/check_gpu.sh, the first-run check of a training node, in its CPU smoke mode: the very script
a GPU node runs, at tiny sizes (fairseq_focus/tools/check_node/), plus its verdicts on bad input and
on a failed check, the fairseq-train log parsing of the fp16 path that a CPU cannot run, and the focus_lm
task's --task-autocast-bf16 (transformer_lm's bf16 path in the check)."""
import json
import math
from pathlib import Path
from typing import Dict

import pytest

from fairseq_focus.tools.check_node import (TRANSFORMER_TINY_FLAGS, USER_DIR, judge_run, parse_train_log,
                                            write_byte_dictionary)
from helpers import REPO, run

SCRIPT = str(REPO / "recipes" / "check_gpu.sh")
ARCHS = {"focus_lm", "focus_lm_enwik8", "focus_lm_enwik8_mega", "focus_lm_enwik8_ema", "focus_lm_enwik8_paper",
         "transformer_lm"}
TRAIN_ARCHS = {"focus_lm_enwik8", "focus_lm_enwik8_ema", "transformer_lm"}
BENCH_LAYERS = {"focus-selective-carry", "focus-static-carry", "fairseq-layer"}
CPU = {"CHECK_DEVICE": "cpu"}  # the smoke mode even where a GPU is present


def check(out: Path, env: Dict[str, str]):
    return run(["bash", SCRIPT, str(out)], env={**CPU, **env}, check=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One CPU smoke run of the whole check with its defaults: (process, check.json, out dir)."""
    out = tmp_path_factory.mktemp("check") / "out"
    proc = check(out, {})
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr}"
    return proc, json.loads((out / "check.json").read_text()), out


@pytest.mark.slow
def test_smoke_run_passes_with_a_clean_stderr(smoke):
    proc, result, out = smoke
    assert proc.stderr == "" and result["ok"] and result["failures"] == []
    assert json.loads((out / "triton_scan.json").read_text())["status"] == "skipped"  # no CUDA here
    assert result["settings"]["smoke"] and result["settings"]["tiny"] and result["node"]["torch"]


@pytest.mark.slow
def test_archs_are_built_at_their_registered_sizes(smoke):
    counts = {r["arch"]: r["params"] for r in smoke[1]["archs"]}
    assert set(counts) == ARCHS and all(n > 0 for n in counts.values())
    assert all(counts[a] > 10_000_000 for a in ARCHS - {"focus_lm"})  # the paper sizes, not CHECK_TINY's
    assert 0.9 < counts["transformer_lm"] / counts["focus_lm_enwik8"] < 1.1  # TRANSFORMER_FLAGS: about the same size


@pytest.mark.slow
def test_training_runs_lose_loss_and_fp16_is_skipped_with_a_reason(smoke):
    runs = {(r["arch"], r["precision"]): r for r in smoke[1]["train"]}
    assert set(runs) == {(a, p) for a in TRAIN_ARCHS for p in ("bf16", "fp16")}
    for arch in TRAIN_ARCHS:
        bf16 = runs[arch, "bf16"]
        flag = "--task-autocast-bf16" if arch == "transformer_lm" else "--autocast-bf16"
        assert bf16["status"] == "passed" and bf16["flags"] == [flag] and bf16["returncode"] == 0
        assert len(bf16["losses"]) >= 2 and math.isfinite(bf16["last_loss"]) and bf16["last_loss"] < bf16["first_loss"]
        assert bf16["updates"] > 0 and bf16["params"] > 0 and Path(bf16["log"]).is_file()
        fp16 = runs[arch, "fp16"]
        assert fp16["status"] == "skipped" and "CUDA" in fp16["reason"] and fp16["flags"] == ["--fp16"]


@pytest.mark.slow
def test_incremental_decoding_equals_the_parallel_forward(smoke):
    rows = smoke[1]["incremental"]
    assert TRAIN_ARCHS - {"transformer_lm"} <= {r["arch"] for r in rows}
    assert all(r["status"] == "passed" and 0 <= r["max_abs_diff"] < 1e-4 for r in rows)


@pytest.mark.slow
def test_bench_runs_in_fp32_and_bf16(smoke):
    bench = smoke[1]["bench"]
    assert set(bench) == {"fp32", "bf16"}
    for result in bench.values():
        assert result["status"] == "passed" and {r["layer"] for r in result["rows"]} == BENCH_LAYERS
        assert all(r["seconds"] > 0 and r["tokens_per_s"] > 0 for r in result["rows"])
    meta = json.loads(Path(bench["bf16"]["json"]).read_text())["meta"]
    assert meta["autocast_bf16"] is True


@pytest.mark.slow
def test_markdown_report_has_every_table(smoke):
    _, result, out = smoke
    text = (out / "check.md").read_text()
    assert text.startswith("# Node check: PASSED")
    for arch in ARCHS:
        assert f"| {arch} | {next(r['params'] for r in result['archs'] if r['arch'] == arch):,} |" in text
    assert "| focus_lm_enwik8 | bf16 | --autocast-bf16 | passed |" in text
    assert "| transformer_lm | bf16 | --task-autocast-bf16 | passed |" in text
    assert ("| precision | focus_lm_enwik8 | focus_lm_enwik8_ema | transformer_lm | focus_lm_enwik8 ÷ focus_lm_enwik8_ema "
            "| focus_lm_enwik8 ÷ transformer_lm |") in text
    assert "| fp16 | — | — | — | — | — |" in text  # skipped here: no ratio
    assert "## Incremental decoding" in text and "## Layer benchmark, bf16" in text


@pytest.mark.slow
def test_whole_step_throughput_is_tabled_with_ratios_within_the_run(smoke):
    rows = {r["precision"]: r for r in smoke[1]["throughput"]}
    assert set(rows) == {"bf16", "fp16"}
    speed, ratios = rows["bf16"]["tokens_per_s"], rows["bf16"]["ratios"]
    wps = {r["arch"]: r["wps"] for r in smoke[1]["train"] if r["precision"] == "bf16"}
    assert speed == wps and all(v > 0 for v in speed.values())
    assert ratios == {"focus_lm_enwik8 / focus_lm_enwik8_ema": wps["focus_lm_enwik8"] / wps["focus_lm_enwik8_ema"],
                      "focus_lm_enwik8 / transformer_lm": wps["focus_lm_enwik8"] / wps["transformer_lm"]}
    assert set(rows["fp16"]["ratios"].values()) == {None} and set(rows["fp16"]["tokens_per_s"].values()) == {None}
    assert f"| bf16 | {speed['focus_lm_enwik8']:.0f} |" in (smoke[2] / "check.md").read_text()


@pytest.mark.slow
def test_bad_input_exits_with_one_line_and_writes_no_check_json(tmp_path):
    out = tmp_path / "out"
    proc = check(out, {"CHECK_ARCHS": "no_such_arch"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: CHECK_ARCHS")
    assert "no_such_arch" in lines[0]
    assert not (out / "check.json").exists()


@pytest.mark.slow
def test_a_failed_check_exits_1_and_replaces_an_old_verdict(tmp_path):
    """A tolerance no float computation meets: the run finishes, records the failure, exits 1."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "check.json").write_text('{"ok": true}')  # an earlier run's verdict
    proc = check(out, {"CHECK_ARCHS": "focus_lm", "CHECK_TRAIN_ARCHS": "", "CHECK_LENGTHS": "",
                       "CHECK_INCR_ARCHS": "focus_lm", "CHECK_INCR_TOL": "0"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: 1 check(s) failed: incremental focus_lm")
    result = json.loads((out / "check.json").read_text())
    assert result["ok"] is False and result["incremental"][0]["status"] == "failed"
    assert result["train"] == [] and result["throughput"] == [] and result["bench"] == {}
    assert (out / "check.md").read_text().startswith("# Node check: FAILED")


FP16_LOG = """\
2026-01-01 10:00:00 | INFO | fairseq_focus.models.focus_lm | focus_lm: 39827288 parameters (39.83M), filter=adaptive
2026-01-01 10:00:01 | INFO | fairseq.trainer | NOTE: gradient overflow detected, ignoring gradient, setting loss scale to: 64.0
2026-01-01 10:00:02 | INFO | fairseq.trainer | NOTE: gradient overflow detected, ignoring gradient, setting loss scale to: 32.0
2026-01-01 10:00:05 | INFO | train_inner | {"epoch": 1, "update": 0.1, "loss": "8.1", "num_updates": "15", "loss_scale": "32", "wps": "90000"}
2026-01-01 10:00:09 | INFO | train_inner | {"epoch": 1, "update": 0.2, "loss": "LAST", "num_updates": "30", "loss_scale": "16", "wps": "95000"}
"""


def test_fp16_log_parsing_counts_overflows_and_reads_the_loss_scale():
    parsed = parse_train_log(FP16_LOG.replace("LAST", "5.2"))
    assert parsed["overflows"] == 2 and parsed["loss_scale"] == 16 and parsed["updates"] == 30
    assert parsed["losses"] == [8.1, 5.2] and parsed["params"] == 39827288 and parsed["wps"] == 95000
    assert judge_run(parsed, 0) is None


def test_the_parameter_count_of_a_non_focus_arch_is_read_from_fairseq_train():
    log = "x | INFO | fairseq_cli.train | num. shared model params: 21,161,984 (num. trained: 21,161,984)\n"
    assert parse_train_log(log)["params"] == 21161984
    assert parse_train_log(FP16_LOG.replace("LAST", "5.2") + log)["params"] == 39827288  # a Focus arch's own line comes first


class Backward:
    """The one optimizer method a task's train_step calls."""
    def backward(self, loss):
        loss.backward()


def decoder_dtypes(tmp_path: Path, flags):
    """The dtype of transformer_lm's logits in one focus_lm train_step and one valid_step, and its grads'."""
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(write_byte_dictionary(tmp_path)), "--user-dir", str(USER_DIR), "--task", "focus_lm",
        "--arch", "transformer_lm", "--cpu", "--tokens-per-sample", "16"] + TRANSFORMER_TINY_FLAGS + flags)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    seen = []
    model.decoder.register_forward_hook(lambda module, inputs, out: seen.append(out[0].dtype))
    tokens = torch.randint(4, 260, (2, 16), generator=torch.Generator().manual_seed(0))
    sample = {"net_input": {"src_tokens": tokens, "src_lengths": torch.full((2,), 16)}, "target": tokens, "ntokens": 32}
    loss, _, _ = task.train_step(sample, model, criterion, Backward(), 0)
    task.valid_step(sample, model, criterion)
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    return seen, {p.grad.dtype for p in model.parameters()}


def test_task_autocast_bf16_runs_any_arch_forward_in_bf16(tmp_path):
    import torch
    assert decoder_dtypes(tmp_path / "bf16", ["--task-autocast-bf16"]) == ([torch.bfloat16] * 2, {torch.float32})
    assert decoder_dtypes(tmp_path / "fp32", []) == ([torch.float32] * 2, {torch.float32})


def test_a_non_finite_or_rising_loss_or_a_crash_fails_the_run():
    assert judge_run(parse_train_log(FP16_LOG.replace("LAST", "nan")), 0) == "final loss is nan"
    assert judge_run(parse_train_log(FP16_LOG.replace("LAST", "inf")), 0) == "final loss is inf"
    assert "did not fall" in judge_run(parse_train_log(FP16_LOG.replace("LAST", "8.1")), 0)
    assert judge_run(parse_train_log(FP16_LOG.replace("LAST", "5.2")), 1) == "fairseq-train exited 1"
    assert "only 0 logged" in judge_run(parse_train_log(""), 0)


def test_the_triton_scan_step_is_skipped_without_cuda(tmp_path):
    """check_gpu.sh's first step (tools/check_triton_scan.py): without CUDA it says why, writes "skipped", exit 0,
    no error (the smoke run above runs it through the script)."""
    import sys
    out = tmp_path / "sub" / "triton_scan.json"
    proc = run([sys.executable, "-m", "fairseq_focus.tools.check_triton_scan", "--out", str(out)], env=CPU,
               check=False)
    assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr  # (fairseq's import logs go to stderr)
    assert json.loads(out.read_text())["status"] == "skipped" and "no CUDA device" in proc.stdout


def test_the_triton_scan_comparison_holds_on_the_cpu_kernel(monkeypatch):
    """The step's comparison, run here on the compiled CPU kernel (the same arithmetic as the Triton kernels) at a
    small size: every tensor within the step's tolerances, and a wrong op fails it."""
    import torch
    from fairseq_focus.ops.tv_iir import function, tv_iir_filter
    from fairseq_focus.tools import check_triton_scan as step
    if function._selective_cpu is None:
        pytest.skip("fairseq_focus._selective_cpu is not built")
    monkeypatch.setattr(step, "CHECK_SIZE", (1, 70, 2, 100))
    monkeypatch.setenv(step.SCHEDULE_ENV, "auto")
    for dtype in step.DTYPES:
        rows = step.compare(torch.device("cpu"), dtype, "sequential")
        assert [r["tensor"] for r in rows] == list(step.TENSORS) and all(r["ok"] for r in rows), rows
    monkeypatch.setattr(step, "tv_iir_filter", lambda *a, **kw: [1.01 * t for t in tv_iir_filter(*a, **kw)])
    assert not any(r["ok"] for r in step.compare(torch.device("cpu"), "fp32", "sequential")[:2])
