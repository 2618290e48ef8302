"""The other ops against their reference twins: long convolution, MEGA's EMA, chunked attention."""
import numpy as np
import pytest
import torch

from fairseq_focus.ops.chunked_attention import chunked_attention, chunked_attention_ref, relative_bias_matrix
from fairseq_focus.ops.ema import ema_filter, ema_filter_ref
from fairseq_focus.ops.long_conv import causal_conv, causal_conv_ref, regularize_kernel


@pytest.mark.parametrize("length,ksize", [(1, 1), (17, 5), (40, 64), (33, 33)])
def test_causal_conv_matches_reference_and_numpy(length, ksize):
    torch.manual_seed(length)
    x = torch.randn(2, 3, length, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, ksize, dtype=torch.float64, requires_grad=True)
    y, y_ref = causal_conv(x, k), causal_conv_ref(x, k)
    torch.testing.assert_close(y, y_ref)
    expected = np.stack([[np.convolve(x[b, d].detach().numpy(), k[d].detach().numpy())[:length]
                          for d in range(3)] for b in range(2)])
    np.testing.assert_allclose(y.detach().numpy(), expected, atol=1e-10)
    g = torch.autograd.grad(y.square().sum(), (x, k))
    g_ref = torch.autograd.grad(y_ref.square().sum(), (x, k))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)


def test_regularizers():
    k = torch.tensor([[0.5, -0.0005, 0.002, -0.3, 0.0]])
    squashed = regularize_kernel(k, 1e-3, 1)
    torch.testing.assert_close(squashed, torch.tensor([[0.499, 0.0, 0.001, -0.299, 0.0]]))
    smooth = regularize_kernel(k, 0.0, 3)
    torch.testing.assert_close(smooth[0, 1], k[0, :3].mean())
    assert smooth.shape == k.shape


@pytest.mark.parametrize("length", [1, 9, 64])
def test_ema_matches_reference(length):
    torch.manual_seed(0)
    d, n = 3, 4
    p = torch.rand(d, n, dtype=torch.float64)
    q = 1 - p * torch.rand(d, n, dtype=torch.float64)
    beta, gamma = torch.randn(d, n, dtype=torch.float64), torch.randn(d, n, dtype=torch.float64)
    x = torch.randn(2, d, length, dtype=torch.float64, requires_grad=True)
    y, state = ema_filter(x, p, q, beta, gamma, return_state=True)
    y_ref, state_ref = ema_filter_ref(x, p, q, beta, gamma, return_state=True)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(state, state_ref)
    g, g_ref = (torch.autograd.grad(out.square().sum(), x)[0] for out in (y, y_ref))
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("chunk,nchunks", [(1, 3), (4, 1), (8, 3)])
@pytest.mark.parametrize("with_pads", [False, True])
def test_chunked_attention_matches_reference(chunk, nchunks, with_pads):
    torch.manual_seed(chunk)
    b, length = 2, chunk * nchunks
    q = torch.randn(b, length, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b, length, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, length, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2 * chunk - 1, dtype=torch.float64, requires_grad=True)
    pads = None
    if with_pads:
        pads = torch.zeros(b, length, dtype=torch.bool)
        pads[0, :2] = True  # left padding in one row
    y = chunked_attention(q, k, v, bias, chunk, pads)
    y_ref = chunked_attention_ref(q, k, v, bias, chunk, pads)
    torch.testing.assert_close(y, y_ref)
    g = torch.autograd.grad(y.square().sum(), (q, k, v, bias))
    g_ref = torch.autograd.grad(y_ref.square().sum(), (q, k, v, bias))
    for a, c in zip(g, g_ref):
        torch.testing.assert_close(a, c)


def test_chunks_do_not_see_each_other_or_the_future():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 12, 4), torch.randn(1, 12, 4), torch.randn(1, 12, 4)
    bias = torch.zeros(7)
    y = chunked_attention(q, k, v, bias, 4)
    k2, v2 = k.clone(), v.clone()
    k2[:, 6:] += 1.0
    v2[:, 6:] += 1.0
    y2 = chunked_attention(q, k2, v2, bias, 4)
    assert torch.equal(y[:, :6], y2[:, :6])  # positions ≤ 5 see nothing at ≥ 6
    k3 = k.clone()
    k3[:, :4] += 5.0  # chunk 0 changed: chunks 1, 2 must not move
    assert torch.equal(chunked_attention(q, k3, v, bias, 4)[:, 4:], y[:, 4:])


def test_relative_bias_matrix_indexes_offsets():
    bias = torch.arange(7.0)  # offsets −3 … 3
    m = relative_bias_matrix(bias, 4)
    assert m[0, 0] == 3 and m[2, 0] == 1 and m[0, 3] == 6


@pytest.mark.parametrize("shape_x,shape_k", [((2, 3, 4, 9), (2, 3, 4, 9)), ((2, 3, 20), (3, 7)), ((1, 1, 1), (1, 1))])
def test_fft_conv_custom_backward_matches_reference_and_gradcheck(shape_x, shape_k):
    from fairseq_focus.ops.fft_conv import fft_causal_conv
    torch.manual_seed(0)
    x = torch.randn(*shape_x, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*shape_k, dtype=torch.float64, requires_grad=True)
    y = fft_causal_conv(x, k)
    if len(shape_k) != 2:  # per-row kernels: compare row by row against numpy
        expected = np.stack([np.convolve(a, b)[: shape_x[-1]] for a, b in zip(
            x.detach().flatten(0, -2).numpy(), k.detach().flatten(0, -2).numpy())]).reshape(shape_x)
        np.testing.assert_allclose(y.detach().numpy(), expected, atol=1e-10)
    else:
        torch.testing.assert_close(y, causal_conv_ref(x, k))
    assert torch.autograd.gradcheck(fft_causal_conv, (x, k))


def test_fast_fft_length_is_the_smallest_smooth_length():
    from fairseq_focus.ops.fft_conv import fast_fft_length

    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 600):
        assert fast_fft_length(n) == next(m for m in range(n, 2 * n + 2) if smooth(m))
