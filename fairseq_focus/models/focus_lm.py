"""``focus_lm``: a byte/char-level language model of Focus blocks (MEGA's LM backbone).

    tokens -> Embedding · √D -> Dropout -> FocusStack (blocks + final norm) -> tied output projection

Registered through ``--user-dir fairseq_focus``: model ``focus_lm`` (its own arch, a small default)
and the named archs below. A causal LM refuses ``--iir-mode paper`` at build time: eq. 6 is a
circular cross-correlation that lets position t see inputs t+1… of its bin.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.models import (ARCH_CONFIG_REGISTRY, FairseqIncrementalDecoder, FairseqLanguageModel, register_model,
                            register_model_architecture)
from omegaconf import II
from torch import Tensor, nn

from ..modules.config import IIR_FREE_FILTERS, OLD_NAME, upgrade_renamed
from ..modules.focus_stack import FocusStack
from ..ops.precision import model_autocast
from ..ops.iir import CAUSAL_MODES
from .arch import FocusModelConfig, fill_defaults, set_defaults

logger = logging.getLogger(__name__)


@dataclass
class FocusLMConfig(FocusModelConfig):
    no_share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "a separate output projection (default: tied to the input embeddings)"}
    )
    share_decoder_input_output_embed: Optional[bool] = field(
        default=None, metadata={"help": "tie input and output embeddings (the default; transformer_lm's flag). "
                                        + OLD_NAME.format("no-share-decoder-input-output-embed")}
    )
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not multiply embeddings by √D"})
    max_target_positions: Optional[int] = II("task.tokens_per_sample")


def check_causal(cfg) -> None:
    """A causal task must not be built with a filter that looks ahead."""
    if getattr(cfg, "bidirectional_filter", False):
        raise ValueError("--bidirectional-filter reads later positions (the filter also runs over the reversed "
                         "sequence); it is for whole-sequence classification, not a causal model")
    if cfg.focus_filter not in IIR_FREE_FILTERS and cfg.iir_mode not in CAUSAL_MODES:
        raise ValueError(
            f"--iir-mode {cfg.iir_mode} is not causal (the paper's eq. 6 multiplies each bin's FFT by the "
            f"conjugated response: a circular cross-correlation that mixes future inputs into K and V); "
            f"a causal language model needs --iir-mode {' or '.join(CAUSAL_MODES)}"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_model("focus_lm", dataclass=FocusLMConfig)
class FocusLanguageModel(FairseqLanguageModel):
    @classmethod
    def build_model(cls, cfg, task):
        if getattr(getattr(task, "cfg", None), "study_allow_lookahead", False):  # associative_recall's study switch
            logger.warning("--study-allow-lookahead: the model may see later inputs of its bin (--iir-mode %s); "
                           "its scores are not those of a causal model", cfg.iir_mode)
        else:
            check_causal(cfg)
        model = cls(FocusDecoder(cfg, task.target_dictionary))
        logger.info(
            "focus_lm: %d parameters (%.2fM), filter=%s, iir_mode=%s, filter_input=%s, wiring=%s, layers=%d, D=%d",
            count_parameters(model), count_parameters(model) / 1e6, cfg.focus_filter, cfg.iir_mode, cfg.filter_input,
            cfg.block_wiring, cfg.decoder_layers, cfg.decoder_embed_dim,
        )
        return model


class FocusDecoder(FairseqIncrementalDecoder):
    """Decoder-only LM. Batch-first inside; fairseq's (B, L) tokens in, (B, L, V) logits out."""

    def __init__(self, cfg, dictionary):
        super().__init__(dictionary)
        upgrade_renamed(cfg, {"share_decoder_input_output_embed": "no_share_decoder_input_output_embed"})
        dim = cfg.decoder_embed_dim
        self.max_target_positions = cfg.max_target_positions
        self.padding_idx = dictionary.pad()
        self.embed_tokens = nn.Embedding(len(dictionary), dim, padding_idx=self.padding_idx)
        nn.init.normal_(self.embed_tokens.weight, std=dim ** -0.5)
        nn.init.zeros_(self.embed_tokens.weight[self.padding_idx])
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(dim)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.autocast_bf16 = cfg.autocast_bf16
        self.stack = FocusStack(cfg)
        if cfg.no_share_decoder_input_output_embed:
            self.out_proj = nn.Linear(dim, len(dictionary), bias=False)
            nn.init.normal_(self.out_proj.weight, std=dim ** -0.5)
            self.output_projection = self.out_proj
        else:
            self.output_projection = lambda x: nn.functional.linear(x, self.embed_tokens.weight)

    def forward(self, prev_output_tokens: Tensor, src_lengths: Optional[Tensor] = None,
                encoder_out=None, incremental_state=None, features_only: bool = False,
                return_all_hiddens: bool = False):
        """Parallel forward, or — with ``incremental_state`` — the next step of decoding.

        fairseq's incremental contract: it passes the whole prefix and wants the last step only.
        The state remembers how many positions it has seen, so only the new tokens are run (one per
        step: O(1) in the prefix length; on the first call, the whole prompt as one segment).
        """
        with model_autocast(self.autocast_bf16, prev_output_tokens.device):
            x, extra = self.extract_features(prev_output_tokens, incremental_state=incremental_state)
            if incremental_state is not None:
                x = x[:, -1:]
            if not features_only:
                x = self.output_layer(x)
        return x, extra

    def extract_features(self, prev_output_tokens: Tensor, encoder_out=None, incremental_state=None):
        """(B, L) tokens -> (B, L, D) features; with ``incremental_state``, those of the unseen suffix."""
        if incremental_state is not None:
            seen = self.stack.position(incremental_state)
            if prev_output_tokens.size(1) <= seen:
                raise ValueError(f"the decoding state has seen {seen} tokens; got a prefix of {prev_output_tokens.size(1)}")
            return self.forward_stream(prev_output_tokens[:, seen:], incremental_state, features_only=True), \
                {"attn": [None], "inner_states": None}
        with model_autocast(self.autocast_bf16, prev_output_tokens.device):
            x = self.stack(self._embed(prev_output_tokens), self._padding_mask(prev_output_tokens))
        return x, {"attn": [None], "inner_states": None}

    def theta(self, tokens: Tensor) -> List[Tensor]:
        """Θ (B, Nbins, D, F, 2) of every layer's IIR filter in the parallel forward over tokens (B, L)."""
        with model_autocast(self.autocast_bf16, tokens.device):
            return self.stack.theta(self._embed(tokens), self._padding_mask(tokens))

    def forward_stream(self, tokens: Tensor, incremental_state, features_only: bool = False) -> Tensor:
        """The next n tokens (B, n) of B streams -> logits (B, n, V) (or features), updating the state.

        Any cut of a stream into segments gives the same outputs as one parallel forward over it:
        this is what decoding (n = 1), prompting and streaming scoring (score_stream.py) run on.
        """
        # beam search can hold dead hypotheses with pads
        with model_autocast(self.autocast_bf16, tokens.device):
            x = self.stack.forward_stream(self._embed(tokens), incremental_state, self._padding_mask(tokens))
            return x if features_only else self.output_layer(x)

    def _padding_mask(self, tokens: Tensor) -> Optional[Tensor]:
        """(B, L) bool, True at pads, or None when there are none."""
        padding_mask = tokens.eq(self.padding_idx)
        return padding_mask if padding_mask.any() else None

    def _embed(self, tokens: Tensor) -> Tensor:
        return self.embed_dropout(self.embed_scale * self.embed_tokens(tokens))  # (B, L, D)

    def output_layer(self, features: Tensor) -> Tensor:
        return self.output_projection(features)

    def max_positions(self) -> int:
        return self.max_target_positions or int(1e9)

    def reorder_incremental_state(self, incremental_state, new_order: Tensor) -> None:
        """Nothing of the decoder's own: every stateful submodule (modules/streaming.py) reorders
        its cache when fairseq's ``reorder_incremental_state_scripting`` visits it."""


# ---- named architectures -------------------------------------------------------------------------

def base_architecture(args) -> None:
    """Fill every field an arch left unset with the config's default."""
    fill_defaults(args, FocusLMConfig, skip=("max_target_positions",))


# The Θ map and IIR mode of the named Focus archs, chosen by the study in docs/RESULTS.md §1: the whole
# stability triangle (--theta-param stable) with the state carried across bins (--iir-mode carry) gave
# the lowest test BPC for both the adaptive and the static filter. The paper's exact setting (eq. 5's
# sigmoid, state reset per bin) stays reachable as focus_lm_paper and focus_lm_<corpus>_paper / _static_paper.
STUDY_THETA = {"iir_mode": "carry", "theta_param": "stable"}
PAPER_THETA = {"iir_mode": "causal", "theta_param": "paper"}
# The head of the default archs (docs/RESULTS.md §1b): per-token selection (--focus-filter selective) beat
# the static filter, the hypernetwork head and MEGA's EMA on both study corpora at equal parameters.
SELECTIVE = {"focus_filter": "selective", **STUDY_THETA}
HEADS = {"selective": SELECTIVE, "adaptive": {"focus_filter": "adaptive", **STUDY_THETA},
         "static": {"focus_filter": "static", **STUDY_THETA}}
# The small default (focus_lm): the config's sizes (2 blocks, D 128); models without the hypernetwork's
# 131K-weight global kernel spend it on FFN width, as the study's rows do.
SMALL_FFN = {"selective": 512, "adaptive": 256, "static": 512}
DEFAULT_WIRING = {"block_wiring": "paper", "rel_pos_bias": "simple"}


def _small_lm(args, head: str, wiring=None) -> None:
    set_defaults(args, {**HEADS[head], **(DEFAULT_WIRING if wiring is None else wiring),
                        "decoder_ffn_embed_dim": SMALL_FFN[head]})
    base_architecture(args)


def focus_lm_default(args) -> None:
    """``--arch focus_lm``: the recommended model at the small size (the selective head, stable + carry)."""
    _small_lm(args, "selective")


# fairseq registers a model's own name as an arch whose defaults are the dataclass's (the paper's exact
# setting, FocusStackConfig); `--arch focus_lm` is what users type first, so it gets the measured default.
ARCH_CONFIG_REGISTRY["focus_lm"] = focus_lm_default

# focus_lm's parameters spent on depth (docs/RESULTS.md §5, issue 30): blocks without the FFN (--decoder-ffn-embed-dim
# 0); each block's FFN weights buy another block, H narrowed to stay at focus_lm's parameters. The same head, block,
# dropout and kernels as focus_lm; only the sizes differ. On a corpus read about once, add --dropout 0 (§5).
DEEP = {"decoder_layers": 4, "decoder_ffn_embed_dim": 0, "decoder_hidden_dim": 224}


@register_model_architecture("focus_lm", "focus_lm_deep")
def focus_lm_deep(args) -> None:
    """``--arch focus_lm_deep``: focus_lm's selective head and block, 4 blocks without FFN (H 224)."""
    set_defaults(args, DEEP)
    _small_lm(args, "selective")


register_model_architecture("focus_lm", "focus_lm_adaptive")(lambda args: _small_lm(args, "adaptive"))
register_model_architecture("focus_lm", "focus_lm_static")(lambda args: _small_lm(args, "static"))
register_model_architecture("focus_lm", "focus_lm_mega_small")(
    lambda args: _small_lm(args, "selective", {"block_wiring": "mega", "rel_pos_bias": "rotary"}))


@register_model_architecture("focus_lm", "focus_lm_paper")
def focus_lm_paper(args) -> None:
    """The paper's exact Focus at the small size: the config's defaults (hypernetwork Θ per bin, eq. 5's
    sigmoid, state reset per bin, the paper's block)."""
    base_architecture(args)


def _paper_lm(args, head) -> None:
    """Paper §5.2: 8 layers, input dim 512, (FFN) hidden 1024; bins of 128, attention chunks of 1024."""
    set_defaults(args, {
        **head,
        "decoder_layers": 8,
        "decoder_embed_dim": 512,
        "decoder_hidden_dim": 512,
        "decoder_ffn_embed_dim": 1024,
        "decoder_z_dim": 128,
        "bin_size": 128,
        "chunk_size": 1024,
        "hyper_kernel_size": 2048,
        "selective_rank": 32,  # D/16, Mamba's dt_rank
    })
    base_architecture(args)


# MEGA's enwik8 model (mega_lm_enwik8_base and the enwik8 command of MEGA's examples/mega/README.lm.md):
# MEGA's block wiring, 12 layers, D 512, Z 128, H 1024, FFN 1024, EMA dim 16, chunks of 2048, the rotary
# relative bias, dropout 0.1 / attention 0 / hidden 0, a final norm without affine parameters.
MEGA_LM = {
    "block_wiring": "mega",
    "decoder_layers": 12,
    "decoder_embed_dim": 512,
    "decoder_z_dim": 128,
    "decoder_hidden_dim": 1024,
    "decoder_ffn_embed_dim": 1024,
    "ema_ndim": 16,
    "chunk_size": 2048,
    "rel_pos_bias": "rotary",
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
}
# The IIR heads in MEGA's place (bins and global kernel as the paper's Focus LM; rank D/16 as Mamba's dt_rank).
IIR_HEAD = {**SELECTIVE, "bin_size": 128, "hyper_kernel_size": 2048, "selective_rank": 32}
ADAPTIVE_IIR_HEAD = {**HEADS["adaptive"], "bin_size": 128, "hyper_kernel_size": 2048}


def _mega_lm(args, head) -> None:
    set_defaults(args, {**head, **MEGA_LM})
    args.no_affine_final_norm = True  # a store_true flag reaches the arch as False, never None
    base_architecture(args)


for _corpus in ("enwik8", "text8"):
    # Focus at the paper's size (paper wiring): the selective head (the default); _adaptive: the hypernetwork
    # head (Focus as the paper designs it, with the study's Θ map and mode); _static: Focus-H; _paper and
    # _static_paper: the paper's exact setting. focus_lm_<corpus>_ema is MEGA (MEGA_LM with MEGA's EMA);
    # focus_lm_<corpus>_mega is MEGA with the selective IIR head, _mega_adaptive with the hypernetwork head.
    # Parameter counts for 260 byte tokens: python examples/count_params.py (README's table).
    for _suffix, _head in (("", SELECTIVE), ("_adaptive", HEADS["adaptive"]), ("_static", HEADS["static"]),
                           ("_paper", {"focus_filter": "adaptive", **PAPER_THETA}),
                           ("_static_paper", {"focus_filter": "static", **PAPER_THETA})):
        register_model_architecture("focus_lm", f"focus_lm_{_corpus}{_suffix}")(lambda args, h=_head: _paper_lm(args, h))
    register_model_architecture("focus_lm", f"focus_lm_{_corpus}_ema")(lambda args: _mega_lm(args, {"focus_filter": "ema"}))
    register_model_architecture("focus_lm", f"focus_lm_{_corpus}_mega")(lambda args: _mega_lm(args, IIR_HEAD))
    register_model_architecture("focus_lm", f"focus_lm_{_corpus}_mega_adaptive")(
        lambda args: _mega_lm(args, ADAPTIVE_IIR_HEAD))
