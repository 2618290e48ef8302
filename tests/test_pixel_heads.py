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


def test_bidirectional_filter_is_forward_plus_flipped_backward(task):
    filt = _model(task, bidirectional_filter=True, **CAUSAL_HEADS["static"]).stack.blocks[0].attn.filter
    x = torch.randn(2, 64, 16)
    with torch.no_grad():
        expected = filt.forward_filter(x, None) + filt.backward_filter(x.flip(1), None).flip(1)
        torch.testing.assert_close(filt(x, None), expected)
        assert not torch.equal(filt.forward_filter.logits, filt.backward_filter.logits)  # parameters of its own
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
