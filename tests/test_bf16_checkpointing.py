"""``--autocast-bf16`` (the model's own bf16 autocast, since fairseq 0.12's ``--bf16`` means TPU) and
``--checkpoint-activations`` / ``--offload-activations`` (fairseq's ``checkpoint_wrapper`` per block).

bf16 runs on CPU through CPU autocast: finite loss, every pole of Θ inside the unit circle, outputs
within bf16 tolerance of fp32. Checkpointing: the same gradients as without (dropout on, same RNG
state), the block really recomputed in backward, streaming untouched; and both through fairseq-train.
"""
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import fairseq_focus  # noqa: F401  (registers)
from fairseq_focus.models.focus_classifier import FocusClassifier, FocusClassifierConfig
from fairseq_focus.models.focus_lm import FocusDecoder, FocusLMConfig
from fairseq_focus.ops.precision import bf16_autocast
from helpers import TINY_LM, USER_DIR, run
from test_model import DICT, random_tokens

LM_VARIANTS = [("adaptive", "causal", False), ("adaptive", "carry", True), ("static", "causal", False),
               ("ema", "causal", False)]  # (filter, iir mode, no_share_hypernet)


def lm_cfg(filt="adaptive", mode="causal", no_share=False, **overrides):
    cfg = FocusLMConfig(
        decoder_layers=3, decoder_embed_dim=16, decoder_hidden_dim=24, decoder_ffn_embed_dim=32,
        decoder_z_dim=8, focus_filter=filt, iir_mode=mode, num_filters=2, bin_size=8, oversampling=4,
        hyper_hidden_dim=8, hyper_kernel_size=20, chunk_size=6, ema_ndim=4, max_target_positions=512,
        dropout=0.1, attention_dropout=0.1, hidden_dropout=0.1, no_share_hypernet=no_share,
    )
    return replace(cfg, **overrides)


def twin_decoders(cfg, **overrides):
    """Two decoders with the same weights, the second built with ``overrides``."""
    torch.manual_seed(0)
    first = FocusDecoder(cfg, DICT)
    second = FocusDecoder(replace(cfg, **overrides), DICT)
    second.load_state_dict(first.state_dict())
    return first, second


def lm_loss(decoder, tokens, seed=1):
    torch.manual_seed(seed)  # the same dropout masks for both decoders
    logits = decoder(tokens[:, :-1])[0]
    return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten()), logits


# ---- bf16 ---------------------------------------------------------------------------------------

def poles(theta):
    """Both roots of z² + θ0 z + θ1 for every filter: (..., 2) complex."""
    disc = torch.sqrt((theta[..., 0] ** 2 - 4 * theta[..., 1]).to(torch.complex128))
    return torch.stack([(-theta[..., 0] + disc) / 2, (-theta[..., 0] - disc) / 2], dim=-1)


@pytest.mark.parametrize("filt,mode,no_share", LM_VARIANTS)
def test_bf16_autocast_lm_close_to_fp32(filt, mode, no_share):
    fp32, bf16 = twin_decoders(lm_cfg(filt, mode, no_share, dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0),
                               autocast_bf16=True)
    tokens = random_tokens(2, 45)
    loss32, logits32 = lm_loss(fp32.eval(), tokens)
    loss16, logits16 = lm_loss(bf16.eval(), tokens)
    assert logits16.dtype == torch.bfloat16 and logits32.dtype == torch.float32  # autocast really ran
    assert torch.isfinite(loss16)
    # bf16 keeps 8 significant bits (relative error 2^-9 per rounding): a few roundings deep, 3e-2 of the scale
    scale = logits32.abs().max()
    assert (logits16.float() - logits32).abs().max() <= 3e-2 * scale
    assert abs(loss16.item() - loss32.item()) <= 1e-2 * loss32.item()
    loss16.backward()
    assert all(torch.isfinite(p.grad).all() for p in bf16.parameters() if p.grad is not None)


def test_bf16_autocast_classifier_close_to_fp32():
    cfg = FocusClassifierConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=24, decoder_ffn_embed_dim=32,
                                decoder_z_dim=8, bin_size=8, hyper_kernel_size=32, chunk_size=32, dropout=0.0)
    torch.manual_seed(0)
    fp32 = FocusClassifier(cfg, 1, 10, None, None).eval()
    bf16 = FocusClassifier(replace(cfg, autocast_bf16=True), 1, 10, None, None).eval()
    bf16.load_state_dict(fp32.state_dict())
    pixels = torch.randn(3, 32, 1)
    out32, out16 = fp32(pixels), bf16(pixels)
    assert out16.dtype == torch.bfloat16 and torch.isfinite(out16).all()
    assert (out16.float() - out32).abs().max() <= 3e-2 * out32.abs().max()


@pytest.mark.parametrize("no_share", [False, True])
def test_bf16_autocast_keeps_every_pole_inside_the_unit_circle(no_share):
    """Push the hypernetwork's logits to ±12, where a bf16 sigmoid rounds Θ to exactly 0 or 1 (a pole on
    |z| = 1); the Θ the filters get under autocast must still be strictly inside (0, 1)."""
    _, decoder = twin_decoders(lm_cfg(no_share=no_share, dropout=0.0), autocast_bf16=True)
    with torch.no_grad():
        for block in decoder.stack.blocks:
            local = block.attn.filter.local
            local.fc2.weight.zero_()
            local.fc2.bias.copy_(torch.tensor([12.0, 12.0, -12.0, 12.0]))  # F = 2 filters × (θ0, θ1)
    assert torch.sigmoid(torch.tensor(12.0, dtype=torch.bfloat16)) == 1.0  # the hazard is real
    thetas = decoder.eval().theta(random_tokens(2, 40))
    for theta in thetas:
        assert theta.dtype == torch.float32
        assert (poles(theta[:, 1:]).abs() < 1).all()  # bins after the first take the hypernetwork's Θ


def test_bf16_refused_where_the_device_cannot(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(RuntimeError, match=r"^--autocast-bf16: Tesla V100-SXM2-16GB has no bfloat16 units"):
        bf16_autocast(torch.device("cuda"))
    with pytest.raises(RuntimeError, match="runs on cuda or cpu devices, not meta"):
        bf16_autocast(torch.device("meta"))
    assert isinstance(bf16_autocast(torch.device("cpu")), torch.autocast)


# ---- activation checkpointing -------------------------------------------------------------------

def count_attention_calls(decoder):
    calls = []
    for block in decoder.stack.blocks:
        block.attn.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls


@pytest.mark.parametrize("flag", ["checkpoint_activations", "offload_activations"])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("filt,mode,no_share", LM_VARIANTS)
def test_checkpointing_gives_the_same_gradients(filt, mode, no_share, flag, autocast):
    plain, ckpt = twin_decoders(lm_cfg(filt, mode, no_share, autocast_bf16=autocast), **{flag: True})
    calls = count_attention_calls(ckpt)
    tokens = random_tokens(2, 45)
    for decoder in (plain, ckpt):
        lm_loss(decoder.train(), tokens)[0].backward()
    assert len(calls) == 2 * len(ckpt.stack.blocks)  # forward, then the recomputation in backward
    grads = dict(plain.named_parameters())
    for name, param in ckpt.named_parameters():
        ref = grads[name].grad
        assert (param.grad is None) == (ref is None), name
        if ref is not None:
            torch.testing.assert_close(param.grad, ref, rtol=0, atol=1e-6, msg=name)


def test_checkpointing_classifier_gives_the_same_gradients():
    cfg = FocusClassifierConfig(decoder_layers=2, decoder_embed_dim=16, decoder_hidden_dim=24, decoder_ffn_embed_dim=32,
                                decoder_z_dim=8, bin_size=8, hyper_kernel_size=32, chunk_size=32, dropout=0.1)
    torch.manual_seed(0)
    plain = FocusClassifier(cfg, 1, 10, None, None)
    ckpt = FocusClassifier(replace(cfg, checkpoint_activations=True), 1, 10, None, None)
    ckpt.load_state_dict(plain.state_dict())
    pixels, labels = torch.randn(3, 32, 1), torch.tensor([1, 4, 7])
    for model in (plain, ckpt):
        torch.manual_seed(1)
        F.cross_entropy(model(pixels), labels).backward()
    for (name, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-6, msg=name)


def test_checkpointed_decoder_streams_as_it_runs_in_parallel():
    _, decoder = twin_decoders(lm_cfg(mode="carry", dropout=0.0), checkpoint_activations=True)
    decoder.eval()
    tokens = random_tokens(2, 30)
    parallel = decoder(tokens)[0]
    state = {}
    steps = [decoder(tokens[:, :t], incremental_state=state)[0] for t in range(1, tokens.size(1) + 1)]
    torch.testing.assert_close(torch.cat(steps, dim=1), parallel, rtol=1e-4, atol=1e-5)


# ---- through fairseq-train ----------------------------------------------------------------------

@pytest.mark.slow
def test_fairseq_train_with_autocast_bf16_and_checkpointing(byte_corpus, tmp_path):
    proc = run(["fairseq-train", str(byte_corpus), "--save-dir", str(tmp_path), "--max-update", "4",
                "--user-dir", USER_DIR, "--task", "focus_lm", "--arch", "focus_lm", "--cpu", "--num-workers", "0",
                "--tokens-per-sample", "128", "--max-tokens", "1024", "--optimizer", "adam", "--lr", "3e-3",
                "--log-format", "simple", "--log-interval", "1", "--no-epoch-checkpoints", "--seed", "1",
                "--autocast-bf16", "--checkpoint-activations"] + TINY_LM)
    log = proc.stdout + proc.stderr
    losses = [float(v) for v in re.findall(r"\| loss ([0-9.]+) \|", log)]
    assert "num_updates 4" in log and losses and all(0 < v < 20 for v in losses), log[-3000:]
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    assert state["cfg"]["model"]["autocast_bf16"] and state["cfg"]["model"]["checkpoint_activations"]
