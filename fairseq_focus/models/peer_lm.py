"""The field's current best as peers of ``focus_lm``, in the same fairseq loop: ``mamba2_lm``,
``gated_deltanet_lm`` and ``transformer_pp_lm`` (Transformer++: pre-RMSNorm, rotary, SwiGLU).

    tokens -> Embedding -> [x + mixer(RMSNorm(x)) (+ x + SwiGLU(RMSNorm(x)))] × layers -> RMSNorm -> tied output

Each name is a model with its own config; its defaults are the 0.6M study size, parameter-matched to
``--arch focus_lm`` within ±5% (``python recipes/study/run.py params``; docs/RESULTS.md §3). Init as the
reference LMs (Mamba's ``_init_weights``): embeddings N(0, 0.02), the residual output projections
scaled by 1/√(residuals per layer × layers). Decoding runs only unseen tokens through the layers'
states (conv histories and SSM / delta-rule memories, or a KV cache): incremental == parallel.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.models import FairseqIncrementalDecoder, FairseqLanguageModel, register_model
from omegaconf import II
from torch import Tensor, nn

from ..modules.peers.common import PeerStack, ResidualBlock, SwiGLU
from ..modules.peers.gated_deltanet import GatedDeltaNetMixer
from ..modules.peers.mamba2 import Mamba2Mixer
from ..modules.peers.transformer_pp import RotaryAttention

logger = logging.getLogger(__name__)


@dataclass
class PeerLMConfig(FairseqDataclass):
    decoder_layers: int = field(default=2, metadata={"help": "number of residual layers"})
    decoder_embed_dim: int = field(default=128, metadata={"help": "model width D"})
    decoder_ffn_embed_dim: int = field(default=0, metadata={"help": "SwiGLU hidden width after each mixer (0: none)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the embeddings and on each residual branch's "
                                                          "output (the reference LMs and the study's runs: none)"})
    max_target_positions: Optional[int] = II("task.tokens_per_sample")


@dataclass
class Mamba2LMConfig(PeerLMConfig):
    decoder_layers: int = 5
    mamba_d_state: int = field(default=64, metadata={"help": "SSD state size N per head"})
    mamba_head_dim: int = field(default=64, metadata={"help": "channels P per SSD head (heads = expand·D / P)"})
    mamba_expand: int = field(default=2, metadata={"help": "inner width = expand × D"})
    mamba_conv_kernel: int = field(default=4, metadata={"help": "taps of the causal depthwise conv"})
    mamba_chunk: int = field(default=64, metadata={"help": "SSD chunk length Q (any Q gives the same outputs)"})


@dataclass
class GatedDeltaNetLMConfig(PeerLMConfig):
    decoder_ffn_embed_dim: int = 384
    gdn_heads: int = field(default=2, metadata={"help": "delta-rule heads"})
    gdn_head_k_dim: int = field(default=64, metadata={"help": "key width per head"})
    gdn_head_v_dim: int = field(default=128, metadata={"help": "value width per head"})
    gdn_conv_kernel: int = field(default=4, metadata={"help": "taps of the causal depthwise convs on q, k, v"})
    gdn_chunk: int = field(default=64, metadata={"help": "chunk length of the chunked form"})


@dataclass
class TransformerPPLMConfig(PeerLMConfig):
    decoder_layers: int = 3
    decoder_ffn_embed_dim: int = 320
    decoder_attention_heads: int = field(default=4, metadata={"help": "attention heads"})


def mamba2_mixer(cfg) -> nn.Module:
    return Mamba2Mixer(cfg.decoder_embed_dim, cfg.mamba_d_state, cfg.mamba_head_dim, cfg.mamba_expand,
                       cfg.mamba_conv_kernel, cfg.mamba_chunk)


def gated_deltanet_mixer(cfg) -> nn.Module:
    return GatedDeltaNetMixer(cfg.decoder_embed_dim, cfg.gdn_heads, cfg.gdn_head_k_dim, cfg.gdn_head_v_dim,
                              cfg.gdn_conv_kernel, cfg.gdn_chunk)


def attention_mixer(cfg) -> nn.Module:
    return RotaryAttention(cfg.decoder_embed_dim, cfg.decoder_attention_heads)


def _block(cfg, make_mixer: Callable) -> ResidualBlock:
    ffn = SwiGLU(cfg.decoder_embed_dim, cfg.decoder_ffn_embed_dim) if cfg.decoder_ffn_embed_dim else None
    return ResidualBlock(cfg.decoder_embed_dim, make_mixer(cfg), ffn, dropout=cfg.dropout)


def _rescale_residual_outputs(stack: PeerStack, layers: int, per_layer: int) -> None:
    """Mamba's (and GPT-2's) rule: each projection that writes into the residual stream / √(per_layer · layers)."""
    for block in stack.blocks:
        for proj in (getattr(block.mixer, "out_proj", None), getattr(block.ffn, "down", None)):
            if proj is not None:
                proj.weight.data /= math.sqrt(per_layer * layers)


class PeerDecoder(FairseqIncrementalDecoder):
    """(B, L) tokens -> (B, L, V) logits; batch first inside."""

    def __init__(self, cfg, dictionary, make_mixer: Callable):
        super().__init__(dictionary)
        dim = cfg.decoder_embed_dim
        self.max_target_positions = cfg.max_target_positions
        self.embed_tokens = nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.stack = PeerStack(dim, cfg.decoder_layers, lambda i: _block(cfg, make_mixer))
        _rescale_residual_outputs(self.stack, cfg.decoder_layers, 2 if cfg.decoder_ffn_embed_dim else 1)

    def forward(self, prev_output_tokens: Tensor, src_lengths: Optional[Tensor] = None, encoder_out=None,
                incremental_state=None, features_only: bool = False, return_all_hiddens: bool = False):
        x, extra = self.extract_features(prev_output_tokens, incremental_state=incremental_state)
        if incremental_state is not None:
            x = x[:, -1:]
        return (x if features_only else self.output_layer(x)), extra

    def extract_features(self, prev_output_tokens: Tensor, encoder_out=None, incremental_state=None):
        """(B, L) -> (B, L, D); with ``incremental_state``, the features of the tokens it has not seen."""
        if incremental_state is not None:
            seen = self.stack.position(incremental_state)
            if prev_output_tokens.size(1) <= seen:
                raise ValueError(f"the decoding state has seen {seen} tokens; got a prefix of {prev_output_tokens.size(1)}")
            prev_output_tokens = prev_output_tokens[:, seen:]
        x = self.embed_dropout(self.embed_tokens(prev_output_tokens))
        return self.stack(x, incremental_state), {"attn": [None], "inner_states": None}

    def output_layer(self, features: Tensor) -> Tensor:
        return nn.functional.linear(features, self.embed_tokens.weight)

    def max_positions(self) -> int:
        return self.max_target_positions or int(1e9)

    def reorder_incremental_state(self, incremental_state, new_order: Tensor) -> None:
        """Nothing of the decoder's own: each mixer's cache is reordered by fairseq's visit of its modules."""


class PeerLanguageModel(FairseqLanguageModel):
    NAME = "peer"
    make_mixer: Callable = staticmethod(attention_mixer)

    @classmethod
    def build_model(cls, cfg, task):
        model = cls(PeerDecoder(cfg, task.target_dictionary, cls.make_mixer))
        total = sum(p.numel() for p in model.parameters())
        embed = model.decoder.embed_tokens.weight.numel()
        logger.info("%s: %d parameters (%d without the tied embedding), %d layers, D=%d", cls.NAME, total,
                    total - embed, cfg.decoder_layers, cfg.decoder_embed_dim)
        return model


@register_model("mamba2_lm", dataclass=Mamba2LMConfig)
class Mamba2LanguageModel(PeerLanguageModel):
    NAME = "mamba2_lm"
    make_mixer = staticmethod(mamba2_mixer)


@register_model("gated_deltanet_lm", dataclass=GatedDeltaNetLMConfig)
class GatedDeltaNetLanguageModel(PeerLanguageModel):
    NAME = "gated_deltanet_lm"
    make_mixer = staticmethod(gated_deltanet_mixer)


@register_model("transformer_pp_lm", dataclass=TransformerPPLMConfig)
class TransformerPPLanguageModel(PeerLanguageModel):
    NAME = "transformer_pp_lm"
