"""A plain pre-norm transformer encoder over embedded inputs: the attention-only baseline of the
pixel classifier (``focus_classifier --backbone transformer``, arch ``focus_classifier_transformer``).

    x (B, L, D) + P[0 … L−1] (learned positions) -> Dropout -> N × TransformerEncoderLayer -> LayerNorm

Each layer is PyTorch's ``nn.TransformerEncoderLayer`` (Vaswani et al. 2017, pre-norm as in
fairseq's ``--encoder-normalize-before``): full, unmasked self-attention over the L positions, then a
GELU FFN. Nothing here is causal; the layout is batch first, as the Focus stack's.
"""
import torch
from torch import Tensor, nn


class TransformerEncoderStack(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, dropout: float, max_len: int):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"--encoder-attention-heads {heads} must divide --decoder-embed-dim {dim}")
        self.positions = nn.Parameter(torch.empty(max_len, dim).normal_(0.0, 0.02))  # P (L_max, D)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(layers)
        ])
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, D) -> (B, L, D); L at most the ``max_len`` it was built for."""
        if x.size(1) > self.positions.size(0):
            raise ValueError(f"sequence of {x.size(1)} positions, the encoder was built for {self.positions.size(0)}")
        x = self.dropout(x + self.positions[: x.size(1)])
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)
