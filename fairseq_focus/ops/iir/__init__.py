"""Order-2 all-pole IIR filter banks applied per time bin (paper §3.2, eq. 4-8).

Each of the F filters of a channel has the transfer function (eq. 5)

    H(z) = 1 / (1 + θ0 z⁻¹ + θ1 z⁻²),    i.e.   y[t] = x[t] − θ0·y[t−1] − θ1·y[t−2]   (eq. 32),

and the layer output is the sum of the F filter outputs (eq. 7). Θ is constant inside a time bin of
R samples and changes from bin to bin (the hypernetwork's output, already shifted by one bin by the
caller so that bin i uses coefficients computed from bin i−1).

Stability: with θ0, θ1 ∈ (0, 1) both poles p of z² + θ0 z + θ1 lie strictly inside the unit circle.
Complex poles have |p|² = p·p̄ = θ1 < 1; real poles (θ0² ≥ 4θ1) satisfy |p| ≤ (θ0 + √(θ0² − 4θ1))/2
< θ0 < 1. The sigmoid parameterisation upstream therefore makes every filter stable by construction;
``--theta-param stable`` (``ops/theta.py``) reaches the whole stability triangle |θ1| < 1, |θ0| < 1 + θ1,
which the ops here handle alike.

Modes (see DESIGN.md "Filter modes"):

* ``causal``: per bin, the zero-state recursion (state reset at every bin start), computed as the
  exact *linear* convolution of the bin with the filter's impulse response h (FFT with zero padding
  to 2R; no conjugate, nothing circular). Output t depends on inputs ≤ t of its bin only.
* ``carry``: the same recursion with its state carried across bins: the true time-varying IIR over
  the whole sequence. Computed by the fused scan of ``ops/tv_iir`` (Θ per bin, bin_size R, companion
  form) where a kernel is at hand; else (``iir_filter_bins``) as the ``causal`` output plus each bin's
  free response to the state left by the previous bins, the bin-end states from an associative scan
  over bins.
* ``paper``: eq. 4-8 literally: X = FFT_R(x_bin), X_f = X ∘ conj(H), summed over F, IFFT. Because of
  the conjugate and the missing padding this is a *circular cross-correlation*: output t mixes in
  inputs t+1… of the same bin. NOT causal; for whole-sequence classification and ablations only.

The files, by what they compute:

* ``bins.py``: :func:`iir_filter` (the dispatcher) and :func:`iir_filter_bins` (per-bin FFT convolutions for
  every mode, the scan over bins for ``carry``);
* ``companion.py``: :func:`companion_rows`, the powers of the companion matrix (impulse and free responses,
  by doubling), and the scan over bins;
* ``lti.py``: one Θ for the whole sequence: the closed-form :func:`impulse_response` and
  :func:`iir_filter_lti`, one FFT convolution over L;
* ``segment.py``: streaming, :func:`iir_filter_segment`;
* ``naive.py``: the reference loop :func:`iir_filter_ref` and the argument check. The one-sample step,
  :func:`iir_step`, is the time-varying op's companion step (``ops/tv_iir/naive.py``).

Glossary (code name -> paper symbol):
    x      (B, D, L)            the input sequence, channels first
    theta  (B, Nbins, D, F, 2)  Θ: (θ0, θ1) of F filters per channel per bin
    R      = L / Nbins          bin length (= NFFT in ``paper`` mode; the FFT is 2R otherwise)
    state  (B, D, F, 2)         (y_f[t], y_f[t−1]) of each filter after the last processed sample
"""
from ..tv_iir.naive import iir_step
from .bins import iir_filter, iir_filter_bins
from .companion import companion_rows
from .lti import impulse_response, iir_filter_lti, iir_filter_lti_ref
from .naive import CAUSAL_MODES, MODES, iir_filter_ref
from .segment import iir_filter_segment, iir_filter_segment_ref

__all__ = ["CAUSAL_MODES", "MODES", "companion_rows", "iir_filter", "iir_filter_bins", "iir_filter_lti",
           "iir_filter_lti_ref", "iir_filter_ref", "iir_filter_segment", "iir_filter_segment_ref", "iir_step",
           "impulse_response"]
