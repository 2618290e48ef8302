"""Batches of equal-length items in which every item is scored.

fairseq 0.12's generic ``batch_by_size`` rounds each batch down to ``--required-batch-size-multiple``
(8 by default) and drops the remainder: 500 held-out recall examples in batches of 32 became 480 + 16,
so 4 were never scored; 20 images in batches of 8 became 16. Datasets whose items all have one length
batch with :func:`equal_length_batches` instead (``PixelSequenceDataset``, the recall task's dataset).
"""
from typing import List, Optional

import numpy as np


def equal_length_batches(indices: np.ndarray, length: int, max_tokens: Optional[int] = None,
                         max_sentences: Optional[int] = None, required_batch_size_multiple: int = 1) -> List[np.ndarray]:
    """Consecutive runs of ``indices``; the last may be smaller. Batch size = min(max_sentences,
    max_tokens // length), rounded down to a multiple of ``required_batch_size_multiple`` when it is at
    least that."""
    limits = [n for n in (max_sentences, max_tokens // length if max_tokens else None) if n]
    if not limits:
        raise ValueError("set --batch-size (or --max-tokens)")
    bsz = max(1, min(limits))
    if bsz >= required_batch_size_multiple:
        bsz -= bsz % required_batch_size_multiple
    indices = np.asarray(indices, dtype=np.int64)
    return [indices[k:k + bsz] for k in range(0, len(indices), bsz)]
