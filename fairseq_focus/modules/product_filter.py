"""``--filter-input product`` (beyond the paper): filter a product of projections of x, not x itself.

The paper filters the normed block input x channel-wise. A channel-wise filter of x can carry a bag
of past tokens across attention chunks, but not a key -> value binding, which associative recall
needs when the query's key lies before the query's chunk. H3 (Fu et al. 2023, "Hungry Hungry
Hippos", §3.2) gets bindings from two state-space layers around a multiplicative interaction:
q ⊙ SSM_diag(SSM_shift(k) ⊙ v), per head an outer product — linear attention with a learned decay.
This module does the same with our global filter (adaptive, static or EMA) as the diagonal SSM and
a fixed one-step shift as the shift SSM:

    q, k, v  = x W_q, x W_k, x W_v                      (B, L, H, d) each, H·d² = D
    k_prev[t] = k[t−1],  k_prev[0] = 0                   H3's shift SSM reduced to one tap
    kv[t]    = k_prev[t] ⊗ v[t]                          (B, L, H, d, d) -> D channels
    s        = inner_filter(kv, e)                       the existing filter, channel-wise, unchanged
    y[t]     = Σ_i q[t, i] s[t, i, :]                    per head: (B, L, H, d)
    x_f      = y W_o                                     (B, L, D), what the block uses as before

So s[t] ≈ Σ_{τ≤t} h(t, τ) k[τ−1] ⊗ v[τ] and y[t] ≈ Σ_τ h(t, τ) (q[t]·k[τ−1]) v[τ]: the value that
followed a key like the query's, at any distance the filter remembers. With ``adaptive``, Θ comes
per channel of kv from the shared hypernetwork embedding e of the stack's input; with
``--no-share-hypernet`` the filter's own encoder sees kv (it is the inner filter's input).

Glossary: D = decoder_embed_dim, d = --product-head-dim, H = D // d² heads.
Init: LeCun normal, N(0, 1/fan_in), zero biases, for the four projections (see :meth:`reset_parameters`).
Streaming: the last key (B, H, d) is this module's cache, so the shift crosses segment boundaries;
the inner filter keeps its own state. Both follow beam reorders (:class:`StreamingModule`).

With ``--focus-filter selective`` the inner filter's Θ and gain per token come from the block input x
(its ``control``), not from kv: the token decides how much of the key-value state to keep and how
strongly to write the new product (selection, as Mamba's Δ gates its state).

``--filter-input both`` (:class:`SumFilter`): x_f = filter_x(x, e) + ProductFilter(x, e), the paper's
path and the product path side by side, each with its own filter of the ``--focus-filter`` kind (own
Θ parameters; own encoder with ``--no-share-hypernet``; own streaming state).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .streaming import IncrementalState, StreamingModule


def product_heads(dim: int, head_dim: int) -> int:
    """H = D // d²; a one-line ValueError unless d² divides D."""
    if head_dim < 1 or dim % (head_dim * head_dim) != 0:
        raise ValueError(f"--filter-input product needs --product-head-dim d with d² dividing --decoder-embed-dim: "
                         f"{head_dim}² does not divide {dim}")
    return dim // (head_dim * head_dim)


class ProductFilter(StreamingModule):
    """x (B, L, D) -> x_f (B, L, D) through ``inner`` applied to the products k_prev ⊗ v (module docstring)."""

    def __init__(self, dim: int, head_dim: int, inner: nn.Module):
        super().__init__()
        self.heads, self.head_dim = product_heads(dim, head_dim), head_dim
        width = self.heads * head_dim
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, width), nn.Linear(dim, width), nn.Linear(dim, width)
        self.out_proj = nn.Linear(width, dim)
        self.inner = inner
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 1/fan_in) weights, zero biases. MEGA's N(0, 0.02) would leave the path nearly dead: kv is a
        product of two projections, so its scale is the square of theirs. Measured at D = 128 on a
        normed input (the first layer of a default FocusStack, B = 2, L = 256): with N(0, 0.02), kv has
        std 0.05 and x_f 0.002-0.003, about 1/400 of the paper's x_f = filter(x) (0.8-1.2); with
        N(0, 1/fan_in), kv has std 1.0 and x_f 1.7-2.5 (static, adaptive, ema).
        ``tests/test_product_filter.py::test_init_keeps_the_product_path_alive`` checks the ratio."""
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.normal_(lin.weight, std=lin.in_features ** -0.5)
            nn.init.zeros_(lin.bias)

    def _heads(self, t: Tensor) -> Tensor:
        return t.view(*t.shape[:-1], self.heads, self.head_dim)  # (B, L, H·d) -> (B, L, H, d)

    def project(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """x (B, L, D) -> q, k, v (B, L, H, d)."""
        return self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    @staticmethod
    def previous_keys(k: Tensor, k_last: Optional[Tensor]) -> Tensor:
        """k_prev[t] = k[t−1]: k (B, n, H, d), k_last (B, H, d) the key before the segment (None: zeros)."""
        first = torch.zeros_like(k[:, :1]) if k_last is None else k_last.unsqueeze(1).to(k.dtype)
        return torch.cat([first, k[:, :-1]], dim=1)  # (B, n, H, d)

    @staticmethod
    def products(k_prev: Tensor, v: Tensor) -> Tensor:
        """kv[t] = k_prev[t] ⊗ v[t] per head, flattened to channels: (B, L, H, d) × 2 -> (B, L, H·d·d = D)."""
        return torch.einsum("blhi,blhj->blhij", k_prev, v).flatten(2)

    def readout(self, q: Tensor, s: Tensor) -> Tensor:
        """y[t] = Σ_i q[t, i] s[t, i, :] per head, then W_o: q (B, L, H, d), s (B, L, D) -> (B, L, D)."""
        s = s.view(*s.shape[:2], self.heads, self.head_dim, self.head_dim)  # (B, L, H, d, d)
        y = torch.einsum("blhi,blhij->blhj", q, s.to(q.dtype))  # (B, L, H, d)
        return self.out_proj(y.flatten(2))

    def kv(self, x: Tensor) -> Tensor:
        """What the inner filter filters, for the parallel forward of x (B, L, D): (B, L, D)."""
        _, k, v = self.project(x)
        return self.products(self.previous_keys(k, None), v)

    def theta(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """Θ (B, Nbins, D, F, 2) the inner IIR filter applies to kv (one Θ per kv channel)."""
        if self.selective:
            return self.inner.theta(self.kv(x), e, control=x)
        return self.inner.theta(self.kv(x), e)

    @property
    def selective(self) -> bool:
        """Whether the inner filter computes its Θ from a control signal (``--focus-filter selective``):
        it then gets the block input x, so each token decides what the kv state keeps and writes."""
        return getattr(self.inner, "takes_control", False)

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        q, k, v = self.project(x)
        kv = self.products(self.previous_keys(k, None), v)
        return self.readout(q, self.inner(kv, e, control=x) if self.selective else self.inner(kv, e))

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        """x (B, n, D) at stream positions pos … -> (B, n, D); keeps the last key for the next segment."""
        q, k, v = self.project(x)
        k_prev = self.previous_keys(k, self.get_cache(incremental_state).get("k_last"))
        self.set_cache(incremental_state, {"k_last": k[:, -1]})
        kv = self.products(k_prev, v)
        if self.selective:
            s = self.inner.forward_stream(kv, e, pos, incremental_state, control=x)
        else:
            s = self.inner.forward_stream(kv, e, pos, incremental_state)
        return self.readout(q, s)


class SumFilter(nn.Module):
    """``--filter-input both``: x (B, L, D) -> direct(x, e) + product(x, e) (B, L, D).

    ``direct`` is the paper's filter of x; ``product`` a :class:`ProductFilter` around a second filter
    of the same kind. The two filters are separate instances (built by two calls of the builder), so
    their parameters differ and so do their streaming caches: fairseq keys each module's
    ``incremental_state`` entries by a per-instance id (``with_incremental_state``), which a second
    construction draws anew (a ``copy.deepcopy`` would copy it, and the two states would collide).
    This module keeps no state of its own. Parameter names: ``direct.*`` and ``product.*``.
    """

    def __init__(self, direct: nn.Module, product: ProductFilter):
        super().__init__()
        self.direct, self.product = direct, product

    def theta(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """Θ (B, Nbins, D, F, 2) of the x path (the paper's Θ, what the plot tools draw); the product
        path's Θ on its key-value channels is ``self.product.theta(x, e)``."""
        return self.direct.theta(x, e)

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        return self.direct(x, e) + self.product(x, e)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        """x (B, n, D) at stream positions pos … -> (B, n, D); each path updates its own state."""
        return (self.direct.forward_stream(x, e, pos, incremental_state)
                + self.product.forward_stream(x, e, pos, incremental_state))
