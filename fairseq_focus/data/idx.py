"""The IDX file format of MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/), read and written.

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions n
    then        n big-endian uint32 dimension sizes, then the elements, big-endian, row-major

MNIST's images are (N, 28, 28) uint8 and its labels (N,) uint8. The prepared splits of every pixel
task (MNIST, CIFAR-10 as (N, 32, 32, 3), the 8×8 digits) use the same format, uncompressed.
``read_idx`` also accepts gzip-compressed files (the ``.gz`` files MNIST is distributed as).
Anything malformed raises :class:`IdxError` naming the file and what is wrong. Pure numpy.
"""
import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"

PathLike = Union[str, os.PathLike]


class IdxError(ValueError):
    """A file that is not a well-formed IDX file."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file into a native-endian numpy array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxError(f"{name}: not an IDX file (corrupt header: the first two bytes must be 0x00 0x00, "
                       f"got {data[:4].hex(' ') or 'an empty file'})")
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        raise IdxError(f"{name}: corrupt IDX header: unknown element type 0x{code:02x} "
                       f"(expected one of {', '.join(f'0x{c:02x}' for c in DTYPES)})")
    if ndim == 0:
        raise IdxError(f"{name}: corrupt IDX header: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: corrupt IDX header: {ndim} dimensions announced but the file ends "
                       f"after {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(f"{name}: header says shape {shape} ({expected} bytes of data) but the file holds "
                       f"{len(data) - header} bytes after the header (truncated or corrupt)")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxError(f"{path}: corrupt gzip data ({err})") from None
    return parse_idx(data, str(path))


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an uncompressed IDX file (its dtype must be one IDX has)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise IdxError(f"{path}: IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(array, dtype=np.dtype(DTYPES[codes[dtype]])).tobytes())
