"""End to end through the recipes (bash -> fairseq CLIs) on files the tests write in the official
formats, and a short real-data training on scikit-learn's 8x8 digits. All marked slow."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, run
from pixel_fakes import write_fake_cifar10, write_fake_mnist

pytestmark = pytest.mark.slow

RECIPES = REPO / "recipes"
# keeps the archs' bins/chunks (L/4, L) but makes the model tiny
TINY = ("--decoder-layers 1 --decoder-embed-dim 16 --decoder-hidden-dim 16 --decoder-ffn-embed-dim 16 "
        "--decoder-z-dim 8")
TRAIN_ENV = {"MAX_UPDATE": "3", "BATCH_SIZE": "8", "WARMUP": "1", "LOG_INTERVAL": "1", "NUM_WORKERS": "0",
             "GPUS": "1", "EXTRA_ARGS": TINY}
ACCURACY = re.compile(r"^test accuracy = (\d+(?:\.\d+)?)$", re.M)


def bash(script: str, cwd: Path, env: dict, check: bool = True):
    return run(["bash", str(RECIPES / script)], cwd=cwd, env=env, check=check)


def accuracy_of(stdout: str) -> float:
    match = ACCURACY.search(stdout)
    assert match, f"no 'test accuracy = …' line in:\n{stdout}"
    value = float(match.group(1))
    assert 0.0 <= value <= 100.0
    return value


def test_smnist_recipe_end_to_end(tmp_path):
    raw = write_fake_mnist(tmp_path / "raw", n_train=40, n_test=13)
    env = {"MNIST_DIR": str(raw), "DEST": str(tmp_path / "mnist"), "VALID_SIZE": "8"}
    prepared = bash("smnist/prepare.sh", tmp_path, {**env, "VERIFY_CHECKSUMS": "0"})
    assert "train 32, valid 8, test 13" in prepared.stdout
    notes = [line for line in prepared.stderr.splitlines() if line.startswith("note: VERIFY_CHECKSUMS=0")]
    assert len(notes) == 1 and "not checked" in notes[0]  # one line says the checksums are off

    data, ckpts = str(tmp_path / "mnist"), str(tmp_path / "ckpt")
    train = bash("smnist/train.sh", tmp_path, {**TRAIN_ENV, "DATA": data, "SAVE_DIR": ckpts})
    log = train.stdout + train.stderr
    assert re.search(r"train_inner .*accuracy=", log) and re.search(r"valid on 'valid' subset .*\| accuracy ", log)
    assert "filter=selective, bidirectional=True, iir_mode=carry, theta=stable, pooling=mean" in log  # the default
    assert "chunk=112, sequence length 784" in log
    printed = accuracy_of(bash("smnist/eval.sh", tmp_path, {"DATA": data, "SAVE_DIR": ckpts, "BATCH_SIZE": "5"}).stdout)

    # the number eval.sh prints is the fraction of the 13 test images the checkpoint classifies right
    from fairseq import checkpoint_utils
    import fairseq_focus  # noqa: F401
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [f"{ckpts}/checkpoint_best.pt"], arg_overrides={"data": data})
    dataset = task.load_dataset("test")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        predicted = models[0].eval()(**batch["net_input"]).argmax(-1)
    assert len(dataset) == 13
    assert printed == pytest.approx(100.0 * (predicted == batch["target"]).sum().item() / 13, abs=1e-3)


def test_pmnist_recipe_and_permutation_check(tmp_path):
    raw = write_fake_mnist(tmp_path / "raw", n_train=30, n_test=10)
    data, ckpts = str(tmp_path / "mnist"), str(tmp_path / "ckpt")
    bash("pmnist/prepare.sh", tmp_path, {"MNIST_DIR": str(raw), "DEST": data, "VALID_SIZE": "6", "VERIFY_CHECKSUMS": "0"})
    train = bash("pmnist/train.sh", tmp_path, {**TRAIN_ENV, "DATA": data, "SAVE_DIR": ckpts, "PERMUTE_SEED": "3"})
    assert "permuted with seed 3" in train.stdout + train.stderr
    state = torch.load(f"{ckpts}/checkpoint_last.pt", map_location="cpu", weights_only=False)
    from fairseq_focus.data.pixel_splits import pixel_permutation
    np.testing.assert_array_equal(state["model"]["pixel_permutation"].numpy(), pixel_permutation(784, 3))

    env = {"DATA": data, "SAVE_DIR": ckpts}
    # by default the checkpoint's own permutation is used (naming the same seed is accepted too: unit tests)
    accuracy_of(bash("pmnist/eval.sh", tmp_path, env).stdout)
    refused = bash("pmnist/eval.sh", tmp_path, {**env, "PERMUTE_SEED": "4"}, check=False)
    assert refused.returncode != 0 and "test accuracy" not in refused.stdout
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("error: evaluation failed: ValueError: pixel permutation mismatch: the checkpoint "
                              "was trained with the permutation of seed 3, but this task applies the permutation "
                              "of seed 4"), refused.stderr[-2000:]


def test_scifar_recipe_end_to_end(tmp_path):
    tar = write_fake_cifar10(tmp_path / "cifar-10-python.tar.gz", per_batch=6, n_test=9)
    data, ckpts = str(tmp_path / "cifar10"), str(tmp_path / "ckpt")
    env = {"CIFAR10_TAR": str(tar), "DEST": data, "VALID_SIZE": "6"}
    # the test-made file is not the official one: refused unless the check is switched off
    bad = bash("scifar/prepare.sh", tmp_path, env, check=False)
    assert bad.returncode != 0 and "c58f30108f718f92721af3b95e74349a" in bad.stderr
    assert not Path(data).exists()
    out = bash("scifar/prepare.sh", tmp_path, {**env, "VERIFY_CHECKSUMS": "0"}).stdout
    assert "train 24, valid 6, test 9; image (32, 32, 3)" in out
    assert "already prepared" in bash("scifar/prepare.sh", tmp_path, {**env, "VERIFY_CHECKSUMS": "0"}).stdout
    train = bash("scifar/train.sh", tmp_path, {**TRAIN_ENV, "DATA": data, "SAVE_DIR": ckpts, "PRECISION": "bf16"})
    assert "32x32 images, 3 channel(s) -> sequences of 1024 pixels" in train.stdout + train.stderr
    assert "'autocast_bf16': True" in train.stdout + train.stderr  # PRECISION=bf16: the model's CPU/GPU autocast
    accuracy_of(bash("scifar/eval.sh", tmp_path, {"DATA": data, "SAVE_DIR": ckpts}).stdout)


def test_recipes_refuse_bad_input(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"this is not a tarball")
    res = bash("scifar/prepare.sh", tmp_path, {"CIFAR10_TAR": str(broken), "DEST": str(tmp_path / "c"),
                                               "VERIFY_CHECKSUMS": "0"}, check=False)
    assert res.returncode != 0 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]  # nothing half-written
    res = bash("smnist/prepare.sh", tmp_path, {"MNIST_DIR": str(tmp_path / "none"), "DEST": str(tmp_path / "m")}, check=False)
    assert res.returncode != 0 and "no such file" in res.stderr
    res = bash("smnist/train.sh", tmp_path, {"DATA": str(tmp_path / "nothing")}, check=False)
    assert res.returncode != 0 and "is not a prepared data directory" in res.stderr


def test_digits_real_data_better_than_chance(tmp_path):
    """1,797 real handwritten digits as 64-pixel sequences: Focus, 150 updates (about 4 epochs) on
    1,297 images, scored on the last 250. Chance is 10%; with seed 1 this run measured 40.0% on the
    development machine. Threshold 25%: a chance-level model gets there with probability < 1e-5
    (binomial, n = 250), and it leaves room for floating-point differences between machines."""
    res = run(["bash", str(RECIPES / "smnist/digits.sh")], cwd=tmp_path,
              env={"WORK": str(tmp_path / "w"), "VARIANTS": "adaptive", "MAX_UPDATE": "150", "SEED": "1"})
    match = re.search(r"^adaptive: test accuracy = (\d+(?:\.\d+)?) \(150 updates", res.stdout, re.M)
    assert match, res.stdout
    assert float(match.group(1)) > 25.0, res.stdout
