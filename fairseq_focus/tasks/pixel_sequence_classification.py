"""``pixel_sequence_classification``: classify an image read as a sequence of pixels (sMNIST, pMNIST, sCIFAR).

An H×W image with C channels becomes a sequence of L = H·W pixels in raster order, each a vector of
C values normalized as (p / 255 − mean) / std (``--pixel-mean``, ``--pixel-std``); ``--grayscale``
turns RGB into one luma channel first. ``--permute-seed S`` reorders the L positions of every image
by the fixed permutation of seed S (pMNIST; see ``data/pixel_splits.pixel_permutation``).

The permutation is handed to the model at build time and saved in its state dict, so a checkpoint
carries the permutation it was trained with; loading it into a task that permutes differently
(another seed, or none) is refused (``FocusClassifier.load_state_dict``).

Data: a directory prepared by ``python -m fairseq_focus.data.prepare_pixels`` (the recipes'
prepare.sh) with ``{train,valid,test}-{images,labels}.idx``. Accuracy is logged by the
``focus_classification`` criterion.
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.idx import IdxError
from ..data.pixel_dataset import PixelSequenceDataset
from ..data.pixel_splits import image_shape, pixel_permutation, read_split, to_grayscale

logger = logging.getLogger(__name__)


@dataclass
class PixelSequenceClassificationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "prepared data directory ({split}-images.idx, {split}-labels.idx)"})
    num_classes: int = field(default=10, metadata={"help": "number of classes; labels must lie in 0 … num_classes−1"})
    permute_seed: Optional[int] = field(
        default=None, metadata={"help": "permute the pixel positions with the fixed permutation of this seed (pMNIST)"}
    )
    pixel_mean: float = field(default=0.5, metadata={"help": "mean subtracted from pixel values scaled to [0, 1]"})
    pixel_std: float = field(default=0.5, metadata={"help": "std the centred pixel values are divided by"})
    grayscale: bool = field(default=False, metadata={"help": "convert RGB images to one luma channel (BT.601)"})
    seed: int = II("common.seed")


@register_task("pixel_sequence_classification", dataclass=PixelSequenceClassificationConfig)
class PixelSequenceClassificationTask(FairseqTask):
    def __init__(self, cfg: PixelSequenceClassificationConfig, shape):
        super().__init__(cfg)
        self.height, self.width, self.stored_channels = shape
        self.channels = 1 if cfg.grayscale else self.stored_channels
        self.seq_len = self.height * self.width
        self.permutation: Optional[np.ndarray] = (
            pixel_permutation(self.seq_len, cfg.permute_seed) if cfg.permute_seed is not None else None
        )

    @classmethod
    def setup_task(cls, cfg: PixelSequenceClassificationConfig, from_checkpoint: bool = False):
        shape = image_shape(cfg.data)  # (H, W, C) from the IDX header
        if cfg.grayscale and shape[2] != 3:
            raise ValueError(f"--grayscale needs RGB images (3 channels), {cfg.data} has {shape[2]}")
        logger.info("pixel task: %dx%d images, %d channel(s) -> sequences of %d pixels%s", shape[0], shape[1],
                    shape[2], shape[0] * shape[1],
                    f", permuted with seed {cfg.permute_seed}" if cfg.permute_seed is not None else "")
        return cls(cfg, shape)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, task_cfg=None,
                     data_selector=None, tpu: bool = False):
        """The signature is fairseq's call convention; epoch/combine/data_selector/tpu do not apply."""
        try:
            images, labels = read_split(self.cfg.data, split)  # (N, H, W, C) uint8, (N,)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"split {split!r}: {err}") from None
        if images.shape[1:] != (self.height, self.width, self.stored_channels):
            raise IdxError(f"{self.cfg.data}/{split}: wrong image size: {images.shape[1:]} (H, W, C), the task "
                           f"expects {(self.height, self.width, self.stored_channels)} like the other splits")
        if labels.size and (labels.min() < 0 or labels.max() >= self.cfg.num_classes):
            raise ValueError(f"{self.cfg.data}/{split}: labels span {labels.min()}…{labels.max()}, "
                             f"outside 0…{self.cfg.num_classes - 1} (--num-classes {self.cfg.num_classes})")
        if self.cfg.grayscale:
            images = to_grayscale(images)
        pixels = images.reshape(len(images), self.seq_len, self.channels)  # (N, L, C), raster order
        if self.permutation is not None:
            pixels = pixels[:, self.permutation]  # position j <- pixel perm[j]
        self.datasets[split] = PixelSequenceDataset(
            torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(labels),
            self.cfg.pixel_mean, self.cfg.pixel_std, shuffle=split == "train",
        )
        logger.info("%s: %d images", split, len(pixels))
        return self.datasets[split]

    def max_positions(self) -> int:
        return self.seq_len
