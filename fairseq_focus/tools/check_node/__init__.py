"""First-run check of the node you are about to train on: one command, one verdict, every number kept.

    bash recipes/check_gpu.sh [OUT_DIR]                      # the check (default OUT_DIR: check-out)
    python -m fairseq_focus.tools.check_node --out OUT_DIR   # the same, without the wrapper

On a CUDA device it runs the real sizes on one GPU (budgeted for about 15 minutes: six training runs,
each stopped after ``CHECK_TRAIN_MINUTES`` of training even short of ``CHECK_STEPS``, and the bench of
five layers at three lengths in two precisions; the budget is an estimate, not yet timed on a GPU);
where torch sees no CUDA device it runs a CPU *smoke* mode of the very same steps at tiny sizes (a few
minutes), which is what the test suite runs. By default it fills the table of the GPU targets: the
selective (default) and the static carry layer beside MEGA's EMA layer and fairseq's layer, and a whole
training step of ``focus_lm_enwik8`` against ``focus_lm_enwik8_ema`` (MEGA) and fairseq's own
``transformer_lm`` at 4K tokens in bf16 (and fp16). What it checks, in order:

1. **archs**: builds every ``CHECK_ARCHS`` arch through fairseq's own parser, arch defaults and task, as
   ``fairseq-train`` would, for a 256-byte dictionary (260 tokens with fairseq's 4 specials, the
   vocabulary of README's table) at ``--tokens-per-sample CHECK_TOKENS``, and records its parameter
   count; ``transformer_lm`` is built at ``TRANSFORMER_FLAGS`` (pre-norm, tied, sized to within 3 % of
   ``focus_lm_enwik8``). An arch that does not build fails.
2. **train**: writes a synthetic byte corpus (words of random bytes chained by a fixed random successor
   table, 5 % noise bytes: structure a model learns within a few hundred updates), binarizes it with
   ``fairseq-preprocess --only-source`` (one token per byte, data/byte_codec.py) and runs
   ``fairseq-train --user-dir fairseq_focus --task focus_lm`` for every ``CHECK_TRAIN_ARCHS`` arch in
   every ``CHECK_PRECISIONS`` precision: ``bf16`` is the Focus model's ``--autocast-bf16`` and, for
   ``transformer_lm`` (no such model flag), the task's ``--task-autocast-bf16`` (fairseq 0.12's
   ``--bf16`` turns on TPU mode); ``fp16`` is fairseq's ``--fp16`` (``CHECK_FP16_FLAG=--amp`` checks
   what the recipes' ``PRECISION=fp16`` uses instead), ``fp32`` neither. A run passes when fairseq-train
   exits 0 and the last logged train loss is finite and below the first; fp16 runs also report how
   often fairseq logged "overflow detected" and the final loss scale. Without CUDA the fp16 runs are
   skipped, with the reason recorded (fairseq's fp16 and AMP paths need CUDA); so are the bf16 runs
   (and bench) on a GPU without bfloat16 units. One process on one GPU (``--distributed-world-size 1``).
   The report's whole-step table gives each passed run's tokens/s (fairseq's ``wps`` over the last
   logged interval) per precision, with ``focus_lm_enwik8 ÷ focus_lm_enwik8_ema`` and
   ``÷ transformer_lm`` within the run and precision ("—" where a run is missing, skipped or failed).
3. **incremental**: every ``CHECK_INCR_ARCHS`` arch, shrunk to 2 layers with bins and attention chunks
   that a ``CHECK_INCR_LENGTH``-token sequence crosses several times, in eval mode and fp32 (TF32 off)
   on the device: the log-probabilities of the parallel ``decoder(tokens)`` against fairseq's
   incremental contract (the whole prefix each step with an ``incremental_state``, the last position
   back, as tests/test_incremental.py:step_lprobs). Fails above ``CHECK_INCR_TOL`` (max abs difference).
4. **bench**: ``python -m fairseq_focus.tools.bench`` over ``CHECK_BENCH_LAYERS`` at ``CHECK_LENGTHS``,
   once in fp32 and once with ``--autocast-bf16`` (``CHECK_BENCH_DTYPES``). Fails when bench exits
   non-zero or a row holds an error; rows bench skips for their L×L memory are reported, not failed.
5. **node**: fails when ``nvidia-smi`` lists GPUs that torch cannot see (a CPU build of torch).

Writes OUT_DIR/check.json (every number) and OUT_DIR/check.md (the tables), each all at once; the logs
of every subprocess go to OUT_DIR/logs/, the corpus and bench outputs to OUT_DIR/work/ (both replaced
by each run). Exit status 0 when every check passed; 1 when one failed (check.json and check.md are
written all the same, ``"ok": false`` and the failures listed); 2 when the settings are wrong or the
check could not finish (then no check.json: one from an earlier run in OUT_DIR is removed as soon as a
run starts). Either way stderr receives one line, ``error: …``; progress, fairseq's chatter and
tracebacks go to stdout.

Settings (environment variables; defaults on a CUDA device / in the CPU smoke mode): see ``SETTINGS``
or ``--help``.

One module per check (``archs``, ``train``, ``incremental``, ``layer_bench``, ``node``), beside the
settings (``settings``), the subprocesses (``process``), the report (``report``) and the command line
(``cli``, also ``__main__``).
"""
from .archs import build_model, count_archs, write_byte_dictionary
from .cli import main, parse_args, run_checks
from .incremental import check_incremental, incremental_difference
from .layer_bench import bench_all, bench_command
from .node import node_info
from .report import markdown, strict_json
from .settings import (REPO, SETTINGS, TINY_FLAGS, TRANSFORMER_FLAGS, TRANSFORMER_TINY_FLAGS, USER_DIR, Config,
                       InputError, RunError, parse_config, raw_settings)
from .train import judge_run, parse_train_log, synthetic_bytes, train_command, throughput

__all__ = ["REPO", "SETTINGS", "TINY_FLAGS", "TRANSFORMER_FLAGS", "TRANSFORMER_TINY_FLAGS", "USER_DIR", "Config",
           "InputError", "RunError", "bench_all", "bench_command", "build_model", "check_incremental", "count_archs",
           "incremental_difference", "judge_run", "main", "markdown", "node_info", "parse_args", "parse_config",
           "parse_train_log", "raw_settings", "run_checks", "strict_json", "synthetic_bytes", "throughput",
           "train_command", "write_byte_dictionary"]
