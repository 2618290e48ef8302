"""The ``mega`` wiring (modules/mega_attention.py) against MEGA's equations (issue 10).

``mega_block_ref`` is written from the MEGA paper (Ma et al. 2022, eq. 2-3 and §3.2-3.3) and the notes in
/work/notes/mega_spec.md, not from the module: plain loops over time for the EMA and the attention, a
LayerNorm by hand, the rotary bias by explicitly rotating its two vectors per position. It reads only the
module's weights.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from fairseq_focus.modules.global_filter import EMAFilter
from fairseq_focus.modules.mega_attention import MegaGatedAttention

D, Z, H, N, M = 12, 8, 10, 3, 8


def _block(rel_pos_bias, prenorm=True, seed=0):
    torch.manual_seed(seed)
    block = MegaGatedAttention(D, Z, H, M, EMAFilter(D, N), 0.0, 0.0, 0.0, prenorm, rel_pos_bias).double()
    with torch.no_grad():  # move every parameter off its init, to O(1): zero biases, unit norms and tiny q, k would hide mistakes
        for p in block.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return block.eval()


def _rotate(vec, pos):
    """RoPE rotation of vec (Z,) by pos·θ_k on the pairs (k, k + Z/2)."""
    half = vec.numel() // 2
    theta = 10000.0 ** (-torch.arange(half, dtype=vec.dtype) / half)
    c, s = torch.cos(pos * theta), torch.sin(pos * theta)
    return torch.cat([vec[:half] * c - vec[half:] * s, vec[half:] * c + vec[:half] * s])


def mega_block_ref(block, x):
    """One MEGA gated-attention block, pre- or post-norm, from the paper's equations. x (B, L, D)."""
    def layer_norm(t):
        mu, var = t.mean(-1, keepdim=True), t.var(-1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * block.norm.weight + block.norm.bias

    ema = block.filter
    bsz, length, dim = x.shape
    xn = layer_norm(x) if block.prenorm else x
    # EMA (eq. 2-3): h_t = α ∘ (β x_t) + (1 − α ∘ δ) ∘ h_{t−1}; y_t = η^T h_t / √N; mx = SiLU(y + ω x)
    # (the paper's α, δ are sigmoids of the parameters MEGA's code names delta, alpha)
    alpha, damp = torch.sigmoid(ema.delta), torch.sigmoid(ema.alpha)
    h, ys = torch.zeros(bsz, dim, N, dtype=x.dtype), []
    for t in range(length):
        h = alpha * ema.beta * xn[:, t, :, None] + (1 - alpha * damp) * h
        ys.append((h * ema.gamma).sum(-1) / math.sqrt(N))
    mx = F.silu(torch.stack(ys, 1) + ema.omega * xn)
    # projections (§3.2)
    v = F.silu(xn @ block.v_proj.weight.T + block.v_proj.bias)
    base = mx @ block.mx_proj.weight.T + block.mx_proj.bias
    u, zz, r, h_mx = base.split([dim, Z, H, dim], -1)
    u, zz, r = torch.sigmoid(u), F.silu(zz), F.silu(r)
    q, k = zz * block.gamma[0] + block.beta[0], zz * block.gamma[1] + block.beta[1]

    def bias(i, j):  # i, j: offsets inside the chunk
        if hasattr(block.rel_pos, "weight"):
            return block.rel_pos.weight[j - i + M - 1]
        return _rotate(block.rel_pos.alpha, i) @ _rotate(block.rel_pos.beta, j)

    y = torch.zeros(bsz, length, H, dtype=x.dtype)
    for t in range(length):
        start = t - t % M
        scores = torch.stack([(q[:, t] * k[:, j]).sum(-1) / math.sqrt(Z) + bias(t - start, j - start)
                              for j in range(start, t + 1)], -1)
        y[:, t] = (scores.softmax(-1).unsqueeze(-1) * v[:, start:t + 1]).sum(1)
    cand = F.silu(h_mx + (r * y) @ block.h_proj.weight.T + block.h_proj.bias)
    out = u * cand + (1 - u) * x
    return out if block.prenorm else layer_norm(out)


@pytest.mark.parametrize("rel_pos_bias", ["simple", "rotary"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_block_matches_paper_reference(rel_pos_bias, prenorm):
    block = _block(rel_pos_bias, prenorm)
    x = torch.randn(2, 3 * M, D, dtype=torch.float64)
    err = (block(x, None, None) - mega_block_ref(block, x)).abs().max().item()
    print(f"mega block vs reference ({rel_pos_bias}, prenorm={prenorm}): max abs err {err:.2e}")
    assert err < 1e-5  # fp64: measured 1.4e-15 … 2.8e-15


def test_block_matches_reference_in_fp32():
    block = _block("rotary")
    x = torch.randn(2, 2 * M, D, dtype=torch.float64)
    ref = mega_block_ref(block, x)
    out = block.float()(x.float(), None, None).double()
    assert (out - ref).abs().max().item() < 1e-5  # measured 9.7e-07 (outputs of size ~4)


def test_streaming_equals_parallel():
    block = _block("rotary")
    x = torch.randn(2, 3 * M, D, dtype=torch.float64)
    full = block(x, None, None)
    state, outs, pos = {}, [], 0
    for n in (1, 3, 1, 8, 5, 2, 4):  # straddles chunk boundaries (M = 8)
        outs.append(block.forward_stream(x[:, pos:pos + n], None, pos, state))
        pos += n
    assert pos == x.size(1)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-10)


def test_causal_by_perturbation():
    block = _block("simple")
    x = torch.randn(2, 3 * M, D, dtype=torch.float64)
    for t in (0, M - 1, M + 2, 3 * M - 2):  # a chunk's first/last position and one inside
        moved = x.clone()
        moved[:, t + 1:] = torch.randn_like(moved[:, t + 1:])
        change = (block(x, None, None) - block(moved, None, None))[:, :t + 1].abs().max().item()
        assert change < 1e-12, f"position <= {t} moved by {change:.3g}"
        # and the past does reach t across chunks (through the EMA), so the check above is not vacuous
        past = x.clone()
        past[:, 0] += torch.randn(D, dtype=x.dtype)  # not a constant: LayerNorm ignores those
        assert (block(x, None, None) - block(past, None, None))[:, t].abs().max() > 1e-6


def test_every_parameter_gets_a_gradient():
    block = _block("rotary").train()
    x = torch.randn(2, 2 * M, D, dtype=torch.float64)
    block(x, None, None).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def mega_layer_count(d, z, h, n, m, rel_pos_bias):
    """MEGA's MovingAverageGatedAttention parameter count, written out term by term."""
    norm = 2 * d
    ema = 3 * d * n + d * n + d  # δ, α, β (D, N, 1); γ (D, N); ω (D)
    v_proj = d * h + h
    mx_proj = d * (z + h + 2 * d) + (z + h + 2 * d)
    h_proj = h * d + d
    qk_affine = 2 * z + 2 * z
    rel = 2 * m - 1 if rel_pos_bias == "simple" else 2 * z
    return norm + ema + v_proj + mx_proj + h_proj + qk_affine + rel


@pytest.mark.parametrize("rel_pos_bias", ["simple", "rotary"])
def test_parameter_count_is_megas(rel_pos_bias):
    block = _block(rel_pos_bias)
    assert sum(p.numel() for p in block.parameters()) == mega_layer_count(D, Z, H, N, M, rel_pos_bias)


def test_bad_rel_pos_bias_is_one_line_error():
    with pytest.raises(ValueError, match="rel-pos-bias"):
        MegaGatedAttention(D, Z, H, M, EMAFilter(D, N), 0.0, 0.0, 0.0, True, "alibi")


MEGA_ENWIK8 = 39_137_792  # mega_lm_enwik8_base as MEGA counts (sum of numel, tied embedding once), V = 208


def mega_lm_count(vocab, layers=12, d=512, z=128, h=1024, n=16, m=2048, ffn=1024):
    """MEGA's LM: layers × (gated attention + NFFN) + the tied embedding; the final norm has no affine."""
    nffn = 2 * d + (d * ffn + ffn) + (ffn * d + d)
    return layers * (mega_layer_count(d, z, h, n, m, "rotary") + nffn) + vocab * d


def test_mega_enwik8_arch_has_megas_parameter_count(tmp_path):
    """focus_lm_enwik8_ema built as fairseq-train builds it, for the byte dictionary (260 entries)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from helpers import USER_DIR
    (tmp_path / "dict.txt").write_text("".join(f"{b} 1\n" for b in range(256)))
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(tmp_path), "--user-dir", USER_DIR, "--task", "focus_lm", "--arch", "focus_lm_enwik8_ema", "--cpu"])
    model = tasks.setup_task(convert_namespace_to_omegaconf(args).task).build_model(convert_namespace_to_omegaconf(args).model)
    assert mega_lm_count(208) == MEGA_ENWIK8
    attn = model.decoder.stack.blocks[0].attn
    assert isinstance(attn, MegaGatedAttention) and isinstance(attn.filter, EMAFilter)
    assert not model.decoder.stack.final_norm.elementwise_affine
    count = sum(p.numel() for p in model.parameters())
    assert count == mega_lm_count(260)  # 39,164,416: only the vocabulary differs
    assert abs(count - MEGA_ENWIK8) / MEGA_ENWIK8 < 0.02  # measured +0.068%
