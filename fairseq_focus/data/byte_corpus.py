"""Byte-level corpora in the layout fairseq-preprocess reads: one token per byte, in decimal,
newline bytes kept as line breaks (fairseq appends </s> to every line, which then stands for the
newline). This is the encoding of transformer-xl's enwik8 preparation, under which the mean loss per
token in base 2 is bits per byte/character.

    python -m fairseq_focus.data.byte_corpus --stdlib --max-bytes 3000000 --out-dir corpus/
    python -m fairseq_focus.data.byte_corpus --input some.txt --out-dir corpus/

writes train/valid/test.txt (tokens) and train/valid/test.raw (the raw bytes of each split), split
90/5/5 by position.
"""
import argparse
import sys
import sysconfig
from pathlib import Path
from typing import Dict, Tuple

from .atomic import atomic_directory
from .byte_codec import bytes_to_lines

SPLITS = ("train", "valid", "test")


SKIPPED = ("test", "tests", "idle_test", "site-packages")


def stdlib_source(max_bytes: int, skip: Tuple[str, ...] = SKIPPED) -> bytes:
    """Real text present on every machine with Python: the standard library's .py files, in path
    order, excluding the folders named in ``skip`` (default: its test suites, which hold deliberately
    odd bytes)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in skip for p in rel):
            continue
        data = path.read_bytes()
        parts.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(parts)[:max_bytes]


def split(data: bytes, fractions=(0.90, 0.05, 0.05)) -> Dict[str, bytes]:
    n = len(data)
    train_end = int(fractions[0] * n)
    valid_end = train_end + int(fractions[1] * n)
    return {"train": data[:train_end], "valid": data[train_end:valid_end], "test": data[valid_end:]}


def write_corpus(data: bytes, out_dir: Path) -> None:
    """Write the splits into a temporary directory beside out_dir, then move it into place."""
    with atomic_directory(out_dir, replace=True) as tmp:
        for name, part in split(data).items():
            (tmp / f"{name}.raw").write_bytes(part)
            (tmp / f"{name}.txt").write_text(bytes_to_lines(part))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--stdlib", action="store_true", help="use the Python standard library's source")
    src.add_argument("--input", type=Path, help="a file of raw bytes")
    parser.add_argument("--max-bytes", type=int, default=3_000_000)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.input is not None and not args.input.is_file():
        print(f"error: input file {args.input} does not exist", file=sys.stderr)
        return 1
    data = stdlib_source(args.max_bytes) if args.stdlib else args.input.read_bytes()[: args.max_bytes]
    if len(data) < 100:
        print(f"error: only {len(data)} bytes of input; need at least 100 to split", file=sys.stderr)
        return 1
    write_corpus(data, args.out_dir)
    print(f"wrote {len(data):,} bytes as train/valid/test into {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
