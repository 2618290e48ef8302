"""Named architectures for the associative recall task (paper appendix A, Table 6).

Table 6: 2 layers, F = 1, NFFT = L/4, C = 32 (width 64 as in Hyena's recall models). Our reading:

* NFFT = L/4 → ``--bin-size`` R = L/4 rounded up to a multiple of the oversampling O, where L is
  ``--seq-len`` (Table 1's L). The model reads L + 2 tokens, so the copy prefix and the query key
  fall into a fifth, short bin, filtered with Θ computed from the fourth (the causal shift).
* C = 32 → ``--chunk-size`` M = 32, the attention chunk *length*. The paper's §3.3 writes C for
  the number of chunks (L = M·C), but 32 chunks cannot be cut from Table 1's L = 30, and the code
  base the paper builds on (MEGA) names its chunk length "chunk size"; so we read C as M. At L = 30
  the whole input (32 tokens) is one chunk. Override with ``--chunk-size`` to test the other reading.
* The global hypernetwork kernel covers the whole input (``--hyper-kernel-size`` = L + 2).

These archs read ``--seq-len`` from the task, so they work with ``--task associative_recall`` only
(or with ``--bin-size`` and ``--hyper-kernel-size`` given explicitly).

Archs (one command line differs only in ``--arch``):

=============================  ===========================================  ============================
arch                           model                                        paper's name
=============================  ===========================================  ============================
focus_recall                   focus_lm, adaptive filter + global attention  Focus, with our recall path
focus_recall_paper             focus_lm, adaptive filter                    Focus
focus_recall_static            focus_lm, static filter                      Focus-H
focus_recall_ema               focus_lm, MEGA's block                       MEGA-EMA
focus_recall_transformer       fairseq's transformer_lm                     Transformer (attention only)
=============================  ===========================================  ============================

``focus_recall`` adds ``--global-attention based`` (beyond the paper; modules/global_linear_attention.py):
a Based-style global linear attention beside the chunked attention. It is the only design here that
recalls a key lying before the query's attention chunk: 100% at L = 64 (docs/RESULTS.md §2c), where the
paper's Focus (``focus_recall_paper``, or ``--global-attention none``) scores 18.4% (§2).
It costs 23% more parameters at this width. The other archs keep the paper's models; every Focus arch
takes every stack flag, ``--global-attention`` among them.
"""
import math

from fairseq.models import register_model_architecture
from fairseq.models.transformer_lm import base_lm_architecture

from ..data.associative_recall import input_length
from .arch import set_defaults
from .focus_lm import base_architecture

WIDTH = 64
LAYERS = 2
CHUNK = 32


def recall_bin_size(seq_len: int, oversampling: int) -> int:
    """NFFT = L/4, rounded up to a whole number of oversampling windows."""
    return oversampling * math.ceil(seq_len / (4 * oversampling))


def _needs_seq_len(args, name: str) -> int:
    seq_len = getattr(args, "seq_len", None)
    if seq_len is None and (getattr(args, "bin_size", None) is None or getattr(args, "hyper_kernel_size", None) is None):
        raise ValueError(f"--arch {name} sizes its bins from --seq-len: use --task associative_recall "
                         f"or give --bin-size and --hyper-kernel-size")
    return seq_len


def _focus_recall(args, name: str, filt: str, global_attention: str = "none") -> None:
    seq_len = _needs_seq_len(args, name)
    set_defaults(args, {
        "global_attention": global_attention,
        "focus_filter": filt,
        "block_wiring": "mega" if filt == "ema" else "paper",  # the _ema arch is MEGA's block
        "decoder_layers": LAYERS,
        "decoder_embed_dim": WIDTH,
        "decoder_hidden_dim": 2 * WIDTH,
        "decoder_ffn_embed_dim": 2 * WIDTH,
        "decoder_z_dim": WIDTH // 2,
        "num_filters": 1,
        "chunk_size": CHUNK,
        "oversampling": 4,
    })
    if seq_len is not None:
        set_defaults(args, {"bin_size": recall_bin_size(seq_len, args.oversampling),
                            "hyper_kernel_size": input_length(seq_len)})
    base_architecture(args)


register_model_architecture("focus_lm", "focus_recall")(
    lambda args: _focus_recall(args, "focus_recall", "adaptive", global_attention="based"))
register_model_architecture("focus_lm", "focus_recall_paper")(
    lambda args: _focus_recall(args, "focus_recall_paper", "adaptive"))
register_model_architecture("focus_lm", "focus_recall_static")(
    lambda args: _focus_recall(args, "focus_recall_static", "static"))
register_model_architecture("focus_lm", "focus_recall_ema")(lambda args: _focus_recall(args, "focus_recall_ema", "ema"))


@register_model_architecture("transformer_lm", "focus_recall_transformer")
def focus_recall_transformer(args) -> None:
    """fairseq's stock decoder, as narrow as the Focus models: every width is set, else the input
    and output projections stay at fairseq's 512."""
    set_defaults(args, {
        "decoder_layers": LAYERS,
        "decoder_embed_dim": WIDTH,
        "decoder_input_dim": WIDTH,
        "decoder_output_dim": WIDTH,
        "decoder_ffn_embed_dim": 4 * WIDTH,
        "decoder_attention_heads": 1,
        "share_decoder_input_output_embed": True,
    })
    base_lm_architecture(args)
