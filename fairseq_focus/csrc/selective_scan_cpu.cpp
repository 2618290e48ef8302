// The per-token order-2 IIR scan of ops/selective_iir.py, fused for the CPU: one call forward, one backward.
//
// Per lane (batch b, channel d, filter f), state s[t] = (s0, s1):
//     s[t] = A_t s[t-1] + b_t,  s[-1] = state0,  y[b, t, d] = sum_f s_f[t].s0
//   lattice:   k2 = th1, k1 = th0 / (1 + th1), c1 = sqrt((1 - k1)(1 + k1)),
//              A_t = [[-k1, -c1 k2], [c1, -k1 k2]], b_t = (u, k1 u / c1)
//   companion: A_t = [[-th0, -th1], [1, 0]],       b_t = (u, 0)
// Backward is the adjoint recurrence run backward in time, lam[t] = (dy[t], 0) + A_{t+1}^T lam[t+1];
// dA_t = lam[t] s[t-1]^T, db_t = lam[t], dstate0 = A_0^T lam[0]; then the chain rule to (th0, th1, u).
// The forward keeps only the state entering every chunk of `chunk` steps (ckpt); the backward recomputes a
// chunk's states from it into a small buffer, then walks that chunk backward (as Mamba's scan kernels do).
//
// Layouts (contiguous): theta (B, L, D, F, 2); u, y, dy, du (B, L, D); state0, final (B, D, F, 2);
// ckpt (B, NC, D, F, 2) with NC = ceil(L / chunk). Work items are (batch, block of channels), in parallel.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t kBlock = 64;  // channels per work item

template <typename T>
struct Step {
  T a00, a01, a10, a11, b0, b1;
};

template <typename T>
inline Step<T> transition(T th0, T th1, T u, bool lattice) {
  if (!lattice) return {-th0, -th1, T(1), T(0), u, T(0)};
  const T k2 = th1, k1 = th0 / (T(1) + th1);
  const T c1 = std::sqrt((T(1) - k1) * (T(1) + k1));
  return {-k1, -c1 * k2, c1, -k1 * k2, u, k1 * u / c1};
}

struct Shape {
  int64_t B, L, D, F, NC, chunk;
  int64_t lanes() const { return D * F; }
};

Shape shape_of(const torch::Tensor& theta, int64_t chunk) {
  TORCH_CHECK(theta.dim() == 5 && theta.size(4) == 2, "theta must be (B, L, D, F, 2)");
  TORCH_CHECK(chunk > 0, "chunk must be positive");
  const int64_t L = theta.size(1);
  return {theta.size(0), L, theta.size(2), theta.size(3), (L + chunk - 1) / chunk, chunk};
}

void check_inputs(const std::vector<torch::Tensor>& ts) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu(), "the CPU scan takes CPU tensors");
    TORCH_CHECK(t.is_contiguous(), "the CPU scan takes contiguous tensors");
    TORCH_CHECK(t.scalar_type() == ts[0].scalar_type(), "the CPU scan takes one dtype");
  }
}

// Runs the recurrence for channels [d0, d1) of batch b over steps [t0, t1), from the lane states in s (2 per
// lane, lanes of the block only), writing y (if not null) and each step's state into hist (if not null).
template <typename T>
void advance(const Shape& n, const T* theta, const T* u, int64_t b, int64_t d0, int64_t d1, int64_t t0,
             int64_t t1, bool lattice, T* s, T* y, T* hist) {
  const int64_t F = n.F, width = (d1 - d0) * F;
  for (int64_t t = t0; t < t1; ++t) {
    const T* th = theta + ((b * n.L + t) * n.D + d0) * F * 2;
    const T* ut = u + (b * n.L + t) * n.D;
    for (int64_t d = d0; d < d1; ++d) {
      T acc = 0;
      for (int64_t f = 0; f < F; ++f) {
        const int64_t j = (d - d0) * F + f;
        const Step<T> a = transition(th[2 * j], th[2 * j + 1], ut[d], lattice);
        const T s0 = a.a00 * s[2 * j] + a.a01 * s[2 * j + 1] + a.b0;
        const T s1 = a.a10 * s[2 * j] + a.a11 * s[2 * j + 1] + a.b1;
        s[2 * j] = s0;
        s[2 * j + 1] = s1;
        acc += s0;
      }
      if (y != nullptr) y[(b * n.L + t) * n.D + d] = acc;
    }
    if (hist != nullptr) std::copy(s, s + 2 * width, hist + (t - t0 + 1) * 2 * width);
  }
}

template <typename T>
void forward_item(const Shape& n, const T* theta, const T* u, const T* state0, bool lattice, int64_t b,
                  int64_t d0, int64_t d1, T* y, T* final_state, T* ckpt) {
  const int64_t width = (d1 - d0) * n.F, stride = n.lanes() * 2, first = d0 * n.F * 2;
  std::vector<T> s(state0 + b * stride + first, state0 + b * stride + first + 2 * width);
  for (int64_t c = 0; c < n.NC; ++c) {
    std::copy(s.begin(), s.end(), ckpt + (b * n.NC + c) * stride + first);
    advance(n, theta, u, b, d0, d1, c * n.chunk, std::min(n.L, (c + 1) * n.chunk), lattice, s.data(), y,
            static_cast<T*>(nullptr));
  }
  std::copy(s.begin(), s.end(), final_state + b * stride + first);
}

// One step of the adjoint for lane j of channel d: lam = lambda[t] on entry, A_t^T lambda[t] on exit.
template <typename T>
inline T adjoint_step(T th0, T th1, T u, T sp0, T sp1, bool lattice, T* lam, T* dth) {
  const T l0 = lam[0], l1 = lam[1];
  const Step<T> a = transition(th0, th1, u, lattice);
  lam[0] = a.a00 * l0 + a.a10 * l1;
  lam[1] = a.a01 * l0 + a.a11 * l1;
  const T g00 = l0 * sp0, g01 = l0 * sp1, g10 = l1 * sp0, g11 = l1 * sp1;
  if (!lattice) {
    dth[0] = -g00;
    dth[1] = -g01;
    return l0;
  }
  const T k2 = th1, k1 = th0 / (T(1) + th1), c1 = a.a10;
  const T gk1 = -g00 - k2 * g11 - (k1 / c1) * (g10 - k2 * g01) + l1 * u / (c1 * c1 * c1);
  const T gk2 = -c1 * g01 - k1 * g11;
  dth[0] = gk1 / (T(1) + th1);
  dth[1] = gk2 - gk1 * k1 / (T(1) + th1);
  return l0 + l1 * k1 / c1;
}

template <typename T>
void backward_item(const Shape& n, const T* theta, const T* u, const T* ckpt, const T* dy, const T* dfinal,
                   bool lattice, int64_t b, int64_t d0, int64_t d1, T* dtheta, T* du, T* dstate0) {
  const int64_t F = n.F, width = (d1 - d0) * F, stride = n.lanes() * 2, first = d0 * F * 2;
  std::vector<T> lam(dfinal + b * stride + first, dfinal + b * stride + first + 2 * width);
  std::vector<T> hist((n.chunk + 1) * 2 * width), s(2 * width);
  for (int64_t c = n.NC - 1; c >= 0; --c) {
    const int64_t t0 = c * n.chunk, t1 = std::min(n.L, t0 + n.chunk);
    std::copy(ckpt + (b * n.NC + c) * stride + first, ckpt + (b * n.NC + c) * stride + first + 2 * width, s.begin());
    std::copy(s.begin(), s.end(), hist.begin());  // hist[i] = state entering step t0 + i
    advance(n, theta, u, b, d0, d1, t0, t1, lattice, s.data(), static_cast<T*>(nullptr), hist.data());
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t row = (b * n.L + t) * n.D;
      const T* sp = hist.data() + (t - t0) * 2 * width;
      for (int64_t d = d0; d < d1; ++d) {
        T gu = 0;
        for (int64_t f = 0; f < F; ++f) {
          const int64_t j = (d - d0) * F + f, at = ((row + d0) * F + j) * 2;
          lam[2 * j] += dy[row + d];
          gu += adjoint_step(theta[at], theta[at + 1], u[row + d], sp[2 * j], sp[2 * j + 1], lattice,
                             lam.data() + 2 * j, dtheta + at);
        }
        du[row + d] = gu;
      }
    }
  }
  std::copy(lam.begin(), lam.end(), dstate0 + b * stride + first);
}

// Calls fn(b, d0, d1) for every (batch, channel block), in parallel over torch's intra-op threads.
template <typename Fn>
void for_items(const Shape& n, const Fn& fn) {
  const int64_t blocks = (n.D + kBlock - 1) / kBlock;
  at::parallel_for(0, n.B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / blocks, d0 = (i % blocks) * kBlock;
      fn(b, d0, std::min(n.D, d0 + kBlock));
    }
  });
}

}  // namespace

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> fwd(const torch::Tensor& theta, const torch::Tensor& u,
                                                            const torch::Tensor& state0, bool lattice,
                                                            int64_t chunk) {
  check_inputs({theta, u, state0});
  const Shape n = shape_of(theta, chunk);
  auto y = torch::empty({n.B, n.L, n.D}, u.options());
  auto final_state = torch::empty_like(state0);
  auto ckpt = torch::empty({n.B, n.NC, n.D, n.F, 2}, theta.options());
  AT_DISPATCH_FLOATING_TYPES(theta.scalar_type(), "selective_scan_fwd", [&] {
    for_items(n, [&](int64_t b, int64_t d0, int64_t d1) {
      forward_item<scalar_t>(n, theta.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), state0.data_ptr<scalar_t>(),
                             lattice, b, d0, d1, y.data_ptr<scalar_t>(), final_state.data_ptr<scalar_t>(),
                             ckpt.data_ptr<scalar_t>());
    });
  });
  return {y, final_state, ckpt};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> bwd(const torch::Tensor& theta, const torch::Tensor& u,
                                                            const torch::Tensor& ckpt, const torch::Tensor& dy,
                                                            const torch::Tensor& dfinal, bool lattice,
                                                            int64_t chunk) {
  check_inputs({theta, u, ckpt, dy, dfinal});
  const Shape n = shape_of(theta, chunk);
  auto dtheta = torch::empty_like(theta);
  auto du = torch::empty_like(u);
  auto dstate0 = torch::empty_like(dfinal);
  AT_DISPATCH_FLOATING_TYPES(theta.scalar_type(), "selective_scan_bwd", [&] {
    for_items(n, [&](int64_t b, int64_t d0, int64_t d1) {
      backward_item<scalar_t>(n, theta.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), ckpt.data_ptr<scalar_t>(),
                              dy.data_ptr<scalar_t>(), dfinal.data_ptr<scalar_t>(), lattice, b, d0, d1,
                              dtheta.data_ptr<scalar_t>(), du.data_ptr<scalar_t>(), dstate0.data_ptr<scalar_t>());
    });
  });
  return {dtheta, du, dstate0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &fwd, "per-token order-2 IIR scan, forward: (y, final state, chunk-entry states)");
  m.def("bwd", &bwd, "its adjoint: (dtheta, du, dstate0)");
}
