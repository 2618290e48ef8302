"""The per-bin IIR op (the package docstring has its modes): :func:`iir_filter` (the dispatcher) and
:func:`iir_filter_bins`, bin by bin with per-bin FFT convolutions, and for ``carry`` a scan over the bins' end
states."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fft_conv import fft_causal_conv
from ..precision import compute_dtype, no_autocast
from ..tv_iir.function import checkpoint_interval, fused_scan, kernel_for
from .companion import companion_rows, linear_scan
from .naive import check


def _paper_filter(xb: Tensor, theta: Tensor) -> Tensor:
    """Eq. 4-8: per-bin FFT of size NFFT = R, times the conjugated response, summed over F, IFFT."""
    r = xb.size(-1)
    freqs = torch.fft.rfftfreq(r, device=xb.device, dtype=xb.dtype)  # f in cycles/sample, k/R
    z1 = torch.exp(-2j * torch.pi * freqs)  # e^{-j2πf}
    t0 = theta[..., 0].unsqueeze(-1)  # (B, Nbins, D, F, 1)
    t1 = theta[..., 1].unsqueeze(-1)
    response = 1.0 / (1.0 + t0 * z1 + t1 * z1 * z1)  # eq. 5, (B, Nbins, D, F, R//2+1)
    folded = response.conj().sum(dim=3).permute(0, 2, 1, 3)  # eq. 6-7: (B, D, Nbins, R//2+1)
    return torch.fft.irfft(torch.fft.rfft(xb) * folded, n=r)  # eq. 8


def _zero_state_ends(xb: Tensor, h_f: Tensor) -> Tensor:
    """Each bin's end state from a zero start: Σ_k A^{R−1−k} e₁ x[k] = Σ_k (h[R−1−k], h[R−2−k]) x[k].

    xb (B, D, Nbins, R), h_f (B, Nbins, D, F, R) -> (B, Nbins, D, F, 2).
    """
    h_prev = F.pad(h_f, (1, 0))[..., :-1]  # h[t−1], with h[−1] = 0
    kernel = torch.stack([h_f, h_prev], dim=-1).flip(-2)  # (B, Nbins, D, F, R, 2), time reversed
    return torch.einsum("bdnr,bndfrc->bndfc", xb, kernel)


def _carry_across_bins(y: Tensor, rows: Tensor, ends: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Add to the zero-state output y (B, D, Nbins, R) each bin's free response to the state the
    earlier bins (and ``state``) leave: s_i = A_i^R s_{i−1} + ends_i by a scan over bins, then
    y[t] += e₁ᵀA^{t+1} s_{i−1}. rows (B, Nbins, D, F, R+1, 2) = e₁ᵀAᵗ; returns (y, final state)."""
    r = rows.size(-2) - 1
    trans = torch.stack([rows[..., r, :], rows[..., r - 1, :]], dim=-2)  # A^R: (B, Nbins, D, F, 2, 2)
    if state is not None:  # fold the initial state into bin 0's end state
        first = ends[:, 0] + (trans[:, 0] @ state.unsqueeze(-1)).squeeze(-1)
        ends = torch.cat([first.unsqueeze(1), ends[:, 1:]], dim=1)
    # bins next to the (2,)/(2, 2) axes: (B, D, F, Nbins, ...)
    ends = linear_scan(trans.permute(0, 2, 3, 1, 4, 5), ends.permute(0, 2, 3, 1, 4))
    starts = F.pad(ends[..., :-1, :], (0, 0, 1, 0))  # state entering each bin, (B, D, F, Nbins, 2)
    if state is not None:
        starts = torch.cat([state.unsqueeze(-2), starts[..., 1:, :]], dim=-2)
    return y + torch.einsum("bndfrc,bdfnc->bdnr", rows[..., 1:, :], starts), ends[..., -1, :]


def _bank_output(xb: Tensor, h_f: Tensor) -> Tensor:
    """Zero-state output per bin, a linear (not circular) causal convolution of each bin with Σ_F h_f, by FFT of
    size 2R: xb (B, D, Nbins, R), h_f (B, Nbins, D, F, R) -> (B, D, Nbins, R)."""
    h = h_f.sum(dim=3).permute(0, 2, 1, 3)  # F folded before the FFT: (B, D, Nbins, R)
    return fft_causal_conv(xb, h)


def iir_filter(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
               return_state: bool = False):
    """Filter x with per-bin order-2 IIR filter banks (fast, parallel path).

    ``carry`` runs on the fused scan of ``ops/tv_iir`` where a kernel is at hand (Θ per bin, bin_size R, the
    companion form; one call forward and one backward whatever L); everything else, and ``carry`` without a
    kernel, on :func:`iir_filter_bins`. Same values either way.

    Args:
        x: (B, D, L) real input.
        theta: (B, Nbins, D, F, 2) coefficients inside the stability triangle; L must be a multiple of Nbins.
        mode: ``causal`` | ``carry`` | ``paper`` (package docstring).
        state: (B, D, F, 2) initial (y[−1], y[−2]) per filter, ``carry`` mode only.
        return_state: also return the final state (B, D, F, 2) (``causal``/``carry`` only).

    Returns:
        y (B, D, L) in x's dtype, or (y, final_state) when ``return_state``.
    """
    r = check(x, theta, mode, state, return_state)
    if mode != "carry" or kernel_for(x.device) is None:
        return iir_filter_bins(x, theta, mode, state, return_state)
    y, final = fused_scan(x, theta, None, state, False, checkpoint_interval(r), bin_size=r)
    return (y, final) if return_state else y


def iir_filter_bins(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
                    return_state: bool = False):
    """:func:`iir_filter` bin by bin (module docstring). Same signature and values; ``carry``'s second twin where
    the fused scan runs."""
    r = check(x, theta, mode, state, return_state)
    dtype = compute_dtype(x)
    with no_autocast(x):
        xb, theta = x.to(dtype).view(*x.shape[:2], -1, r), theta.to(dtype)  # (B, D, Nbins, R)
        if mode == "paper":
            return _paper_filter(xb, theta).reshape(x.shape).to(x.dtype)
        if mode == "causal" and not return_state:
            return _bank_output(xb, companion_rows(theta, r, impulse_only=True)).reshape(x.shape).to(x.dtype)
        rows = companion_rows(theta, r + 1)  # (B, Nbins, D, F, R+1, 2)
        y, ends = _bank_output(xb, rows[..., :r, 0]), _zero_state_ends(xb, rows[..., :r, 0])
        if mode == "carry":
            y, final = _carry_across_bins(y, rows, ends, None if state is None else state.to(dtype))
        else:
            final = ends[:, -1]
        y = y.reshape(x.shape).to(x.dtype)
    return (y, final.to(x.dtype)) if return_state else y
