"""fairseq_focus/tools/bench_scan_threads.py (the fused scan's fwd + bwd on 1 and 2 threads) runs at a tiny size and
reports a row per thread count. No time is asserted."""
import json

import pytest

from fairseq_focus.ops.tv_iir import function
from fairseq_focus.tools.bench_scan_threads import main


@pytest.mark.skipif(function._selective_cpu is None, reason="fairseq_focus._selective_cpu is not built")
def test_a_tiny_run_reports_every_thread_count(capsys):
    result = main(["--batch", "2", "--dim", "70", "--length", "33", "--chunk", "8", "--repeats", "2"])
    assert json.loads(capsys.readouterr().out) == result
    assert [r["threads"] for r in result["rows"]] == [1, 2] and result["parallel_backend"] == "OpenMP"
    assert all(len(r["seconds"]) == 2 and r["seconds_median"] > 0 and r["tokens_per_s"] > 0 for r in result["rows"])
