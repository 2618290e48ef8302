"""``--bpe focus_bytes``: text <-> the byte-token lines of a byte-level LM's data.

The byte corpora of this project hold one token per byte, written as its decimal value, and a
newline byte is a line break (fairseq's end-of-sentence token). This "BPE" maps a line of text to
that form and back, so ``fairseq-interactive --bpe focus_bytes`` reads prompts as plain text and
``fairseq-generate``/``fairseq-interactive`` print the sampled bytes as text (their ``D-`` lines).
"""
from dataclasses import dataclass

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from ..data.byte_codec import byte_tokens_to_bytes, bytes_to_text, text_to_byte_tokens


@dataclass
class FocusBytesConfig(FairseqDataclass):
    pass


@register_bpe("focus_bytes", dataclass=FocusBytesConfig)
class FocusBytesBPE:
    def __init__(self, cfg: FocusBytesConfig):
        self.cfg = cfg

    def encode(self, x: str) -> str:
        return text_to_byte_tokens(x)

    def decode(self, x: str) -> str:
        return bytes_to_text(byte_tokens_to_bytes(x.split()))

    def is_beginning_of_word(self, x: str) -> bool:
        return True
