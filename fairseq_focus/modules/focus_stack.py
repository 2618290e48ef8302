"""A stack of Focus blocks over embedded inputs, shared by the LM decoder and the classifier.

Responsibilities kept out of the blocks: right-padding the sequence to whole bins and chunks (which
cannot change earlier positions of a causal model; a bidirectional filter is told where that padding is), computing the hypernetwork's global part once
when it is shared across layers (paper §3.2: "can be shared across multiple Focus layers"), zeroing
padded positions, the final norm of a pre-norm stack, and activation checkpointing per block
(``--checkpoint-activations`` / ``--offload-activations``, fairseq's ``checkpoint_wrapper`` as in its
transformer: each block keeps only its inputs and recomputes the rest in backward).

x (B, L, D), padding_mask (B, L) bool or None -> (B, L, D)

Streaming (:meth:`FocusStack.forward_stream`): the next n positions (B, n, D) of a batch of
streams — one token while decoding, a prompt, or a segment of a long file — given the state that
``incremental_state`` holds after the previous ones; the stream position lives there too. The
output equals the parallel forward's on the whole stream, whatever the cut points.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from torch import Tensor, nn

from .bidirectional_filter import build_block_filter
from .config import HYPER_FILTERS, PER_TOKEN_FILTERS, upgrade_renamed, validate
from .focus_layer import FocusBlock
from .global_filter import build_encoder, iir_core, rename_prefix
from .streaming import IncrementalState, StreamingModule


class FocusStack(StreamingModule):
    def __init__(self, cfg):
        super().__init__()
        upgrade_renamed(cfg)
        validate(cfg)
        adaptive = cfg.focus_filter in HYPER_FILTERS
        # Θ per token (ema, selective) or no filter at all (none): no bins
        self.bin_size = cfg.bin_size if cfg.focus_filter not in PER_TOKEN_FILTERS else 1
        self.multiple = math.lcm(self.bin_size, cfg.chunk_size)
        self.reads_ahead = bool(getattr(cfg, "bidirectional_filter", False))  # a filter that reads later positions
        self.shared_encoder = build_encoder(cfg) if adaptive and not cfg.no_share_hypernet else None
        own = adaptive and cfg.no_share_hypernet
        self.blocks = nn.ModuleList(
            [FocusBlock(cfg, build_block_filter(cfg, build_encoder(cfg) if own else None)) for _ in range(cfg.decoder_layers)]
        )
        if cfg.checkpoint_activations or cfg.offload_activations:
            for block in self.blocks:  # patches block.forward only: forward_stream (decoding) keeps no graph anyway
                checkpoint_wrapper(block, offload_to_cpu=cfg.offload_activations)
        dim = cfg.decoder_embed_dim
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=not cfg.no_affine_final_norm) if not cfg.no_normalize_before else None

    def _pad(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Zero the pads and right-pad (B, L, D) to (B, L + pad, D), a whole number of bins and chunks. With
        a filter that reads later positions (``--bidirectional-filter``) the mask marks this padding too."""
        pad = (-x.size(1)) % self.multiple
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        elif pad and self.reads_ahead:
            padding_mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, L)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))  # (B, L + pad, D)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (0, pad), value=True)
        return x, padding_mask

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        length = x.size(1)
        x, padding_mask = self._pad(x, padding_mask)
        e = self.shared_encoder(x) if self.shared_encoder is not None else None  # (B, Nbins, D, O)
        for block in self.blocks:
            x = block(x, e, padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x[:, :length]

    def theta(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> List[Tensor]:
        """Θ (B, Nbins, D, F, 2) each layer's IIR filter applies in :meth:`forward` of x (B, L, D);
        Nbins counts the bins of the padded sequence. Raises for a stack of EMA filters. With
        ``--filter-input product`` each Θ is the one applied to the key-value product channels; with
        ``both`` it is the x path's (the paper's Θ), the product path's stays at ``filter.product.theta``."""
        if not all(iir_core(block.attn.filter) is not None for block in self.blocks):
            raise ValueError("Θ needs IIR filters (--focus-filter adaptive or static); this model uses the EMA or none")
        x, padding_mask = self._pad(x, padding_mask)
        e = self.shared_encoder(x) if self.shared_encoder is not None else None
        thetas = []
        for block in self.blocks:
            thetas.append(block.attn.filter.theta(block.attn.filter_input(x), e))
            x = block(x, e, padding_mask)
        return thetas

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
        e = None
        if self.shared_encoder is not None:
            e = self.shared_encoder.forward_stream(x, pos, incremental_state)  # (B, T, D, O)
        for block in self.blocks:
            x = block.forward_stream(x, e, pos, incremental_state, padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        self.set_incremental_state(incremental_state, "position", {"pos": torch.tensor(pos + x.size(1))})
        return x

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        """Checkpoints from before the rename kept the shared encoder under ``shared_hyper``."""
        rename_prefix(state_dict, f"{name}.shared_hyper.", f"{name}.shared_encoder.")
