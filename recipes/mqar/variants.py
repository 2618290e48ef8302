"""The MQAR grid's models: one line each in a variants file, ``name arch flags…``.

Flags may hold width placeholders, replaced for the run's width D: ``{D}``, ``{2D}``, ``{4D}``, ``{D/2}``.
``#`` starts a comment line. ``python recipes/mqar/variants.py FILE --width 64 [--only a b]`` prints
``name<TAB>arch<TAB>flags`` per variant (what grid.sh reads).
"""
import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

PLACEHOLDERS = {"{D}": lambda d: d, "{2D}": lambda d: 2 * d, "{4D}": lambda d: 4 * d, "{D/2}": lambda d: d // 2}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Variant:
    name: str
    arch: str
    raw_flags: Tuple[str, ...]

    def flags(self, width: int) -> List[str]:
        out = []
        for flag in self.raw_flags:
            for key, value in PLACEHOLDERS.items():
                flag = flag.replace(key, str(value(width)))
            if "{" in flag:
                raise ValueError(f"variant {self.name}: unknown placeholder in {flag!r} (known: {', '.join(PLACEHOLDERS)})")
            out.append(flag)
        return out


def read_variants(path: Path, only: Optional[Sequence[str]] = None) -> List[Variant]:
    """The variants of ``path`` (those named in ``only``, in the file's order, when given)."""
    if not path.is_file():
        raise ValueError(f"no variants file {path}")
    variants = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 2 or not NAME.fullmatch(words[0]):
            raise ValueError(f"{path}:{number}: expected 'name arch flags…', got {line.strip()!r}")
        variants.append(Variant(words[0], words[1], tuple(words[2:])))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a variant name occurs twice")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"{path} has no variant {', '.join(unknown)} (it has {', '.join(names)})")
        variants = [v for v in variants if v.name in only]
    return variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    try:
        for v in read_variants(args.file, args.only):
            print(f"{v.name}\t{v.arch}\t{' '.join(v.flags(args.width))}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
