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
        """Consecutive runs of ``indices`` (every item has the same length L); the last may be smaller.

        Batch size = min(max_sentences, max_tokens // L), rounded down to a multiple of
        ``required_batch_size_multiple`` when it is at least that. Overridden because fairseq's generic
        batcher drops a final partial batch when the multiple is > 1 (20 items, batches of 8 -> 16
        scored), and every test image must be scored.
        """
        limits = [n for n in (max_sentences, max_tokens // self.pixels.size(1) if max_tokens else None) if n]
        if not limits:
            raise ValueError("set --batch-size (or --max-tokens) for the pixel task")
        bsz = max(1, min(limits))
        if bsz >= required_batch_size_multiple:
            bsz -= bsz % required_batch_size_multiple
        indices = np.asarray(indices, dtype=np.int64)
        return [indices[k:k + bsz] for k in range(0, len(indices), bsz)]

    def ordered_indices(self) -> np.ndarray:
        """A random order when shuffling (fairseq seeds numpy around this call), else file order."""
        if self.shuffle:
            return np.random.permutation(len(self))
        return np.arange(len(self))
