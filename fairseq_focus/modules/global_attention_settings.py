"""The choices of ``--global-attention`` and its one-line check, shared by the config (``config.py``, which
validates a whole stack's settings) and the module (``global_linear_attention.py``, which checks its own):
kept apart so that neither imports the other."""

GLOBAL_ATTENTIONS = ("none", "based")
GLOBAL_ATTENTION_DECAYS = ("none", "learned")


def check_global_attention(kind: str, heads: int, feature_dim: int, conv: int, decay: str, value_dim: int) -> None:
    """One-line ValueErrors for a bad ``--global-attention*`` setting."""
    if kind not in GLOBAL_ATTENTIONS:
        raise ValueError(f"--global-attention must be one of {GLOBAL_ATTENTIONS}, got {kind!r}")
    if decay not in GLOBAL_ATTENTION_DECAYS:
        raise ValueError(f"--global-attention-decay must be one of {GLOBAL_ATTENTION_DECAYS}, got {decay!r}")
    if heads < 1 or value_dim % heads != 0:
        raise ValueError(f"--global-attention-heads must be positive and divide --decoder-hidden-dim {value_dim}, "
                         f"got {heads}")
    if feature_dim < 1 or conv < 1:
        raise ValueError(f"--global-attention-feature-dim and --global-attention-conv must be positive, "
                         f"got {feature_dim} and {conv}")
