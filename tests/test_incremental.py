"""Streaming / incremental decoding equals the parallel forward (issue 7).

Ops: every *_stream / *_segment fast path against its loop twin and against the parallel op, over
cut points that straddle bin and chunk boundaries. Model: fairseq's incremental contract (whole
prefix in, last step out) token by token, arbitrary segments, and a beam reorder, for every filter
and causal IIR mode, at lengths that are multiples of neither the bin nor the chunk.
"""
import copy
import math

import pytest
import torch
from fairseq.data import Dictionary

from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig
from fairseq_focus.ops.chunked_attention import attention_in_chunk, chunked_attention_ref
from fairseq_focus.ops.ema import ema_filter, ema_filter_stream, ema_filter_stream_ref
from fairseq_focus.ops.iir import iir_filter, iir_filter_segment, iir_filter_segment_ref
from fairseq_focus.ops.long_conv import causal_conv, causal_conv_stream, causal_conv_stream_ref
from fairseq_focus.ops.segments import blocks_touched, split_at_boundaries
from fairseq_focus.inference.stream_scoring import stream_nll
from helpers import stir

CUTS = [1, 3, 1, 8, 13, 1, 1, 5, 2, 11, 40]  # segment lengths, R = 8 below: heads, whole bins, tails


def _segments(total):
    pos = 0
    for n in CUTS:
        n = min(n, total - pos)
        if n == 0:
            return
        yield pos, n
        pos += n
    assert pos == total, "CUTS must cover the sequence"


# ---- ops ------------------------------------------------------------------------------------------

def test_split_at_boundaries_covers_and_aligns():
    for size in (1, 4, 7):
        for pos in range(0, 20):
            for n in range(0, 20):
                head, middle, tail = split_at_boundaries(pos, n, size)
                assert head + middle + tail == n and middle % size == 0 and tail < size
                assert head == 0 or (pos + head) % size == 0 or head == n  # head ends a block, or the segment
                assert tail == 0 or (pos + head + middle) % size == 0
                touched = {(pos + i) // size for i in range(n)}
                assert blocks_touched(pos, n, size) == len(touched)


@pytest.mark.parametrize("mode", ["causal", "carry"])
def test_iir_segment_matches_reference_and_parallel(mode):
    torch.manual_seed(0)
    bsz, dim, nfilt, r, length = 2, 3, 2, 8, 83
    x = torch.randn(bsz, dim, length, dtype=torch.float64)
    nbins = -(-length // r)
    theta = torch.rand(bsz, nbins, dim, nfilt, 2, dtype=torch.float64)
    full, full_state = iir_filter(torch.nn.functional.pad(x, (0, nbins * r - length)), theta, mode, return_state=True)
    state = state_ref = None
    outs, outs_ref = [], []
    for pos, n in _segments(length):
        b0 = pos // r
        th = theta[:, b0:b0 + blocks_touched(pos, n, r)]
        y, state = iir_filter_segment(x[..., pos:pos + n], th, pos % r, r, mode, state)
        y_ref, state_ref = iir_filter_segment_ref(x[..., pos:pos + n], th, pos % r, r, mode, state_ref)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state, state_ref, rtol=1e-10, atol=1e-10)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), full[..., :length], rtol=1e-10, atol=1e-10)
    # the final state of the stream equals the ref loop's over the whole (unpadded) input
    _, loop_state = iir_filter_segment_ref(x, theta, 0, r, mode)
    torch.testing.assert_close(state, loop_state, rtol=1e-10, atol=1e-10)
    if length % r == 0:
        torch.testing.assert_close(state, full_state)


def test_iir_segment_refuses_wrong_theta_count():
    x, theta = torch.randn(1, 2, 5), torch.rand(1, 1, 2, 1, 2)
    with pytest.raises(ValueError, match="touch 2 bins"):
        iir_filter_segment(x, theta, 6, 8, "carry")
    with pytest.raises(ValueError, match="causal iir mode"):
        iir_filter_segment(x, theta, 0, 8, "paper")


def test_causal_conv_stream_matches_reference_and_parallel():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 83, dtype=torch.float64)
    kernel = torch.randn(3, 16, dtype=torch.float64)
    history = history_ref = torch.zeros(2, 3, 15, dtype=torch.float64)
    outs = []
    for pos, n in _segments(x.size(-1)):
        y, history = causal_conv_stream(x[..., pos:pos + n], kernel, history)
        y_ref, history_ref = causal_conv_stream_ref(x[..., pos:pos + n], kernel, history_ref)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(history, history_ref)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), causal_conv(x, kernel))


def test_ema_stream_matches_reference_and_parallel():
    torch.manual_seed(0)
    dim, ndim = 3, 4
    x = torch.randn(2, dim, 83, dtype=torch.float64)
    p, q = torch.rand(dim, ndim, dtype=torch.float64), torch.rand(dim, ndim, dtype=torch.float64)
    beta, gamma = torch.randn(dim, ndim, dtype=torch.float64), torch.randn(dim, ndim, dtype=torch.float64)
    state = state_ref = None
    outs = []
    for pos, n in _segments(x.size(-1)):
        y, state = ema_filter_stream(x[..., pos:pos + n], p, q, beta, gamma, state)
        y_ref, state_ref = ema_filter_stream_ref(x[..., pos:pos + n], p, q, beta, gamma, state_ref)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(state, state_ref)
        outs.append(y)
    full, full_state = ema_filter(x, p, q, beta, gamma, return_state=True)
    torch.testing.assert_close(torch.cat(outs, -1), full)
    torch.testing.assert_close(state, full_state)


def test_attention_in_chunk_matches_reference():
    torch.manual_seed(0)
    m = 8
    q, k, v = torch.randn(2, 16, 4), torch.randn(2, 16, 4), torch.randn(2, 16, 5)
    bias = torch.randn(2 * m - 1)
    ref = chunked_attention_ref(q, k, v, bias, m)
    for start, stop in [(8, 9), (11, 14), (13, 16), (0, 8), (5, 6)]:
        chunk0 = start - start % m
        out = attention_in_chunk(q[:, start:stop], k[:, chunk0:stop], v[:, chunk0:stop], bias, m)
        torch.testing.assert_close(out, ref[:, start:stop], rtol=1e-5, atol=1e-6)


# ---- the decoder ------------------------------------------------------------------------------

def byte_dictionary() -> Dictionary:
    d = Dictionary()
    for b in range(256):
        d.add_symbol(str(b))
    return d


VARIANTS = [  # (focus_filter, iir_mode, share_hypernet[, theta_param]); stable: started on the ring 0.9 ≤ |p| ≤ 0.999
    ("adaptive", "causal", True), ("adaptive", "carry", True), ("adaptive", "causal", False),
    ("adaptive", "carry", False), ("static", "causal", True), ("static", "carry", True), ("ema", "causal", True),
    ("adaptive", "carry", True, "stable"), ("adaptive", "causal", False, "stable"), ("static", "carry", True, "stable"),
]
VARIANTS = [(v + ("paper",))[:4] + ("paper",) for v in VARIANTS] + [v[:3] + ("paper", "mega") for v in VARIANTS[:7] if v[2]]
# --filter-input product (4 heads of d = 2): each filter, both causal modes, shared and own encoder, both wirings
VARIANTS += [v + ("product",) for v in [
    ("adaptive", "carry", True, "paper", "paper"), ("adaptive", "causal", False, "paper", "paper"),
    ("static", "carry", True, "stable", "paper"), ("static", "causal", True, "paper", "paper"),
    ("ema", "causal", True, "paper", "mega"), ("adaptive", "carry", False, "stable", "mega"),
]]
# --filter-input both (the x path plus the product path): own encoders, and MEGA's EMA in MEGA's wiring
VARIANTS += [("adaptive", "carry", False, "stable", "paper", "both"), ("ema", "causal", True, "paper", "mega", "both")]
# the Θ sources that contain the static filter: per-token selection (x and product paths, both wirings), the residual hypernetwork
VARIANTS += [("selective", "carry", True, "stable", "paper", "x"), ("selective", "carry", True, "stable", "mega", "x"),
             ("selective", "carry", True, "stable", "paper", "product"), ("adaptive-residual", "carry", True, "stable", "paper", "x")]
# --focus-filter none (a study ablation: no filter, nothing crosses chunks): nothing to stream but the attention cache
VARIANTS += [("none", "causal", True, "paper", "paper", "x"), ("none", "causal", True, "paper", "mega", "x")]
LENGTH = 61  # bins of 8 and chunks of 12: a multiple of neither, crossing both several times


def tiny_decoder(focus_filter, iir_mode, share_hypernet, theta_param="paper", block_wiring="paper",
                 filter_input="x", seed=0) -> FocusDecoder:
    """The mega wiring with MEGA's rotary relative bias, the paper wiring with the simple one."""
    torch.manual_seed(seed)
    ring = {"theta_init": "ring"} if theta_param == "stable" else {}
    cfg = FocusLMConfig(**ring, theta_param=theta_param,
        decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=24, decoder_z_dim=8,
        bin_size=8, oversampling=4, chunk_size=12, hyper_kernel_size=20, num_filters=2, focus_filter=focus_filter,
        iir_mode=iir_mode, no_share_hypernet=not share_hypernet, max_target_positions=4096, dropout=0.1,
        block_wiring=block_wiring, rel_pos_bias="rotary" if block_wiring == "mega" else "simple",
        filter_input=filter_input, product_head_dim=2,
    )
    decoder = FocusDecoder(cfg, byte_dictionary())
    stir(decoder)  # selective / adaptive-residual start exactly static: give their input parts weights
    # make the filters matter: a larger global-conv kernel and embeddings spread Θ over (0, 1)
    with torch.no_grad():
        for module in decoder.modules():
            if hasattr(module, "kernel"):
                module.kernel.mul_(4.0)
    # The stable ring puts poles at radius up to 0.999, where the recursion amplifies rounding: in fp32
    # the parallel and the streaming paths (different summation orders) differed by 4.4e-5 in
    # log-probability for static-carry (fp64: 2.9e-13), so those variants run in fp64.
    # The product path amplifies rounding the same way (kv through poles near the circle), so it runs in fp64 too
    # (also inside --filter-input both).
    return (decoder.double() if theta_param == "stable" or filter_input != "x" else decoder).eval()


def random_tokens(decoder, bsz, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(decoder.dictionary.nspecial, len(decoder.dictionary), (bsz, length), generator=g)


def parallel_lprobs(decoder, tokens):
    with torch.no_grad():
        return decoder(tokens)[0].log_softmax(-1)


def step_lprobs(decoder, tokens, state, start=0):
    """fairseq's contract: the whole prefix each step, the last position's output back."""
    outs = []
    with torch.no_grad():
        for t in range(start, tokens.size(1)):
            outs.append(decoder(tokens[:, :t + 1], incremental_state=state)[0].log_softmax(-1))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("variant", VARIANTS, ids=["-".join(map(str, v)) for v in VARIANTS])
def test_token_by_token_equals_parallel(variant):
    decoder = tiny_decoder(*variant)
    tokens = random_tokens(decoder, 3, LENGTH)
    full = parallel_lprobs(decoder, tokens)
    stepped = step_lprobs(decoder, tokens, {})
    assert (stepped - full).abs().max().item() < 1e-5
    assert decoder.stack.position({}) == 0


@pytest.mark.parametrize("variant", VARIANTS, ids=["-".join(map(str, v)) for v in VARIANTS])
def test_segments_and_beam_reorder_equal_parallel(variant):
    decoder = tiny_decoder(*variant)
    tokens = random_tokens(decoder, 3, LENGTH)
    # arbitrary segments of a stream (a prompt, single steps, whole bins, a long tail)
    state: dict = {}
    with torch.no_grad():
        pieces = [decoder.forward_stream(tokens[:, pos:pos + n], state).log_softmax(-1) for pos, n in _segments(LENGTH)]
    assert (torch.cat(pieces, 1) - parallel_lprobs(decoder, tokens)).abs().max().item() < 1e-5
    # beam search: decode 29 steps, keep streams [2, 0, 0], continue with new tokens
    state = {}
    split = 29
    step_lprobs(decoder, tokens[:, :split], state)
    new_order = torch.tensor([2, 0, 0])
    decoder.reorder_incremental_state_scripting(state, new_order)
    continued = torch.cat([tokens[new_order, :split], random_tokens(decoder, 3, LENGTH - split, seed=7)], dim=1)
    after = step_lprobs(decoder, continued, state, start=split)
    assert (after - parallel_lprobs(decoder, continued)[:, split:]).abs().max().item() < 1e-5


def test_the_check_can_fail():
    """A stream whose state lost a bin's Θ (wrong hypernetwork embedding) must differ."""
    decoder = tiny_decoder("adaptive", "carry", True)
    tokens = random_tokens(decoder, 2, LENGTH)
    state: dict = {}
    with torch.no_grad():
        decoder.forward_stream(tokens[:, :20], state)
        hyper_cache = decoder.stack.shared_encoder.get_cache(state)
        decoder.stack.shared_encoder.set_cache(state, {**hyper_cache, "last": torch.zeros_like(hyper_cache["last"])})
        rest = decoder.forward_stream(tokens[:, 20:], state).log_softmax(-1)
    assert (rest - parallel_lprobs(decoder, tokens)[:, 20:]).abs().max().item() > 1e-4


def test_incremental_refuses_a_prefix_it_has_already_seen():
    decoder = tiny_decoder("adaptive", "causal", True)
    tokens = random_tokens(decoder, 1, 10)
    state: dict = {}
    with torch.no_grad():
        decoder(tokens, incremental_state=state)
        with pytest.raises(ValueError, match="has seen 10 tokens"):
            decoder(tokens, incremental_state=state)


def test_padding_inside_a_stream_is_treated_as_in_the_parallel_forward():
    """Beam search keeps dead hypotheses whose tokens are pads; both paths mask them the same way."""
    decoder = tiny_decoder("adaptive", "carry", True)
    tokens = random_tokens(decoder, 2, 40)
    tokens[0, 13:15] = decoder.padding_idx
    tokens[1, 24] = decoder.padding_idx
    full = parallel_lprobs(decoder, tokens)
    stepped = step_lprobs(decoder, tokens, {})
    assert (stepped - full).abs().max().item() < 1e-5


@pytest.mark.parametrize("mode", ["carry", "causal"])
@pytest.mark.parametrize("filter_input", ["x", "product"])
def test_streaming_score_equals_full_parallel_loss(mode, filter_input):
    """score_stream's segment loop (state carried) = one parallel forward's loss over the stream."""
    decoder = tiny_decoder("adaptive", mode, True, filter_input=filter_input)
    stream = random_tokens(decoder, 1, 157)[0]
    eos = decoder.dictionary.eos()
    inputs = torch.cat([torch.tensor([eos]), stream[:-1]])
    with torch.no_grad():
        full = -decoder(inputs.unsqueeze(0))[0][0].log_softmax(-1).gather(-1, stream.unsqueeze(-1)).double().sum().item()
    for segment_len in (1, 10, 24, 157, 500):
        assert math.isclose(stream_nll(decoder, stream, eos, segment_len), full, rel_tol=1e-6)


def test_sequence_generator_beam_search_same_with_and_without_state():
    """fairseq's SequenceGenerator (beam 3: reorders every step) gives the same hypotheses and
    scores through incremental_state as by recomputing every prefix."""
    from fairseq.sequence_generator import SequenceGenerator
    from fairseq.models import FairseqLanguageModel

    decoder = tiny_decoder("adaptive", "carry", True)
    model = FairseqLanguageModel(decoder).eval()
    sample = {"net_input": {"src_tokens": torch.full((2, 1), decoder.dictionary.eos()), "src_lengths": torch.ones(2)}}
    prefix = random_tokens(decoder, 2, 5)

    def generate(incremental):
        gen = SequenceGenerator([copy.deepcopy(model)], decoder.dictionary, beam_size=3, max_len_b=40, min_len=40)
        gen.model.has_incremental = incremental
        with torch.no_grad():
            return gen.generate([gen.model.single_model], sample, prefix_tokens=prefix,
                                bos_token=decoder.dictionary.eos())

    with_state, recomputed = generate(True), generate(False)
    for hyps_a, hyps_b in zip(with_state, recomputed):
        for a, b in zip(hyps_a, hyps_b):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["positional_scores"], b["positional_scores"], rtol=1e-5, atol=1e-5)


def test_cached_regularized_kernel_follows_parameter_updates():
    """Decoding reuses the regularized global-conv kernel; an in-place update must invalidate it."""
    from fairseq_focus.ops.long_conv import regularize_kernel
    hyper = tiny_decoder("adaptive", "carry", True).stack.shared_encoder
    with torch.no_grad():
        first = hyper.regularized_kernel()
        assert hyper.regularized_kernel() is first  # reused
        hyper.kernel.mul_(0.5)  # what an optimizer step or load_state_dict does
        torch.testing.assert_close(hyper.regularized_kernel(),
                                   regularize_kernel(hyper.kernel, hyper.squash_lambda, hyper.smooth_width))
    assert hyper.regularized_kernel().requires_grad  # with autograd on: recomputed, differentiable
