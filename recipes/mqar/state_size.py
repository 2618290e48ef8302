"""State per layer: the numbers a model keeps per sequence to decode its next token (MQAR's x axis).

Zoology plots MQAR accuracy against the size of the recurrent state (Arora et al. 2023, Fig. 2). Here
``state_per_layer(arch, cfg)`` returns the terms of one layer's decoding state, counted in numbers (not
bytes), from the model config fairseq stores in a checkpoint (``cfg["model"]``: a dict or a Namespace).
``fixed`` is the sum of the terms whose size does not depend on the sequence length; ``grows`` the sum of
those that do (at the run's L). The plot's x axis is ``fixed + grows`` at the run's L, and the table shows
both. The choices, per model (D width, H value dim, Z query/key dim, M chunk length, L sequence length):

focus_lm (the focus_recall* archs)
    iir          2·D·F: the order-2 IIR state, 2 numbers per channel and filter (F = --num-filters), for
                 --focus-filter adaptive / adaptive-residual / static / selective; D·N for MEGA's EMA
                 (N = --ema-ndim); 0 for none. (In --iir-mode causal the state restarts at each bin, but
                 within a bin it is these 2 numbers.)
    global_attn  --global-attention based: heads · P · (E + 1) with P = 1 + F_g + F_g² Taylor features and
                 E = H / heads values per head (Σ φ(k) vᵀ and the normaliser Σ φ(k)), plus the short conv's
                 last K_g − 1 inputs of its 2·heads·F_g + H channels. 0 without.
    chunk_kv     (M − 1)·(Z + H): the keys and values of the attention chunk in progress, at most M − 1
                 earlier positions. Fixed in L: counted in ``fixed`` — it is where in-chunk recall is held.
    hyper        the adaptive filters' hypernetwork (shared by all layers unless --no-share-hypernet, so
                 divided by the layers): its causal long convolution keeps the last K − 1 inputs (K =
                 --hyper-kernel-size, L + 2 for the recall archs) of D channels, the bin in progress (R·D)
                 and the last bin's pooled embedding (D·O). K grows with L: counted in ``grows``.
transformer_lm (focus_recall_transformer) and transformer_pp_lm
    kv_cache     2·L·D: every earlier key and value (``grows``).
mamba2_lm, gated_deltanet_lm
    The functions below read the config names listed in PEER_FIELDS (models/peer_lm.py's first; checked by
    hand in tests/test_mqar.py) and stop with a clear error naming any that is missing.
    mamba2:  ssm = heads·headdim·N = expand·D·N; conv = (K − 1)·(expand·D + 2·N) (one group).
    gated deltanet: delta = heads·d_k·d_v; conv = (K − 1)·(heads·(2·d_k + d_v)).
"""
from argparse import Namespace
from typing import Dict, Mapping, Sequence, Union

Config = Union[Mapping, Namespace]
IIR_FILTERS = ("adaptive", "adaptive-residual", "static", "selective")
HYPER_FILTERS = ("adaptive", "adaptive-residual")

# candidate config names of each peer's sizes, tried in order (models/peer_lm.py's come first)
PEER_FIELDS = {
    "mamba2": {"d_state": ("mamba_d_state", "d_state", "ssm_state_dim"), "expand": ("mamba_expand", "expand"),
               "d_conv": ("mamba_conv_kernel", "mamba_d_conv", "d_conv", "conv_kernel")},
    "gated_deltanet": {"heads": ("gdn_heads", "num_heads", "decoder_attention_heads"),
                       "head_k_dim": ("gdn_head_k_dim", "head_k_dim", "head_dim"),
                       "head_v_dim": ("gdn_head_v_dim", "head_v_dim", "head_dim"),
                       "d_conv": ("gdn_conv_kernel", "gdn_conv_size", "conv_size", "d_conv")},
}


def _get(cfg: Config, name: str, default=None):
    value = cfg.get(name, default) if isinstance(cfg, Mapping) else getattr(cfg, name, default)
    if value is None:
        raise KeyError(f"the model config has no {name!r}")
    return value


def _first(cfg: Config, arch: str, names: Sequence[str]) -> int:
    for name in names:
        value = cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)
        if value is not None:
            return int(value)
    raise KeyError(f"state size of {arch}: its config has none of {', '.join(names)}; set the right name in "
                   f"recipes/mqar/state_size.py PEER_FIELDS")


def focus_state(cfg: Config, seq_len: int) -> Dict[str, int]:
    d, h, z, m = (int(_get(cfg, k)) for k in ("decoder_embed_dim", "decoder_hidden_dim", "decoder_z_dim", "chunk_size"))
    filt, layers = _get(cfg, "focus_filter"), int(_get(cfg, "decoder_layers"))
    terms = {"iir": 0, "global_attn": 0, "chunk_kv": (m - 1) * (z + h), "hyper": 0}
    if filt in IIR_FILTERS:
        terms["iir"] = 2 * d * int(_get(cfg, "num_filters"))
    elif filt == "ema":
        terms["iir"] = d * int(_get(cfg, "ema_ndim"))
    if _get(cfg, "global_attention", "none") == "based":
        heads, fg, kg = (int(_get(cfg, k)) for k in ("global_attention_heads", "global_attention_feature_dim",
                                                     "global_attention_conv"))
        features = 1 + fg + fg * fg
        terms["global_attn"] = heads * features * (h // heads + 1) + (kg - 1) * (2 * heads * fg + h)
    if filt in HYPER_FILTERS:
        k, r, o = (int(_get(cfg, n)) for n in ("hyper_kernel_size", "bin_size", "oversampling"))
        shared = not _get(cfg, "no_share_hypernet", False)
        terms["hyper"] = ((k - 1) * d + r * d + d * o) // (layers if shared else 1)
    return terms


def transformer_state(cfg: Config, seq_len: int) -> Dict[str, int]:
    return {"kv_cache": 2 * seq_len * int(_get(cfg, "decoder_embed_dim"))}


def mamba2_state(cfg: Config, seq_len: int) -> Dict[str, int]:
    f = PEER_FIELDS["mamba2"]
    d = int(_get(cfg, "decoder_embed_dim"))
    n, expand, k = (_first(cfg, "mamba2_lm", f[key]) for key in ("d_state", "expand", "d_conv"))
    return {"ssm": expand * d * n, "conv": (k - 1) * (expand * d + 2 * n)}


def gated_deltanet_state(cfg: Config, seq_len: int) -> Dict[str, int]:
    f = PEER_FIELDS["gated_deltanet"]
    heads, dk, dv, k = (_first(cfg, "gated_deltanet_lm", f[key]) for key in ("heads", "head_k_dim", "head_v_dim",
                                                                            "d_conv"))
    return {"delta": heads * dk * dv, "conv": (k - 1) * heads * (2 * dk + dv)}


GROWS = {"hyper", "kv_cache"}  # terms whose size grows with the sequence length
STATE_OF_MODEL = {"focus_lm": focus_state, "transformer_lm": transformer_state, "transformer_pp_lm": transformer_state,
                  "mamba2_lm": mamba2_state, "gated_deltanet_lm": gated_deltanet_state}


def state_per_layer(model_name: str, cfg: Config, seq_len: int) -> Dict[str, int]:
    """{term: numbers} of one layer, plus 'fixed' and 'grows' (sums) and 'total'."""
    if model_name not in STATE_OF_MODEL:
        raise KeyError(f"no state-size rule for model {model_name!r} (known: {', '.join(sorted(STATE_OF_MODEL))})")
    terms = STATE_OF_MODEL[model_name](cfg, seq_len)
    fixed = sum(v for k, v in terms.items() if k not in GROWS)
    grows = sum(v for k, v in terms.items() if k in GROWS)
    return {**terms, "fixed": fixed, "grows": grows, "total": fixed + grows}
