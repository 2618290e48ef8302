"""A perturbation checker for causal sequence models, used by the model tests."""
import torch


def assert_causal(score_fn, tokens: torch.Tensor, t: int, vocab: range, atol: float = 1e-5, seed: int = 0) -> None:
    """Change every token after position t and assert that outputs at positions ≤ t do not move.

    score_fn: (B, L) tokens -> (B, L, ...) outputs (e.g. log-probabilities); vocab: tokens to draw from.
    Raises AssertionError naming the largest change when the model looks ahead.
    """
    gen = torch.Generator().manual_seed(seed)
    perturbed = tokens.clone()
    tail = perturbed[:, t + 1:]
    perturbed[:, t + 1:] = torch.randint(vocab.start, vocab.stop, tail.shape, generator=gen)
    with torch.no_grad():
        before, after = score_fn(tokens), score_fn(perturbed)
    moved = (before[:, : t + 1] - after[:, : t + 1]).abs().max().item()
    assert moved < atol, f"outputs at positions <= {t} moved by {moved:.3g} when only later tokens changed"


def assert_pixel_causal(features_fn, pixels: torch.Tensor, t: int, atol: float = 1e-5, seed: int = 0) -> None:
    """Change pixel t of every image and assert that the outputs at positions < t do not move.

    features_fn: (B, L, C) pixels -> (B, L, ...) outputs per position (a classifier's features before
    pooling). Raises AssertionError naming the largest change when the model reads ahead.
    """
    gen = torch.Generator().manual_seed(seed)
    perturbed = pixels.clone()
    perturbed[:, t] = torch.randn(perturbed[:, t].shape, generator=gen)
    with torch.no_grad():
        before, after = features_fn(pixels), features_fn(perturbed)
    moved = (before[:, :t] - after[:, :t]).abs().max().item()
    assert moved < atol, f"outputs at positions < {t} moved by {moved:.3g} when only pixel {t} changed"


def assert_chunk_local(score_fn, tokens: torch.Tensor, s: int, chunk: int, vocab: range, seed: int = 0) -> None:
    """Change token s and assert that no output from the next chunk on moves, not even by rounding:
    nothing may cross the attention chunks (cut every ``chunk`` positions from 0).

    score_fn: (B, L) tokens -> (B, L, ...) outputs. Raises AssertionError naming the largest change.
    """
    gen = torch.Generator().manual_seed(seed)
    perturbed = tokens.clone()
    shift = torch.randint(1, len(vocab), perturbed[:, s].shape, generator=gen)
    perturbed[:, s] = vocab.start + (perturbed[:, s] - vocab.start + shift) % len(vocab)  # a different token
    with torch.no_grad():
        before, after = score_fn(tokens), score_fn(perturbed)
    later = (s // chunk + 1) * chunk
    moved = (before[:, later:] - after[:, later:]).abs().max().item()
    assert moved == 0.0, f"outputs at positions >= {later} (later chunks) moved by {moved:.3g} when token {s} changed"
