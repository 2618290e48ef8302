"""A prepared pixel-classification data directory, and the fixed pixel permutation of pMNIST.

Layout (written by ``prepare_pixels``, read by the ``pixel_sequence_classification`` task):

    <data>/train-images.idx  (N, H, W) or (N, H, W, C) uint8      <data>/train-labels.idx  (N,) uint8
    <data>/valid-images.idx  ...                                   <data>/valid-labels.idx
    <data>/test-images.idx   ...                                   <data>/test-labels.idx

An image becomes a sequence of L = H·W pixels in row-major (raster) order, each pixel a vector of
C channel values. pMNIST applies one fixed permutation of the L positions to every image.

The permutation (:func:`pixel_permutation`) is a pure function of (seed, L) that does not depend on
any random number generator's implementation, numpy/torch version, platform or global RNG state:

    key(i) = first 8 bytes of SHA-256("focus-pixel-permutation:<seed>:<i>"), read big-endian
    perm   = the positions 0…L−1 sorted by key (ties, which do not occur in practice, by position)

so the same seed gives the same permutation on every machine, and the sequence fed to the model is
``pixels[perm]`` (output position j holds input pixel perm[j]).
"""
import hashlib
from pathlib import Path
from typing import Tuple

import numpy as np

from .idx import IdxError, PathLike, read_idx, write_idx

SPLITS = ("train", "valid", "test")
# ITU-R BT.601 luma weights, the usual RGB -> grayscale conversion
LUMA = np.array([0.299, 0.587, 0.114])


def split_files(data_dir: PathLike, split: str) -> Tuple[Path, Path]:
    data_dir = Path(data_dir)
    return data_dir / f"{split}-images.idx", data_dir / f"{split}-labels.idx"


def check_images(images: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, H, W, C)."""
    if images.dtype != np.uint8:
        raise IdxError(f"{name}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4:
        return images
    raise IdxError(f"{name}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")


def check_pair(images: np.ndarray, labels: np.ndarray, name: str) -> Tuple[np.ndarray, np.ndarray]:
    images = check_images(images, name)
    if labels.ndim != 1:
        raise IdxError(f"{name}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) != len(images):
        raise IdxError(f"{name}: label/image count mismatch: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def read_split(data_dir: PathLike, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, C) uint8 and labels (N,) int64 of one prepared split."""
    images_path, labels_path = split_files(data_dir, split)
    return check_pair(read_idx(images_path), read_idx(labels_path), f"{data_dir}/{split}")


def write_split(out_dir: PathLike, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    images, labels = check_pair(images, labels, f"{out_dir}/{split}")
    images_path, labels_path = split_files(out_dir, split)
    images_path.parent.mkdir(parents=True, exist_ok=True)
    write_idx(images_path, images[..., 0] if images.shape[-1] == 1 else images)
    write_idx(labels_path, labels.astype(np.uint8))


def image_shape(data_dir: PathLike) -> Tuple[int, int, int]:
    """(H, W, C) of the prepared images, from the first split present (header only)."""
    for split in SPLITS:
        images_path, _ = split_files(data_dir, split)
        if images_path.exists():
            with open(images_path, "rb") as f:
                head = f.read(4 + 4 * 4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[3] not in (3, 4) or len(head) < 4 + 4 * head[3]:
                raise IdxError(f"{images_path}: corrupt IDX header (expected 3 or 4 dimensions: N, H, W[, C])")
            dims = [int.from_bytes(head[4 + 4 * k: 8 + 4 * k], "big") for k in range(head[3])]
            return dims[1], dims[2], dims[3] if len(dims) == 4 else 1
    raise FileNotFoundError(f"{data_dir}: no prepared split found (expected e.g. train-images.idx; "
                            f"run the recipe's prepare.sh)")


def pixel_permutation(length: int, seed: int) -> np.ndarray:
    """The fixed permutation of ``length`` pixel positions for ``seed`` (see the module docstring)."""
    keys = [int.from_bytes(hashlib.sha256(f"focus-pixel-permutation:{seed}:{i}".encode()).digest()[:8], "big")
            for i in range(length)]
    return np.array(sorted(range(length), key=lambda i: (keys[i], i)), dtype=np.int64)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W, 1) uint8 luma, rounded."""
    if images.shape[-1] != 3:
        raise ValueError(f"grayscale conversion needs 3 channels, got {images.shape[-1]}")
    return np.rint(images.astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)[..., None]
