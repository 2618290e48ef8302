"""Turn the official enwik8 / text8 zip into fairseq token files: train.txt, valid.txt, test.txt.

The standard split (Transformer-XL's prep_enwik8.py / prep_text8.py, also used by MEGA): of the
100,000,000 bytes (enwik8) or characters (text8), the first 90M are train, the next 5M valid, the
last 5M test. Every byte/character becomes exactly one token, so fairseq's base-2 loss is the BPC:

* enwik8: each byte as its decimal value; a newline byte ends the line, and fairseq's end-of-line
  token </s> stands for it.
* text8: each character, with "_" for space. text8 has no newline, so each split is one line.

Only the Python standard library is used. Errors are one line on stderr and exit status 2.
"""
import argparse
import hashlib
import sys
import zipfile
import zlib
from pathlib import Path

# str.translate maps one character to a string in C: this turns 100 MB into tokens in seconds.
ENWIK8_TABLE = {b: f"{b} " for b in range(256)}
TEXT8_TABLE = {ord(c): f"{c} " for c in "abcdefghijklmnopqrstuvwxyz"}
TEXT8_TABLE[ord(" ")] = "_ "
TEXT8_ALPHABET = frozenset(b"abcdefghijklmnopqrstuvwxyz ")


class PrepareError(Exception):
    pass


def read_member(archive: Path, member: str) -> bytes:
    """The named file from the zip; zipfile checks the CRC-32, so a damaged archive is refused."""
    if not archive.is_file():
        raise PrepareError(f"archive not found: {archive}")
    try:
        with zipfile.ZipFile(archive) as zf:
            if member not in zf.namelist():
                raise PrepareError(f"{archive} has no file named {member!r} (it holds {zf.namelist()[:5]})")
            return zf.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise PrepareError(f"{archive} is not a readable zip archive (corrupt or truncated): {err}") from err


def split(data: bytes, sizes) -> list:
    train, valid, test = sizes
    if len(data) != train + valid + test:
        raise PrepareError(
            f"corpus has {len(data):,} bytes but the split needs exactly {train + valid + test:,} "
            f"(train {train:,} + valid {valid:,} + test {test:,}): truncated file or wrong split sizes"
        )
    return [data[:train], data[train:train + valid], data[train + valid:]]


def enwik8_lines(part: bytes) -> str:
    """One token per byte in decimal; each newline byte becomes a line break (fairseq's </s>)."""
    return "\n".join(line.decode("latin-1").translate(ENWIK8_TABLE).rstrip(" ") for line in part.split(b"\n")) + "\n"


def text8_line(part: bytes) -> str:
    """One token per character, "_" for space, the whole split on one line."""
    if not set(part) <= TEXT8_ALPHABET:
        bad = sorted(set(part) - TEXT8_ALPHABET)[:5]
        raise PrepareError(f"not text8: found byte values {bad} outside a-z and space")
    return part.decode("ascii").translate(TEXT8_TABLE).rstrip(" ") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=("enwik8", "text8"))
    parser.add_argument("archive", type=Path, help="enwik8.zip / text8.zip (a zip holding a file of that name)")
    parser.add_argument("outdir", type=Path, help="existing directory to write train/valid/test.txt into")
    parser.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "VALID", "TEST"),
                        default=(90_000_000, 5_000_000, 5_000_000))
    args = parser.parse_args(argv)
    try:
        if min(args.sizes) <= 0:
            raise PrepareError(f"split sizes must be positive, got {args.sizes}")
        data = read_member(args.archive, args.corpus)
        to_text = enwik8_lines if args.corpus == "enwik8" else text8_line
        for name, part in zip(("train", "valid", "test"), split(data, args.sizes)):
            (args.outdir / f"{name}.txt").write_text(to_text(part), encoding="ascii")
        print(f"{args.corpus}: {len(data):,} bytes, sha256 of the text {hashlib.sha256(data).hexdigest()}, "
              f"split {args.sizes[0]:,} / {args.sizes[1]:,} / {args.sizes[2]:,}")
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
