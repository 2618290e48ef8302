"""The reference form of the per-bin IIR op (the package docstring has the modes): a plain loop over time with
:func:`~..tv_iir.naive.iir_step` for ``causal`` / ``carry``, explicit DFT matrices for ``paper``; and the argument
check every form shares."""
from typing import Optional

import torch
from torch import Tensor

from ..precision import compute_dtype
from ..tv_iir.naive import iir_step

MODES = ("causal", "carry", "paper")
CAUSAL_MODES = ("causal", "carry")


def check(x: Tensor, theta: Tensor, mode: str, state: Optional[Tensor] = None, return_state: bool = False) -> int:
    """Validate the arguments of the per-bin forms (package glossary); returns the bin length R."""
    if mode not in MODES:
        raise ValueError(f"iir mode must be one of {MODES}, got {mode!r}")
    if x.dim() != 3 or theta.dim() != 5 or theta.size(-1) != 2:
        raise ValueError(f"expected x (B, D, L) and theta (B, Nbins, D, F, 2), got {tuple(x.shape)} and {tuple(theta.shape)}")
    bsz, dim, length = x.shape
    nbins = theta.size(1)
    if theta.size(0) != bsz or theta.size(2) != dim:
        raise ValueError(f"theta {tuple(theta.shape)} does not match x {tuple(x.shape)}")
    if length % nbins != 0:
        raise ValueError(f"sequence length {length} is not a multiple of Nbins={nbins}; pad x to whole bins first")
    if state is not None and mode != "carry":
        raise ValueError("an initial state only makes sense in 'carry' mode")
    if return_state and mode == "paper":
        raise ValueError("'paper' mode has no recurrent state")
    return length // nbins


def iir_filter_ref(x: Tensor, theta: Tensor, mode: str = "causal", state: Optional[Tensor] = None,
                   return_state: bool = False):
    """Slow reference twin of :func:`~.bins.iir_filter` with the same signature.

    ``causal``/``carry``: a plain loop over time with :func:`iir_step` (state reset at bin starts in
    ``causal`` mode). ``paper``: eq. 4-8 with explicit DFT matrices, no torch.fft.
    """
    r = check(x, theta, mode, state, return_state)
    dtype = compute_dtype(x)
    xd, th = x.to(dtype), theta.to(dtype)
    if mode == "paper":
        return _paper_filter_dft(xd, th, r).to(x.dtype)
    outputs = []
    st = None if state is None else state.to(dtype)
    for t in range(x.size(-1)):
        if mode == "causal" and t % r == 0:
            st = None
        y_t, st = iir_step(xd[..., t], th[:, t // r], st)
        outputs.append(y_t)
    y = torch.stack(outputs, dim=-1).to(x.dtype)
    if return_state:
        return y, st.to(x.dtype)
    return y


def _paper_filter_dft(x: Tensor, theta: Tensor, r: int) -> Tensor:
    """Eq. 4-8 with an explicit R×R DFT matrix per bin (reference for ``paper`` mode)."""
    k = torch.arange(r, dtype=x.dtype, device=x.device)
    ctype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    dft = torch.exp(-2j * torch.pi * torch.outer(k, k).to(ctype) / r)  # W[k, n] = e^{-j2πkn/R}
    w = torch.exp(-2j * torch.pi * k.to(ctype) / r)  # e^{-j2πf} at f = k/R
    out = []
    for i in range(theta.size(1)):
        xb = x[..., i * r:(i + 1) * r].to(ctype)  # (B, D, R)
        spectrum = xb @ dft.T  # eq. 4
        t0 = theta[:, i, ..., 0].unsqueeze(-1).to(ctype)  # (B, D, F, 1)
        t1 = theta[:, i, ..., 1].unsqueeze(-1).to(ctype)
        response = 1.0 / (1.0 + t0 * w + t1 * w * w)  # eq. 5
        filtered = (spectrum.unsqueeze(2) * response.conj()).sum(2)  # eq. 6-7
        out.append(((filtered @ dft.conj().T) / r).real)  # eq. 8
    return torch.cat(out, dim=-1)
