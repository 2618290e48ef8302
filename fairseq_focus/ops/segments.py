"""Cutting a stream segment at fixed-size boundaries (time bins of R, attention chunks of M).

A segment of n new positions that starts at absolute position ``pos`` is split into

    head   : the rest of the block ``pos`` falls in (empty when pos is on a boundary),
    middle : whole blocks,
    tail   : the start of the block after them (shorter than one block).

Layers whose state resets or changes at block boundaries (causal IIR bins, chunk attention, Θ per
bin) process each part with the parallel code and carry state across the parts.
"""
from typing import NamedTuple


class Split(NamedTuple):
    head: int  # positions finishing the block that ``pos`` falls in
    middle: int  # positions in whole blocks (a multiple of the block size)
    tail: int  # positions opening the last, unfinished block


def split_at_boundaries(pos: int, n: int, size: int) -> Split:
    """Lengths (head, middle, tail) of n positions starting at ``pos`` on a grid of ``size``."""
    if pos < 0 or n < 0 or size < 1:
        raise ValueError(f"bad segment: pos={pos}, n={n}, block size={size}")
    offset = pos % size
    head = min(n, (size - offset) % size)
    rest = n - head
    middle = rest - rest % size
    return Split(head, middle, rest - middle)


def blocks_touched(pos: int, n: int, size: int) -> int:
    """How many blocks of ``size`` the positions pos … pos+n−1 overlap."""
    if n == 0:
        return 0
    return (pos + n - 1) // size - pos // size + 1
