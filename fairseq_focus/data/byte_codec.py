"""The byte⇄token convention of the project's byte corpora, written once.

One token per byte, spelled as its decimal value ('72' for b'H'); the newline byte is a line break,
which fairseq turns into the end-of-sentence token. Everything that crosses between bytes and
tokens (the corpus writer, the ``focus_bytes`` BPE, the hub, the benchmarks) goes through here.
"""
from typing import Iterable, List

ENCODING = "utf-8"
NEWLINE = 10  # the byte that is the end-of-sentence token


def is_byte_symbol(symbol: str) -> bool:
    """'0' … '255': a dictionary symbol that stands for one byte."""
    return symbol.isdigit() and int(symbol) < 256


def byte_symbols(data: bytes) -> str:
    """b'Hi' -> '72 105'."""
    return " ".join(str(b) for b in data)


def text_to_byte_tokens(line: str) -> str:
    """'Hi' -> '72 105' (the line's UTF-8 bytes in decimal)."""
    return byte_symbols(line.encode(ENCODING))


def bytes_to_lines(data: bytes) -> str:
    """One line per newline-terminated chunk, each byte as a decimal token."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()  # the final newline already ends the last line
    return "".join(byte_symbols(line) + "\n" for line in lines)


def byte_tokens_to_bytes(symbols: Iterable[str]) -> bytes:
    """Decimal byte symbols -> bytes; anything else (<unk>, specials) is dropped."""
    return bytes(int(s) for s in symbols if is_byte_symbol(s))


def bytes_to_text(data: bytes) -> str:
    return data.decode(ENCODING, errors="replace")


def as_bytes(text) -> bytes:
    """str (encoded as UTF-8) or any bytes-like object -> bytes."""
    return text.encode(ENCODING) if isinstance(text, str) else bytes(text)


def bytes_to_ids(data: bytes, dictionary) -> List[int]:
    """Bytes -> ids of a fairseq ``Dictionary`` over byte symbols; newline -> end-of-sentence."""
    return [dictionary.eos() if b == NEWLINE else dictionary.index(str(b)) for b in data]


def ids_to_text(ids: Iterable[int], dictionary) -> str:
    """Ids -> text; end-of-sentence -> newline, other non-byte symbols dropped, bytes decoded as UTF-8."""
    eos = dictionary.eos()
    return bytes_to_text(byte_tokens_to_bytes(str(NEWLINE) if i == eos else dictionary[i] for i in ids))


def byte_dictionary():
    """A fairseq ``Dictionary`` of the 256 byte symbols (after its four specials)."""
    from fairseq.data import Dictionary  # the only fairseq use here, so the writers run without it
    dictionary = Dictionary()
    for b in range(256):
        dictionary.add_symbol(str(b))
    return dictionary
