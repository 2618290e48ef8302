"""``focus-plot-filters``: what the adaptive filters of a trained ``focus_lm`` do to a given text.

    focus-plot-filters --path CKPT --data DATA_BIN (--text STR | --text-file FILE) --out-dir DIR
    (or: python -m fairseq_focus.tools.plot_filters ...)

Runs the model's parallel forward on the text (bytes, newline = end-of-sentence, after an initial
end-of-sentence token), records the coefficients Θ (Nbins, D, F, 2) every layer's filter used, and
draws per layer:

* ``layer{i}_frequency_response.png`` (paper Fig. 4): |H_b(e^{jω})| of every time bin b, with
  H_b(z) = Σ_f 1 / (1 + θ0 z⁻¹ + θ1 z⁻²) (eq. 5, 7), on a log scale over ω ∈ [0, π];
* ``layer{i}_impulse_response.png`` (paper Fig. 2): h_b[n] = Σ_f h_f[n] of every bin.

``--channel C`` shows channel C; the default (−1) shows the mean over channels. ``filters.npz``
holds the arrays drawn: ``theta_layer{i}``, ``response_layer{i}`` (Nbins, Nfreq),
``impulse_layer{i}`` (Nbins, taps), ``freqs`` (cycles/sample), and ``tokens``. Files are written
to a temporary directory and moved into ``--out-dir`` only when all succeeded.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.atomic import atomic_directory
from ..ops.iir import companion_rows


def frequency_response(theta: Tensor, freqs: np.ndarray) -> np.ndarray:
    """|Σ_f 1 / (1 + θ0 e^{−jω} + θ1 e^{−2jω})| (eq. 5, 7): (..., F, 2) -> (..., Nfreq), ω = 2π·freqs."""
    th = theta.double().cpu().numpy()
    z1 = np.exp(-2j * np.pi * freqs)  # e^{−jω}
    t0, t1 = th[..., 0, None], th[..., 1, None]  # (..., F, 1)
    return np.abs((1.0 / (1.0 + t0 * z1 + t1 * z1 * z1)).sum(axis=-2))


def impulse_response(theta: Tensor, taps: int) -> np.ndarray:
    """h[n] = Σ_f (A_fⁿ)₀₀ for n < taps (ops/iir/ companion matrices): (..., F, 2) -> (..., taps)."""
    return companion_rows(theta.double().cpu(), taps)[..., 0].sum(dim=-2).numpy()


@torch.no_grad()
def record_theta(model, tokens: Tensor) -> List[Tensor]:
    """Θ (Nbins, D, F, 2) of every layer's filter in one parallel forward over ``tokens`` (N,)."""
    thetas = model.decoder.theta(tokens.unsqueeze(0))  # ValueError for EMA filters
    nbins = -(-tokens.numel() // model.decoder.stack.bin_size)  # bins that hold input, not padding
    return [theta[0, :nbins].float().cpu() for theta in thetas]


def _reduce(values: np.ndarray, channel: int) -> np.ndarray:
    """(Nbins, D, ...) -> (Nbins, ...): one channel, or the mean over channels (channel = −1)."""
    return values.mean(axis=1) if channel < 0 else values[:, channel]


def _plot_lines(path: str, x: np.ndarray, curves: np.ndarray, title: str, xlabel: str, ylabel: str, log: bool) -> None:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's loggers leave the root at DEBUG
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.cm.viridis
    norm = matplotlib.colors.Normalize(vmin=0, vmax=max(len(curves) - 1, 1))
    for b, curve in enumerate(curves):
        ax.plot(x, curve, color=cmap(norm(b)), lw=1)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="time bin")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_filters(model, tokens: Tensor, out_dir: str, channel: int = -1, taps: int = 64, nfreq: int = 256) -> List[str]:
    """Draw the figures and write filters.npz into out_dir (created atomically); returns the files."""
    thetas = record_theta(model, tokens)
    dim = thetas[0].size(1)
    if not -1 <= channel < dim:
        raise ValueError(f"--channel must be −1 (mean) or in [0, {dim}), got {channel}")
    freqs = np.linspace(0.0, 0.5, nfreq)
    which = "mean over channels" if channel < 0 else f"channel {channel}"
    with atomic_directory(out_dir, replace=True) as tmp:
        arrays = {"freqs": freqs, "tokens": tokens.cpu().numpy(), "channel": np.array(channel)}
        for i, theta in enumerate(thetas):
            response = _reduce(frequency_response(theta, freqs), channel)  # (Nbins, Nfreq)
            impulse = _reduce(impulse_response(theta, taps), channel)  # (Nbins, taps)
            arrays.update({f"theta_layer{i}": theta.numpy(), f"response_layer{i}": response,
                           f"impulse_layer{i}": impulse})
            _plot_lines(os.path.join(tmp, f"layer{i}_frequency_response.png"), freqs, response,
                        f"layer {i}: frequency response per time bin ({which})", "frequency (cycles/sample)",
                        "|H(e^jω)|", log=True)
            _plot_lines(os.path.join(tmp, f"layer{i}_impulse_response.png"), np.arange(taps), impulse,
                        f"layer {i}: impulse response per time bin ({which})", "n", "h[n]", log=False)
        np.savez(os.path.join(tmp, "filters.npz"), **arrays)
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="focus-plot-filters", description=__doc__.split("\n")[0])
    parser.add_argument("--path", required=True, help="focus_lm checkpoint")
    parser.add_argument("--data", required=True, help="data directory with the model's dict.txt")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="input text")
    source.add_argument("--text-file", help="file whose bytes are the input")
    parser.add_argument("--out-dir", required=True, help="directory for the PNGs and filters.npz (replaced)")
    parser.add_argument("--max-bytes", type=int, default=4096, help="use at most this many bytes of the input")
    parser.add_argument("--channel", type=int, default=-1, help="channel to draw; −1: mean over channels")
    parser.add_argument("--taps", type=int, default=64, help="impulse-response length drawn")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    args = parser.parse_args(argv)
    try:
        from ..inference.hub import FocusLMHub
        from ..inference.stream_scoring import load_model
        model, task = load_model(args.path, args.data, args.cpu)
        hub = FocusLMHub(None, task, model)
        data = args.text.encode("utf-8") if args.text is not None else open(args.text_file, "rb").read()
        if not data or args.max_bytes < 1:
            raise ValueError("the input text is empty")
        tokens = torch.cat([torch.tensor([task.target_dictionary.eos()], device=hub.device),
                            hub.encode(data[: args.max_bytes])])
        files = plot_filters(model, tokens, args.out_dir, args.channel, args.taps)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(files))
    return 0


def cli_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli_main()
