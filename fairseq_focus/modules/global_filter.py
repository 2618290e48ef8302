"""The global filter in front of the attention: x (B, L, D) -> x_f (B, L, D), its variants.

* :class:`AdaptiveIIRFilter` (Focus): Θ from the hypernetwork, per bin (paper eq. 1-8).
  ``adaptive-residual``: the same with learned per-channel logits added to the hypernetwork's
  output, whose last layer starts at zero (the filter starts as the static one).
* :class:`SelectiveIIRFilter` (beyond the paper): Θ and an input gain per token and channel, learned
  per-channel logits plus a low-rank projection of the current input that starts at zero —
  selection as in Mamba (Gu & Dao 2023), on an order-2 filter (``ops/tv_iir/``).
* :class:`StaticIIRFilter` (Focus-H, the paper's ablation): Θ from learned logits (eq. 5's sigmoid,
  or the stable map), the same for every bin and input. In ``carry`` mode that is one time-invariant
  filter over the whole sequence, so its parallel forward is one causal FFT convolution with the
  impulse response (``ops/iir/`` ``iir_filter_lti``); the per-bin path stays as its twin.

Both IIR filters map logits to Θ through ``ops/theta.py`` (``--theta-param paper|stable``), in fp32
with autocast off.
* :class:`EMAFilter` (MEGA): the multi-head damped EMA, silu(EMA(x) + ω·x) as in MEGA.
* :class:`IdentityFilter` (``--focus-filter none``, a study ablation): x_f = x. With it nothing crosses
  the attention chunks: the block is its chunked attention with its gates (the recall study's windows).

The two IIR filters share :class:`IIRFilter`, which owns the filtering (parallel and streaming);
a subclass only says how Θ is computed:

* ``theta(x, e)`` -> Θ (B, Nbins, D, F, 2) for the parallel path, already shifted by one bin;
* ``theta_stream(x, e, pos, incremental_state)`` -> Θ (B, T, D, F, 2) of the T bins that the n
  samples at positions pos … pos+n−1 touch.

Every filter has ``forward(x, e)`` and ``forward_stream(x, e, pos, incremental_state)``. ``e`` is the
hypernetwork encoder's embedding (:class:`~.hypernetwork.HyperEncoder`) when the model shares one
encoder across layers, else None (an adaptive filter then runs its own encoder; the others ignore
it): in the parallel path e (B, Nbins, D, O) of every bin; in streaming e (B, T, D, O) of the bin
*before* each of the T bins touched. L must be a whole number of bins; the stack pads.

Layout: batch first, x (B, L, D), at the module boundary; the ops are channels first (B, D, L), so
each filter transposes once, right at the op call. Streaming keeps the recursion state (B, D, F, 2)
— or the EMA state (B, D, N) — in ``incremental_state``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.ema import ema_filter, ema_filter_stream
from ..ops.iir import iir_filter, iir_filter_bins, iir_filter_lti, iir_filter_segment
from ..ops.precision import compute_dtype, no_autocast
from ..ops.segments import blocks_touched
from ..ops.tv_iir import tv_iir_filter, tv_iir_stream
from ..ops.theta import theta_from_logits
from .hypernetwork import HyperEncoder, LocalHyperMLP, Ring, initial_logits
from .mimo_filter import ConvFilter, MIMOIIRFilter
from .product_filter import ProductFilter, SumFilter
from .streaming import IncrementalState, StreamingModule


class IIRFilter(StreamingModule):
    """Order-2 IIR filter banks with per-bin Θ (ops/iir/); subclasses define Θ."""

    def __init__(self, mode: str, bin_size: Optional[int]):
        super().__init__()
        self.mode, self.bin_size = mode, bin_size

    def theta(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D), e (B, Nbins, D, O) or None -> Θ (B, Nbins, D, F, 2), shifted by one bin."""
        raise NotImplementedError

    def theta_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        """x (B, n, D) at positions pos …, e (B, T, D, O) or None -> Θ (B, T, D, F, 2) of the T bins touched."""
        raise NotImplementedError

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        y = iir_filter(x.transpose(1, 2), self.theta(x, e), self.mode)  # op on (B, D, L)
        return y.transpose(1, 2)  # (B, L, D)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        if self.bin_size is None:
            raise ValueError(f"{type(self).__name__} was built without a bin size, so it cannot stream")
        theta = self.theta_stream(x, e, pos, incremental_state)  # (B, T, D, F, 2)
        state = self.get_cache(incremental_state).get("state")
        y, state = iir_filter_segment(x.transpose(1, 2), theta, pos % self.bin_size, self.bin_size, self.mode, state)
        self.set_cache(incremental_state, {"state": state})
        return y.transpose(1, 2)  # (B, n, D)


class AdaptiveIIRFilter(IIRFilter):
    """Θ = H_local(e) (eq. 3), e from the shared encoder or, when ``own_encoder`` is given, its own."""

    def __init__(self, dim: int, num_filters: int, oversampling: int, hidden: int, mode: str,
                 own_encoder: Optional[HyperEncoder], bin_size: Optional[int] = None, theta_param: str = "paper",
                 ring: Ring = None, residual: bool = False):
        super().__init__(mode, bin_size if bin_size is not None or own_encoder is None else own_encoder.bin_size)
        self.local = LocalHyperMLP(dim, oversampling, hidden, num_filters, theta_param, ring, residual)
        self.own_encoder = own_encoder  # None when the model shares one encoder

    def _embedding(self, e: Optional[Tensor]) -> Tensor:
        if e is None:
            raise ValueError("an adaptive filter without its own hypernetwork encoder needs the shared embedding e")
        return e

    def theta(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        if self.own_encoder is not None:
            e = self.own_encoder(x)
        return self.local(self._embedding(e))

    def theta_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        if self.own_encoder is not None:
            e = self.own_encoder.forward_stream(x, pos, incremental_state)
        return self.local.for_bins(self._embedding(e), pos // self.bin_size)

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        """Checkpoints from before the rename kept the per-layer encoder under ``own_global``."""
        rename_prefix(state_dict, f"{name}.own_global.", f"{name}.own_encoder.")


class StaticIIRFilter(IIRFilter):
    """Θ = map(learned logits) (D, F, 2), the same for every bin and input."""

    def __init__(self, dim: int, num_filters: int, bin_size: int, mode: str, theta_param: str = "paper",
                 ring: Ring = None):
        super().__init__(mode, bin_size)
        self.theta_param = theta_param
        self.logits = nn.Parameter(initial_logits((dim, num_filters), ring))

    def _for(self, bsz: int, nbins: int) -> Tensor:
        return theta_from_logits(self.logits, self.theta_param).expand(bsz, nbins, -1, -1, -1)  # (B, Nbins, D, F, 2)

    def theta(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        return self._for(x.size(0), x.size(1) // self.bin_size)

    def theta_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        return self._for(x.size(0), blocks_touched(pos, x.size(1), self.bin_size))

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D) -> (B, L, D). ``carry`` from a zero state: y = (Σ_F h_f) ∗ x, one FFT convolution
        over the whole sequence (a fixed number of operator calls whatever L); :meth:`forward_bins` is
        its twin. ``causal`` resets the state per bin and ``paper`` works per bin: not LTI, so per bin."""
        if self.mode != "carry":
            return self.forward_bins(x, e)
        theta = theta_from_logits(self.logits, self.theta_param)  # (D, F, 2)
        return iir_filter_lti(x.transpose(1, 2), theta).transpose(1, 2)  # op on (B, D, L)

    def forward_bins(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """The per-bin path (``ops/iir/`` ``iir_filter_bins``): Θ per bin, the state carried by a scan over bins."""
        return iir_filter_bins(x.transpose(1, 2), self.theta(x, e), self.mode).transpose(1, 2)  # op on (B, D, L)


class SelectiveIIRFilter(IIRFilter):
    """Θ[t] = map(logits + U·V·c[t]) and g[t] = 2·sigmoid(w_g·V·c[t]) per token and channel (bin size 1),
    c = the filter's input x, or — on the product path — the block input that the key-value products
    come from (``control``): what to keep and what to write is decided by the token, as Mamba's Δ and B.

    ``logits`` (D, F, 2) are the static filter's (same init); V (rank × D) and U are a low-rank
    projection of the filter's input at the same token, as Mamba's Δ projection (dt_rank); U starts
    at zero, so the filter starts as the static one with unit gain and learns how far to move with
    the input. Θ[t] depends on x[t] (not on later samples), so the output stays causal. The map and
    the gain run in fp32 with autocast off (``ops/theta.py``). ``form``: the realisation of the per-token
    filter, ``lattice`` (stable under any time variation) or ``companion`` (``ops/tv_iir/``).
    """

    takes_control = True  # a ProductFilter hands it the block input as ``control`` (what selects), kv as x

    def __init__(self, dim: int, num_filters: int, rank: int, theta_param: str = "stable", ring: Ring = None,
                 form: str = "lattice"):
        super().__init__("carry", 1)
        self.theta_param, self.num_filters, self.form = theta_param, num_filters, form
        self.logits = nn.Parameter(initial_logits((dim, num_filters), ring))
        self.down = nn.Linear(dim, rank, bias=False)  # PyTorch's default (Kaiming-uniform) init
        self.up = nn.Linear(rank, dim * (2 * num_filters + 1), bias=False)
        nn.init.zeros_(self.up.weight)  # start as the static filter (Θ = map(logits), g = 1)

    def theta_and_gain(self, x: Tensor):
        """x (B, L, D) -> Θ (B, L, D, F, 2) and g (B, L, D), both fp32 (fp64 for fp64 x)."""
        bsz, length, dim = x.shape
        with no_autocast(x):  # both projections in fp32 too: a half-precision one can overflow to inf/nan
            dtype = compute_dtype(x)
            m = F.linear(F.linear(x.to(dtype), self.down.weight.to(dtype)), self.up.weight.to(dtype))  # (B, L, D·(2F+1))
            delta = m[..., : dim * 2 * self.num_filters].view(bsz, length, dim, self.num_filters, 2)
            theta = theta_from_logits(self.logits.to(m.dtype) + delta, self.theta_param)
            gain = 2.0 * torch.sigmoid(m[..., dim * 2 * self.num_filters:])
        return theta, gain

    def theta(self, x: Tensor, e: Optional[Tensor], control: Optional[Tensor] = None) -> Tensor:
        return self.theta_and_gain(x if control is None else control)[0]

    def forward(self, x: Tensor, e: Optional[Tensor], control: Optional[Tensor] = None) -> Tensor:
        """x (B, L, D) the signal filtered; control (B, L, D) what Θ and g are computed from (default x)."""
        theta, gain = self.theta_and_gain(x if control is None else control)
        return tv_iir_filter(x.transpose(1, 2), theta, gain, form=self.form).transpose(1, 2)  # op on (B, D, L)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState,
                       control: Optional[Tensor] = None) -> Tensor:
        theta, gain = self.theta_and_gain(x if control is None else control)
        state = self.get_cache(incremental_state).get("state")
        y, state = tv_iir_stream(x.transpose(1, 2), theta, gain, state, self.form)
        self.set_cache(incremental_state, {"state": state})
        return y.transpose(1, 2)  # (B, n, D)


def rename_prefix(state_dict, old: str, new: str) -> None:
    """Move every key starting with ``old`` to ``new`` (in place): loading checkpoints across a rename."""
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[new + key[len(old):]] = state_dict.pop(key)


class EMAFilter(StreamingModule):
    """MEGA's multi-head EMA; parameter names and init follow MEGA (Ma et al. 2022, §3.1)."""

    def __init__(self, dim: int, ndim: int):
        super().__init__()
        self.scale = ndim ** -0.5
        self.delta = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.2))
        self.alpha = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.2))
        signs = torch.ones(ndim)
        signs[1::2] = -1.0  # β initialised around (1, −1, 1, …), as MEGA does
        self.beta = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 0.02) + signs)
        self.gamma = nn.Parameter(torch.empty(dim, ndim).normal_(0.0, 1.0))
        self.omega = nn.Parameter(torch.empty(dim).normal_(0.0, 1.0))

    def coefficients(self):
        """(p, q, β, γ·scale), each (D, N), with p, q ∈ (0, 1)."""
        p = torch.sigmoid(self.delta)
        q = 1.0 - p * torch.sigmoid(self.alpha)
        return p, q, self.beta, self.gamma * self.scale

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D) -> (B, L, D); e is ignored."""
        y = ema_filter(x.transpose(1, 2), *self.coefficients()).transpose(1, 2)  # op on (B, D, L)
        return F.silu(y + self.omega * x)

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        state = self.get_cache(incremental_state).get("state")
        y, state = ema_filter_stream(x.transpose(1, 2), *self.coefficients(), state)  # op on (B, D, n)
        self.set_cache(incremental_state, {"state": state})
        return F.silu(y.transpose(1, 2) + self.omega * x)  # (B, n, D)


class IdentityFilter(nn.Module):
    """``--focus-filter none``: x_f = x, no parameters and no state (the paper's block without its
    global filter; a study ablation: no path across attention chunks)."""

    def forward(self, x: Tensor, e: Optional[Tensor]) -> Tensor:
        """x (B, L, D) -> x; e is ignored."""
        return x

    def forward_stream(self, x: Tensor, e: Optional[Tensor], pos: int, incremental_state: IncrementalState) -> Tensor:
        """x (B, n, D) -> x: nothing to remember between calls."""
        return x


def build_encoder(cfg) -> HyperEncoder:
    """A hypernetwork encoder H_global with the stack's hyperparameters (shared, or one per filter)."""
    return HyperEncoder(cfg.decoder_embed_dim, cfg.hyper_kernel_size, cfg.bin_size, cfg.oversampling,
                        cfg.hyper_squash, cfg.hyper_smooth)


def build_filter(cfg, own_encoder: Optional[HyperEncoder]) -> nn.Module:
    """The variant named by ``cfg.focus_filter``, wrapped in a :class:`ProductFilter` with
    ``--filter-input product`` (then it filters key-value products, not x); with ``both``, that filter
    of x plus a product path around a second filter of the same kind (:class:`SumFilter`)."""
    inner = _build_channel_filter(cfg, own_encoder)
    if cfg.filter_conv and cfg.focus_filter != "mimo":  # mimo runs its conv inside (its stream keeps the history)
        inner = ConvFilter(cfg.decoder_embed_dim, cfg.filter_conv, inner)
    if cfg.filter_input == "x":
        return inner
    if cfg.filter_input == "product":
        return ProductFilter(cfg.decoder_embed_dim, cfg.product_head_dim, inner)
    # both: the product path's filter gets an encoder of its own, never ``own_encoder`` itself. That one
    # sees x; this one sees kv, a different signal, and a shared module object would also share its
    # streaming cache (one input history fed x and kv in turn). With the shared encoder (own_encoder
    # None) both filters read the same e, each through its own LocalHyperMLP.
    second = build_encoder(cfg) if own_encoder is not None else None
    product = ProductFilter(cfg.decoder_embed_dim, cfg.product_head_dim, _build_channel_filter(cfg, second))
    return SumFilter(inner, product)


def iir_core(module: nn.Module) -> Optional[IIRFilter]:
    """The IIR filter whose Θ a layer's filter applies (inside a ProductFilter too; the x path's in a
    SumFilter), or None (EMA)."""
    module = module.direct if isinstance(module, SumFilter) else module
    module = module.inner if isinstance(module, ProductFilter) else module
    return module if isinstance(module, IIRFilter) else None


def _build_channel_filter(cfg, own_encoder: Optional[HyperEncoder]) -> nn.Module:
    """The channel-wise filter named by ``cfg.focus_filter``, with the stack's hyperparameters."""
    dim = cfg.decoder_embed_dim
    ring = (cfg.theta_ring_rmin, cfg.theta_ring_rmax, cfg.theta_ring_max_phase) if cfg.theta_init == "ring" else None
    if cfg.focus_filter in ("adaptive", "adaptive-residual"):
        return AdaptiveIIRFilter(dim, cfg.num_filters, cfg.oversampling, cfg.hyper_hidden_dim, cfg.iir_mode, own_encoder,
                                 bin_size=cfg.bin_size, theta_param=cfg.theta_param, ring=ring,
                                 residual=cfg.focus_filter == "adaptive-residual")
    if cfg.focus_filter == "selective":
        return SelectiveIIRFilter(dim, cfg.num_filters, cfg.selective_rank, cfg.theta_param, ring, cfg.selective_form)
    if cfg.focus_filter == "static":
        return StaticIIRFilter(dim, cfg.num_filters, cfg.bin_size, cfg.iir_mode, cfg.theta_param, ring)
    if cfg.focus_filter == "none":
        return IdentityFilter()
    if cfg.focus_filter == "mimo":
        return MIMOIIRFilter(dim, cfg.mimo_state, cfg.mimo_head_dim, cfg.filter_conv)
    return EMAFilter(dim, cfg.ema_ndim)
