"""Small image datasets written in the official raw formats, for the pixel-task tests.

* MNIST: the four ``*-idx?-ubyte.gz`` files (gzip-compressed IDX: magic 0x00000803 for images,
  0x00000801 for labels, big-endian dimension sizes, uint8 data).
* CIFAR-10: ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``
  and ``batches.meta``, each a pickled dict with ``data`` (n, 3072) uint8 rows (R, G, B planes of a
  32×32 image) and ``labels`` (a list of ints), protocol 2 as the official files use.

The images carry a class-dependent pattern so a model can learn something, but the tests only rely
on the formats.
"""
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from fairseq_focus.data.idx import write_idx


def patterned_images(num: int, shape, seed: int):
    """uint8 images whose mean brightness band depends on the label, plus noise; and the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=num).astype(np.uint8)
    images = rng.integers(0, 60, size=(num, *shape)).astype(np.int64)
    rows = shape[0]
    for k, label in enumerate(labels):
        band = slice(int(label) * rows // 10, (int(label) + 1) * rows // 10 + 1)
        images[k, band] += 180
    return images.clip(0, 255).astype(np.uint8), labels


def idx_gz_bytes(array: np.ndarray, tmp: Path) -> bytes:
    write_idx(tmp, array)
    return gzip.compress(tmp.read_bytes())


def write_fake_mnist(raw_dir: Path, n_train: int = 60, n_test: int = 20, size=(28, 28), seed: int = 0) -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = raw_dir / "scratch.idx"
    for prefix, num in (("train", n_train), ("t10k", n_test)):
        images, labels = patterned_images(num, size, seed + (prefix == "t10k"))
        (raw_dir / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_gz_bytes(images, tmp))
        (raw_dir / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_gz_bytes(labels, tmp))
    tmp.unlink()
    return raw_dir


def cifar_batch(num: int, seed: int, row_len: int = 3072) -> bytes:
    images, labels = patterned_images(num, (32, 32, 3), seed)
    data = images.transpose(0, 3, 1, 2).reshape(num, 3 * 32 * 32)[:, :row_len]  # HWC -> planes
    return pickle.dumps({"batch_label": f"batch {seed}", "labels": [int(x) for x in labels],
                         "data": np.ascontiguousarray(data), "filenames": [f"{k}.png" for k in range(num)]}, protocol=2)


def write_fake_cifar10(path: Path, per_batch: int = 12, n_test: int = 20, row_len: int = 3072) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {f"data_batch_{k}": cifar_batch(per_batch, k, row_len) for k in range(1, 6)}
    members["test_batch"] = cifar_batch(n_test, 99, row_len)
    members["batches.meta"] = pickle.dumps({"label_names": [f"class{k}" for k in range(10)]}, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path
