"""``focus_classifier``: a stack of Focus blocks that classifies a sequence of pixels (paper §5.3).

    src_pixels (B, L, C) -> Linear(C, D) -> Dropout -> FocusStack (blocks + final norm) (B, L, D)
                         -> pool over time: mean over the L positions, or the last position (B, D)
                         -> Linear(D, num_classes) logits

Each pixel's C normalized values go through one learned linear map to D (as MEGA's LRA image task
embeds pixels). The whole image is the input, so a filter may read later pixels: the image archs run
the selective head both ways (``--bidirectional-filter``), and the ``_paper`` archs keep the paper's
``--iir-mode paper`` (eq. 6 as the paper computes it, looking ahead inside a bin, as its Table 4 numbers
were produced); ``--iir-mode causal`` / ``carry`` without ``--bidirectional-filter``, with ``--pooling
last`` (the ``_causal`` archs), give a model that reads the label after a strictly left-to-right pass.

Heads (``--focus-filter``; ``models/focus_lm.py`` names the same settings for the LM):

* ``selective`` with ``--iir-mode carry --theta-param stable``: Θ and an input gain per pixel and channel
  (the LM's default head). Causal: with ``--pooling last`` the label is read after one left-to-right pass.
* ``static`` (Focus-H, stable + carry): one learned filter per channel, causal.
* ``--bidirectional-filter``: each block's filter also runs, with its own parameters, over the
  time-reversed image, and the two are summed (MEGA's bidirectional EMA for its image models;
  ``modules/bidirectional_filter.py``); every position then sees the whole image.
* ``adaptive`` in ``--iir-mode paper``: the paper's hypernetwork head as its Table 4 ran it (``_paper``).
* ``--backbone transformer``: no Focus block at all, a pre-norm transformer encoder of the same width
  (``modules/transformer_encoder.py``), the attention-only baseline.

Registered through ``--user-dir fairseq_focus``: model ``focus_classifier`` and archs ``focus_smnist``,
``focus_pmnist``, ``focus_scifar`` with their ``_static`` / ``_ema`` variants, today's settings again
as ``…_paper`` names (below), and the small ``focus_classifier_*`` archs the digits study compares.

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
from fairseq.models import ARCH_CONFIG_REGISTRY, BaseFairseqModel, register_model, register_model_architecture
from torch import Tensor, nn

from ..modules.focus_stack import FocusStack
from ..modules.transformer_encoder import TransformerEncoderStack
from ..ops.precision import model_autocast
from ..ops.iir import MODES
from .arch import FocusModelConfig, fill_defaults, set_defaults, stack_field

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last")
BACKBONES = ("focus", "transformer")


@dataclass
class FocusClassifierConfig(FocusModelConfig):
    iir_mode: ChoiceEnum(list(MODES)) = stack_field("iir_mode", default="paper")  # the whole image is the input
    pooling: ChoiceEnum(list(POOLINGS)) = field(
        default="mean", metadata={"help": "mean: average the features of all positions; last: the last position's"}
    )
    backbone: ChoiceEnum(list(BACKBONES)) = field(
        default="focus", metadata={"help": "focus: the stack of Focus blocks; transformer: a pre-norm transformer "
                                           "encoder of --decoder-layers, --decoder-embed-dim and "
                                           "--decoder-ffn-embed-dim (full attention, learned positions)"}
    )
    encoder_attention_heads: int = field(default=4, metadata={"help": "attention heads of --backbone transformer"})


def _describe(seed: int) -> str:
    return "no permutation (raster order)" if seed < 0 else f"the permutation of seed {seed}"


@register_model("focus_classifier", dataclass=FocusClassifierConfig)
class FocusClassifier(BaseFairseqModel):
    def __init__(self, cfg, in_channels: int, num_classes: int, permutation: Optional[np.ndarray],
                 permute_seed: Optional[int], seq_len: Optional[int] = None):
        super().__init__()
        dim = cfg.decoder_embed_dim
        self.pooling = cfg.pooling
        self.embed_pixels = nn.Linear(in_channels, dim)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.autocast_bf16 = cfg.autocast_bf16
        self.stack = _backbone(cfg, seq_len)
        self.head = nn.Linear(dim, num_classes)
        perm = torch.as_tensor(permutation, dtype=torch.long) if permutation is not None else torch.empty(0, dtype=torch.long)
        self.register_buffer("pixel_permutation", perm)
        self.register_buffer("permute_seed", torch.tensor(-1 if permute_seed is None else permute_seed, dtype=torch.long))

    @classmethod
    def build_model(cls, cfg, task):
        model = cls(cfg, task.channels, task.cfg.num_classes, task.permutation, task.cfg.permute_seed, task.seq_len)
        n = sum(p.numel() for p in model.parameters())
        logger.info(
            "focus_classifier: %d parameters (%.2fM), backbone=%s, filter=%s, bidirectional=%s, iir_mode=%s, "
            "theta=%s, pooling=%s, layers=%d, D=%d, bin=%d, chunk=%d, sequence length %d",
            n, n / 1e6, cfg.backbone, cfg.focus_filter, bool(cfg.bidirectional_filter), cfg.iir_mode,
            cfg.theta_param, cfg.pooling, cfg.decoder_layers, cfg.decoder_embed_dim, cfg.bin_size, cfg.chunk_size,
            task.seq_len,
        )
        return model

    def features(self, src_pixels: Tensor) -> Tensor:
        """src_pixels (B, L, C) -> the backbone's output per position (B, L, D), before pooling."""
        with model_autocast(self.autocast_bf16, src_pixels.device):
            return self.stack(self.embed_dropout(self.embed_pixels(src_pixels)))  # (B, L, D)

    def forward(self, src_pixels: Tensor) -> Tensor:
        """src_pixels (B, L, C) normalized pixel values -> logits (B, num_classes)."""
        x = self.features(src_pixels)  # (B, L, D)
        with model_autocast(self.autocast_bf16, src_pixels.device):
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


def _backbone(cfg, seq_len: Optional[int]) -> nn.Module:
    """The Focus stack, or with ``--backbone transformer`` the transformer encoder (it needs the length)."""
    if cfg.backbone == "focus":
        return FocusStack(cfg)
    if seq_len is None:
        raise ValueError("--backbone transformer needs the sequence length (its learned positions)")
    return TransformerEncoderStack(cfg.decoder_embed_dim, cfg.decoder_layers, cfg.encoder_attention_heads,
                                   cfg.decoder_ffn_embed_dim, cfg.dropout, seq_len)


# ---- named architectures -------------------------------------------------------------------------

def base_architecture(args) -> None:
    """Fill every field an arch left unset with the config's default."""
    fill_defaults(args, FocusClassifierConfig)


def _image_arch(args, filt: str, length: int) -> None:
    """Paper §5.3: hidden dimension 512 and 6 layers, following S4 (the ``_paper`` archs as they are;
    the defaults below set their head and chunk first).

    The paper gives no other widths for images: the value/gate dim H = 2·D and the z dim 128 follow
    MEGA's ratios, the FFN is D wide as in MEGA's LRA image model. Bins of L/4 samples (the paper's
    NFFT = L/4, Table 6); one attention chunk spans the whole image (M = L), so no padding is needed
    (L is a multiple of both); the global conv kernel covers the whole image. The ``_ema_paper`` archs
    are MEGA's block (``--block-wiring mega``), causal; the ``_ema`` archs run its EMA both ways, as
    MEGA's image models do (their attention stays causal inside a chunk: README, departures).
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


# The reproduction setting (parameter counts as fairseq-train logs them; tests check them):
# focus_smnist_paper / focus_pmnist_paper 16.98M, _static_paper 16.58M, _ema_paper 16.38M;
# focus_scifar_paper (3 channels) 17.11M, _static_paper 16.58M, _ema_paper 16.39M.
for _name, _length in (("smnist", 784), ("pmnist", 784), ("scifar", 1024)):
    for _suffix, _filter in (("_paper", "adaptive"), ("_static_paper", "static"), ("_ema_paper", "ema")):
        register_model_architecture("focus_classifier", f"focus_{_name}{_suffix}")(
            lambda args, filt=_filter, length=_length: _image_arch(args, filt, length)
        )


# ---- the small archs (the digits study: recipes/smnist/digits_study.py) -------------------------------

# Each head at the LM study's Θ map and mode (stable + carry); MEGA's block for the EMA; the
# transformer baseline. Sizes are the config's (2 blocks, D 128) unless the command line gives others.
SMALL_HEADS = {
    "selective": {"focus_filter": "selective", "iir_mode": "carry", "theta_param": "stable", "block_wiring": "paper"},
    "static": {"focus_filter": "static", "iir_mode": "carry", "theta_param": "stable", "block_wiring": "paper"},
    "ema": {"focus_filter": "ema", "iir_mode": "carry", "block_wiring": "mega"},
    "transformer": {"backbone": "transformer"},
}


def _small(args, head: str, extra=None) -> None:
    set_defaults(args, {**SMALL_HEADS[head], **(extra or {})})
    base_architecture(args)


@register_model_architecture("focus_classifier", "focus_classifier_paper")
def focus_classifier_paper(args) -> None:
    """The model's own defaults before the heads study: the hypernetwork head in ``--iir-mode paper``,
    eq. 5's Θ, mean pooling."""
    base_architecture(args)


for _head in ("selective", "static", "ema", "transformer"):
    register_model_architecture("focus_classifier", f"focus_classifier_{_head}")(
        lambda args, head=_head: _small(args, head))


def focus_classifier_default(args) -> None:
    """``--arch focus_classifier``: the head the digits study measured best (selective, both ways, mean
    pooling) at the config's sizes; the model's earlier defaults are ``focus_classifier_paper``."""
    _small(args, "selective", {"bidirectional_filter": True, "pooling": "mean"})


# fairseq registers a model's own name as an arch with the dataclass's defaults; replace it, as focus_lm does
ARCH_CONFIG_REGISTRY["focus_classifier"] = focus_classifier_default


# The image archs' defaults since issue 26 (docs/RESULTS.md, "Images"; recipes/smnist/README.md): on the
# real 8x8 digits with chunks of a quarter image, the selective head run both ways scored above MEGA's
# block (its EMA both ways) and a transformer encoder at equal parameters. Chunks of four image rows
# (112 pixels of 784, 128 of 1024) make long-range structure pass through the filter; Θ per pixel from a
# rank-32 projection (D/16, as the paper-size LMs).
IMAGE_CHUNK = {784: 112, 1024: 128}
IMAGE_HEADS = {
    "": ("selective", {"bidirectional_filter": True, "pooling": "mean", "selective_rank": 32}),
    "_causal": ("selective", {"pooling": "last", "selective_rank": 32}),  # left to right, label at the last pixel
    "_static": ("static", {"bidirectional_filter": True, "pooling": "mean"}),
    "_ema": ("ema", {"bidirectional_filter": True, "pooling": "mean"}),  # MEGA's block, EMA both ways (as MEGA)
    "_transformer": ("transformer", {"pooling": "mean", "decoder_ffn_embed_dim": 1536, "encoder_attention_heads": 8}),
}


def _image_default(args, suffix: str, length: int) -> None:
    """Paper §5.3's size (6 blocks, D 512, H 1024, z 128, FFN 512) with a head of :data:`IMAGE_HEADS`."""
    head, extra = IMAGE_HEADS[suffix]
    set_defaults(args, {**SMALL_HEADS[head], **extra, "chunk_size": IMAGE_CHUNK[length]})
    _image_arch(args, SMALL_HEADS[head].get("focus_filter", "adaptive"), length)


# Parameter counts (fairseq-train's "focus_classifier: N parameters"; tests check them):
# focus_smnist / focus_pmnist 17.36M, _causal 16.96M, _static 16.58M, _ema 16.57M, _transformer 16.17M;
# focus_scifar (3 channels) 17.36M, _causal 16.97M, _static 16.58M, _ema 16.57M, _transformer 16.30M.
for _name, _length in (("smnist", 784), ("pmnist", 784), ("scifar", 1024)):
    for _suffix in IMAGE_HEADS:
        register_model_architecture("focus_classifier", f"focus_{_name}{_suffix}")(
            lambda args, suffix=_suffix, length=_length: _image_default(args, suffix, length)
        )
