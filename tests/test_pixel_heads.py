"""The heads on pixels (issue 26): the selective and static heads in ``focus_classifier``, causal
where claimed (perturbation, with a planted leak caught by the same checker), streaming equal to the
parallel forward where causal, the bidirectional form reading later pixels, pooling, the transformer
baseline, the small and ``_paper`` archs, and a causal LM refusing ``--bidirectional-filter``."""
from argparse import Namespace

import numpy as np
import pytest
import torch

import fairseq_focus  # noqa: F401  (registers everything)
from fairseq_focus.data.pixel_splits import write_split
from fairseq_focus.models.focus_classifier import FocusClassifier, FocusClassifierConfig
from fairseq_focus.modules.bidirectional_filter import BidirectionalFilter
from fairseq_focus.tasks.pixel_sequence_classification import (
    PixelSequenceClassificationConfig, PixelSequenceClassificationTask,
)
from causality import assert_pixel_causal

TINY = dict(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=16, decoder_ffn_embed_dim=16,
            decoder_z_dim=8, bin_size=16, chunk_size=16, hyper_kernel_size=64, dropout=0.0)
CARRY = dict(iir_mode="carry", theta_param="stable")
CAUSAL_HEADS = {
    "selective": dict(focus_filter="selective", **CARRY),
    "static": dict(focus_filter="static", **CARRY),
    "ema": dict(focus_filter="ema", block_wiring="mega", **CARRY),
}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    rng = np.random.default_rng(1)
    for split, num in (("train", 8), ("valid", 4), ("test", 4)):
        write_split(root, split, rng.integers(0, 256, (num, 8, 8)).astype(np.uint8), rng.integers(0, 10, num).astype(np.uint8))
    return PixelSequenceClassificationTask.setup_task(PixelSequenceClassificationConfig(data=str(root), seed=1))


def _model(task, **overrides) -> FocusClassifier:
    torch.manual_seed(0)
    model = FocusClassifier.build_model(FocusClassifierConfig(**{**TINY, **overrides}), task).eval()
    if overrides.get("focus_filter") == "selective":  # move the selection off its zero init, so Θ depends on x
        for module in model.modules():
            if hasattr(module, "up"):
                torch.nn.init.normal_(module.up.weight, std=0.3)
    return model


@pytest.mark.parametrize("head", sorted(CAUSAL_HEADS))
def test_causal_heads_do_not_read_later_pixels(task, head):
    model = _model(task, pooling="last", **CAUSAL_HEADS[head])
    x = torch.randn(2, 64, 1)
    for t in (1, 15, 16, 40, 63):  # inside a chunk, at its start, later chunks
        assert_pixel_causal(model.features, x, t)


def test_the_checker_catches_a_planted_leak_and_paper_mode(task):
    model = _model(task, pooling="last", **CAUSAL_HEADS["selective"])
    leaky = lambda px: model.features(px) + 1e-3 * px.roll(-1, dims=1)  # noqa: E731  (position t reads t + 1)
    with pytest.raises(AssertionError, match="moved by"):
        assert_pixel_causal(leaky, torch.randn(2, 64, 1), 40)
    paper = _model(task, focus_filter="adaptive", iir_mode="paper")  # eq. 6 looks ahead inside a bin
    with pytest.raises(AssertionError, match="moved by"):
        assert_pixel_causal(paper.features, torch.randn(2, 64, 1), 40)


@pytest.mark.parametrize("head", ["selective", "static", "ema"])
def test_bidirectional_form_reads_later_pixels(task, head):
    model = _model(task, bidirectional_filter=True, **CAUSAL_HEADS[head])
    assert all(isinstance(b.attn.filter, BidirectionalFilter) for b in model.stack.blocks)
    x = torch.randn(2, 64, 1)
    with pytest.raises(AssertionError, match="moved by"):  # earlier positions see pixel 40 ...
        assert_pixel_causal(model.features, x, 40)
    with torch.no_grad():  # ... even in an earlier chunk, where attention cannot reach: through the reversed filter
        moved = model.features(x) - model.features(torch.cat([x[:, :40], x[:, 40:41] + 1.0, x[:, 41:]], 1))
    assert moved[:, :32].abs().max() > 1e-4


def _iir_loop(x: torch.Tensor, theta: torch.Tensor, backward: bool) -> torch.Tensor:
    """The order-2 recursion written out, y[t] = x[t] − θ0·y[t∓1] − θ1·y[t∓2] summed over the F filters,
    run from the first sample on (forward) or from the last one back (backward): x (B, L, D), Θ (D, F, 2)."""
    y1 = y2 = x.new_zeros(x.size(0), x.size(2), theta.size(1))  # (B, D, F)
    out = [None] * x.size(1)
    for t in (range(x.size(1) - 1, -1, -1) if backward else range(x.size(1))):
        y1, y2 = x[:, t, :, None] - theta[..., 0] * y1 - theta[..., 1] * y2, y1
        out[t] = y1.sum(-1)
    return torch.stack(out, dim=1)


def test_bidirectional_filter_is_the_two_recursions_and_ends_each_row_at_its_last_real_sample(task):
    """Against the recursions written out (not the module's own flips): the static carry head both ways is
    the causal recursion plus the same recursion run from the last sample back, with each direction's Θ;
    with a padding mask, both run over the row's real samples only."""
    from fairseq_focus.ops.theta import theta_from_logits
    filt = _model(task, bidirectional_filter=True, **CAUSAL_HEADS["static"]).stack.blocks[0].attn.filter.double()
    thetas = [theta_from_logits(f.logits, "stable") for f in (filt.forward_filter, filt.backward_filter)]
    x = torch.randn(2, 64, 16, dtype=torch.float64)
    mask = torch.arange(64).unsqueeze(0) >= torch.tensor([[64], [41]])  # row 1: 41 real samples, then pads
    with torch.no_grad():
        both_ways = lambda s: _iir_loop(s, thetas[0], False) + _iir_loop(s, thetas[1], True)  # noqa: E731
        torch.testing.assert_close(filt(x, None), both_ways(x), rtol=1e-9, atol=1e-9)
        padded = filt(x, None, mask)
        torch.testing.assert_close(padded[:1], both_ways(x[:1]), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(padded[1:, :41], both_ways(x[1:, :41]), rtol=1e-9, atol=1e-9)
        assert not torch.equal(thetas[0], thetas[1])  # parameters of its own
    with pytest.raises(ValueError, match="cannot stream"):
        filt.forward_stream(x, None, 0, {})


@pytest.mark.parametrize("head", ["selective", "static"])
def test_streaming_equals_parallel_where_causal(task, head):
    model = _model(task, pooling="last", **CAUSAL_HEADS[head])
    x = torch.randn(2, 64, 16)  # embedded pixels
    state, pieces = {}, []
    with torch.no_grad():
        for lo, hi in ((0, 1), (1, 7), (7, 16), (16, 41), (41, 64)):  # cut inside and across chunks
            pieces.append(model.stack.forward_stream(x[:, lo:hi], state))
        torch.testing.assert_close(torch.cat(pieces, 1), model.stack(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("arch", ["focus_classifier_selective", "focus_classifier_transformer"])
def test_pooling_reads_the_features_it_names(task, pooling, arch):
    model = _arch_model(task, arch, {**TINY, "pooling": pooling})
    x = torch.randn(3, 64, 1)
    with torch.no_grad():
        feats = model.features(x)  # (B, L, D)
        pooled = feats.mean(1) if pooling == "mean" else feats[:, -1]
        torch.testing.assert_close(model(x), model.head(pooled))
    assert model(x).shape == (3, 10)
    model.train()
    model(x).sum().backward()
    assert model.embed_pixels.weight.grad.abs().sum() > 0


def _arch_model(task, arch: str, overrides=None) -> FocusClassifier:
    from fairseq.models import ARCH_CONFIG_REGISTRY
    args = Namespace(**(overrides or {}))
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(0)
    return FocusClassifier.build_model(FocusClassifierConfig(**vars(args)), task).eval()


def test_small_archs_and_paper_archs():
    from fairseq.models import ARCH_CONFIG_REGISTRY
    expect = {"focus_classifier_selective": ("focus", "selective", "carry", "stable"),
              "focus_classifier_static": ("focus", "static", "carry", "stable"),
              "focus_classifier_ema": ("focus", "ema", "carry", "paper"),
              "focus_classifier_transformer": ("transformer", "adaptive", "paper", "paper"),
              "focus_classifier_paper": ("focus", "adaptive", "paper", "paper")}  # the model's defaults before issue 26
    for arch, values in expect.items():
        args = Namespace()
        ARCH_CONFIG_REGISTRY[arch](args)
        assert (args.backbone, args.focus_filter, args.iir_mode, args.theta_param) == values, arch
    for name, length in (("smnist", 784), ("pmnist", 784), ("scifar", 1024)):
        for suffix, filt in (("_paper", "adaptive"), ("_static_paper", "static"), ("_ema_paper", "ema")):
            args = Namespace()
            ARCH_CONFIG_REGISTRY[f"focus_{name}{suffix}"](args)
            assert (args.focus_filter, args.iir_mode, args.theta_param) == (filt, "paper", "paper")
            assert (args.bin_size, args.chunk_size, args.decoder_layers, args.decoder_embed_dim) == (length // 4, length, 6, 512)


def test_bidirectional_refused_where_it_cannot_apply(task):
    from fairseq_focus.models.focus_lm import FocusLanguageModel, FocusLMConfig
    cfg = FocusLMConfig(bidirectional_filter=True, focus_filter="selective", iir_mode="carry", theta_param="stable")
    with pytest.raises(ValueError, match="--bidirectional-filter reads later positions") as err:
        FocusLanguageModel.build_model(cfg, task=None)  # a causal LM: refused before anything is built
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="--bidirectional-filter needs a head that reads no left-to-right"):
        _model(task, focus_filter="adaptive", bidirectional_filter=True)
