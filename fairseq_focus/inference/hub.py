"""A hub-style Python interface to a trained ``focus_lm``, byte-level or subword (sentencepiece),
after fairseq's ``hub_utils``.

    from fairseq_focus.inference.hub import FocusLMHub
    lm = FocusLMHub.from_pretrained("checkpoints", "checkpoint_best.pt", "data-bin/enwik8")
    lm.bpc("some text\n")                 # bits per byte, state carried over segments
    lm.sample("The ", n_bytes=200)        # prompt + 200 sampled bytes, decoded as UTF-8

    sub = FocusLMHub.from_pretrained("checkpoints/text_focus_lm_focus", "checkpoint_best.pt", "data-bin/text",
                                     bpe="sentencepiece", sentencepiece_model="data-bin/text/spm.model")
    sub.bpc("some text\n")                # bits per UTF-8 byte of the text
    sub.sample("The ", n_tokens=50)       # prompt + 50 sampled sentencepiece tokens

Loading goes through :func:`fairseq.hub_utils.from_pretrained` (same arguments: a checkpoint
directory or archive, the checkpoint file name, the data directory holding ``dict.txt``, fairseq's
``bpe=`` / ``sentencepiece_model=`` overrides). Without ``bpe=``, a data directory holding
``spm.model`` (what recipes/text/prepare.sh writes) selects sentencepiece; otherwise the model is
byte-level.

Byte models: one token per byte, its decimal value; the newline byte is the end-of-sentence token.
Subword models: each line is encoded on its own by the sentencepiece model of fairseq's
``SentencepieceBPE`` (as recipes/text/prepare.sh encoded the corpus, pieces holding whitespace
spelled as in ``subword.py``), each "\\n" is the end-of-sentence token, and decoding is
sentencepiece's own (byte-fallback pieces become their characters). In both cases one
end-of-sentence token stands for one newline byte, so ``bpc`` (total bits / UTF-8 bytes of the
text) compares byte and subword models. Decoding and scoring run through
``FocusDecoder.forward_stream``, so a sample costs O(1) per token whatever its length.
"""
import os
from typing import List, Optional, Union

import torch
from fairseq import hub_utils
from fairseq.data import encoders
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from ..data.byte_codec import ENCODING, as_bytes, bytes_to_ids, ids_to_text, is_byte_symbol
from ..models import focus_lm as _focus_lm_model  # noqa: F401  (registers focus_lm before a checkpoint is loaded)
from ..tasks import focus_lm as _focus_lm_task  # noqa: F401
from .stream_scoring import stream_nll
from .subword import fairseq_symbols

SPM_MODEL = "spm.model"  # the sentencepiece model recipes/text/prepare.sh writes into its data-bin
BYTE_BPES = (None, "focus_bytes")


def _bpe_name(bpe_cfg) -> Optional[str]:
    return None if bpe_cfg is None else bpe_cfg if isinstance(bpe_cfg, str) else getattr(bpe_cfg, "_name", None)


def _no_spm_model(bpe_cfg) -> bool:
    return not isinstance(bpe_cfg, DictConfig) or OmegaConf.is_missing(bpe_cfg, "sentencepiece_model")


class FocusLMHub(nn.Module):
    def __init__(self, cfg, task, model: nn.Module):
        super().__init__()
        if not hasattr(getattr(model, "decoder", None), "forward_stream"):
            raise ValueError(f"FocusLMHub needs a focus_lm model, got {type(model).__name__}")
        self.cfg, self.task, self.model = cfg, task, model.eval()
        self.dictionary = task.target_dictionary
        bpe_cfg = getattr(cfg, "bpe", None) if cfg is not None else None
        name = _bpe_name(bpe_cfg)
        if name not in BYTE_BPES + ("sentencepiece",):
            raise ValueError(f"FocusLMHub reads bytes or sentencepiece, not bpe={name!r}")
        # SentencepieceBPE for a subword model, None for a byte model
        self.bpe = encoders.build_bpe(bpe_cfg) if name == "sentencepiece" else None
        symbols = [(i, s) for i, s in enumerate(self.dictionary.symbols)
                   if i >= self.dictionary.nspecial and not s.startswith("madeupword")]  # fairseq's padding fillers
        if self.bpe is None and not all(is_byte_symbol(s) for _, s in symbols):
            raise ValueError("the dictionary is not byte-level: for a subword model pass bpe='sentencepiece', "
                             f"sentencepiece_model=... (or keep {SPM_MODEL} in the data directory)")
        # the symbols the model may emit: every ordinary symbol (decimal bytes, or sentencepiece pieces
        # with the byte-fallback ones) and the end-of-sentence token (newline)
        allowed = [i for i, _ in symbols]
        self.register_buffer("_emittable", torch.zeros(len(self.dictionary), dtype=torch.bool), persistent=False)
        self._emittable[allowed + [self.dictionary.eos()]] = True

    @classmethod
    def from_pretrained(cls, model_name_or_path: str, checkpoint_file: str = "checkpoint_best.pt",
                        data_name_or_path: str = ".", bpe: Optional[str] = None,
                        sentencepiece_model: Optional[str] = None, **kwargs) -> "FocusLMHub":
        """fairseq's ``hub_utils.from_pretrained``; ``bpe='sentencepiece'`` with ``sentencepiece_model=``
        loads a subword model (a ``sentencepiece_model`` alone implies it; without either, the data
        directory's ``spm.model`` does), ``bpe=None`` or ``'focus_bytes'`` a byte model."""
        if sentencepiece_model is not None:
            if bpe not in (None, "sentencepiece"):
                raise ValueError(f"sentencepiece_model= goes with bpe='sentencepiece', not bpe={bpe!r}")
            if not os.path.isfile(sentencepiece_model):
                raise FileNotFoundError(f"sentencepiece model not found: {sentencepiece_model}")
            bpe, kwargs["sentencepiece_model"] = "sentencepiece", sentencepiece_model
        if bpe is not None:
            kwargs["bpe"] = bpe
        loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)
        cfg = loaded["args"]
        found = os.path.join(cfg.task.data, SPM_MODEL)
        given = _bpe_name(cfg.bpe)
        if given is None and bpe is None and os.path.isfile(found):
            given = "sentencepiece"  # a data-bin from recipes/text/prepare.sh
        if given == "sentencepiece" and _no_spm_model(cfg.bpe):
            if not os.path.isfile(found):
                raise ValueError(f"bpe='sentencepiece' needs sentencepiece_model=... (no {SPM_MODEL} in {cfg.task.data})")
            with open_dict(cfg):
                cfg.bpe = {"_name": "sentencepiece", "sentencepiece_model": found}
        return cls(cfg, loaded["task"], loaded["models"][0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_subword(self) -> bool:
        return self.bpe is not None

    def encode(self, text: Union[str, bytes]) -> Tensor:
        """Text (UTF-8) or bytes -> (N,) token ids; each newline -> end-of-sentence.

        Byte models: one token per byte. Subword models: each line's sentencepiece pieces, the line
        encoded on its own (as the training corpus was), followed by end-of-sentence if a newline ends it.
        """
        if self.bpe is None:
            return torch.tensor(bytes_to_ids(as_bytes(text), self.dictionary), dtype=torch.long, device=self.device)
        lines = (text if isinstance(text, str) else as_bytes(text).decode(ENCODING)).split("\n")
        ids: List[int] = []
        for number, line in enumerate(lines):
            pieces = self.bpe.encode(line).split(" ") if line else []
            ids.extend(self.dictionary.index(s) for piece in pieces for s in fairseq_symbols(piece))
            if number < len(lines) - 1:
                ids.append(self.dictionary.eos())
        if self.dictionary.unk() in ids:
            raise ValueError("the text has sentencepiece pieces the dictionary lacks: is sentencepiece_model "
                             "the model the data directory was prepared with?")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def decode(self, tokens: Tensor) -> str:
        """(N,) token ids -> text; end-of-sentence -> newline. Bytes are decoded as UTF-8; subword
        lines by sentencepiece (dummy prefix dropped, byte-fallback pieces -> characters)."""
        if self.bpe is None:
            return ids_to_text(tokens.tolist(), self.dictionary)
        eos, lines, line = self.dictionary.eos(), [], []
        for i in tokens.tolist():
            if i == eos:
                lines.append(line)
                line = []
            elif i >= self.dictionary.nspecial:
                line.append(self.dictionary[i])
        lines.append(line)
        return "\n".join(self.bpe.sp.decode_pieces(pieces) for pieces in lines)

    def bpc(self, text: Union[str, bytes], segment_len: int = 4096) -> float:
        """Bits per byte: −log₂ p of ``text``'s tokens, the first predicted after an end-of-sentence,
        summed and divided by the text's UTF-8 byte count (a newline is one byte and one
        end-of-sentence token). For a byte model this is the mean over its tokens."""
        num_bytes = len(as_bytes(text))
        tokens = self.encode(text)
        if tokens.numel() == 0:
            raise ValueError("cannot score an empty text")
        nats = stream_nll(self.model.decoder, tokens, self.dictionary.eos(), segment_len)
        return nats / num_bytes / torch.log(torch.tensor(2.0)).item()

    @torch.no_grad()
    def sample(self, prompt: Union[str, bytes] = "", n_bytes: Optional[int] = None, temperature: float = 1.0,
               top_k: int = 0, seed: Optional[int] = None, n_tokens: Optional[int] = None) -> str:
        """``prompt`` followed by ``n_tokens`` tokens sampled one at a time with incremental decoding.

        A byte model's token is a byte, so ``n_bytes`` is another name for ``n_tokens`` there; a subword
        model samples ``n_tokens`` sentencepiece tokens (``n_bytes`` is refused: the byte length of a
        token is only known once it is drawn). Default: 100 tokens. temperature > 0 scales the
        logits; top_k > 0 keeps the k most likely tokens; the end-of-sentence token (newline) is an
        ordinary token here, so samples run over several lines.
        """
        if n_bytes is not None and n_tokens is not None:
            raise ValueError("give n_bytes or n_tokens, not both")
        if n_bytes is not None and self.is_subword:
            raise ValueError("a subword model samples tokens, not bytes: use n_tokens=")
        count = n_bytes if n_bytes is not None else 100 if n_tokens is None else n_tokens
        if temperature <= 0 or count < 0 or top_k < 0:
            raise ValueError("need temperature > 0, n_bytes/n_tokens >= 0 and top_k >= 0")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(torch.seed() if seed is None else seed)
        decoder = self.model.decoder
        eos = torch.tensor([self.dictionary.eos()], device=self.device)
        context = torch.cat([eos, self.encode(prompt)])
        state: dict = {}
        logits = decoder.forward_stream(context.unsqueeze(0), state)[0, -1]  # prompt in one segment
        sampled = []
        for _ in range(count):
            token = self._draw(logits, temperature, top_k, generator)
            sampled.append(token)
            logits = decoder.forward_stream(token.view(1, 1), state)[0, -1]  # one step: O(1)
        generated = torch.cat(sampled) if sampled else context[:0]
        return self.decode(torch.cat([context[1:], generated]))

    def _draw(self, logits: Tensor, temperature: float, top_k: int, generator: torch.Generator) -> Tensor:
        scores = (logits.float() / temperature).masked_fill(~self._emittable, float("-inf"))
        if top_k:
            kth = scores.topk(min(top_k, int(self._emittable.sum()))).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        return torch.multinomial(scores.softmax(-1), 1, generator=generator)
