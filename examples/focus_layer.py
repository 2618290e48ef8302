"""One Focus block with the selective IIR head, in plain PyTorch: the block of ``--arch focus_lm`` (pre-norm).

    x_n = LayerNorm(x),  x_f = SelectiveIIR(x_n)                    the head
    y = ChunkedAttn(Q = x_n W_q, K = x_f W_k, V = x_f W_v)           eq. 9-10: causal in chunks of M, + bias b[j - i]
    γ = SiLU(x_f W_γ + b_γ),  φ = sigmoid(x_f W_φ + b_φ)             eq. 11-12
    z = SiLU(x_f W_h + (γ ∘ y) U_h + b_h),  o = φ ∘ z + (1 - φ) ∘ x    eq. 13-14
    out = o + W_2 SiLU(W_1 LayerNorm(o))                             MEGA's normalized FFN
The head: per channel, F all-pole order-2 filters 1 / (1 + θ0 z⁻¹ + θ1 z⁻²) whose coefficients each token
chooses (u = logits + up(down(x[t])), Θ = ρ² (k1 (1 + k2), k2), k = tanh(u), ρ = 1 - 2⁻¹⁴: every pole |p| ≤ ρ),
run as a normalized lattice (two plane rotations per token, stable however Θ moves; Gray & Markel 1975):
    κ2 = θ2, κ1 = θ1 / (1 + θ2), c = √(1 - κ²),  f2 = g[t] x[t] / (c1 c2),  g[t] = 2 sigmoid(u_gain),
    f1 = c2 f2 - κ2 b1[t-1],  y[t] = c1 f1 - κ1 y[t-1],  b1[t] = κ1 f1 + c1 y[t-1],  x_f[t] = Σ_f y_f[t]
(θ1, θ2 are θ0, θ1 above.) With a constant Θ this is exactly the static filter 1 / A(z).

``forward(x)`` (B, L, D) runs the recursion as a parallel scan, ``step(x_t, state)`` one token at a time.
Parameter names and shapes are fairseq_focus's ``FocusBlock`` ones (``--focus-filter selective --iir-mode carry
--theta-param stable --block-wiring paper --rel-pos-bias simple``): its state_dict loads as is. Left out:
dropout (this is the eval-mode map), padding masks and the package's precision rule (filter math in fp32
under bf16 autocast): run in fp32 or fp64. ``python examples/focus_layer.py`` checks itself.
"""
import sys

import torch
import torch.nn.functional as F
from torch import nn

RHO = 1.0 - 2.0 ** -14


def stable_theta(u):
    """Logits (..., 2) -> Θ = (θ0, θ1) (..., 2), strictly inside the stability triangle shrunk by ρ²."""
    k1, k2 = torch.tanh(u).unbind(-1)
    return RHO * RHO * torch.stack([k1 * (1.0 + k2), k2], dim=-1)


def linear_scan(a, b):
    """s[t] = a[t] @ s[t-1] + b[t] (s[-1] = 0) for every t at once: a (L, ..., 2, 2), b (L, ..., 2, 1).
    Hillis-Steele: after the round of stride k, (a[t], b[t]) composes the pairs t-2k+1 … t, where
    (a', b') ∘ (a, b) = (a' a, a' b + b'). log2(L) rounds, exact."""
    k = 1
    while k < len(a):
        a, b = torch.cat([a[:k], a[k:] @ a[:-k]]), torch.cat([b[:k], a[k:] @ b[:-k] + b[k:]])
        k *= 2
    return b


class SelectiveIIR(nn.Module):
    def __init__(self, dim, num_filters=1, rank=16):
        super().__init__()
        self.num_filters = num_filters
        self.logits = nn.Parameter(torch.empty(dim, num_filters, 2).uniform_(-1.0, 1.0))
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim * (2 * num_filters + 1), bias=False)
        nn.init.zeros_(self.up.weight)  # starts as a static filter with unit gain

    def coefficients(self, x):
        """x (..., D) -> Θ (..., D, F, 2) and g (..., D), each token's from that token alone."""
        dim = x.size(-1)
        delta, gain = self.up(self.down(x)).split([dim * 2 * self.num_filters, dim], dim=-1)
        return stable_theta(self.logits + delta.unflatten(-1, (dim, self.num_filters, 2))), 2.0 * torch.sigmoid(gain)

    def lattice(self, x):
        """x (..., D) -> κ1, κ2, c1, c2 (..., D, F) and the rotated-in input f2 (..., D, F)."""
        theta, gain = self.coefficients(x)
        k2 = theta[..., 1]
        k1 = theta[..., 0] / (1.0 + k2)
        c1, c2 = torch.sqrt((1.0 - k1) * (1.0 + k1)), torch.sqrt((1.0 - k2) * (1.0 + k2))
        return k1, k2, c1, c2, (gain * x).unsqueeze(-1) / (c1 * c2)

    def forward(self, x):
        k1, k2, c1, c2, f2 = (t.transpose(0, 1) for t in self.lattice(x))  # (L, B, D, F), time first
        a = torch.stack([-k1, -c1 * k2, c1, -k1 * k2], -1).unflatten(-1, (2, 2))  # the two rotations as one 2×2 map
        s = linear_scan(a, torch.stack([c1 * c2 * f2, k1 * c2 * f2], -1).unsqueeze(-1))  # s[t] = (y_f[t], b1_f[t])
        return s[..., 0, 0].sum(-1).transpose(0, 1)  # (B, L, D)

    def step(self, x_t, state):
        """x_t (B, D), state (B, D, F, 2) = (y_f[t-1], b1_f[t-1]) -> x_f[t] (B, D) and the next state."""
        k1, k2, c1, c2, f2 = self.lattice(x_t)
        f1 = c2 * f2 - k2 * state[..., 1]
        y = c1 * f1 - k1 * state[..., 0]
        return y.sum(-1), torch.stack([y, k1 * f1 + c1 * state[..., 0]], dim=-1)


class FocusAttention(nn.Module):
    """Norm, selective IIR head, chunked causal attention and the gates of eq. 9-14; x (B, L, D)."""

    def __init__(self, dim, zdim, hdim, chunk, num_filters=1, rank=16):
        super().__init__()
        self.zdim, self.hdim, self.chunk = zdim, hdim, chunk
        self.norm = nn.LayerNorm(dim)
        self.filter = SelectiveIIR(dim, num_filters, rank)
        # MEGA's ``simple`` relative bias: one learned scalar per offset j - i in [-(M-1), M-1]
        self.rel_pos = nn.ParameterDict({"weight": nn.Parameter(torch.empty(2 * chunk - 1).normal_(0.0, 0.02))})
        self.q_proj = nn.Linear(dim, zdim)
        self.kv_proj = nn.Linear(dim, zdim + hdim)  # [W_k | W_v] on x_f
        self.gate_proj = nn.Linear(dim, hdim + 2 * dim)  # [W_γ | W_φ | W_h] on x_f
        self.u_proj = nn.Linear(hdim, dim)  # U_h

    def attend(self, q, k, v, rows):
        """q (B, n, Z) at chunk offsets ``rows`` over k, v (B, m, .) at offsets 0 … m-1 of the same chunk."""
        cols = torch.arange(k.size(-2), device=q.device)
        offset = cols.view(1, -1) - rows.view(-1, 1)  # j - i
        scores = q @ k.transpose(-1, -2) * self.zdim ** -0.5 + self.rel_pos["weight"][offset + self.chunk - 1]
        scores = scores.masked_fill(offset > 0, float("-inf"))  # causal
        return scores.softmax(-1) @ v

    def gate(self, x, x_f, y):  # eq. 11-14
        gamma, phi, h = self.gate_proj(x_f).split([self.hdim, x.size(-1), x.size(-1)], dim=-1)
        z = F.silu(h + self.u_proj(F.silu(gamma) * y))
        return x + torch.sigmoid(phi) * (z - x)

    def forward(self, x):
        length, x_n = x.size(1), self.norm(x)
        x_f = self.filter(x_n)
        k, v = self.kv_proj(x_f).split([self.zdim, self.hdim], dim=-1)
        pad = -length % self.chunk  # right-pad to whole chunks: nothing earlier changes (causal)
        q, k, v = (F.pad(t, (0, 0, 0, pad)).unflatten(1, (-1, self.chunk)) for t in (self.q_proj(x_n), k, v))
        y = self.attend(q, k, v, torch.arange(self.chunk, device=x.device)).flatten(1, 2)[:, :length]
        return self.gate(x, x_f, y)

    def step(self, x_t, state):
        """x_t (B, D); state: None at the start, then (filter state, keys and values of the chunk so far)."""
        x_n = self.norm(x_t)
        s = x_t.new_zeros(*x_t.shape, self.filter.num_filters, 2) if state is None else state[0]
        x_f, s = self.filter.step(x_n, s)
        k, v = self.kv_proj(x_f)[:, None].split([self.zdim, self.hdim], dim=-1)
        if state is not None and state[1].size(1) < self.chunk:  # inside a chunk; a new chunk starts empty
            k, v = torch.cat([state[1], k], 1), torch.cat([state[2], v], 1)
        y = self.attend(self.q_proj(x_n)[:, None], k, v, torch.tensor([k.size(1) - 1], device=x_t.device))
        return self.gate(x_t, x_f, y[:, 0]), (s, k, v)


class NormalizedFFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return x + self.fc2(F.silu(self.fc1(self.norm(x))))


class FocusBlock(nn.Module):
    """``--arch focus_lm``'s block (defaults: D 128, Z 64, H 256, FFN 512, M 128, F 1, rank 16)."""

    def __init__(self, dim=128, zdim=64, hdim=256, ffn_dim=512, chunk=128, num_filters=1, rank=16):
        super().__init__()
        self.attn = FocusAttention(dim, zdim, hdim, chunk, num_filters, rank)
        self.ffn = NormalizedFFN(dim, ffn_dim)
        for lin in self.modules():  # MEGA's init, N(0, 0.02) and zero bias; the head's biasless maps keep theirs
            if isinstance(lin, nn.Linear) and lin.bias is not None:
                nn.init.normal_(lin.weight, std=0.02), nn.init.zeros_(lin.bias)

    def forward(self, x):
        return self.ffn(self.attn(x))

    def step(self, x_t, state):
        """One token x_t (B, D) -> (B, D) and the next state (start with state None)."""
        y, state = self.attn.step(x_t, state)
        return self.ffn(y), state


def main():
    torch.manual_seed(0)
    block = FocusBlock(dim=16, zdim=8, hdim=24, ffn_dim=32, chunk=8, num_filters=2, rank=4).double().eval()
    nn.init.normal_(block.attn.filter.up.weight, 0.0, 0.7)  # let Θ and g move with the input
    x = torch.randn(2, 29, 16, dtype=torch.float64)
    with torch.no_grad():
        y, state, steps = block(x), None, []
        later = torch.cat([x[:, :13], torch.randn_like(x[:, 13:])], 1)  # other tokens from position 13 on
        causal = (block(later)[:, :13] - y[:, :13]).abs().max().item()
        for t in range(x.size(1)):
            out, state = block.step(x[:, t], state)
            steps.append(out)
        stepwise = (torch.stack(steps, 1) - y).abs().max().item()
    ok = ["ok" if good else "FAILED" for good in (y.shape == x.shape, causal == 0.0, stepwise < 1e-10)]
    print(f"shape: {ok[0]} ({tuple(x.shape)} -> {tuple(y.shape)})")
    print(f"causality: {ok[1]} (max change before the changed tokens {causal:.1e})")
    print(f"step == forward: {ok[2]} (max |diff| {stepwise:.1e} over {x.size(1)} tokens)")
    return 0 if "FAILED" not in ok else 1


if __name__ == "__main__":
    sys.exit(main())
