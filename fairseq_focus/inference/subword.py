"""How sentencepiece pieces are written as fairseq symbols, shared by recipes/text/spm_prepare.py
(which writes the corpora) and the hub (which encodes text the same way).

fairseq splits a token line on any whitespace, so a piece holding a whitespace character other
than sentencepiece's "▁" (a tab, a no-break space, ...) cannot be one fairseq symbol: it is written
as "▁" for each "▁" and as the UTF-8 byte pieces (<0xNN>) of every other character. sentencepiece's
own decoder turns both back into the same text, so the encoding stays lossless.
"""
from typing import List

SPACE = "\u2581"  # sentencepiece's "▁": a space, and at a line start the dummy prefix its decoder drops


def spell(char: str) -> str:
    """One character of a piece that holds whitespace: "▁" stays a piece (so the decoder still drops a
    line's dummy prefix), any other character becomes its UTF-8 byte pieces."""
    return SPACE if char == SPACE else " ".join(f"<0x{b:02X}>" for b in char.encode("utf-8"))


def holds_whitespace(piece: str) -> bool:
    return any(c.isspace() for c in piece)


def fairseq_symbols(piece: str) -> List[str]:
    """A sentencepiece piece -> the fairseq symbols that stand for it (itself unless it holds whitespace)."""
    return " ".join(spell(c) for c in piece).split(" ") if holds_whitespace(piece) else [piece]
