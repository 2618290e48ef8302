"""Images as sequences of normalized pixel values, batched the way fairseq's trainer expects.

An item is one image flattened to L pixels (already permuted for pMNIST) of C uint8 channels; the
collater scales to [0, 1] and normalizes, x = (p / 255 − mean) / std, giving
``net_input = {"src_pixels": (B, L, C) float}`` and ``target = (B,)`` class indices.
"""
from typing import Dict, List

import numpy as np
import torch
from fairseq.data import FairseqDataset
from torch import Tensor

from .equal_batches import equal_length_batches


class PixelSequenceDataset(FairseqDataset):
    def __init__(self, pixels: Tensor, labels: Tensor, mean: float, std: float, shuffle: bool):
        """pixels (N, L, C) uint8, labels (N,) int64."""
        super().__init__()
        if std <= 0:
            raise ValueError(f"--pixel-std must be positive, got {std}")
        self.pixels, self.labels = pixels, labels
        self.mean, self.std, self.shuffle = mean, std, shuffle

    def __len__(self) -> int:
        return self.pixels.size(0)

    def __getitem__(self, index: int) -> Dict[str, object]:
        return {"id": index, "pixels": self.pixels[index], "label": self.labels[index]}

    def collater(self, samples: List[Dict[str, object]]) -> Dict[str, object]:
        if not samples:
            return {}
        pixels = torch.stack([s["pixels"] for s in samples])  # (B, L, C) uint8
        src = (pixels.float() / 255.0 - self.mean) / self.std
        return {
            "id": torch.tensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": pixels.size(0) * pixels.size(1),  # pixels in the batch
            "net_input": {"src_pixels": src},
            "target": torch.stack([s["label"] for s in samples]),
        }

    def num_tokens(self, index: int) -> int:
        return self.pixels.size(1)

    def size(self, index: int) -> int:
        return self.pixels.size(1)

    def batch_by_size(self, indices: np.ndarray, max_tokens=None, max_sentences=None,
                      required_batch_size_multiple: int = 1) -> List[np.ndarray]:
        """Every image is scored (data/equal_batches.py: fairseq's batcher drops a final partial batch)."""
        return equal_length_batches(indices, self.pixels.size(1), max_tokens, max_sentences,
                                    required_batch_size_multiple)

    def ordered_indices(self) -> np.ndarray:
        """A random order when shuffling (fairseq seeds numpy around this call), else file order."""
        if self.shuffle:
            return np.random.permutation(len(self))
        return np.arange(len(self))
