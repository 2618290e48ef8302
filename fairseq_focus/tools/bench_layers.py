"""The layers that ``tools/bench.py`` times and ``tools/op_calls.py`` counts: each maps x (B, L, D) to
(B, L, D) at bench's widths (``args``: dim, value_dim, ffn, zdim, heads, filters, bin_size, chunk_size,
kernel_size, model_layers). ``focus-<filter>-<mode>`` is one Focus block (filter + chunked attention +
gates + NFFN), ``mega-ema`` the same block with MEGA's EMA, ``fairseq-layer`` fairseq's
``TransformerDecoderLayer`` with a causal mask, ``plain-attention`` a layer that materialises the L×L scores."""
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

FOCUS_LAYERS = [f"focus-{f}-{m}" for f in ("adaptive", "static") for m in ("causal", "carry", "paper")] + ["focus-selective-carry"]
LAYERS = FOCUS_LAYERS + ["mega-ema", "fairseq-layer", "plain-attention"]


class PlainAttentionLayer(nn.Module):
    """Pre-norm multi-head causal self-attention that materialises the (B, H, L, L) scores, plus an FFN."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, L, D)
        bsz, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(bsz, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, H, L, L)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        attn = scores.masked_fill(future, float("-inf")).softmax(-1)
        x = x + self.out((attn @ v).transpose(1, 2).reshape(bsz, length, dim))
        return x + self.fc2(F.relu(self.fc1(self.norm2(x))))


def focus_config(args, filt: str = "adaptive", mode: str = "causal"):
    from ..models.focus_lm import FocusLMConfig
    return FocusLMConfig(
        decoder_embed_dim=args.dim, decoder_hidden_dim=args.value_dim, decoder_ffn_embed_dim=args.ffn,
        decoder_z_dim=args.zdim, focus_filter=filt, iir_mode=mode, num_filters=args.filters,
        bin_size=args.bin_size, chunk_size=args.chunk_size, hyper_kernel_size=args.kernel_size,
        dropout=0.0, decoder_layers=args.model_layers, max_target_positions=None,
    )


def build_layer(name: str, args) -> nn.Module:
    """A module mapping (B, L, D) -> (B, L, D)."""
    if name == "plain-attention":
        return PlainAttentionLayer(args.dim, args.heads, args.ffn)
    if name == "fairseq-layer":
        from fairseq.models.transformer import TransformerConfig
        from fairseq.modules import TransformerDecoderLayer
        cfg = TransformerConfig()
        cfg.decoder.embed_dim, cfg.decoder.ffn_embed_dim, cfg.decoder.attention_heads = args.dim, args.ffn, args.heads
        cfg.dropout = cfg.attention_dropout = 0.0
        layer = TransformerDecoderLayer(cfg, no_encoder_attn=True)

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = layer

            def forward(self, x):  # fairseq wants (L, B, D) and an additive causal mask
                length = x.size(1)
                mask = torch.triu(torch.full((length, length), float("-inf"), device=x.device), 1)
                return self.layer(x.transpose(0, 1), self_attn_mask=mask)[0].transpose(0, 1)
        return Wrapped()
    from ..modules.focus_stack import FocusStack
    filt, mode = ("ema", "causal") if name == "mega-ema" else name.split("-")[1:]
    cfg = replace(focus_config(args, filt, mode), decoder_layers=1, no_normalize_before=False)
    return FocusStack(cfg)  # one block (+ the shared hypernetwork and final norm)
