"""The hypernetwork H that turns the input into IIR coefficients Θ (paper eq. 1-3).

* :class:`HyperEncoder` — H_global (eq. 2), the hypernetwork's encoder: a regularized causal long convolution per channel
  (Fu et al. 2023), then max pooling *inside each time bin* of R samples down to O values, so no
  pooling window straddles a bin boundary. Shareable by all layers of a model.
* :class:`LocalHyperMLP` — H_local (eq. 3), one per layer: a 2-layer MLP O -> hidden -> 2F, a
  sigmoid after the first layer; the last layer's outputs are logits that ``ops/theta.py`` maps to Θ
  (``--theta-param``: ``paper`` is eq. 5's final sigmoid, θ ∈ (0, 1); ``stable`` the whole stability
  triangle). The last layer and the map run in fp32 with autocast off: in half precision the
  sigmoid rounds to 1.0 and puts a pole on the unit circle. Then the causality shift: bin i gets the
  Θ computed from bin i−1 and bin 0 gets a learned default.

Init: Xavier (Glorot & Bengio 2010) for the first layer; the last layer follows the hyperfan-in
rule of Chang et al. 2020, Var(W) = 1 / (fan_in_hyper · fan_in_target), where the target of each
generated coefficient pair is an order-2 recursion with fan-in 2. ``--theta-init ring`` sets the
last layer's bias (and the first bin's logits) so that Θ starts with its poles on a ring near the
unit circle (:func:`initial_logits`); the weights' contribution then moves them a little.

Shapes (batch first at the module boundary, like every module): x (B, L, D) -> e (B, Nbins, D, O)
-> Θ (B, Nbins, D, F, 2). The encoder turns x channels first (B, D, L) once, at the convolution op.

Streaming (decoding): the convolution continues from the last K−1 inputs; the conv outputs of the
bin in progress are kept until it completes, then pooled exactly as in the parallel path; the
embedding of the last completed bin is what the next bin's Θ is computed from.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.long_conv import causal_conv, causal_conv_stream, regularize_kernel
from ..ops.precision import compute_dtype, no_autocast
from ..ops.segments import blocks_touched
from ..ops.theta import ring_init_logits, theta_from_logits
from .streaming import IncrementalState, StreamingModule


class HyperEncoder(StreamingModule):
    """H_global: x (B, L, D) -> e (B, Nbins, D, O), the embedding every bin's Θ is computed from."""

    def __init__(self, dim: int, kernel_size: int, bin_size: int, oversampling: int,
                 squash_lambda: float, smooth_width: int):
        super().__init__()
        self.bin_size, self.oversampling = bin_size, oversampling
        self.squash_lambda, self.smooth_width = squash_lambda, smooth_width
        self.kernel = nn.Parameter(torch.randn(dim, kernel_size) / math.sqrt(kernel_size))

    def regularized_kernel(self) -> Tensor:
        """squash ∘ smooth of the kernel. Without autograd (decoding) the result is reused while
        the parameter is unchanged: the cache key holds its storage and version counter, which
        every in-place update (optimizer step, load_state_dict) bumps."""
        if torch.is_grad_enabled() and self.kernel.requires_grad:
            return regularize_kernel(self.kernel, self.squash_lambda, self.smooth_width)
        key = (self.kernel.data_ptr(), self.kernel._version, self.kernel.dtype, self.kernel.device)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            cached = (key, regularize_kernel(self.kernel, self.squash_lambda, self.smooth_width))
            self.__dict__["_kernel_cache"] = cached  # a plain attribute: not a buffer, not saved
        return cached[1]

    def pool(self, y: Tensor) -> Tensor:
        """Max-pool each bin's R conv outputs to O values: (B, D, Nbins·R) -> (B, Nbins, D, O)."""
        bsz, dim, length = y.shape
        nbins = length // self.bin_size
        y = y.reshape(bsz * dim * nbins, 1, self.bin_size)  # one row per (batch, channel, bin)
        e = F.adaptive_max_pool1d(y, self.oversampling)  # windows stay inside the bin
        return e.view(bsz, dim, nbins, self.oversampling).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, D) -> e (B, Nbins, D, O)."""
        return self.pool(causal_conv(x.transpose(1, 2), self.regularized_kernel()))  # conv on (B, D, L)

    def forward_stream(self, x: Tensor, pos: int, incremental_state: IncrementalState) -> Tensor:
        """x (B, n, D) at stream positions pos … pos+n−1 -> e (B, T, D, O).

        For each of the T bins those positions touch, the embedding of the bin *before* it (what
        its Θ is computed from; zeros before bin 0, whose Θ is the learned default anyway).
        """
        x = x.transpose(1, 2)  # (B, D, n): the convolution op is channels first
        bsz, dim, n = x.shape
        cache = self.get_cache(incremental_state)
        history = cache.get("inputs")
        if history is None:
            history = x.new_zeros(bsz, dim, self.kernel.size(-1) - 1)
        current = cache.get("bin")  # conv outputs of the bin in progress, (B, D, pos mod R)
        current = x.new_zeros(bsz, dim, 0) if current is None else current
        if current.size(-1) != pos % self.bin_size:
            raise RuntimeError(f"hypernetwork state holds {current.size(-1)} samples of a bin at position {pos}")
        y, history = causal_conv_stream(x, self.regularized_kernel(), history)
        current = torch.cat([current, y], dim=-1)
        whole = current.size(-1) - current.size(-1) % self.bin_size
        last = cache.get("last")  # embedding of the last completed bin, (B, 1, D, O)
        last = x.new_zeros(bsz, 1, dim, self.oversampling) if last is None else last
        embeddings = torch.cat([last, self.pool(current[..., :whole])], dim=1)  # bins pos//R − 1, …
        self.set_cache(incremental_state, {"inputs": history, "bin": current[..., whole:], "last": embeddings[:, -1:]})
        return embeddings[:, :blocks_touched(pos, n, self.bin_size)]


Ring = Optional[Tuple[float, float, float]]  # (r_min, r_max, max_phase) of --theta-init ring; None: default init


def initial_logits(shape: Tuple[int, ...], ring: Ring) -> Tensor:
    """Logits (*shape, 2) to start from: uniform in (−1, 1) (default), or with the poles of Θ drawn on
    the ring r_min ≤ |p| ≤ r_max at angles up to max_phase (``ops/theta.ring_init_logits``, stable map)."""
    if ring is None:
        return torch.empty(*shape, 2).uniform_(-1.0, 1.0)
    return ring_init_logits(shape, ring[0], ring[1], max_phase=ring[2], param="stable")


class LocalHyperMLP(nn.Module):
    """H_local. With ``residual`` (``--focus-filter adaptive-residual``): logits = static (D, F, 2) + the
    MLP's output, the last layer initialised at zero, and bin 0 uses the static logits; the filter
    starts as Focus-H and the hypernetwork learns the input-dependent part only."""

    def __init__(self, dim: int, oversampling: int, hidden: int, num_filters: int, theta_param: str = "paper",
                 ring: Ring = None, residual: bool = False):
        super().__init__()
        self.num_filters, self.theta_param, self.residual = num_filters, theta_param, residual
        self.fc1 = nn.Linear(oversampling, hidden)
        self.fc2 = nn.Linear(hidden, 2 * num_filters)
        # Θ of bin 0, which has no previous bin to look at
        self.first_bin_logits = nn.Parameter(torch.empty(dim, num_filters, 2))
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        nn.init.normal_(self.fc2.weight, std=math.sqrt(1.0 / (hidden * 2)))  # hyperfan-in
        with torch.no_grad():  # (the default draws in the same order as before --theta-init existed)
            self.fc2.bias.copy_(torch.zeros(2 * num_filters) if ring is None else initial_logits((num_filters,), ring).view(-1))
            self.first_bin_logits.copy_(initial_logits((dim, num_filters), ring))
        if residual:  # the per-channel logits take the first bin's place; the MLP's part starts at zero
            self.static_logits = nn.Parameter(self.first_bin_logits.detach().clone())
            del self.first_bin_logits
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def logits(self, e: Tensor) -> Tensor:
        """The last layer's outputs (B, Nbins, D, 2F), in fp32 (fp64 stays fp64) whatever autocast says."""
        h = torch.sigmoid(self.fc1(e))
        with no_autocast(h):
            dtype = compute_dtype(h)
            out = F.linear(h.to(dtype), self.fc2.weight.to(dtype), self.fc2.bias.to(dtype))
            if self.residual:
                out = out + self.static_logits.to(dtype).flatten(-2)  # (D, 2F), per channel
            return out

    def unshifted(self, e: Tensor) -> Tensor:
        """Θ computed from each bin's own embedding: (B, Nbins, D, O) -> (B, Nbins, D, F, 2), fp32."""
        logits = self.logits(e)
        return theta_from_logits(logits.view(*logits.shape[:-1], self.num_filters, 2), self.theta_param)

    def first_bin(self, bsz: int) -> Tensor:
        logits = self.static_logits if self.residual else self.first_bin_logits
        return theta_from_logits(logits, self.theta_param).expand(bsz, 1, -1, -1, -1)

    def for_bins(self, e: Tensor, first_bin: int) -> Tensor:
        """Θ of T consecutive bins from bin ``first_bin`` on, given the embedding e of the bin before
        each one: (B, T, D, O) -> (B, T, D, F, 2); bin 0 takes the learned default (streaming)."""
        theta = self.unshifted(e)
        if first_bin == 0:
            theta = torch.cat([self.first_bin(e.size(0)).to(theta.dtype), theta[:, 1:]], dim=1)
        return theta

    def forward(self, e: Tensor) -> Tensor:
        """Causal Θ: bin i is filtered with coefficients computed from bin i−1."""
        theta = self.unshifted(e)
        return torch.cat([self.first_bin(e.size(0)).to(theta.dtype), theta[:, :-1]], dim=1)
