"""A hub-style Python interface to a trained byte-level ``focus_lm``, after fairseq's ``hub_utils``.

    from fairseq_focus.inference.hub import FocusLMHub
    lm = FocusLMHub.from_pretrained("checkpoints", "checkpoint_best.pt", "data-bin/enwik8")
    lm.bpc("some text\n")                 # bits per byte, state carried over segments
    lm.sample("The ", n_bytes=200)        # prompt + 200 sampled bytes, decoded as UTF-8

Loading goes through :func:`fairseq.hub_utils.from_pretrained` (same arguments: a checkpoint
directory or archive, the checkpoint file name, the data directory holding ``dict.txt``).
Byte convention of the project's corpora: one token per byte, its decimal value; the newline byte
is the end-of-sentence token. Decoding and scoring run through ``FocusDecoder.forward_stream``,
so a sample costs O(1) per byte whatever its length.
"""
from typing import Optional, Union

import torch
from fairseq import hub_utils
from torch import Tensor, nn

from ..data.byte_codec import as_bytes, bytes_to_ids, ids_to_text, is_byte_symbol
from ..models import focus_lm as _focus_lm_model  # noqa: F401  (registers focus_lm before a checkpoint is loaded)
from ..tasks import focus_lm as _focus_lm_task  # noqa: F401
from .stream_scoring import stream_nll


class FocusLMHub(nn.Module):
    def __init__(self, cfg, task, model: nn.Module):
        super().__init__()
        if not hasattr(getattr(model, "decoder", None), "forward_stream"):
            raise ValueError(f"FocusLMHub needs a focus_lm model, got {type(model).__name__}")
        self.cfg, self.task, self.model = cfg, task, model.eval()
        self.dictionary = task.target_dictionary
        # the symbols a byte LM may emit: decimal bytes and the end-of-sentence token (newline)
        allowed = [i for i, s in enumerate(self.dictionary.symbols) if is_byte_symbol(s)]
        self.register_buffer("_emittable", torch.zeros(len(self.dictionary), dtype=torch.bool), persistent=False)
        self._emittable[allowed + [self.dictionary.eos()]] = True

    @classmethod
    def from_pretrained(cls, model_name_or_path: str, checkpoint_file: str = "checkpoint_best.pt",
                        data_name_or_path: str = ".", **kwargs) -> "FocusLMHub":
        loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)
        return cls(loaded["args"], loaded["task"], loaded["models"][0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, text: Union[str, bytes]) -> Tensor:
        """Text (UTF-8) or bytes -> (N,) token ids, one per byte; newline -> end-of-sentence."""
        return torch.tensor(bytes_to_ids(as_bytes(text), self.dictionary), dtype=torch.long, device=self.device)

    def decode(self, tokens: Tensor) -> str:
        """(N,) token ids -> text; end-of-sentence -> newline, bytes decoded as UTF-8."""
        return ids_to_text(tokens.tolist(), self.dictionary)

    def bpc(self, text: Union[str, bytes], segment_len: int = 4096) -> float:
        """Mean −log₂ p per byte of ``text``, the first byte predicted after an end-of-sentence."""
        tokens = self.encode(text)
        if tokens.numel() == 0:
            raise ValueError("cannot score an empty text")
        return stream_nll(self.model.decoder, tokens, self.dictionary.eos(), segment_len) / tokens.numel() / torch.log(
            torch.tensor(2.0)).item()

    @torch.no_grad()
    def sample(self, prompt: Union[str, bytes] = "", n_bytes: int = 100, temperature: float = 1.0,
               top_k: int = 0, seed: Optional[int] = None) -> str:
        """``prompt`` followed by ``n_bytes`` bytes sampled one at a time with incremental decoding.

        temperature > 0 scales the logits; top_k > 0 keeps the k most likely bytes; the newline
        (end-of-sentence) is an ordinary byte here, so samples run over several lines.
        """
        if temperature <= 0 or n_bytes < 0 or top_k < 0:
            raise ValueError("need temperature > 0, n_bytes >= 0 and top_k >= 0")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(torch.seed() if seed is None else seed)
        decoder = self.model.decoder
        eos = torch.tensor([self.dictionary.eos()], device=self.device)
        context = torch.cat([eos, self.encode(prompt)])
        state: dict = {}
        logits = decoder.forward_stream(context.unsqueeze(0), state)[0, -1]  # prompt in one segment
        sampled = []
        for _ in range(n_bytes):
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
