"""--focus-filter none (a study ablation): x_f = x, so the block is its chunked attention with its gates
and nothing crosses attention chunks. Its refusals, causality, and the chunk-local property asserted by
perturbation in 1- and 2-layer models, with the same check catching the EMA's path across chunks.
Streaming == parallel for it runs in tests/test_incremental.py (its VARIANTS)."""
import pytest
import torch
from fairseq.data import Dictionary

from causality import assert_causal, assert_chunk_local
from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig, check_causal
from fairseq_focus.modules.global_filter import IdentityFilter

CHUNK = 8
LENGTH = 29  # three whole chunks and a short fourth (the stack pads it)


def _dictionary() -> Dictionary:
    d = Dictionary()
    for i in range(20):
        d.add_symbol(str(i))
    return d


def _decoder(focus_filter: str, layers: int, wiring: str, **extra) -> FocusDecoder:
    torch.manual_seed(0)
    cfg = FocusLMConfig(decoder_layers=layers, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=24,
                        decoder_z_dim=8, chunk_size=CHUNK, bin_size=8, hyper_kernel_size=32, focus_filter=focus_filter,
                        block_wiring=wiring, max_target_positions=256, dropout=0.0, **extra)
    return FocusDecoder(cfg, _dictionary()).eval()


def _tokens(decoder: FocusDecoder) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(decoder.dictionary.nspecial, len(decoder.dictionary), (3, LENGTH), generator=g)


def _vocab(decoder: FocusDecoder) -> range:
    return range(decoder.dictionary.nspecial, len(decoder.dictionary))


def _logits(decoder):
    return lambda tokens: decoder(tokens)[0]


def test_the_filter_is_the_identity_without_parameters():
    decoder = _decoder("none", 2, "mega")
    for block in decoder.stack.blocks:
        assert isinstance(block.attn.filter, IdentityFilter) and not list(block.attn.filter.parameters())
    x = torch.randn(2, 5, 16)
    assert block.attn.filter(x, None) is x and block.attn.filter.forward_stream(x, None, 3, {}) is x
    assert decoder.stack.bin_size == 1 and decoder.stack.multiple == CHUNK  # no bins: pads to whole chunks only
    ema = _decoder("ema", 2, "mega")
    n_ema = sum(p.numel() for b in ema.stack.blocks for p in b.attn.filter.parameters())
    assert sum(p.numel() for p in ema.parameters()) - sum(p.numel() for p in decoder.parameters()) == n_ema


@pytest.mark.parametrize("extra,match", [
    ({"filter_input": "product", "product_head_dim": 2},
     "--focus-filter none has no filter for --filter-input product"),
    ({"filter_input": "both", "product_head_dim": 2}, "--focus-filter none has no filter for --filter-input both"),
    ({"bidirectional_filter": True}, "--focus-filter none has no filter"),
])
def test_combinations_without_a_filter_are_refused(extra, match):
    with pytest.raises(ValueError, match=match):
        _decoder("none", 1, "paper", **extra)


def test_no_iir_mode_is_read_so_none_is_causal_in_every_mode():
    check_causal(FocusLMConfig(focus_filter="none", iir_mode="paper"))  # as for the EMA: no IIR, nothing refused
    with pytest.raises(ValueError, match="is not causal"):
        check_causal(FocusLMConfig(focus_filter="static", iir_mode="paper"))


@pytest.mark.parametrize("wiring", ["paper", "mega"])
@pytest.mark.parametrize("layers", [1, 2])
def test_none_is_causal(layers, wiring):
    decoder = _decoder("none", layers, wiring)
    for t in (0, 7, 8, 20, LENGTH - 2):
        assert_causal(_logits(decoder), _tokens(decoder), t, _vocab(decoder))


@pytest.mark.parametrize("wiring", ["paper", "mega"])
@pytest.mark.parametrize("layers", [1, 2])
def test_nothing_crosses_chunks(layers, wiring):
    """A token changed in one chunk moves no logit of any later chunk (exactly), while it does move
    its own chunk's later logits (the perturbation is seen where it may be)."""
    decoder = _decoder("none", layers, wiring)
    tokens = _tokens(decoder)
    for s in (0, 3, 7, 8, 13, 23):
        assert_chunk_local(_logits(decoder), tokens, s, CHUNK, _vocab(decoder))
    changed = tokens.clone()
    changed[:, 3] = decoder.dictionary.nspecial + (changed[:, 3] - decoder.dictionary.nspecial + 1) % 20
    with torch.no_grad():
        moved = (decoder(changed)[0][:, 3:CHUNK] - decoder(tokens)[0][:, 3:CHUNK]).abs().amax(dim=-1)
    assert (moved > 1e-6).all()  # small at init (N(0, 0.02) projections), but there


@pytest.mark.parametrize("wiring", ["paper", "mega"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_chunk_check_catches_the_ema_path_across_chunks(layers, wiring):
    decoder = _decoder("ema", layers, wiring)
    with pytest.raises(AssertionError, match="later chunks"):
        assert_chunk_local(_logits(decoder), _tokens(decoder), 3, CHUNK, _vocab(decoder))
