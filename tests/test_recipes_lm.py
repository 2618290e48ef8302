"""The enwik8 / text8 recipes (recipes/<corpus>/{prepare,train,eval}.sh) and the SLURM template, run
as a user runs them, on small archives built here in the official layout (a zip holding a file named
``enwik8`` / ``text8``) with overridden split sizes and a tiny model."""
import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import BIN, REPO, TINY_LM, run, stdlib_text

RECIPES = REPO / "recipes"
SIZES = {"enwik8": (70_000, 5_000, 5_000), "text8": (40_000, 4_000, 4_000)}
# Short runs: 128-token samples, 4 per batch, no gradient accumulation, checkpoints every 2 updates.
TRAIN_ENV = {
    "TOKENS_PER_SAMPLE": "128", "MAX_TOKENS": "512", "UPDATE_FREQ": "1", "WARMUP": "2",
    "SAVE_INTERVAL_UPDATES": "2", "LOG_INTERVAL": "1", "NUM_WORKERS": "0", "GPUS": "0",
    "EXTRA_ARGS": " ".join(TINY_LM), "PYTHONUNBUFFERED": "1",
}
EVAL_ENV = {"EVAL_TOKENS": "256", "CONTEXT_WINDOW": "192", "MAX_TOKENS": "4096"}


def text8_like(num_chars: int) -> bytes:
    """Real text reduced to text8's alphabet: lower-case a-z and single spaces, starting with a space."""
    words = re.sub(rb"[^a-z]+", b" ", stdlib_text(400_000).lower())
    assert len(words) > num_chars
    return b" " + words.strip()[: num_chars - 1]


def make_zip(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return path


def corpus_text(corpus: str) -> bytes:
    total = sum(SIZES[corpus])
    return stdlib_text(total) if corpus == "enwik8" else text8_like(total)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_env(corpus: str) -> dict:
    train, valid, test = SIZES[corpus]
    return {"TRAIN_SIZE": str(train), "VALID_SIZE": str(valid), "TEST_SIZE": str(test), "WORKERS": "1"}


def prepare(corpus: str, archive: Path, data_bin: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    """prepare.sh with the archive's real size and SHA-256 as the expected ones (the check runs)."""
    full = {f"{corpus.upper()}_ZIP": str(archive), "DATA_BIN": str(data_bin), **split_env(corpus),
            "EXPECTED_SIZE": str(archive.stat().st_size) if archive.exists() else "1",
            "EXPECTED_SHA256": sha256(archive) if archive.exists() else "0" * 64}
    full.update(env)
    return run(["bash", str(RECIPES / corpus / "prepare.sh")], cwd=archive.parent, env=full, check=check)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """{corpus: (data-bin, raw corpus bytes)} made by prepare.sh from archives in the official layout."""
    out = {}
    for corpus in ("enwik8", "text8"):
        root = tmp_path_factory.mktemp(corpus)
        data = corpus_text(corpus)
        archive = make_zip(root / f"{corpus}.zip", corpus, data)
        proc = prepare(corpus, archive, root / "data-bin" / corpus)
        assert f"checked {archive}" in proc.stdout  # size and SHA-256 were checked, not skipped
        out[corpus] = (root / "data-bin" / corpus, data)
    return out


def train(corpus: str, data_bin: Path, save_dir: Path, max_update: int, **env) -> subprocess.CompletedProcess:
    full = {**TRAIN_ENV, "DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir), "MAX_UPDATE": str(max_update), **env}
    return run(["bash", str(RECIPES / corpus / "train.sh")], cwd=save_dir.parent, env=full)


def num_updates(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state["optimizer_history"][-1]["num_updates"])


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]


# ---- prepare.sh ----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["enwik8", "text8"])
def test_prepare_makes_one_token_per_byte_in_the_standard_split(prepared, corpus):
    """Decoding the binarized splits gives back exactly the corpus bytes, cut train | valid | test."""
    from fairseq.data import Dictionary, data_utils
    data_bin, data = prepared[corpus]
    vocab = Dictionary.load(str(data_bin / "dict.txt"))
    train_size, valid_size, _ = SIZES[corpus]
    cuts = {"train": data[:train_size], "valid": data[train_size:train_size + valid_size],
            "test": data[train_size + valid_size:]}
    for split, expected in cuts.items():
        ds = data_utils.load_indexed_dataset(str(data_bin / split), vocab)
        ids = torch.cat([ds[i] for i in range(len(ds))]).tolist()
        assert vocab.unk() not in ids
        symbols = [vocab[i] for i in ids]
        if corpus == "enwik8":  # decimal byte values; </s> stands for the newline byte
            decoded = bytes(10 if s == "</s>" else int(s) for s in symbols)
        else:  # characters, "_" for space; the split is one line, so one final </s>
            assert symbols.count("</s>") == 1
            decoded = "".join(" " if s == "_" else s for s in symbols[:-1]).encode() + b"\n"
        # one extra </s> ends each split file: the only token that is not a corpus byte
        assert decoded == expected + b"\n", split


@pytest.mark.slow
def test_prepare_rejects_bad_archives_and_leaves_nothing(tmp_path):
    data = corpus_text("enwik8")
    good = make_zip(tmp_path / "good.zip", "enwik8", data)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(raw[: len(raw) // 2])
    corrupt = tmp_path / "corrupt.zip"
    middle = len(raw) // 2
    corrupt.write_bytes(raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1:])
    wrong_member = make_zip(tmp_path / "wrong_member.zip", "enwik9", data)
    short = make_zip(tmp_path / "short.zip", "enwik8", data[:-1000])  # the file inside is truncated
    data_bin = tmp_path / "out" / "data-bin" / "enwik8"
    data_bin.parent.mkdir(parents=True)
    full_size, full_sha = str(good.stat().st_size), sha256(good)
    cases = [
        (tmp_path / "missing.zip", {}, r"archive not found"),
        (truncated, {"EXPECTED_SIZE": full_size, "EXPECTED_SHA256": full_sha}, r"has \d+ bytes, expected \d+"),
        (truncated, {"SKIP_CHECKSUM": "1"}, r"not a readable zip archive"),
        (corrupt, {"SKIP_CHECKSUM": "1"}, r"not a readable zip archive"),
        (corrupt, {"EXPECTED_SIZE": full_size, "EXPECTED_SHA256": full_sha}, r"SHA-256 [0-9a-f]{64}, expected"),
        (wrong_member, {}, r"has no file named 'enwik8'"),
        (short, {}, r"corpus has 79,000 bytes but the split needs exactly 80,000"),
        (good, {"TRAIN_SIZE": "60000"}, r"split needs exactly 70,000"),
    ]
    for archive, env, pattern in cases:
        proc = prepare("enwik8", archive, data_bin, check=False, **env)
        assert_one_line_error(proc, pattern)
        assert list(data_bin.parent.iterdir()) == [], (archive, env)  # no data-bin, no temp dir


@pytest.mark.slow
def test_prepare_failure_inside_fairseq_preprocess_leaves_nothing(tmp_path):
    """A fairseq-preprocess that dies after writing part of its output: nothing is moved into place."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    stub = fake_bin / "fairseq-preprocess"
    stub.write_text('#!/usr/bin/env bash\nwhile [[ $# -gt 0 ]]; do [[ $1 == --destdir ]] && dest=$2; shift; done\n'
                    'mkdir -p "$dest" && echo half > "$dest/dict.txt"\necho "simulated crash" >&2\nexit 3\n')
    stub.chmod(0o755)
    archive = make_zip(tmp_path / "enwik8.zip", "enwik8", corpus_text("enwik8"))
    data_bin = tmp_path / "out" / "enwik8"
    data_bin.parent.mkdir()
    env = {"PATH": f"{fake_bin}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = prepare("enwik8", archive, data_bin, check=False, **env)
    assert proc.returncode != 0 and "fairseq-preprocess failed" in proc.stderr
    assert list(data_bin.parent.iterdir()) == []


# ---- train.sh / eval.sh --------------------------------------------------------------------------

BPC_LINE = re.compile(r"^test BPC = (\S+) \(protocol: (\w+):.*; ([\d,]+) tokens\)$", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("corpus,variant,precision", [("enwik8", "focus", "fp32"), ("text8", "mega", "bf16")])
def test_train_then_eval_prints_finite_bpc_for_every_protocol(prepared, tmp_path, corpus, variant, precision):
    data_bin, _ = prepared[corpus]
    save_dir = tmp_path / "ckpt"
    proc = train(corpus, data_bin, save_dir, max_update=3, VARIANT=variant, SAVE_INTERVAL_UPDATES="0",
                 PRECISION=precision)
    arch = f"focus_lm_{corpus}" + ("" if variant == "focus" else f"_{variant}")
    assert f"'_name': '{arch}'" in proc.stdout
    assert f"'autocast_bf16': {precision == 'bf16'}" in proc.stdout  # bf16: the model's own autocast (CPU here)
    assert num_updates(save_dir / "checkpoint_last.pt") == 3
    assert any((save_dir / "tensorboard").rglob("events.out.tfevents.*"))
    out = run(["bash", str(RECIPES / corpus / "eval.sh")], cwd=tmp_path,
              env={**EVAL_ENV, "DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir)}).stdout
    results = {m.group(2): (float(m.group(1)), int(m.group(3).replace(",", ""))) for m in BPC_LINE.finditer(out)}
    assert set(results) == {"blocks", "sliding", "stream"}, out
    for bpc, ntokens in results.values():
        assert math.isfinite(bpc) and 0 < bpc < 10
        assert ntokens == SIZES[corpus][2] + 1  # every test byte/char, plus the split's final </s>


@pytest.mark.slow
def test_train_on_two_cpu_processes_with_torchrun_keeps_ranks_identical(prepared, tmp_path):
    """torchrun starts train.sh twice; both ranks must hold the same parameters after each update.
    A sitecustomize hook (test-only) dumps every rank's model whenever fairseq saves a checkpoint."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('FOCUS_DUMP_DIR'):\n"
        "    import torch\n"
        "    from fairseq import checkpoint_utils\n"
        "    _save = checkpoint_utils.save_checkpoint\n"
        "    def save_checkpoint(cfg, trainer, epoch_itr, val_loss):\n"
        "        model = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}\n"
        "        name = f'rank{trainer.data_parallel_rank}_{trainer.get_num_updates()}.pt'\n"
        "        torch.save(model, os.path.join(os.environ['FOCUS_DUMP_DIR'], name))\n"
        "        return _save(cfg, trainer, epoch_itr, val_loss)\n"
        "    checkpoint_utils.save_checkpoint = save_checkpoint\n"
    )
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    data_bin, _ = prepared["enwik8"]
    save_dir = tmp_path / "ckpt"
    env = {**TRAIN_ENV, "DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir), "MAX_UPDATE": "4",
           "FOCUS_DUMP_DIR": str(dumps), "PYTHONPATH": str(hook), "OMP_NUM_THREADS": "1"}
    proc = run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--no-python",
                "bash", str(RECIPES / "enwik8" / "train.sh")], cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert "distributed init (rank 1): env://" in log
    assert "wpb=1024" in log  # each update holds both ranks' 512 tokens
    for step in (2, 4):
        rank0 = torch.load(dumps / f"rank0_{step}.pt")
        rank1 = torch.load(dumps / f"rank1_{step}.pt")
        assert rank0.keys() == rank1.keys()
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), (step, name)
    moved = [n for n, p in torch.load(dumps / "rank0_2.pt").items()
             if not torch.equal(p, torch.load(dumps / "rank0_4.pt")[n])]
    assert moved  # training changed the parameters between the two checks
    assert num_updates(save_dir / "checkpoint_last.pt") == 4


@pytest.mark.slow
def test_rerun_after_kill_resumes_from_checkpoint_last(prepared, tmp_path):
    data_bin, _ = prepared["enwik8"]
    save_dir = tmp_path / "ckpt"
    env = {**os.environ, **TRAIN_ENV, "DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir), "MAX_UPDATE": "6",
           "VARIANT": "ema", "OMP_NUM_THREADS": "2", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = ["bash", str(RECIPES / "enwik8" / "train.sh")]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    seen = []
    try:
        for line in first.stdout:
            seen.append(line)
            if "Saved checkpoint" in line and "@ 2 updates" in line:
                os.killpg(first.pid, signal.SIGKILL)
                break
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(seen[-20:])
    killed_at = num_updates(save_dir / "checkpoint_last.pt")
    assert 2 <= killed_at < 6

    second = run(cmd, cwd=tmp_path, env={k: env[k] for k in TRAIN_ENV.keys() | {"DATA_BIN", "SAVE_DIR", "MAX_UPDATE", "VARIANT"}})
    assert re.search(rf"Loaded checkpoint \S*checkpoint_last.pt \(epoch \d+ @ {killed_at} updates\)", second.stdout)
    assert "num_updates: 6 >= max_update: 6" in second.stdout
    assert num_updates(save_dir / "checkpoint_last.pt") == 6


@pytest.mark.slow
def test_train_and_eval_refuse_a_dir_that_is_not_a_data_bin(tmp_path):
    not_bin = tmp_path / "not-a-data-bin"
    not_bin.mkdir()
    (not_bin / "train.txt").write_text("1 2 3\n")
    save_dir = tmp_path / "ckpt"
    env = {**TRAIN_ENV, "DATA_BIN": str(not_bin), "SAVE_DIR": str(save_dir), "MAX_UPDATE": "1"}
    for script in ("train.sh", "eval.sh"):
        proc = run(["bash", str(RECIPES / "text8" / script)], cwd=tmp_path, env=env, check=False)
        assert_one_line_error(proc, r"is not a fairseq data-bin")
    proc = run(["bash", str(RECIPES / "text8" / "train.sh")], cwd=tmp_path, check=False,
               env={**env, "DATA_BIN": str(tmp_path / "missing")})
    assert_one_line_error(proc, r"is not a directory")
    assert not save_dir.exists()


def fake_fairseq_train(tmp_path: Path) -> dict:
    """PATH with a fairseq-train that prints its arguments, one per line: what train.sh would run."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir(exist_ok=True)
    stub = fake_bin / "fairseq-train"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    data_bin = tmp_path / "bin"
    data_bin.mkdir(exist_ok=True)
    for name in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
        (data_bin / name).write_text("x")
    return {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "DATA_BIN": str(data_bin),
            "SAVE_DIR": str(tmp_path / "ckpt")}


def flag(args: list, name: str) -> str:
    return args[args.index(name) + 1]


def test_train_script_maps_its_variables_to_fairseq_flags(tmp_path):
    env = fake_fairseq_train(tmp_path)
    script = str(RECIPES / "enwik8" / "train.sh")
    args = run(["bash", script], env={**env, "GPUS": "1"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_enwik8" and flag(args, "--task") == "focus_lm"
    assert flag(args, "--optimizer") == "adam" and flag(args, "--adam-betas") == "(0.9, 0.98)"
    assert flag(args, "--lr") == "5e-3" and flag(args, "--weight-decay") == "0.1"
    assert flag(args, "--clip-norm") == "0.25" and flag(args, "--warmup-updates") == "24000"
    assert flag(args, "--lr-scheduler") == "polynomial_decay" and flag(args, "--power") == "1"
    assert flag(args, "--max-update") == "400000" and flag(args, "--update-freq") == "8"
    assert "--cpu" not in args and "--distributed-world-size" not in args

    args = run(["bash", script], env={**env, "GPUS": "4", "VARIANT": "ema", "PRECISION": "fp16",
                                      "DISTRIBUTED_PORT": "12345", "EXTRA_ARGS": "--seed 7"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_enwik8_ema" and "--amp" in args
    assert flag(args, "--distributed-world-size") == "4" and flag(args, "--distributed-port") == "12345"
    assert flag(args, "--update-freq") == "2" and args[-2:] == ["--seed", "7"]

    args = run(["bash", str(RECIPES / "text8" / "train.sh")],
               env={**env, "GPUS": "0", "VARIANT": "static"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_text8_static" and "--cpu" in args
    args = run(["bash", script], env={**env, "GPUS": "0", "VARIANT": "mega"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_enwik8_mega"
    args = run(["bash", script], env={**env, "GPUS": "0", "VARIANT": "paper"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_enwik8_paper"

    args = run(["bash", script], env={**env, "GPUS": "1", "PRECISION": "bf16"}).stdout.splitlines()
    assert "--autocast-bf16" in args and "--bf16" not in args and "--amp" not in args  # fairseq's --bf16 means TPU

    for bad, pattern in (({"VARIANT": "hyena"}, "VARIANT must be"), ({"PRECISION": "fp8"}, "PRECISION must be fp32, fp16 or bf16")):
        proc = run(["bash", script], env={**env, "GPUS": "1", **bad}, check=False)
        assert_one_line_error(proc, pattern)


# ---- recipes/slurm -------------------------------------------------------------------------------

def test_sbatch_template_hands_fairseq_a_slurm_world(tmp_path, monkeypatch):
    """The template exports GPUS (= world size) and DISTRIBUTED_PORT and sruns the script; with those,
    fairseq's own SLURM detection gives each task its global rank, local GPU and the rendezvous."""
    sbatch = str(RECIPES / "slurm" / "train.sbatch")
    proc = run(["bash", sbatch, str(RECIPES / "enwik8" / "train.sh")], check=False,
               env={"SLURM_JOB_ID": "", "SLURM_NNODES": ""})
    assert proc.returncode != 0 and "error:" in proc.stderr

    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text('#!/usr/bin/env bash\necho "srun $* GPUS=$GPUS PORT=$DISTRIBUTED_PORT"\n')
    (fake_bin / "scontrol").write_text('#!/usr/bin/env bash\nprintf "node7\\nnode8\\n"\n')
    for stub in fake_bin.iterdir():
        stub.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4",
             "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    out = run(["bash", sbatch, str(RECIPES / "text8" / "train.sh")], env=slurm).stdout
    port = 20000 + 4242 % 20000
    assert f"srun --kill-on-bad-exit=1 bash {RECIPES / 'text8' / 'train.sh'} GPUS=8 PORT={port}" in out

    # What fairseq does with that in the task of global rank 5 (second node, local GPU 1).
    from fairseq.dataclass.configs import DistributedTrainingConfig
    from fairseq.distributed import utils as dist_utils
    for key, value in {**slurm, "SLURM_STEP_NODELIST": "node[7-8]", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                       "SLURM_NODEID": "1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    # tpu is an interpolation (II("common.tpu")) in the bare dataclass: set it as the full config would
    cfg = DistributedTrainingConfig(distributed_world_size=8, distributed_port=port, tpu=False)
    dist_utils.infer_init_method(cfg)
    assert cfg.distributed_init_method == f"tcp://node7:{port}"
    assert (cfg.distributed_rank, cfg.device_id, cfg.distributed_no_spawn) == (5, 1, True)
    assert chosen == [1]


def test_fetch_url_renames_only_a_complete_download(tmp_path):
    """recipes/common/download.sh, the one download helper of the prepare scripts (file:// stands in for http)."""
    source = tmp_path / "remote.bin"
    source.write_bytes(bytes(range(256)) * 10)
    script = f'source "{RECIPES}/common/download.sh" && fetch_url "$1" "$2"'
    dest = tmp_path / "sub" / "got.bin"
    run(["bash", "-c", script, "fetch", source.as_uri(), str(dest)])
    assert dest.read_bytes() == source.read_bytes() and not dest.with_suffix(".bin.part").exists()
    missing = tmp_path / "sub" / "missing.bin"
    proc = run(["bash", "-c", script, "fetch", (tmp_path / "absent").as_uri(), str(missing)], check=False)
    assert proc.returncode != 0 and sorted(p.name for p in dest.parent.iterdir()) == ["got.bin"]
