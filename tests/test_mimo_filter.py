"""--focus-filter mimo (modules/mimo_filter.py) and --filter-conv: the rotated chunked SSD against a plain loop
over the complex-pole recurrence, and the model's modes (causal, streaming, beam, gradients)."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig
from fairseq_focus.modules.mimo_filter import MIMOIIRFilter
from causality import assert_causal
from helpers import stir
from test_incremental import _segments, byte_dictionary

DICT = byte_dictionary()
VOCAB = range(DICT.nspecial, len(DICT))


def loop_reference(f: MIMOIIRFilter, x):
    """x (B, L, D) -> x_f by the recurrence itself: h = r R(θ) h + dt B uᵀ per head, pairs rotated by θ[t]."""
    u = F.silu(f.conv(x)) if f.conv is not None else x
    n, half = f.d_state, f.d_state // 2
    B, C, omega, dt = f.proj(u).double().split([n, n, half, f.heads], dim=-1)
    dt = F.softplus(dt + f.dt_bias.double())
    theta = dt.mean(-1, keepdim=True) * (omega + f.omega_bias.double())
    A = -torch.exp(f.A_log.double())
    h = torch.zeros(x.size(0), f.heads, n, f.head_dim, dtype=torch.float64)
    ys = []
    for t in range(x.size(1)):
        c, s = theta[:, t].cos()[:, None, :, None], theta[:, t].sin()[:, None, :, None]
        h1, h2 = h[:, :, :half], h[:, :, half:]
        rotated = torch.cat([c * h1 - s * h2, s * h1 + c * h2], dim=2)           # R(θ) on each pair
        ut = u[:, t].double().unflatten(-1, (f.heads, f.head_dim))              # (B, H, P)
        h = torch.exp(dt[:, t] * A)[..., None, None] * rotated \
            + (dt[:, t, :, None, None] * B[:, t, None, :, None]) * ut[:, :, None, :]
        ys.append(torch.einsum("bhnp,bn->bhp", h, C[:, t]).flatten(-2))
    y = torch.stack(ys, 1)
    return F.silu(y + f.D.double() * u.double())


@pytest.mark.parametrize("conv", [0, 3])
def test_rotated_chunked_ssd_equals_the_complex_pole_loop(conv):
    torch.manual_seed(0)
    f = MIMOIIRFilter(dim=8, d_state=6, head_dim=4, conv_kernel=conv, chunk=5).double()
    with torch.no_grad():
        f.proj.weight.normal_(0, 0.5)  # angles and maps far from their init
        f.omega_bias.mul_(20)
    x = torch.randn(2, 23, 8, dtype=torch.float64)
    torch.testing.assert_close(f(x, None), loop_reference(f, x), rtol=1e-9, atol=1e-9)


def test_the_loop_reference_sees_the_rotation():
    """With the angles zeroed the reference must change: it checks the rotation, not only the decay."""
    torch.manual_seed(0)
    f = MIMOIIRFilter(dim=8, d_state=6, head_dim=4, conv_kernel=0, chunk=5).double()
    with torch.no_grad():
        f.proj.weight.normal_(0, 0.5)
        f.omega_bias.mul_(20)
    x = torch.randn(1, 15, 8, dtype=torch.float64)
    before = loop_reference(f, x)
    with torch.no_grad():
        f.omega_bias.zero_()
    assert (loop_reference(f, x) - before).abs().max() > 1e-2


def tiny(filt: str, conv: int, wiring="paper", ffn=24, seed=0) -> FocusDecoder:
    torch.manual_seed(seed)
    cfg = FocusLMConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=ffn,
                        decoder_z_dim=8, chunk_size=12, focus_filter=filt, iir_mode="carry", theta_param="stable",
                        max_target_positions=4096, dropout=0.0, mimo_state=4, mimo_head_dim=8, filter_conv=conv,
                        block_wiring=wiring, rel_pos_bias="rotary" if wiring == "mega" else "simple")
    decoder = FocusDecoder(cfg, DICT)
    stir(decoder)
    return decoder.double().eval()


# (filter, conv, wiring, FFN width); FFN 0 = blocks without an FFN (--decoder-ffn-embed-dim 0)
CASES = [("mimo", 0, "paper", 24), ("mimo", 2, "mega", 24), ("selective", 4, "paper", 24), ("ema", 3, "mega", 24),
         ("selective", 0, "paper", 0)]


def _lp(decoder, tokens, **kw):
    return decoder(tokens, **kw)[0].log_softmax(-1)


@pytest.mark.parametrize("filt,conv,wiring,ffn", CASES)
def test_causal_by_perturbation(filt, conv, wiring, ffn):
    decoder = tiny(filt, conv, wiring, ffn)
    tokens = torch.randint(VOCAB.start, VOCAB.stop, (2, 40), generator=torch.Generator().manual_seed(1))
    for t in (0, 11, 12, 30):
        assert_causal(lambda x: _lp(decoder, x), tokens, t, VOCAB)


@pytest.mark.parametrize("filt,conv,wiring,ffn", CASES)
def test_streaming_segments_steps_and_beam_equal_parallel(filt, conv, wiring, ffn):
    decoder = tiny(filt, conv, wiring, ffn)
    length = 61
    tokens = torch.randint(VOCAB.start, VOCAB.stop, (3, length), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = _lp(decoder, tokens)
        state: dict = {}
        pieces = [decoder.forward_stream(tokens[:, p:p + n], state).log_softmax(-1) for p, n in _segments(length)]
        torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=0, atol=1e-9)
        state, steps = {}, []
        for t in range(20):
            steps.append(_lp(decoder, tokens[:, :t + 1], incremental_state=state))
        order = torch.tensor([1, 1, 0])
        decoder.reorder_incremental_state_scripting(state, order)
        nxt = _lp(decoder, tokens[order, :21], incremental_state=state)
    torch.testing.assert_close(torch.cat(steps, 1), full[:, :20], rtol=0, atol=1e-9)
    torch.testing.assert_close(nxt, _lp(decoder, tokens[order, :21])[:, -1:], rtol=0, atol=1e-9)


@pytest.mark.parametrize("filt,conv,wiring,ffn", CASES)
def test_every_parameter_gets_a_gradient(filt, conv, wiring, ffn):
    decoder = tiny(filt, conv, wiring, ffn).train()
    tokens = torch.randint(VOCAB.start, VOCAB.stop, (2, 30))
    logits, _ = decoder(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_bad_sizes_are_refused_with_a_reason():
    cfg = replace(FocusLMConfig(), focus_filter="mimo", decoder_embed_dim=16, mimo_head_dim=6)
    with pytest.raises(ValueError, match="mimo-head-dim"):
        FocusDecoder(cfg, DICT)


def test_ffn_width_0_builds_blocks_without_an_ffn():
    decoder = tiny("selective", 0, ffn=0)
    assert not [n for n, _ in decoder.named_parameters() if ".ffn." in n]
    assert [n for n, _ in tiny("selective", 0).named_parameters() if ".ffn." in n]
