"""--bidirectional-filter reads no padding (issue 32): the same sequence, alone and unpadded, padded alone,
and padded beside longer sequences in a batch, gives the same outputs at its real positions, for every
filter that ``config.validate`` lets run both ways. Before the fix the reversed pass ran through the pads
first (zeroed at the stack's input only, not after a LayerNorm or a block): every case below failed, the
outputs at real positions moving by 1.6e-4 (static, causal mode) to 4.7 (selective, both inputs)."""
from dataclasses import replace

import pytest
import torch

from fairseq_focus.modules.config import FILTERS, FocusStackConfig, validate
from fairseq_focus.modules.focus_stack import FocusStack
from helpers import stir

BASE = FocusStackConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=16,
                        decoder_z_dim=8, num_filters=2, bin_size=4, chunk_size=8, ema_ndim=4, dropout=0.0,
                        theta_param="stable", theta_init="ring", product_head_dim=2, bidirectional_filter=True)
MODES = {"selective": ("carry",), "static": ("causal", "carry", "paper"), "ema": ("carry",)}
REAL = 21  # the sequence's length; the stack pads it to 24 (chunks of 8) when it comes alone: 3 pads, not whole bins of 4


def bidirectional_filters():
    """The --focus-filter values that validate accepts with --bidirectional-filter."""
    accepted = []
    for filt in FILTERS:
        try:
            validate(replace(BASE, focus_filter=filt, iir_mode="carry"))
        except ValueError:
            continue
        accepted.append(filt)
    return accepted


def cases():
    for filt in bidirectional_filters():
        for mode in MODES[filt]:  # a filter missing from MODES fails here: add it
            for wiring in ("paper", "mega"):
                yield filt, mode, wiring, "x"
        # the key-value product path (alone, and beside the x path) on the causal carry filter; paper mode
        # filters a whole bin circularly, and the product path's biases make its pads non-zero there
        yield filt, "carry", "mega", "product"
        yield filt, "carry", "paper", "both"


def test_the_filters_that_run_both_ways_are_the_ones_covered():
    assert set(bidirectional_filters()) == {"selective", "static", "ema"}


def build(filt: str, mode: str, wiring: str, inp: str) -> FocusStack:
    torch.manual_seed(0)
    cfg = replace(BASE, focus_filter=filt, iir_mode=mode, block_wiring=wiring, filter_input=inp)
    stack = FocusStack(cfg)
    stir(stack)  # the selective head's Θ moves with its input
    with torch.no_grad():  # every bias (norms' too) off its zero init: zeros at the pads would stay zeros
        for name, param in stack.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    return stack.double().eval()


def batch(rows, length):
    """rows (each (1, l, D)) right-padded with noise to ``length``: x (B, length, D), padding_mask (B, length)."""
    xs, masks = [], []
    for row in rows:
        pad = length - row.size(1)
        xs.append(torch.cat([row, 5.0 * torch.randn(1, pad, row.size(2), dtype=row.dtype)], dim=1))
        masks.append(torch.arange(length).unsqueeze(0) >= row.size(1))
    return torch.cat(xs), torch.cat(masks)


@pytest.mark.parametrize("filt,mode,wiring,inp", list(cases()))
def test_padding_changes_nothing_at_real_positions(filt, mode, wiring, inp):
    stack = build(filt, mode, wiring, inp)
    gen = torch.Generator().manual_seed(1)
    seq = torch.randn(1, REAL, 16, dtype=torch.float64, generator=gen)
    longer = [torch.randn(1, n, 16, dtype=torch.float64, generator=gen) for n in (32, 40, 27)]
    with torch.no_grad():
        reference = stack(seq)[0]  # alone, no mask: the stack's own right-padding to 24
        settings = {"alone, padded to 24": (batch([seq], 24), 0),
                    "beside 32 tokens": (batch([seq, longer[0]], 32), 0),
                    "between 40 and 27 tokens": (batch([longer[1], seq, longer[2]], 40), 1)}
        for name, ((x, mask), row) in settings.items():
            out = stack(x, mask)[row, :REAL]
            moved = (out - reference[:REAL]).abs().max().item()
            assert moved <= 1e-6, f"{name}: outputs at real positions moved by {moved:.3g}"
