"""Turn the raw image datasets into the prepared splits the pixel task reads (see ``pixel_splits``).

    python -m fairseq_focus.data.prepare_pixels mnist   --raw-dir DIR    --out DATA [--valid-size 5000]
    python -m fairseq_focus.data.prepare_pixels cifar10 --tarball TAR.GZ --out DATA [--valid-size 5000]
    python -m fairseq_focus.data.prepare_pixels digits  --out DATA [--valid-size 250 --test-size 250]

* mnist: the four official ``*-idx?-ubyte.gz`` files in DIR. train/valid = the first 60000 − V /
  the last V images of the official training file (V = 5000 by default), test = the official 10k.
* cifar10: the official python tarball ``cifar-10-python.tar.gz``. train/valid = the first
  50000 − V / the last V of data_batch_1…5 in order, test = test_batch. Images stored (N, 32, 32, 3).
* digits: scikit-learn's 1,797 real 8×8 handwritten digits (``sklearn.datasets.load_digits``, no
  download), grey levels 0…16 mapped to 0…255 by round(v·255/16); split in the dataset's order:
  train = the first 1797 − V − T, valid = the next V, test = the last T.

Checksums of the downloaded files are checked against the MD5s torchvision verifies (unless
``--no-verify``). The output is written to a temporary directory beside ``--out`` and renamed into
place only when complete; an existing ``--out`` is never touched. Errors: one line, exit status 1.
"""
import argparse
import hashlib
import io
import pickle
import sys
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from .atomic import atomic_directory
from .idx import IdxError, read_idx
from .pixel_splits import write_split

# MD5s of the official files, as verified by torchvision: torchvision/datasets/mnist.py
# (MNIST.resources) and torchvision/datasets/cifar.py (CIFAR10.tgz_md5), github.com/pytorch/vision.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"

Split = Tuple[np.ndarray, np.ndarray]


class PrepareError(ValueError):
    """Bad raw input: missing file, checksum mismatch, malformed content."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = md5sum(path)
    if actual != expected:
        raise PrepareError(f"{path}: MD5 {actual} does not match the official file's {expected} "
                           f"(corrupt or partial download? delete it and re-run; VERIFY_CHECKSUMS=0 skips the check)")


def require(path: Path) -> Path:
    if not path.is_file():
        raise PrepareError(f"{path}: no such file")
    return path


# ---- MNIST -----------------------------------------------------------------------------------------

def read_mnist_pair(images_path: Path, labels_path: Path, size: Tuple[int, int] = (28, 28)) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != size:
        raise PrepareError(f"{images_path}: wrong image size: expected (N, {size[0]}, {size[1]}), got {images.shape}")
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or labels.ndim != 1:
        raise PrepareError(f"{images_path}, {labels_path}: expected uint8 images (N, H, W) and uint8 labels (N,)")
    if len(images) != len(labels):
        raise PrepareError(f"{images_path}: label/image count mismatch: {len(images)} images but "
                           f"{len(labels)} labels in {labels_path}")
    return images, labels


def mnist_splits(raw_dir: Path, valid_size: int, check: bool) -> Dict[str, Split]:
    paths = {name: require(raw_dir / name) for name in MNIST_MD5}
    if check:
        for name, path in paths.items():
            verify(path, MNIST_MD5[name])
    train = read_mnist_pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    test = read_mnist_pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    return {**hold_out(train, valid_size), "test": test}


# ---- CIFAR-10 --------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's batches (dicts of numpy arrays and lists) and refuses anything else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise PrepareError(f"unexpected object {module}.{name} in a CIFAR-10 batch file")
        return super().find_class(module, name)


def _cifar_batch(tar: tarfile.TarFile, tar_path: Path, name: str) -> Split:
    member = f"{CIFAR10_DIR}/{name}"
    try:
        raw = tar.extractfile(member)
    except KeyError:
        raise PrepareError(f"{tar_path}: {member} missing (not the CIFAR-10 python tarball?)") from None
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise PrepareError(f"{tar_path}: {member} is not a readable batch ({err})") from None
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise PrepareError(f"{tar_path}: {member} has no 'data'/'labels' entries")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise PrepareError(f"{tar_path}: {member}: wrong image size: expected uint8 rows of 3072 = 3×32×32 "
                           f"values, got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise PrepareError(f"{tar_path}: {member}: label/image count mismatch: {len(data)} images but "
                           f"{len(labels)} labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R plane, G plane, B plane -> HWC
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def cifar10_splits(tar_path: Path, valid_size: int, check: bool) -> Dict[str, Split]:
    require(tar_path)
    if check:
        verify(tar_path, CIFAR10_MD5)
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            batches = [_cifar_batch(tar, tar_path, f"data_batch_{k}") for k in range(1, 6)]
            test = _cifar_batch(tar, tar_path, "test_batch")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PrepareError(f"{tar_path}: not a readable .tar.gz ({err})") from None
    train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return {**hold_out(train, valid_size), "test": test}


# ---- scikit-learn's 8×8 digits -----------------------------------------------------------------------

def digits_splits(valid_size: int, test_size: int) -> Dict[str, Split]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
    labels = digits.target.astype(np.uint8)
    n_train = len(images) - valid_size - test_size
    if min(n_train, valid_size, test_size) <= 0:
        raise PrepareError(f"valid ({valid_size}) + test ({test_size}) must leave training images out of {len(images)}")
    cuts = [0, n_train, n_train + valid_size, len(images)]
    return {split: (images[lo:hi], labels[lo:hi]) for split, lo, hi in zip(("train", "valid", "test"), cuts[:-1], cuts[1:])}


# ---- common ---------------------------------------------------------------------------------------

def hold_out(train: Split, valid_size: int) -> Dict[str, Split]:
    """The last ``valid_size`` training images become the validation split."""
    images, labels = train
    if not 0 < valid_size < len(images):
        raise PrepareError(f"--valid-size must be between 1 and {len(images) - 1}, got {valid_size}")
    cut = len(images) - valid_size
    return {"train": (images[:cut], labels[:cut]), "valid": (images[cut:], labels[cut:])}


def write_atomically(out: Path, splits: Dict[str, Split]) -> None:
    if out.exists():
        raise PrepareError(f"{out} already exists; remove it or choose another --out")
    with atomic_directory(out, replace=False) as tmp:
        for split, (images, labels) in splits.items():
            write_split(tmp, split, images, labels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_focus.data.prepare_pixels", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True)
    mnist = sub.add_parser("mnist", help="the four official MNIST .gz files")
    mnist.add_argument("--raw-dir", type=Path, required=True)
    cifar = sub.add_parser("cifar10", help="the official CIFAR-10 python tarball")
    cifar.add_argument("--tarball", type=Path, required=True)
    digits = sub.add_parser("digits", help="scikit-learn's 8x8 digits (no download)")
    digits.add_argument("--test-size", type=int, default=250)
    for p, valid in ((mnist, 5000), (cifar, 5000), (digits, 250)):
        p.add_argument("--out", type=Path, required=True, help="directory to create")
        p.add_argument("--valid-size", type=int, default=valid, help="images held out of train for validation")
        p.add_argument("--no-verify", action="store_true", help="skip the MD5 check of the raw files")
    args = parser.parse_args(argv)
    try:
        if args.source == "mnist":
            splits = mnist_splits(args.raw_dir, args.valid_size, not args.no_verify)
        elif args.source == "cifar10":
            splits = cifar10_splits(args.tarball, args.valid_size, not args.no_verify)
        else:
            splits = digits_splits(args.valid_size, args.test_size)
        write_atomically(args.out, splits)
    except (PrepareError, IdxError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    train = splits["train"][0]
    sizes = ", ".join(f"{split} {len(labels)}" for split, (_, labels) in splits.items())
    print(f"prepared {args.source} in {args.out}: {sizes}; image {train.shape[1:]}; "
          f"train pixel mean {train.mean() / 255:.4f}, std {train.std() / 255:.4f} (in [0, 1] units)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
