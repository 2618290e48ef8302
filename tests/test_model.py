"""focus_lm as a model: causality for every variant, length independence, batching/padding
invariance, the build-time refusal of the non-causal filter, registration and gradients."""
from dataclasses import replace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY

import fairseq_focus  # noqa: F401  (registers)
from causality import assert_causal
from helpers import stir
from fairseq_focus.models.focus_lm import FocusDecoder, FocusLanguageModel, FocusLMConfig, check_causal
from fairseq_focus.tasks.focus_lm import FocusLMTask

PAPER = [("adaptive", "causal"), ("adaptive", "carry"), ("static", "causal"), ("static", "carry"), ("ema", "causal")]
# (filter, mode, Θ map, block wiring, filter input): every variant with eq. 5's map, the IIR ones again with
# the stable map started on the ring 0.9 ≤ |p| ≤ 0.999 (long memory: what carries across bins in carry
# mode), every filter and causal mode in MEGA's block wiring (issue 10), and a few with the filter on
# key-value products (--filter-input product, 4 heads of d = 2), and two with both paths (--filter-input both)
VARIANTS = ([(f, m, "paper", "paper", "x") for f, m in PAPER]
            + [(f, m, "stable", "paper", "x") for f, m in PAPER if f != "ema"]
            + [(f, m, "paper", "mega", "x") for f, m in PAPER]
            + [("adaptive", "carry", "stable", "paper", "product"), ("static", "causal", "paper", "paper", "product"),
               ("ema", "causal", "paper", "mega", "product"),
               ("adaptive", "carry", "stable", "paper", "both"), ("static", "causal", "paper", "mega", "both")]
            # the Θ sources that contain the static filter (their input parts stirred: tests/test_selective_iir.stir)
            + [("selective", "carry", "stable", "paper", "x"), ("selective", "carry", "stable", "mega", "x"),
               ("selective", "carry", "stable", "paper", "product"), ("adaptive-residual", "carry", "stable", "paper", "x")])
THETA = {"paper": {}, "stable": {"theta_param": "stable", "theta_init": "ring"}}


def byte_dictionary():
    d = Dictionary()
    for b in range(256):
        d.add_symbol(str(b))
    return d


DICT = byte_dictionary()
VOCAB = range(DICT.nspecial, len(DICT))


def tiny_cfg(filt="adaptive", mode="causal", theta="paper", **overrides):
    cfg = FocusLMConfig(
        decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=24, decoder_ffn_embed_dim=32,
        decoder_z_dim=8, focus_filter=filt, iir_mode=mode, num_filters=2, bin_size=8, oversampling=4,
        hyper_hidden_dim=8, hyper_kernel_size=20, chunk_size=6, ema_ndim=4, max_target_positions=512,
        dropout=0.0,
    )
    return replace(cfg, **THETA[theta], **overrides)


def build(filt="adaptive", mode="causal", seed=0, theta="paper", wiring="paper", inp="x", **overrides):
    """The mega wiring with MEGA's rotary bias (its LM's), the paper wiring with the simple one."""
    torch.manual_seed(seed)
    bias = "rotary" if wiring == "mega" else "simple"
    cfg = tiny_cfg(filt, mode, theta, block_wiring=wiring, rel_pos_bias=bias, filter_input=inp, product_head_dim=2,
                   **overrides)
    # the product path filters kv with poles up to 0.999 (ring): in fp32 the FFT convolution's rounding,
    # which mixes positions, moved earlier log-probabilities by 2.5e-5 in the causality check (adaptive-carry,
    # own encoder); in fp64 the checks see the function itself
    decoder = FocusDecoder(cfg, DICT)
    stir(decoder)  # selective / adaptive-residual start exactly static: give their input parts weights
    # stirred input parts drive Θ per bin/token toward the region's edge, where fp32 rounding of the FFT
    # convolution moved earlier log-probabilities by 1.8e-5 (adaptive-residual): fp64 there too
    return decoder.eval() if inp == "x" and filt in ("adaptive", "static", "ema") else decoder.double().eval()


def log_probs(decoder):
    return lambda tokens: torch.log_softmax(decoder(tokens)[0].double(), dim=-1)


def random_tokens(bsz, length, seed=0):
    return torch.randint(VOCAB.start, VOCAB.stop, (bsz, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("filt,mode,theta,wiring,inp,share", [v + (True,) for v in VARIANTS]
                         + [v + (False,) for v in VARIANTS if v[3] == "paper"])
def test_model_is_causal(filt, mode, theta, wiring, inp, share):
    decoder = build(filt, mode, theta=theta, wiring=wiring, inp=inp, no_share_hypernet=not share)
    tokens = random_tokens(2, 53)  # not a multiple of the bin (8) or the chunk (6)
    for t in (0, 7, 8, 17, 30, 51):  # bin/chunk boundaries and inside
        assert_causal(log_probs(decoder), tokens, t, VOCAB)


@pytest.mark.parametrize("filt", ["adaptive", "static"])
def test_checker_catches_the_papers_leaky_filter(filt):
    decoder = build(filt, "paper")
    tokens = random_tokens(2, 53)
    with pytest.raises(AssertionError, match="moved by"):
        assert_causal(log_probs(decoder), tokens, 17, VOCAB)


@pytest.mark.parametrize("filt,mode,theta,wiring,inp", VARIANTS)
def test_prefix_outputs_equal_full_sequence_outputs(filt, mode, theta, wiring, inp):
    """Length independence: nothing at position t depends on how long the sequence is."""
    decoder = build(filt, mode, theta=theta, wiring=wiring, inp=inp)
    tokens = random_tokens(1, 61)
    full = log_probs(decoder)(tokens)
    for length in (1, 5, 8, 13, 24, 40):
        torch.testing.assert_close(log_probs(decoder)(tokens[:, :length]), full[:, :length], rtol=0, atol=1e-5)


@pytest.mark.parametrize("filt,mode,theta,wiring,inp", VARIANTS)
def test_batch_of_one_equals_batch_of_two_and_padding_changes_nothing(filt, mode, theta, wiring, inp):
    decoder = build(filt, mode, theta=theta, wiring=wiring, inp=inp)
    a, b = random_tokens(1, 30, 1), random_tokens(1, 30, 2)
    alone = log_probs(decoder)(a)
    together = log_probs(decoder)(torch.cat([a, b]))
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=1e-5)
    short = a[:, :19]
    padded = torch.cat([short, torch.full((1, 11), DICT.pad())], dim=1)
    batch = torch.cat([padded, b])
    torch.testing.assert_close(log_probs(decoder)(batch)[:1, :19], log_probs(decoder)(short), rtol=0, atol=1e-5)


def test_building_a_causal_lm_with_the_paper_filter_fails_with_a_reason():
    with pytest.raises(ValueError, match="not causal"):
        check_causal(tiny_cfg("adaptive", "paper"))
    check_causal(tiny_cfg("adaptive", "carry"))
    check_causal(tiny_cfg("ema", "paper"))  # the EMA variant has no IIR filter to leak


@pytest.mark.parametrize("filt,mode,theta,wiring,inp", VARIANTS)
def test_every_parameter_gets_a_gradient(filt, mode, theta, wiring, inp):
    decoder = build(filt, mode, theta=theta, wiring=wiring, inp=inp).train()
    tokens = random_tokens(2, 40)
    logits, _ = decoder(tokens)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_hypernetwork_theta_of_a_bin_depends_only_on_earlier_bins():
    decoder = build("adaptive", "causal")
    stack = decoder.stack
    x = torch.randn(1, 48, 16)  # (B, L, D), 6 bins of 8
    layer_filter = stack.blocks[0].attn.filter
    theta = layer_filter.theta(x, stack.shared_encoder(x))
    x2 = x.clone()
    x2[:, 24:] += 3.0  # bins 3, 4, 5 change
    theta2 = layer_filter.theta(x2, stack.shared_encoder(x2))
    torch.testing.assert_close(theta[:, :4], theta2[:, :4], rtol=0, atol=1e-6)  # bin 3 uses bin 2's embedding
    assert (theta[:, 4:] - theta2[:, 4:]).abs().max() > 1e-3
    assert ((theta > 0) & (theta < 1)).all()


def test_registered_names_resolve_to_our_classes():
    assert MODEL_REGISTRY["focus_lm"] is FocusLanguageModel
    for arch in ["focus_lm", "focus_lm_deep", "focus_lm_paper", "focus_lm_adaptive", "focus_lm_static",
                 "focus_lm_mega_small"] + [
            f"focus_lm_{c}{s}" for c in ("enwik8", "text8") for s in ("", "_adaptive", "_static", "_ema", "_mega",
                                                                        "_mega_adaptive")]:
        assert ARCH_MODEL_REGISTRY[arch] is FocusLanguageModel, arch
    assert TASK_REGISTRY["focus_lm"] is FocusLMTask


@pytest.mark.parametrize("share", [True, False])
def test_a_state_dict_from_before_the_encoder_rename_loads(share):
    """Checkpoints name the hypernetwork encoder ``shared_hyper`` / ``own_global`` and the simple relative
    bias ``rel_pos_bias``; they still load."""
    model = FocusLanguageModel(build("adaptive", "causal", no_share_hypernet=not share))
    new = model.state_dict()
    old = {k.replace("shared_encoder.", "shared_hyper.").replace("own_encoder.", "own_global.")
           .replace("rel_pos.weight", "rel_pos_bias"): v.clone() for k, v in new.items()}
    assert set(old) != set(new)  # the test really feeds old names
    fresh = FocusLanguageModel(build("adaptive", "causal", seed=1, no_share_hypernet=not share))
    fresh.load_state_dict(old)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, new[key]), key


def test_named_focus_archs_follow_the_study_and_the_paper_stays_reachable():
    """focus_lm_<corpus>: the selective head; _adaptive / _static: the hypernetwork / Focus-H with the study's Θ map
    and mode (docs/RESULTS.md); _paper / _static_paper: eq. 5."""
    from argparse import Namespace
    from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY
    expected = {"": ("selective", "carry", "stable"), "_adaptive": ("adaptive", "carry", "stable"),
                "_static": ("static", "carry", "stable"),
                "_paper": ("adaptive", "causal", "paper"), "_static_paper": ("static", "causal", "paper")}
    for corpus in ("enwik8", "text8"):
        for suffix, (filt, mode, theta) in expected.items():
            name = f"focus_lm_{corpus}{suffix}"
            assert ARCH_MODEL_REGISTRY[name] is FocusLanguageModel
            args = Namespace()
            ARCH_CONFIG_REGISTRY[name](args)
            assert (args.focus_filter, args.iir_mode, args.theta_param) == (filt, mode, theta), name
            assert (args.decoder_layers, args.decoder_embed_dim, args.bin_size) == (8, 512, 128), name


def test_focus_lm_arch_is_the_recommended_model_and_focus_lm_paper_the_papers():
    """`--arch focus_lm` (what users type first) gets the measured default; the paper's exact setting is
    focus_lm_paper, the config's own defaults."""
    from argparse import Namespace
    from fairseq.models import ARCH_CONFIG_REGISTRY
    args = Namespace()
    ARCH_CONFIG_REGISTRY["focus_lm"](args)
    assert (args.focus_filter, args.iir_mode, args.theta_param) == ("selective", "carry", "stable")
    assert args.decoder_ffn_embed_dim == 512 and args.decoder_embed_dim == 128


def test_focus_lm_deep_is_focus_lm_without_ffn_in_more_blocks_and_flags_still_win():
    from argparse import Namespace
    from fairseq.models import ARCH_CONFIG_REGISTRY
    deep, default = Namespace(), Namespace()
    ARCH_CONFIG_REGISTRY["focus_lm_deep"](deep)
    ARCH_CONFIG_REGISTRY["focus_lm"](default)
    changed = {k for k in vars(default) if getattr(deep, k) != getattr(default, k)}
    assert changed == {"decoder_layers", "decoder_ffn_embed_dim", "decoder_hidden_dim"}, changed
    assert (deep.decoder_layers, deep.decoder_ffn_embed_dim, deep.decoder_hidden_dim) == (4, 0, 224)
    mine = Namespace(decoder_layers=3, dropout=0.2)
    ARCH_CONFIG_REGISTRY["focus_lm_deep"](mine)
    assert (mine.decoder_layers, mine.dropout, mine.decoder_ffn_embed_dim) == (3, 0.2, 0)
    paper = Namespace()
    ARCH_CONFIG_REGISTRY["focus_lm_paper"](paper)
    assert (paper.focus_filter, paper.iir_mode, paper.theta_param, paper.block_wiring) == \
        ("adaptive", "causal", "paper", "paper")
    given = Namespace(focus_filter="static")  # a flag on the command line wins over the arch's default
    ARCH_CONFIG_REGISTRY["focus_lm"](given)
    assert given.focus_filter == "static"
