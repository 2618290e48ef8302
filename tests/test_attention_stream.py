"""The streaming attention op (ops/chunked_attention.py): ``chunked_attention_segment`` against its
reference twin (values, cache, gradients) and against the parallel ``chunked_attention`` when a
whole sequence is fed in pieces."""
import pytest
import torch

from fairseq_focus.ops.chunked_attention import (
    ChunkCache, chunked_attention, chunked_attention_segment, chunked_attention_segment_ref,
)

M, Z, H = 5, 4, 3


def tensors(bsz, n, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(bsz, n, d, generator=g, dtype=torch.float64) for d in (Z, Z, H))
    bias = torch.randn(2 * M - 1, generator=g, dtype=torch.float64)
    return [t.requires_grad_(requires_grad) for t in (q, k, v, bias)]


def random_cache(bsz, offset, seed, requires_grad=False):
    if offset == 0:
        return None
    g = torch.Generator().manual_seed(seed + 100)
    k, v = torch.randn(bsz, offset, Z, generator=g, dtype=torch.float64), torch.randn(bsz, offset, H, generator=g, dtype=torch.float64)
    pads = torch.rand(bsz, offset, generator=g) < 0.3
    return ChunkCache(k.requires_grad_(requires_grad), v.requires_grad_(requires_grad), pads)


@pytest.mark.parametrize("pos,n", [(0, 1), (0, 7), (3, 1), (3, 2), (3, 9), (7, 13), (10, 5), (4, 1), (2, 3)])
@pytest.mark.parametrize("padded", [False, True])
def test_segment_matches_reference_values_and_cache(pos, n, padded):
    q, k, v, bias = tensors(2, n, seed=pos * 31 + n)
    cache = random_cache(2, pos % M, seed=pos)
    pads = (torch.rand(2, n, generator=torch.Generator().manual_seed(n)) < 0.4) if padded else None
    y, new = chunked_attention_segment(q, k, v, bias, M, pos, cache, pads)
    y_ref, new_ref = chunked_attention_segment_ref(q, k, v, bias, M, pos, cache, pads)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    assert y.shape == (2, n, H) and new.k.size(1) == (pos + n) % M
    for a, b in zip(new, new_ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize("pos,n", [(3, 9), (7, 13), (0, 5), (2, 1)])
def test_segment_gradients_match_reference(pos, n):
    grads = []
    for fn in (chunked_attention_segment, chunked_attention_segment_ref):
        q, k, v, bias = tensors(2, n, seed=5, requires_grad=True)
        cache = random_cache(2, pos % M, seed=5, requires_grad=True)
        pads = torch.rand(2, n, generator=torch.Generator().manual_seed(1)) < 0.3
        y, new = fn(q, k, v, bias, M, pos, cache, pads)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
        ((y * weights).sum() + new.k.sum() + 2 * new.v.sum()).backward()
        leaves = [q, k, v, bias] + ([cache.k, cache.v] if cache is not None else [])
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cuts", [[1] * 20, [3, 4, 6, 7], [5, 5, 10], [2, 11, 7], [20]])
@pytest.mark.parametrize("op", [chunked_attention_segment, chunked_attention_segment_ref])
def test_pieces_of_a_sequence_equal_the_parallel_op(cuts, op):
    q, k, v, bias = tensors(2, 20, seed=9)
    pads = torch.zeros(2, 20, dtype=torch.bool)
    pads[1, 13:] = True  # a right-padded second sequence
    whole = chunked_attention(q, k, v, bias, M, pads)
    outputs, cache, pos = [], None, 0
    for n in cuts:
        y, cache = op(q[:, pos:pos + n], k[:, pos:pos + n], v[:, pos:pos + n], bias, M, pos, cache, pads[:, pos:pos + n])
        outputs.append(y)
        pos += n
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", [chunked_attention_segment, chunked_attention_segment_ref])
def test_a_cache_that_does_not_match_the_position_is_refused(op):
    q, k, v, bias = tensors(1, 2, seed=0)
    with pytest.raises(ValueError, match="holds 2 keys at position 3"):
        op(q, k, v, bias, M, 3, random_cache(1, 2, seed=0))
    with pytest.raises(ValueError, match="holds 0 keys at position 3"):
        op(q, k, v, bias, M, 3, None)
