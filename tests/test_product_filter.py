"""``--filter-input product`` (modules/product_filter.py): the filter applied to shift(k) ⊗ v, read out with q.

The module against a loop twin (explicit loops over batch, time and heads; the inner filter through
its own loop reference, and scipy's lfilter as the oracle of the IIR part) on values and every
gradient in fp64, finite differences, streaming == parallel at the module level (token by token,
uneven segments, the cached last key, beam reorder), causality by perturbation with a planted leak
that the check catches, the init, Θ passed through to FocusStack.theta and the plot tool, bad
configurations, and a CPU bf16 forward + backward. ``--filter-input both`` (SumFilter: filter_x(x) + the
product path) at the end: values and gradients against the two references, streaming with both
filters' states, separate parameters and caches (a planted cache collision that the check catches),
causality, Θ. The decoder-level matrices (causality, prefix,
padding, gradients, token-by-token / segments / beam) run the product variants in test_model.py and
test_incremental.py.
"""
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fairseq_focus.modules.config import FocusStackConfig, validate
from fairseq_focus.modules.focus_stack import FocusStack
from fairseq_focus.modules.gated_attention import init_linears
from fairseq_focus.modules.product_filter import ProductFilter, SumFilter
from fairseq_focus.ops.ema import ema_filter_ref
from fairseq_focus.ops.iir import iir_filter_ref
from helpers import TINY_LM, USER_DIR, run
from test_iir import assert_close, lfilter_oracle
from test_incremental import byte_dictionary

THETA = {"paper": {}, "stable": {"theta_param": "stable", "theta_init": "ring"}}
# (filter, mode, Θ map, shared hypernetwork encoder)
INNER = [("adaptive", "carry", "stable", True), ("adaptive", "causal", "paper", True),
         ("adaptive", "carry", "paper", False), ("static", "carry", "stable", True),
         ("static", "causal", "stable", True), ("ema", "causal", "paper", True)]
IDS = ["-".join(map(str, v)) for v in INNER]
CUTS = [1, 2, 5, 8, 1, 1, 11, 3, 16]  # segment lengths (bins of 8): heads, whole bins, tails; sum 48


def stack_cfg(filt, mode="carry", theta="stable", share=True, **overrides):
    cfg = FocusStackConfig(decoder_layers=1, decoder_embed_dim=8, decoder_hidden_dim=8, decoder_ffn_embed_dim=8,
                           decoder_z_dim=4, focus_filter=filt, iir_mode=mode, num_filters=2, bin_size=8,
                           oversampling=4, hyper_hidden_dim=6, hyper_kernel_size=12, chunk_size=8, ema_ndim=3,
                           dropout=0.0, filter_input="product", product_head_dim=2, no_share_hypernet=not share)
    return replace(cfg, **THETA[theta], **overrides)


def product_filter(filt, mode="carry", theta="stable", share=True, seed=0):
    """(the stack's first filter — a ProductFilter with H = 2 heads of d = 2 — , the shared encoder or None), fp64."""
    torch.manual_seed(seed)
    stack = FocusStack(stack_cfg(filt, mode, theta, share)).double().eval()
    module = stack.blocks[0].attn.filter
    assert isinstance(module, ProductFilter) and (module.heads, module.head_dim) == (2, 2)
    return module, stack.shared_encoder


def inputs(bsz=2, length=48, seed=1, dim=8):
    return torch.randn(bsz, length, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def embedding(encoder, x):
    return encoder(x) if encoder is not None else None


# ---- the loop twin ---------------------------------------------------------------------------------

def inner_ref(inner, kv, e):
    """The inner filter on kv (B, L, D) through its loop reference: iir_filter_ref with the Θ the filter
    computes for kv, or ema_filter_ref and MEGA's silu(· + ω·kv). Also returns Θ (None for the EMA)."""
    if hasattr(inner, "coefficients"):
        return F.silu(ema_filter_ref(kv.transpose(1, 2), *inner.coefficients()).transpose(1, 2) + inner.omega * kv), None
    theta = inner.theta(kv, e)  # (B, Nbins, D, F, 2)
    return iir_filter_ref(kv.transpose(1, 2), theta, inner.mode).transpose(1, 2), theta


def product_ref(module, x, e):
    """x (B, L, D) -> (B, L, D) with explicit loops: k_prev[t] = k[t−1], kv = k_prev ⊗ v per head, the
    inner filter per channel, y[t] = Σ_i q[t, i] s[t, i, :] per head, then W_o. Returns (out, kv, s, Θ)."""
    bsz, length, _ = x.shape
    heads, d = module.heads, module.head_dim
    q, k, v = (proj(x).view(bsz, length, heads, d) for proj in (module.q_proj, module.k_proj, module.v_proj))
    rows = []
    for b in range(bsz):
        for t in range(length):
            for h in range(heads):
                k_prev = k[b, t - 1, h] if t > 0 else torch.zeros_like(k[b, t, h])
                rows.append(torch.outer(k_prev, v[b, t, h]).flatten())  # channel h·d² + i·d + j
    kv = torch.stack(rows).view(bsz, length, heads * d * d)
    s, theta = inner_ref(module.inner, kv, e)
    ys = []
    for b in range(bsz):
        for t in range(length):
            for h in range(heads):
                block = s[b, t, h * d * d:(h + 1) * d * d].view(d, d)  # rows i (key index), columns j (value index)
                ys.append(sum(q[b, t, h, i] * block[i] for i in range(d)))
    y = torch.stack(ys).view(bsz, length, heads * d)
    return module.out_proj(y), kv, s, theta


@pytest.mark.parametrize("filt,mode,theta,share", INNER, ids=IDS)
def test_module_equals_its_loop_twin_and_lfilter_values_and_gradients(filt, mode, theta, share):
    module, encoder = product_filter(filt, mode, theta, share)
    x = inputs(length=40).requires_grad_()
    e = embedding(encoder, x)
    got = module(x, e)
    expected, kv, s, theta_kv = product_ref(module, x, e)
    assert float(got.std()) > 0.05  # the comparison sees a living signal
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.kv(x), kv, rtol=0, atol=1e-14)
    if theta_kv is not None:  # the IIR part against scipy on the same kv and Θ
        assert_close(s.transpose(1, 2), lfilter_oracle(kv.detach().transpose(1, 2), theta_kv.detach(), mode), rtol=1e-10)
    weights = torch.randn_like(got)
    params = [x] + list(module.parameters()) + ([] if encoder is None else list(encoder.parameters()))
    grads = torch.autograd.grad((got * weights).sum(), params, retain_graph=True)  # e is shared by both graphs
    grads_ref = torch.autograd.grad((expected * weights).sum(), params)
    assert all(float(g.abs().max()) > 0 for g in grads[:5])  # x, W_q, b_q, W_k, b_k all get gradients
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("filt", ["static", "adaptive"])
def test_gradients_match_finite_differences(filt):
    module, encoder = product_filter(filt, "carry", "paper")
    names, params = zip(*[(n, p.detach().requires_grad_()) for n, p in module.named_parameters()])
    x = inputs(1, 16, seed=2).requires_grad_()

    def apply(x, *ps):
        return functional_call(module, dict(zip(names, ps)), (x, embedding(encoder, x)))

    assert torch.autograd.gradcheck(apply, (x, *params), fast_mode=True)


# ---- streaming ---------------------------------------------------------------------------------------

def stream(module, encoder, x, cuts, state=None, start=0):
    """Feed x (B, n, D) in segments of the given lengths through forward_stream from position start."""
    state = {} if state is None else state
    pieces, pos = [], start
    for n in cuts:
        seg = x[:, pos - start:pos - start + n]
        e = encoder.forward_stream(seg, pos, state) if encoder is not None else None
        pieces.append(module.forward_stream(seg, e, pos, state))
        pos += n
    assert pos - start == x.size(1)
    return torch.cat(pieces, dim=1), state


def reorder(modules, state, new_order):
    """What fairseq's reorder_incremental_state_scripting does: every streaming module reorders its cache."""
    for top in modules:
        for m in top.modules():
            if hasattr(m, "reorder_incremental_state"):
                m.reorder_incremental_state(state, new_order)


def assert_a_beam_reorder_is_followed(module, encoder, x):
    """Beam search on x (3, 48, D): 21 steps, keep streams [2, 0, 0], continue with new inputs == parallel."""
    split, new_order = 21, torch.tensor([2, 0, 0])
    _, state = stream(module, encoder, x[:, :split], [1] * split)
    reorder([module] + ([] if encoder is None else [encoder]), state, new_order)
    continued = torch.cat([x[new_order, :split], inputs(3, 48 - split, seed=5)], dim=1)
    after, _ = stream(module, encoder, continued[:, split:], [4, 1, 22], state, start=split)
    torch.testing.assert_close(after, module(continued, embedding(encoder, continued))[:, split:],
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("filt,mode,theta,share", INNER, ids=IDS)
def test_streaming_equals_parallel_and_follows_a_beam_reorder(filt, mode, theta, share):
    module, encoder = product_filter(filt, mode, theta, share)
    x = inputs(3, 48)
    with torch.no_grad():
        full = module(x, embedding(encoder, x))
        for cuts in ([1] * 48, CUTS):
            out, state = stream(module, encoder, x, cuts)
            torch.testing.assert_close(out, full, rtol=1e-9, atol=1e-9)
            # the cached last key is the last input's key
            k_last = module.get_cache(state)["k_last"]
            torch.testing.assert_close(k_last, module.k_proj(x[:, -1]).view(3, 2, 2), rtol=0, atol=0)
        assert_a_beam_reorder_is_followed(module, encoder, x)


def test_the_streaming_check_sees_a_lost_key():
    """A stream whose cache forgot the key before the segment (the shift not carried) must differ."""
    module, encoder = product_filter("static", "carry", "paper")
    x = inputs(2, 24)
    with torch.no_grad():
        full = module(x, None)
        _, state = stream(module, encoder, x[:, :13], [13])
        module.set_cache(state, {"k_last": None})
        rest, _ = stream(module, encoder, x[:, 13:], [11], state, start=13)
    assert float((rest - full[:, 13:]).abs().max()) > 1e-3


# ---- causality -------------------------------------------------------------------------------------

class LeakyProduct(ProductFilter):
    """A planted leak: k_prev[t] = k[t+1] (a shift of −1 instead of +1)."""

    @staticmethod
    def previous_keys(k, k_last):
        return torch.cat([k[:, 1:], torch.zeros_like(k[:, :1])], dim=1)


def assert_perturbation_stays_ahead(module, encoder, t0):
    """Change x at t0 only: outputs before t0 must not move (fp64); later ones must (at t0 = 0 the output
    is W_o's bias whatever x[0] is: kv[0] = 0 ⊗ v[0], so the check looks at t0 and after)."""
    x = inputs(2, 40, seed=3)
    x2 = x.clone()
    x2[:, t0] += torch.randn(2, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = module(x, embedding(encoder, x)), module(x2, embedding(encoder, x2))
    moved = float((a[:, :t0] - b[:, :t0]).abs().max()) if t0 > 0 else 0.0
    assert moved < 1e-12, f"outputs before {t0} moved by {moved:.3g} when only x[{t0}] changed"
    assert float((a[:, t0:t0 + 2] - b[:, t0:t0 + 2]).abs().max()) > 1e-6


@pytest.mark.parametrize("filt,mode,theta,share", INNER, ids=IDS)
def test_causal_by_perturbation(filt, mode, theta, share):
    module, encoder = product_filter(filt, mode, theta, share)
    for t0 in (0, 1, 7, 8, 9, 23, 39):  # bin boundaries (8) and inside
        assert_perturbation_stays_ahead(module, encoder, t0)


def test_the_perturbation_check_catches_a_planted_leak():
    module, _ = product_filter("static", "carry", "paper")
    module.__class__ = LeakyProduct
    with pytest.raises(AssertionError, match="moved by"):
        assert_perturbation_stays_ahead(module, None, 9)


# ---- init, Θ, configuration, precision -----------------------------------------------------------

@pytest.mark.parametrize("filt", ["adaptive", "static", "ema"])
def test_init_keeps_the_product_path_alive(filt):
    """At D = 128 (default stack), the product path's x_f has the scale of the paper's x_f = filter(x)
    (measured ratio 1.9-2.2), not the ~1/400 that MEGA's N(0, 0.02) gives (product_filter.py)."""
    scales = {}
    x = torch.randn(2, 256, 128, generator=torch.Generator().manual_seed(1))
    for inp in ("x", "product", "product at N(0, 0.02)"):
        torch.manual_seed(0)
        cfg = FocusStackConfig(decoder_embed_dim=128, focus_filter=filt, filter_input=inp.split()[0], dropout=0.0)
        stack = FocusStack(cfg)
        attn = stack.blocks[0].attn
        if inp.endswith("0.02)"):
            init_linears(attn.filter.q_proj, attn.filter.k_proj, attn.filter.v_proj, attn.filter.out_proj)
        with torch.no_grad():
            scales[inp] = float(attn.filter(attn.filter_input(x), embedding(stack.shared_encoder, x)).std())
    assert 0.5 < scales["product"] / scales["x"] < 4.0, scales
    assert scales["product at N(0, 0.02)"] / scales["x"] < 0.01, scales


def test_theta_is_the_inner_filters_on_kv_and_the_plot_tool_draws_it(tmp_path):
    decoder, tokens, thetas, x = theta_of_a_tiny_lm("product")
    stack = decoder.stack
    attn = stack.blocks[0].attn
    with torch.no_grad():
        kv = attn.filter.kv(attn.filter_input(x))
        torch.testing.assert_close(thetas[0], attn.filter.inner.theta(kv, stack.shared_encoder(x)))
    assert thetas[0].shape == (1, 4, 16, 1, 2)  # one Θ per kv channel, 4 bins of 8
    assert_the_plot_tool_draws(decoder, tokens, tmp_path)


def theta_of_a_tiny_lm(filter_input):
    """A 2-layer adaptive LM decoder (D = 16, bins of 8) with the given --filter-input, 30 tokens, the Θ
    that decoder.theta gives for them, and the padded embedded input the stack's first layer sees."""
    from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig

    torch.manual_seed(0)
    cfg = FocusLMConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=16,
                        decoder_z_dim=8, bin_size=8, chunk_size=8, hyper_kernel_size=16, max_target_positions=256,
                        dropout=0.0, filter_input=filter_input, product_head_dim=2)
    decoder = FocusDecoder(cfg, byte_dictionary()).eval()
    tokens = torch.randint(4, 260, (1, 30), generator=torch.Generator().manual_seed(0))
    thetas = decoder.theta(tokens)
    x, _ = decoder.stack._pad(decoder.embed_scale * decoder.embed_tokens(tokens), None)
    return decoder, tokens, thetas, x


def assert_the_plot_tool_draws(decoder, tokens, tmp_path):
    from fairseq_focus.tools.plot_filters import plot_filters

    files = plot_filters(SimpleNamespace(decoder=decoder), tokens[0], str(tmp_path / "plots"))
    assert any(f.endswith("layer1_frequency_response.png") for f in files)


def test_the_default_filters_x_itself():
    cfg = FocusStackConfig(decoder_layers=1, decoder_embed_dim=12)
    assert cfg.filter_input == "x"
    assert not any(isinstance(m, ProductFilter) for m in FocusStack(cfg).modules())


@pytest.mark.parametrize("dim,head_dim", [(10, 4), (16, 3), (16, 0)])
def test_bad_head_dim_is_refused_in_one_line(dim, head_dim):
    cfg = FocusStackConfig(decoder_embed_dim=dim, filter_input="product", product_head_dim=head_dim)
    with pytest.raises(ValueError, match="--product-head-dim") as info:
        validate(cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="must be one of"):
        validate(replace(cfg, filter_input="xv"))


def test_a_product_decoder_runs_forward_and_backward_under_cpu_bf16_autocast():
    from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig

    torch.manual_seed(0)
    cfg = FocusLMConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=16,
                        decoder_z_dim=8, bin_size=8, chunk_size=8, hyper_kernel_size=16, max_target_positions=256,
                        iir_mode="carry", dropout=0.0, filter_input="product", product_head_dim=2, **THETA["stable"])
    decoder = FocusDecoder(cfg, byte_dictionary()).train()
    tokens = torch.randint(4, 260, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert decoder.stack.blocks[0].attn.filter.q_proj(torch.randn(2, 16)).dtype == torch.bfloat16  # really on
        logits, _ = decoder(tokens)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
    loss.backward()
    assert math.isfinite(loss.item())
    product = decoder.stack.blocks[0].attn.filter
    for p in list(decoder.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(product.k_proj.weight.grad.abs().max()) > 0


@pytest.mark.slow
def test_fairseq_train_refuses_a_head_dim_that_does_not_divide(byte_corpus, tmp_path):
    """TINY_LM's D = 32; d = 3 gives d² = 9."""
    proc = run(["fairseq-train", str(byte_corpus), "--save-dir", str(tmp_path), "--max-update", "1", "--user-dir",
                USER_DIR, "--task", "focus_lm", "--arch", "focus_lm", "--cpu", "--tokens-per-sample", "64",
                "--max-tokens", "256", "--optimizer", "adam", "--lr", "1e-3", *TINY_LM,
                "--filter-input", "product", "--product-head-dim", "3"], check=False)
    assert proc.returncode != 0
    assert "ValueError: --filter-input product needs --product-head-dim d with d² dividing --decoder-embed-dim: " \
           "3² does not divide 32" in proc.stderr
    assert not list(tmp_path.glob("*.pt"))


# ---- --filter-input both: filter_x(x, e) + ProductFilter(x, e) --------------------------------------

# (filter, mode, Θ map, shared hypernetwork encoder): each filter kind, the own-encoder case, both modes
BOTH = [("adaptive", "carry", "stable", True), ("adaptive", "causal", "paper", False),
        ("static", "carry", "stable", True), ("ema", "causal", "paper", True)]
BOTH_IDS = ["-".join(map(str, v)) for v in BOTH]


def sum_filter(filt, mode="carry", theta="stable", share=True, seed=0):
    """(the stack's first filter — a SumFilter whose product path has H = 2 heads of d = 2 — , the
    shared encoder or None), fp64."""
    torch.manual_seed(seed)
    stack = FocusStack(stack_cfg(filt, mode, theta, share, filter_input="both")).double().eval()
    module = stack.blocks[0].attn.filter
    assert isinstance(module, SumFilter) and isinstance(module.product, ProductFilter)
    assert not isinstance(module.direct, ProductFilter) and type(module.direct) is type(module.product.inner)
    return module, stack.shared_encoder


def sum_ref(module, x, e):
    """The x path through its filter's loop reference plus the product path's loop twin: (sum, x path, product path)."""
    direct, _ = inner_ref(module.direct, x, e)
    product = product_ref(module.product, x, e)[0]
    return direct + product, direct, product


@pytest.mark.parametrize("filt,mode,theta,share", BOTH, ids=BOTH_IDS)
def test_both_equals_the_x_path_plus_the_product_path_values_and_gradients(filt, mode, theta, share):
    module, encoder = sum_filter(filt, mode, theta, share)
    x = inputs(length=40).requires_grad_()
    e = embedding(encoder, x)
    got = module(x, e)
    expected, direct, product = sum_ref(module, x, e)
    assert float(direct.std()) > 0.05 and float(product.std()) > 0.05  # both terms alive
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.direct(x, e), direct, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(got)
    params = [x] + list(module.parameters()) + ([] if encoder is None else list(encoder.parameters()))
    grads = torch.autograd.grad((got * weights).sum(), params, retain_graph=True)
    grads_ref = torch.autograd.grad((expected * weights).sum(), params)
    for (name, _), g in zip(module.named_parameters(), grads[1:]):
        assert float(g.abs().max()) > 0, name  # both paths' parameters learn
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_both_gradients_match_finite_differences():
    module, encoder = sum_filter("adaptive", "carry", "paper")
    names, params = zip(*[(n, p.detach().requires_grad_()) for n, p in module.named_parameters()])
    x = inputs(1, 16, seed=2).requires_grad_()

    def apply(x, *ps):
        return functional_call(module, dict(zip(names, ps)), (x, embedding(encoder, x)))

    assert torch.autograd.gradcheck(apply, (x, *params), fast_mode=True)


def cache_owners(module):
    """The streaming modules inside a SumFilter whose caches must stay apart, by name."""
    owners = {"direct": module.direct, "product": module.product, "product.inner": module.product.inner}
    for name, filt in (("direct", module.direct), ("product.inner", module.product.inner)):
        if getattr(filt, "own_encoder", None) is not None:
            owners[name + ".own_encoder"] = filt.own_encoder
    return owners


@pytest.mark.parametrize("filt,mode,theta,share", BOTH, ids=BOTH_IDS)
def test_both_streaming_equals_parallel_with_each_filters_own_state_and_beam_reorder(filt, mode, theta, share):
    module, encoder = sum_filter(filt, mode, theta, share)
    x = inputs(3, 48)
    with torch.no_grad():
        full = module(x, embedding(encoder, x))
        for cuts in ([1] * 48, CUTS):
            out, state = stream(module, encoder, x, cuts)
            torch.testing.assert_close(out, full, rtol=1e-9, atol=1e-9)
            # each filter's state is the one it reaches streaming its own input alone: x for the x path,
            # kv for the product path (the product path's cache, the last key, comes with it)
            _, alone_x = stream(module.direct, encoder, x, cuts)
            _, alone_p = stream(module.product, encoder, x, cuts)
            for filt_module, alone in ((module.direct, alone_x), (module.product.inner, alone_p),
                                       (module.product, alone_p)):
                got, want = filt_module.get_cache(state), filt_module.get_cache(alone)
                assert got.keys() == want.keys() and got
                for key in got:
                    torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=1e-12)
        assert_a_beam_reorder_is_followed(module, encoder, x)


@pytest.mark.parametrize("filt,mode,theta,share", [BOTH[1], BOTH[2]], ids=[BOTH_IDS[1], BOTH_IDS[2]])
def test_both_paths_have_separate_parameters_and_caches_and_a_collision_is_caught(filt, mode, theta, share):
    """Two builder calls: no parameter (or own encoder) shared between the paths, one cache key each.
    Planting the x path's key on the product path's filter (what a deepcopy would do) must break streaming."""
    module, encoder = sum_filter(filt, mode, theta, share)
    direct_ids = {id(p) for p in module.direct.parameters()}
    assert direct_ids and direct_ids.isdisjoint(id(p) for p in module.product.parameters())
    owners = cache_owners(module)
    assert len({m._incremental_state_id for m in owners.values()}) == len(owners), owners.keys()
    if not share:
        assert module.direct.own_encoder is not module.product.inner.own_encoder
    x = inputs(2, 48)
    with torch.no_grad():
        full = module(x, embedding(encoder, x))
        torch.testing.assert_close(stream(module, encoder, x, CUTS)[0], full, rtol=1e-9, atol=1e-9)
        module.product.inner._incremental_state_id = module.direct._incremental_state_id
        collided, _ = stream(module, encoder, x, CUTS)
    assert float((collided - full).abs().max()) > 1e-3


@pytest.mark.parametrize("filt,mode,theta,share", BOTH, ids=BOTH_IDS)
def test_both_causal_by_perturbation(filt, mode, theta, share):
    module, encoder = sum_filter(filt, mode, theta, share)
    for t0 in (0, 1, 7, 8, 9, 23, 39):
        assert_perturbation_stays_ahead(module, encoder, t0)


def test_both_perturbation_check_catches_a_leak_in_the_product_path():
    module, _ = sum_filter("static", "carry", "paper")
    module.product.__class__ = LeakyProduct
    with pytest.raises(AssertionError, match="moved by"):
        assert_perturbation_stays_ahead(module, None, 9)


def test_both_theta_is_the_x_paths_and_the_plot_tool_draws_it(tmp_path):
    decoder, tokens, thetas, x = theta_of_a_tiny_lm("both")
    stack = decoder.stack
    attn = stack.blocks[0].attn
    with torch.no_grad():
        e = stack.shared_encoder(x)
        xin = attn.filter_input(x)
        torch.testing.assert_close(thetas[0], attn.filter.direct.theta(xin, e))
        assert float((thetas[0] - attn.filter.product.theta(xin, e)).abs().max()) > 1e-4  # not the product path's
    assert_the_plot_tool_draws(decoder, tokens, tmp_path)


def test_both_refuses_a_bad_head_dim_in_one_line():
    cfg = FocusStackConfig(decoder_embed_dim=10, filter_input="both", product_head_dim=4)
    with pytest.raises(ValueError, match="--product-head-dim") as info:
        validate(cfg)
    assert "\n" not in str(info.value)
