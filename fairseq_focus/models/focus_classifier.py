"""``focus_classifier``: a stack of Focus blocks that classifies a sequence of pixels (paper §5.3).

    src_pixels (B, L, C) -> Linear(C, D) -> Dropout -> FocusStack (blocks + final norm) (B, L, D)
                         -> pool over time: mean over the L positions, or the last position (B, D)
                         -> Linear(D, num_classes) logits

Each pixel's C normalized values go through one learned linear map to D (as MEGA's LRA image task
embeds pixels). The whole image is the input, so the filter may look ahead inside a bin: the image
archs default to ``--iir-mode paper`` (eq. 6 as the paper computes it and as its Table 4 numbers
were produced); ``--iir-mode causal`` / ``carry`` with ``--pooling last`` give a model in which the
label is read after a strictly left-to-right pass.

Registered through ``--user-dir fairseq_focus``: model ``focus_classifier`` (small default) and archs
``focus_smnist``, ``focus_pmnist``, ``focus_scifar``, each also as ``_static`` (Focus-H: learned Θ,
the paper's ablation) and ``_ema`` (MEGA: MEGA's block wiring with its multi-head EMA, causal).

The task's pixel permutation (pMNIST) is kept in the buffers ``pixel_permutation`` / ``permute_seed``
so it travels inside every checkpoint; ``load_state_dict`` refuses a checkpoint whose permutation
differs from the one the current task applies.
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor, nn

from ..modules.focus_stack import FocusStack
from ..ops.precision import model_autocast
from ..ops.iir import MODES
from .arch import FocusModelConfig, fill_defaults, set_defaults, stack_field

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last")


@dataclass
class FocusClassifierConfig(FocusModelConfig):
    iir_mode: ChoiceEnum(list(MODES)) = stack_field("iir_mode", default="paper")  # the whole image is the input
    pooling: ChoiceEnum(list(POOLINGS)) = field(
        default="mean", metadata={"help": "mean: average the features of all positions; last: the last position's"}
    )


def _describe(seed: int) -> str:
    return "no permutation (raster order)" if seed < 0 else f"the permutation of seed {seed}"


@register_model("focus_classifier", dataclass=FocusClassifierConfig)
class FocusClassifier(BaseFairseqModel):
    def __init__(self, cfg, in_channels: int, num_classes: int, permutation: Optional[np.ndarray],
                 permute_seed: Optional[int]):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.pooling = cfg.pooling
        self.embed_pixels = nn.Linear(in_channels, dim)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.autocast_bf16 = cfg.autocast_bf16
        self.stack = FocusStack(cfg)
        self.head = nn.Linear(dim, num_classes)
        perm = torch.as_tensor(permutation, dtype=torch.long) if permutation is not None else torch.empty(0, dtype=torch.long)
        self.register_buffer("pixel_permutation", perm)
        self.register_buffer("permute_seed", torch.tensor(-1 if permute_seed is None else permute_seed, dtype=torch.long))

    @classmethod
    def build_model(cls, cfg, task):
        model = cls(cfg, task.channels, task.cfg.num_classes, task.permutation, task.cfg.permute_seed)
        logger.info(
            "focus_classifier: %d parameters (%.2fM), filter=%s, iir_mode=%s, pooling=%s, layers=%d, D=%d, "
            "bin=%d, chunk=%d, sequence length %d",
            sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters()) / 1e6,
            cfg.focus_filter, cfg.iir_mode, cfg.pooling, cfg.decoder_layers, cfg.decoder_embed_dim,
            cfg.bin_size, cfg.chunk_size, task.seq_len,
        )
        return model

    def forward(self, src_pixels: Tensor) -> Tensor:
        """src_pixels (B, L, C) normalized pixel values -> logits (B, num_classes)."""
        with model_autocast(self.autocast_bf16, src_pixels.device):
            x = self.embed_dropout(self.embed_pixels(src_pixels))  # (B, L, D)
            x = self.stack(x)  # (B, L, D)
            pooled = x.mean(dim=1) if self.pooling == "mean" else x[:, -1]  # (B, D)
            return self.head(pooled)

    def load_state_dict(self, state_dict, strict: bool = True, model_cfg=None, args=None):
        """Refuse a checkpoint trained on differently permuted pixels than this task feeds."""
        saved = state_dict.get("pixel_permutation")
        if saved is not None:
            saved_seed = int(state_dict.get("permute_seed", torch.tensor(-1)))
            mine = self.pixel_permutation
            if saved.shape != mine.shape or not torch.equal(saved.to(mine.device), mine):
                raise ValueError(
                    f"pixel permutation mismatch: the checkpoint was trained with {_describe(saved_seed)}, "
                    f"but this task applies {_describe(int(self.permute_seed))}; evaluate with the training "
                    f"permutation ({'--permute-seed ' + str(saved_seed) if saved_seed >= 0 else 'no --permute-seed'})"
                )
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


# ---- named architectures -------------------------------------------------------------------------

def base_architecture(args) -> None:
    """Fill every field an arch left unset with the config's default."""
    fill_defaults(args, FocusClassifierConfig)


def _image_arch(args, filt: str, length: int) -> None:
    """Paper §5.3: hidden dimension 512 and 6 layers, following S4.

    The paper gives no other widths for images: the value/gate dim H = 2·D and the z dim 128 follow
    MEGA's ratios, the FFN is D wide as in MEGA's LRA image model. Bins of L/4 samples (the paper's
    NFFT = L/4, Table 6); one attention chunk spans the whole image (M = L), so no padding is needed
    (L is a multiple of both); the global conv kernel covers the whole image. The ``_ema`` archs are
    MEGA's block (``--block-wiring mega``), causal: MEGA's image models use a bidirectional EMA and
    non-causal attention (README, departures).
    """
    set_defaults(args, {
        "focus_filter": filt,
        "block_wiring": "mega" if filt == "ema" else "paper",
        "decoder_layers": 6,
        "decoder_embed_dim": 512,
        "decoder_hidden_dim": 1024,
        "decoder_ffn_embed_dim": 512,
        "decoder_z_dim": 128,
        "bin_size": length // 4,
        "chunk_size": length,
        "hyper_kernel_size": length,
    })
    base_architecture(args)


# Parameter counts (the "focus_classifier: N parameters" line fairseq-train logs; tests check them):
# focus_smnist / focus_pmnist 16.98M, _static 16.58M, _ema 16.38M;
# focus_scifar (3 channels) 17.11M, _static 16.58M, _ema 16.39M.
for _name, _length in (("smnist", 784), ("pmnist", 784), ("scifar", 1024)):
    for _suffix, _filter in (("", "adaptive"), ("_static", "static"), ("_ema", "ema")):
        register_model_architecture("focus_classifier", f"focus_{_name}{_suffix}")(
            lambda args, filt=_filter, length=_length: _image_arch(args, filt, length)
        )
