"""MEGA's normalized feed-forward block (Ma et al. 2022, §3.4): x + Dropout(W2 · Dropout_h(SiLU(W1 · Norm(x))))."""
from torch import Tensor, nn
import torch.nn.functional as F


class NormalizedFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, hidden_dropout: float, prenorm: bool):
        super().__init__()
        self.prenorm = prenorm
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        for fc in (self.fc1, self.fc2):  # MEGA's init: N(0, 0.02), zero bias
            nn.init.normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        if self.prenorm:
            x = self.norm(x)
        x = self.dropout(self.fc2(self.hidden_dropout(F.silu(self.fc1(x)))))
        x = x + residual
        return x if self.prenorm else self.norm(x)
