"""``--global-attention based`` (issue 25, item 1): the Taylor-feature linear attention op, its short
convolution, the module and the option in the model.

Ops: the chunked op equals its loop twin (values, final state, every gradient; fp64; odd lengths, several
chunks, with and without decay, masked keys, a carried state); causality by perturbation, and the same
checker catches a planted leak; streaming (single steps, segments continued from the state) equals the
parallel op. The short conv: its twin, the long-conv convention, causality, streaming. The model: token by
token, segments and a beam reorder equal the parallel forward with the option on (both wirings, both
decays); the option off builds the same model as before; config errors are one line; ``focus_recall`` has the option on by
default (``focus_recall_paper`` and ``--global-attention none`` off), takes the flag through fairseq's parser, is
causal with it, and trains a few updates through ``fairseq-train``.
"""
import json
import math

import pytest
import torch

from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig
from fairseq_focus.modules.config import FocusStackConfig, validate
from fairseq_focus.modules.global_linear_attention import GlobalLinearAttention, build_global_attention
from fairseq_focus.ops.linear_attention import (_entering_states, _entering_states_matrix, feature_size,
                                                linear_attention, linear_attention_ref, linear_attention_step,
                                                taylor_features)
from fairseq_focus.ops.long_conv import causal_conv_ref
from fairseq_focus.ops.short_conv import short_conv, short_conv_ref, short_conv_stream
from helpers import USER_DIR, run
from test_incremental import _segments, byte_dictionary, parallel_lprobs, random_tokens, step_lprobs

D64 = torch.float64


def qkv(bsz=2, length=23, heads=2, f=3, e=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(bsz, length, heads, d, dtype=D64, generator=g) for d in (f, f, e))


def random_state(bsz, heads, f, e, seed=5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(bsz, heads, feature_size(f), e + 1, dtype=D64, generator=g)


# ---- the feature map ---------------------------------------------------------------------------------

def test_taylor_features_give_the_second_order_taylor_kernel():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(50, 16, dtype=D64, generator=g), 3 * torch.randn(50, 16, dtype=D64, generator=g)
    pq, pk = taylor_features(q), taylor_features(k)
    assert pq.shape == (50, 273) == (50, feature_size(16))
    s = (q * k).sum(-1) / 4.0  # q·k / √F
    torch.testing.assert_close((pq * pk).sum(-1), 1 + s + s * s / 2, rtol=1e-12, atol=1e-12)
    assert float((pq * pk).sum(-1).min()) >= 0.5  # ((1 + s)² + 1) / 2


# ---- the chunked op against its twin -------------------------------------------------------------------

def _loss_and_grads(fn, q, k, v, log_decay, state):
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    extra = [t.clone().requires_grad_(True) for t in (log_decay, state) if t is not None]
    it = iter(extra)
    ld = next(it) if log_decay is not None else None
    st = next(it) if state is not None else None
    y, s = fn(*leaves, ld, st)
    g = torch.Generator().manual_seed(9)
    weights = [torch.randn(t.shape, dtype=D64, generator=g) for t in (y, s)]
    loss = (y * weights[0]).sum() + (s * weights[1]).sum()
    grads = torch.autograd.grad(loss, leaves + extra)
    return y, s, grads


@pytest.mark.parametrize("length", [1, 7, 23, 37])
@pytest.mark.parametrize("decay", [False, True])
@pytest.mark.parametrize("carried", [False, True])
def test_chunked_equals_loop_twin_values_state_and_gradients(length, decay, carried):
    q, k, v = qkv(length=length)
    log_decay = -torch.tensor([0.05, 0.7], dtype=D64) if decay else None
    state = random_state(2, 2, 3, 4) if carried else None
    mask = torch.rand(2, length, generator=torch.Generator().manual_seed(3)) > 0.25
    mask[:, 0] = True
    ref = _loss_and_grads(lambda a, b, c, ld, st: linear_attention_ref(a, b, c, ld, mask, st),
                          q, k, v, log_decay, state)
    for chunk in (1, 4, 5, 16, 64):
        got = _loss_and_grads(lambda a, b, c, ld, st: linear_attention(a, b, c, chunk, ld, mask, st),
                              q, k, v, log_decay, state)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-10)
        for a, b in zip(got[2], ref[2]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunks", [1, 2, 7, 40])
@pytest.mark.parametrize("carried", [False, True])
def test_chunk_scan_equals_its_closed_form_twin_values_and_gradients(chunks, carried):
    """The states entering each chunk: the O(N) scan S_c = γ^M S_{c−1} + A_{c−1} against the (H, N, N)
    closed form it replaced, on values and on the gradients of A, log γ and the initial state."""
    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, chunks, 3, 5, 4, dtype=D64, generator=g)  # (B, N, H, P, E+1)
    log_decay = -torch.tensor([0.002, 0.05, 0.9], dtype=D64)  # γ^M from 0.98 to 1e-2 at M = 5
    state = torch.randn(2, 3, 5, 4, dtype=D64, generator=g) if carried else None
    weight = torch.randn(2, chunks, 3, 5, 4, dtype=D64, generator=g)
    results = []
    for fn in (_entering_states, _entering_states_matrix):
        leaves = [t.clone().requires_grad_(True) for t in (a, log_decay, state) if t is not None]
        out = fn(leaves[0], leaves[1], 5, leaves[2] if carried else None)
        constant = chunks == 1 and not carried  # S_0 = 0 whatever A and γ: nothing to differentiate
        grads = [] if constant else torch.autograd.grad((out * weight).sum(), leaves, allow_unused=True,
                                                        materialize_grads=True)  # one chunk: A unused
        results.append((out, grads))
    (scan, scan_grads), (closed, closed_grads) = results
    torch.testing.assert_close(scan, closed, rtol=1e-12, atol=1e-12)
    for got, want in zip(scan_grads, closed_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(scan[:, 0], torch.zeros_like(a[:, 0]) if state is None else state)  # S_0 = S_init


def test_the_twin_is_the_recurrence_written_out():
    """One position by hand: y = Σ_j w_j v_j / Σ_j w_j, w_j = γ^{t−j}(1 + s + s²/2) — the twin is not
    just the op's own math replayed."""
    q, k, v = qkv(bsz=1, length=6, heads=1, f=2, e=3)
    gamma = 0.8
    y, _ = linear_attention_ref(q, k, v, torch.tensor([math.log(gamma)], dtype=D64))
    t = 5
    s = (q[0, t, 0] * k[0, :t + 1, 0]).sum(-1) / math.sqrt(2)
    w = gamma ** torch.arange(t, -1, -1, dtype=D64) * (1 + s + s * s / 2)
    torch.testing.assert_close(y[0, t, 0], (w[:, None] * v[0, :t + 1, 0]).sum(0) / w.sum(), rtol=1e-12, atol=1e-12)


def test_a_query_with_only_masked_keys_gets_zero_not_nan():
    q, k, v = qkv(length=9)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :4] = False
    y, _ = linear_attention(q, k, v, 4, None, mask)
    assert torch.isfinite(y).all() and float(y[0, :4].abs().max()) == 0.0
    torch.testing.assert_close(y, linear_attention_ref(q, k, v, None, mask)[0])


@pytest.mark.parametrize("bad", ["v", "decay", "mask", "state", "chunk"])
def test_bad_shapes_are_refused_in_one_line(bad):
    q, k, v = qkv(length=5)
    args = dict(log_decay=None, key_mask=None, state=None)
    if bad == "v":
        v = v[:, :4]
    elif bad == "decay":
        args["log_decay"] = torch.zeros(3, dtype=D64)
    elif bad == "mask":
        args["key_mask"] = torch.ones(2, 4, dtype=torch.bool)
    elif bad == "state":
        args["state"] = torch.zeros(2, 2, 5, 5, dtype=D64)
    with pytest.raises(ValueError) as err:
        linear_attention(q, k, v, 0 if bad == "chunk" else 4, **args)
    assert "\n" not in str(err.value)


# ---- causality --------------------------------------------------------------------------------------

def assert_no_lookahead(fn, inputs, t0: int) -> None:
    """Change every input (B, L, ...) at position t0 only: outputs before t0 must not move (fp64), the
    output at t0 must (so the check can see a change at all)."""
    g = torch.Generator().manual_seed(11)
    changed = [t.clone() for t in inputs]
    for t in changed:
        t[:, t0] += torch.randn(t[:, t0].shape, dtype=t.dtype, generator=g)
    with torch.no_grad():
        a, b = fn(*inputs), fn(*changed)
    moved = float((a[:, :t0] - b[:, :t0]).abs().max()) if t0 > 0 else 0.0
    assert moved < 1e-12, f"outputs before {t0} moved by {moved:.3g} when only position {t0} changed"
    assert float((a[:, t0] - b[:, t0]).abs().max()) > 1e-8


@pytest.mark.parametrize("decay", [False, True])
def test_op_is_causal_by_perturbation(decay):
    ld = -torch.tensor([0.1, 0.3], dtype=D64) if decay else None
    for t0 in (0, 1, 4, 5, 9, 22):  # chunk boundaries (5) and inside
        assert_no_lookahead(lambda q, k, v: linear_attention(q, k, v, 5, ld)[0], qkv(), t0)


def test_the_perturbation_check_catches_a_planted_leak_in_the_op():
    """A leak: key t replaced by key t + 1 (the shift the wrong way)."""
    def leaky(q, k, v):
        return linear_attention(q, torch.cat([k[:, 1:], k[:, -1:]], 1), v, 5)[0]
    with pytest.raises(AssertionError, match="moved by"):
        assert_no_lookahead(leaky, qkv(), 9)


# ---- streaming --------------------------------------------------------------------------------------

@pytest.mark.parametrize("decay", [False, True])
def test_streaming_steps_and_segments_equal_the_parallel_op(decay):
    length = 61
    q, k, v = qkv(bsz=3, length=length)
    ld = -torch.tensor([0.02, 0.4], dtype=D64) if decay else None
    mask = torch.rand(3, length, generator=torch.Generator().manual_seed(2)) > 0.2
    full, full_state = linear_attention(q, k, v, 12, ld, mask)
    state, steps = None, []
    for t in range(length):
        y, state = linear_attention_step(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], ld, mask[:, t:t + 1], state)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, full_state, rtol=1e-10, atol=1e-10)
    state, pieces = None, []
    for pos, n in _segments(length):
        y, state = linear_attention(q[:, pos:pos + n], k[:, pos:pos + n], v[:, pos:pos + n], 12, ld,
                                    mask[:, pos:pos + n], state)
        pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, full_state, rtol=1e-10, atol=1e-10)


# ---- the short convolution --------------------------------------------------------------------------

def test_short_conv_equals_its_twin_and_the_long_conv_convention():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 13, 5, dtype=D64, generator=g), torch.randn(5, 3, dtype=D64, generator=g)
    y = short_conv(x, w)
    torch.testing.assert_close(y, short_conv_ref(x, w))
    torch.testing.assert_close(y, causal_conv_ref(x.transpose(1, 2), w).transpose(1, 2))  # w[:, 0] on x[t]
    torch.testing.assert_close(short_conv(x[:, :2], w), short_conv_ref(x[:, :2], w))  # shorter than the kernel


def test_short_conv_is_causal_and_streams():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 61, 4, dtype=D64, generator=g), torch.randn(4, 4, dtype=D64, generator=g)
    for t0 in (0, 1, 3, 30, 60):
        assert_no_lookahead(lambda a: short_conv(a, w), [x], t0)
    history, pieces = torch.zeros(2, 3, 4, dtype=D64), []
    for pos, n in _segments(61):
        y, history = short_conv_stream(x[:, pos:pos + n], w, history)
        pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, 1), short_conv(x, w))
    with pytest.raises(ValueError, match="history must be"):
        short_conv_stream(x, w, torch.zeros(2, 2, 4, dtype=D64))


# ---- the module ------------------------------------------------------------------------------------

def tiny_module(decay="none", conv=3, seed=0) -> GlobalLinearAttention:
    torch.manual_seed(seed)
    return GlobalLinearAttention(8, 6, 2, 3, conv, 5, decay).double()


class LeakyConv(GlobalLinearAttention):
    """A planted leak in the module: the short conv reads position t + 1."""

    def _split(self, u):
        return super()._split(torch.cat([u[:, 1:], torch.zeros_like(u[:, :1])], 1))


@pytest.mark.parametrize("decay", ["none", "learned"])
def test_module_is_causal_and_the_check_sees_a_leaky_conv(decay):
    module = tiny_module(decay)
    x = torch.randn(2, 23, 8, dtype=D64, generator=torch.Generator().manual_seed(3))
    for t0 in (0, 1, 2, 5, 11, 22):
        assert_no_lookahead(module, [x], t0)
    module.__class__ = LeakyConv
    with pytest.raises(AssertionError, match="moved by"):
        assert_no_lookahead(module, [x], 11)


@pytest.mark.parametrize("decay", ["none", "learned"])
def test_module_streaming_with_pads_equals_parallel(decay):
    module = tiny_module(decay, conv=4)
    x = torch.randn(3, 40, 8, dtype=D64, generator=torch.Generator().manual_seed(4))
    pads = torch.zeros(3, 40, dtype=torch.bool)
    pads[0, 13:15], pads[1, 24] = True, True
    with torch.no_grad():
        full, state = module(x, pads), {}
        pieces = [module.forward_stream(x[:, p:p + n], state, pads[:, p:p + n]) for p, n in _segments(40)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-10, atol=1e-10)


def test_module_init():
    module = GlobalLinearAttention(64, 128, 2, 16, 3, 32, "learned")
    gamma = torch.sigmoid(module.decay_logit.detach())
    torch.testing.assert_close(gamma, torch.tensor([1 - 2 ** -7, 1 - 2 ** -8]))
    assert module.conv.shape == (2 * 2 * 16 + 128, 3) and float(module.conv.abs().max()) <= 3 ** -0.5
    x = torch.nn.functional.layer_norm(torch.randn(4, 96, 64), (64,))
    with torch.no_grad():
        assert 0.9 < float(module(x).std()) < 1.1  # the output norm: unit scale per head


# ---- the option in the model -------------------------------------------------------------------------

def tiny_decoder(wiring="paper", decay="none", kind="based", seed=0, **extra) -> FocusDecoder:
    torch.manual_seed(seed)
    cfg = FocusLMConfig(**{**dict(
        decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=24,
        decoder_z_dim=8, bin_size=8, oversampling=4, chunk_size=12, hyper_kernel_size=20,
        focus_filter="static", iir_mode="carry", max_target_positions=4096, dropout=0.1,
        block_wiring=wiring, rel_pos_bias="rotary" if wiring == "mega" else "simple",
        global_attention=kind, global_attention_heads=2, global_attention_feature_dim=3,
        global_attention_decay=decay), **extra})
    return FocusDecoder(cfg, byte_dictionary()).double().eval()


MODEL_VARIANTS = [("paper", "none"), ("paper", "learned"), ("mega", "none")]


@pytest.mark.parametrize("wiring,decay", MODEL_VARIANTS)
def test_model_token_by_token_segments_and_beam_reorder_equal_parallel(wiring, decay):
    decoder = tiny_decoder(wiring, decay)
    assert all(isinstance(b.attn.global_attention, GlobalLinearAttention) for b in decoder.stack.blocks)
    tokens = random_tokens(decoder, 3, 61)  # chunks of 12: several, and a short last one
    full = parallel_lprobs(decoder, tokens)
    assert (step_lprobs(decoder, tokens, {}) - full).abs().max().item() < 1e-9
    state: dict = {}
    with torch.no_grad():
        pieces = [decoder.forward_stream(tokens[:, p:p + n], state).log_softmax(-1) for p, n in _segments(61)]
    assert (torch.cat(pieces, 1) - full).abs().max().item() < 1e-9
    state, split, order = {}, 29, torch.tensor([2, 0, 0])
    step_lprobs(decoder, tokens[:, :split], state)
    decoder.reorder_incremental_state_scripting(state, order)
    continued = torch.cat([tokens[order, :split], random_tokens(decoder, 3, 61 - split, seed=7)], dim=1)
    after = step_lprobs(decoder, continued, state, start=split)
    assert (after - parallel_lprobs(decoder, continued)[:, split:]).abs().max().item() < 1e-9


def test_the_model_check_sees_a_lost_global_state():
    """Forgetting the global path's state mid-stream must change later outputs beyond the chunk."""
    decoder = tiny_decoder()
    tokens = random_tokens(decoder, 2, 61)
    state: dict = {}
    with torch.no_grad():
        decoder.forward_stream(tokens[:, :24], state)
        for block in decoder.stack.blocks:
            cache = block.attn.global_attention.get_cache(state)
            block.attn.global_attention.set_cache(state, {**cache, "state": None})
        rest = decoder.forward_stream(tokens[:, 24:], state).log_softmax(-1)
    assert (rest - parallel_lprobs(decoder, tokens)[:, 24:]).abs().max().item() > 1e-4


BASED_ALONE = dict(focus_filter="none", chunk_size=1, global_attention_chunk=16)


@pytest.mark.parametrize("kind", ["none", "based"])
def test_based_alone_the_global_path_is_the_only_path_across_positions(kind):
    """--chunk-size 1 --focus-filter none: each position attends to itself only, so a perturbed token reaches
    later positions through --global-attention based (run in chunks of --global-attention-chunk) or not at all."""
    decoder = tiny_decoder(kind=kind, **BASED_ALONE)
    if kind == "based":
        assert all(b.attn.global_attention.chunk == 16 for b in decoder.stack.blocks)
    tokens = random_tokens(decoder, 2, 40)
    changed = tokens.clone()
    changed[:, 10] = (tokens[:, 10] + 1 - 4) % (len(decoder.dictionary) - 4) + 4
    later = (parallel_lprobs(decoder, changed) - parallel_lprobs(decoder, tokens))[:, 11:].abs().max().item()
    assert (later > 1e-6) == (kind == "based"), later
    if kind == "based":
        assert (step_lprobs(decoder, tokens, {}) - parallel_lprobs(decoder, tokens)).abs().max().item() < 1e-9


def test_option_off_builds_the_model_as_before():
    off, on = tiny_decoder(kind="none"), tiny_decoder()
    assert all(b.attn.global_attention is None for b in off.stack.blocks)
    extra = set(on.state_dict()) - set(off.state_dict())
    assert extra and all(".global_attention." in name for name in extra)
    assert set(off.state_dict()) <= set(on.state_dict())
    cfg = FocusStackConfig()
    del cfg.global_attention  # a config from before the option
    assert build_global_attention(cfg) is None


def test_the_option_trains_under_cpu_bf16_autocast_with_the_op_in_fp32():
    decoder = tiny_decoder().float().train()
    tokens = random_tokens(decoder, 2, 40)
    glob = decoder.stack.blocks[0].attn.global_attention
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert glob.proj(torch.randn(2, 16)).dtype == torch.bfloat16  # autocast really on
        q, k, v = glob._split(glob.proj(torch.randn(1, 5, 16)))
        assert linear_attention(q, k, v, 4)[1].dtype == torch.float32  # the state: fp32 under autocast
        logits, _ = decoder(tokens)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
    loss.backward()
    assert math.isfinite(loss.item())
    for p in decoder.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(glob.conv.grad.abs().max()) > 0


@pytest.mark.parametrize("change,match", [
    ({"global_attention": "deltanet"}, "--global-attention must be one of"),
    ({"global_attention_heads": 3}, "must be positive and divide --decoder-hidden-dim"),
    ({"global_attention_feature_dim": 0}, "must be positive"),
    ({"global_attention_decay": "fast"}, "--global-attention-decay must be one of"),
    ({"global_attention_chunk": -1}, "--global-attention-chunk must be 0"),
])
def test_bad_settings_are_refused_in_one_line(change, match):
    cfg = FocusStackConfig(decoder_hidden_dim=16, **{"global_attention": "based", **change})
    with pytest.raises(ValueError, match=match) as err:
        validate(cfg)
    assert "\n" not in str(err.value)


def _recall_model(extra):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "62", "--vocab-size", "30",
        "--num-train", "8", "--num-test", "4", "--arch", "focus_recall", "--criterion", "cross_entropy", "--cpu",
        "--dropout", "0", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model).eval()


def _recall_model_arch(arch, extra=()):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "62", "--vocab-size", "30",
        "--num-train", "8", "--num-test", "4", "--arch", arch, "--criterion", "cross_entropy", "--cpu", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task).build_model(cfg.model)


def test_focus_recall_defaults_to_the_global_path_and_the_paper_stays_reachable():
    """focus_recall's default is the design that recalls across chunks (RESULTS §2c); the paper's Focus is
    focus_recall_paper, or focus_recall with --global-attention none; Focus-H and MEGA keep the paper's."""
    has_global = lambda m: [b.attn.global_attention is not None for b in m.decoder.stack.blocks]  # noqa: E731
    assert has_global(_recall_model_arch("focus_recall")) == [True, True]
    assert has_global(_recall_model_arch("focus_recall", ["--global-attention", "none"])) == [False, False]
    assert has_global(_recall_model_arch("focus_recall_paper")) == [False, False]
    assert has_global(_recall_model_arch("focus_recall_paper", ["--global-attention", "based"])) == [True, True]
    for arch in ("focus_recall_static", "focus_recall_ema"):
        assert has_global(_recall_model_arch(arch)) == [False, False], arch


def test_focus_recall_takes_the_flag_and_is_causal_with_it():
    _, plain = _recall_model(["--global-attention", "none"])
    assert all(b.attn.global_attention is None for b in plain.decoder.stack.blocks)
    task, model = _recall_model(["--global-attention", "based", "--global-attention-decay", "learned"])
    glob = model.decoder.stack.blocks[0].attn.global_attention
    assert isinstance(glob, GlobalLinearAttention) and glob.feature_dim == 16 and glob.heads == 2
    assert glob.conv.size(1) == 3 and glob.chunk == 32 and glob.decay_logit is not None
    tokens = torch.from_numpy(task.examples()[0][:2, :-1]).long() + task.dictionary.nspecial  # (2, 63)
    with torch.no_grad():
        base = model(tokens)[0]
        for s in (5, 31, 32, 40, 62):
            changed = tokens.clone()
            changed[:, s] = task.dictionary.nspecial + (changed[:, s] - task.dictionary.nspecial + 1) % 30
            out = model(changed)[0]
            assert torch.allclose(out[:, :s], base[:, :s], atol=1e-5), f"position < {s} saw token {s}"


@pytest.mark.slow
def test_fairseq_train_focus_recall_with_global_attention(tmp_path):
    """Smoke: L = 62 (two chunks of 32), 4 updates through the real CLI, accuracy logged."""
    proc = run(["fairseq-train", "--user-dir", USER_DIR, "--task", "associative_recall", "--seq-len", "62",
                "--vocab-size", "30", "--num-train", "64", "--num-test", "32", "--arch", "focus_recall",
                "--global-attention", "based", "--criterion", "cross_entropy", "--optimizer", "adam",
                "--lr", "3e-3", "--batch-size", "16", "--max-epoch", "1", "--cpu", "--num-workers", "0",
                "--log-format", "json", "--no-save", "--save-dir", str(tmp_path)], cwd=tmp_path,
               env={"OMP_NUM_THREADS": "1"})
    log = proc.stdout + proc.stderr
    assert '"train_num_updates": "4"' in log, log[-2000:]
    valid = [json.loads(line[line.index("{"):]) for line in log.splitlines() if '"valid_accuracy"' in line]
    assert valid and 0.0 <= float(valid[-1]["valid_accuracy"]) <= 100.0
    assert "GlobalLinearAttention" in log  # fairseq prints the model
