"""The hypernetwork H that turns the input into IIR coefficients Θ (paper eq. 1-3).

* :class:`GlobalHyperConv` — H_global (eq. 2): a regularized causal long convolution per channel
  (Fu et al. 2023), then max pooling *inside each time bin* of R samples down to O values, so no
  pooling window straddles a bin boundary. Shareable by all layers of a model.
* :class:`LocalHyperMLP` — H_local (eq. 3), one per layer: a 2-layer MLP O -> hidden -> 2F with
  sigmoid activations; the final sigmoid puts every θ in (0, 1), which keeps both poles inside the
  unit circle (see ``ops/iir.py``). Then the causality shift: bin i gets the Θ computed from bin i−1
  and bin 0 gets a learned default.

Init: Xavier (Glorot & Bengio 2010) for the first layer; the last layer follows the hyperfan-in
rule of Chang et al. 2020, Var(W) = 1 / (fan_in_hyper · fan_in_target), where the target of each
generated coefficient pair is an order-2 recursion with fan-in 2.

Shapes: x (B, D, L) -> e (B, Nbins, D, O) -> Θ (B, Nbins, D, F, 2).
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.long_conv import causal_conv, regularize_kernel


class GlobalHyperConv(nn.Module):
    def __init__(self, dim: int, kernel_size: int, bin_size: int, oversampling: int,
                 squash_lambda: float, smooth_width: int):
        super().__init__()
        self.bin_size, self.oversampling = bin_size, oversampling
        self.squash_lambda, self.smooth_width = squash_lambda, smooth_width
        self.kernel = nn.Parameter(torch.randn(dim, kernel_size) / math.sqrt(kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        bsz, dim, length = x.shape
        nbins = length // self.bin_size
        kernel = regularize_kernel(self.kernel, self.squash_lambda, self.smooth_width)
        y = causal_conv(x, kernel)  # (B, D, L)
        y = y.reshape(bsz * dim * nbins, 1, self.bin_size)  # one row per (batch, channel, bin)
        e = F.adaptive_max_pool1d(y, self.oversampling)  # windows stay inside the bin
        return e.view(bsz, dim, nbins, self.oversampling).transpose(1, 2)  # (B, Nbins, D, O)


class LocalHyperMLP(nn.Module):
    def __init__(self, dim: int, oversampling: int, hidden: int, num_filters: int):
        super().__init__()
        self.num_filters = num_filters
        self.fc1 = nn.Linear(oversampling, hidden)
        self.fc2 = nn.Linear(hidden, 2 * num_filters)
        # Θ of bin 0, which has no previous bin to look at
        self.first_bin_logits = nn.Parameter(torch.empty(dim, num_filters, 2))
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        nn.init.normal_(self.fc2.weight, std=math.sqrt(1.0 / (hidden * 2)))  # hyperfan-in
        nn.init.zeros_(self.fc2.bias)
        nn.init.uniform_(self.first_bin_logits, -1.0, 1.0)

    def unshifted(self, e: Tensor) -> Tensor:
        """Θ computed from each bin's own embedding: (B, Nbins, D, O) -> (B, Nbins, D, F, 2)."""
        theta = torch.sigmoid(self.fc2(torch.sigmoid(self.fc1(e))))
        return theta.view(*e.shape[:-1], self.num_filters, 2)

    def first_bin(self, bsz: int) -> Tensor:
        return torch.sigmoid(self.first_bin_logits).expand(bsz, 1, -1, -1, -1)

    def forward(self, e: Tensor) -> Tensor:
        """Causal Θ: bin i is filtered with coefficients computed from bin i−1."""
        theta = self.unshifted(e)
        return torch.cat([self.first_bin(e.size(0)).to(theta.dtype), theta[:, :-1]], dim=1)
