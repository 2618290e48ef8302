"""A stack of Focus blocks over embedded inputs, shared by the LM decoder and the classifier.

Responsibilities kept out of the blocks: right-padding the sequence to whole bins and chunks (which
cannot change earlier positions of a causal model), computing the hypernetwork's global part once
when it is shared across layers (paper §3.2: "can be shared across multiple Focus layers"), zeroing
padded positions, and the final norm of a pre-norm stack.

x (B, L, D), padding_mask (B, L) bool or None -> (B, L, D)

Streaming (:meth:`FocusStack.forward_stream`): the next n positions (B, n, D) of a batch of
streams — one token while decoding, a prompt, or a segment of a long file — given the state that
``incremental_state`` holds after the previous ones; the stream position lives there too. The
output equals the parallel forward's on the whole stream, whatever the cut points.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import validate
from .focus_layer import FocusBlock
from .global_filter import build_filter
from .hypernetwork import GlobalHyperConv
from .streaming import IncrementalState, StreamingModule


class FocusStack(StreamingModule):
    def __init__(self, cfg):
        super().__init__()
        validate(cfg)
        adaptive = cfg.focus_filter == "adaptive"
        self.bin_size = cfg.bin_size if cfg.focus_filter != "ema" else 1
        self.multiple = math.lcm(self.bin_size, cfg.chunk_size)
        self.shared_hyper = self._global(cfg) if adaptive and cfg.share_hypernet else None
        own = adaptive and not cfg.share_hypernet
        self.blocks = nn.ModuleList(
            [FocusBlock(cfg, build_filter(cfg, self._global(cfg) if own else None)) for _ in range(cfg.decoder_layers)]
        )
        dim = cfg.decoder_embed_dim
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=not cfg.no_affine_final_norm) if cfg.normalize_before else None

    @staticmethod
    def _global(cfg) -> GlobalHyperConv:
        return GlobalHyperConv(cfg.decoder_embed_dim, cfg.hyper_kernel_size, cfg.bin_size, cfg.oversampling,
                               cfg.hyper_squash, cfg.hyper_smooth)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        length = x.size(1)
        pad = (-length) % self.multiple
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))  # (B, L + pad, D)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (0, pad), value=True)
        hyper = self.shared_hyper(x.transpose(1, 2)) if self.shared_hyper is not None else None
        for block in self.blocks:
            x = block(x, hyper, padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x[:, :length]

    def position(self, incremental_state: Optional[IncrementalState]) -> int:
        """How many positions of the streams ``incremental_state`` has seen (0 when empty or None)."""
        saved = self.get_incremental_state(incremental_state, "position")
        return 0 if saved is None else int(saved["pos"])

    def forward_stream(self, x: Tensor, incremental_state: IncrementalState,
                       padding_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, n, D): the next n positions of the streams -> (B, n, D); updates the state.

        padding_mask (B, n): pads are treated as in :meth:`forward` (zeroed input, masked keys).
        """
        pos = self.position(incremental_state)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        hyper = None
        if self.shared_hyper is not None:
            hyper = self.shared_hyper.forward_stream(x.transpose(1, 2), pos, incremental_state)  # (B, T, D, O)
        for block in self.blocks:
            x = block.forward_stream(x, hyper, pos, incremental_state, padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        self.set_incremental_state(incremental_state, "position", {"pos": torch.tensor(pos + x.size(1))})
        return x
