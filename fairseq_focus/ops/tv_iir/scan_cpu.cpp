// The CPU kernel of the time-varying order-2 IIR op: `fwd` and `bwd` of fairseq_focus/ops/tv_iir/function.py.
// The recursion, its state form (A_t, b_t of both forms), the adjoint and the checkpoints are derived once, in
// fairseq_focus/ops/tv_iir/__init__.py; this file writes them out per lane (batch b, channel d, filter f).
//
// Built by setup.py as fairseq_focus._selective_cpu, with -fopenmp: at::parallel_for then splits the work items
// (batch, block of kBlock channels) over torch's intra-op threads (torch.set_num_threads). Without OpenMP the same
// parallel_for runs them one after another. Both functions release the GIL while they compute.
//
// Layouts (contiguous, one dtype, fp32 or fp64): theta (B, NB, D, F, 2), one row per bin_size = R steps (R = 1:
// per step), step t reads row t / R; u, y, dy, du (B, L, D) with L = NB·R; state0, final, dfinal, dstate0
// (B, D, F, 2); ckpt (B, NC, D, F, 2), NC = ceil(L / chunk), the state entering steps 0, chunk, 2·chunk, ...
// The backward's dtheta has theta's shape: a row sums the gradients of its R steps. Every shape is checked
// against the ones theta and u imply before any memory is touched.
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

// A_t and b_t (package docstring, "State form").
template <typename T>
inline Step<T> transition(T th0, T th1, T u, bool lattice) {
  if (!lattice) return {-th0, -th1, T(1), T(0), u, T(0)};
  const T k2 = th1, k1 = th0 / (T(1) + th1);
  const T c1 = std::sqrt((T(1) - k1) * (T(1) + k1));
  return {-k1, -c1 * k2, c1, -k1 * k2, u, k1 * u / c1};
}

struct Shape {
  int64_t B, L, D, F, NB, R, NC, chunk;
  int64_t row() const { return D * F * 2; }  // numbers per (b, step) of theta, per b of the states
  int64_t theta_row(int64_t b, int64_t t) const { return (b * NB + t / R) * row(); }
};

void check_tensor(const torch::Tensor& t, const char* name, at::IntArrayRef want, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "the CPU IIR scan takes CPU tensors, got ", name, " on ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "the CPU IIR scan takes one dtype: ", name, " is ", t.scalar_type(),
              ", theta ", dtype);
  TORCH_CHECK(t.sizes() == want, name, " must have shape ", want, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "the CPU IIR scan takes contiguous tensors, ", name, " is not");
}

// The sizes theta (B, NB, D, F, 2) and u (B, L, D) imply, after checking both.
Shape shape_of(const torch::Tensor& theta, const torch::Tensor& u, int64_t chunk, int64_t bin_size) {
  TORCH_CHECK(theta.dim() == 5 && theta.size(4) == 2, "theta must be (B, NB, D, F, 2), got ", theta.sizes());
  TORCH_CHECK(chunk > 0, "chunk must be positive, got ", chunk);
  TORCH_CHECK(bin_size > 0, "bin_size must be positive, got ", bin_size);
  const auto dtype = theta.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "the CPU IIR scan computes in float32 or float64, got ",
              dtype);
  const int64_t B = theta.size(0), NB = theta.size(1), D = theta.size(2), F = theta.size(3), L = NB * bin_size;
  check_tensor(theta, "theta", theta.sizes(), dtype);
  check_tensor(u, "u (B, NB·bin_size, D)", {B, L, D}, dtype);
  return {B, L, D, F, NB, bin_size, (L + chunk - 1) / chunk, chunk};
}

// Runs the recurrence for channels [d0, d1) of batch b over steps [t0, t1), from the lane states in s (2 per
// lane, lanes of the block only), writing y (if not null) and each step's state into hist (if not null).
template <typename T>
void advance(const Shape& n, const T* theta, const T* u, int64_t b, int64_t d0, int64_t d1, int64_t t0,
             int64_t t1, bool lattice, T* s, T* y, T* hist) {
  const int64_t F = n.F, width = (d1 - d0) * F;
  for (int64_t t = t0; t < t1; ++t) {
    const T* th = theta + n.theta_row(b, t) + d0 * F * 2;
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
  const int64_t width = (d1 - d0) * n.F, first = b * n.row() + d0 * n.F * 2;
  std::vector<T> s(state0 + first, state0 + first + 2 * width);
  for (int64_t c = 0; c < n.NC; ++c) {
    std::copy(s.begin(), s.end(), ckpt + (b * n.NC + c) * n.row() + d0 * n.F * 2);
    advance(n, theta, u, b, d0, d1, c * n.chunk, std::min(n.L, (c + 1) * n.chunk), lattice, s.data(), y,
            static_cast<T*>(nullptr));
  }
  std::copy(s.begin(), s.end(), final_state + first);
}

// One step of the adjoint for one lane: lam = λ[t] on entry, A_tᵀ λ[t] on exit; adds ∂θ of the step to dth
// (a bin's row sums its steps) and returns the lane's part of ∂u (package docstring, "The adjoint").
template <typename T>
inline T adjoint_step(T th0, T th1, T u, T sp0, T sp1, bool lattice, T* lam, T* dth) {
  const T l0 = lam[0], l1 = lam[1];
  const Step<T> a = transition(th0, th1, u, lattice);
  lam[0] = a.a00 * l0 + a.a10 * l1;
  lam[1] = a.a01 * l0 + a.a11 * l1;
  const T g00 = l0 * sp0, g01 = l0 * sp1, g10 = l1 * sp0, g11 = l1 * sp1;
  if (!lattice) {
    dth[0] -= g00;
    dth[1] -= g01;
    return l0;
  }
  const T k2 = th1, k1 = th0 / (T(1) + th1), c1 = a.a10;
  const T gk1 = -g00 - k2 * g11 - (k1 / c1) * (g10 - k2 * g01) + l1 * u / (c1 * c1 * c1);
  const T gk2 = -c1 * g01 - k1 * g11;
  dth[0] += gk1 / (T(1) + th1);
  dth[1] += gk2 - gk1 * k1 / (T(1) + th1);
  return l0 + l1 * k1 / c1;
}

// The adjoint back through steps [t0, t1) of channels [d0, d1), from the states hist[t - t0] = s[t - 1].
template <typename T>
void adjoint_chunk(const Shape& n, const T* theta, const T* u, const T* dy, const T* hist, bool lattice, int64_t b,
                   int64_t d0, int64_t d1, int64_t t0, int64_t t1, T* lam, T* dtheta, T* du) {
  const int64_t F = n.F, width = (d1 - d0) * F;
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t row = (b * n.L + t) * n.D, at = n.theta_row(b, t) + d0 * F * 2;
    const T* sp = hist + (t - t0) * 2 * width;
    for (int64_t d = d0; d < d1; ++d) {
      T gu = 0;
      for (int64_t f = 0; f < F; ++f) {
        const int64_t j = (d - d0) * F + f;
        lam[2 * j] += dy[row + d];
        gu += adjoint_step(theta[at + 2 * j], theta[at + 2 * j + 1], u[row + d], sp[2 * j], sp[2 * j + 1], lattice,
                           lam + 2 * j, dtheta + at + 2 * j);
      }
      du[row + d] = gu;
    }
  }
}

template <typename T>
void backward_item(const Shape& n, const T* theta, const T* u, const T* ckpt, const T* dy, const T* dfinal,
                   bool lattice, int64_t b, int64_t d0, int64_t d1, T* dtheta, T* du, T* dstate0) {
  const int64_t width = (d1 - d0) * n.F, first = b * n.row() + d0 * n.F * 2;
  std::vector<T> lam(dfinal + first, dfinal + first + 2 * width);
  std::vector<T> hist((n.chunk + 1) * 2 * width), s(2 * width);
  for (int64_t c = n.NC - 1; c >= 0; --c) {
    const int64_t t0 = c * n.chunk, t1 = std::min(n.L, t0 + n.chunk);
    const T* entering = ckpt + (b * n.NC + c) * n.row() + d0 * n.F * 2;
    std::copy(entering, entering + 2 * width, s.begin());
    std::copy(s.begin(), s.end(), hist.begin());  // hist[i] = state entering step t0 + i
    advance(n, theta, u, b, d0, d1, t0, t1, lattice, s.data(), static_cast<T*>(nullptr), hist.data());
    adjoint_chunk(n, theta, u, dy, hist.data(), lattice, b, d0, d1, t0, t1, lam.data(), dtheta, du);
  }
  std::copy(lam.begin(), lam.end(), dstate0 + first);
}

// Calls fn(b, d0, d1) for every (batch, channel block), in parallel over torch's intra-op threads (OpenMP).
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
                                                            int64_t chunk, int64_t bin_size) {
  const Shape n = shape_of(theta, u, chunk, bin_size);
  check_tensor(state0, "state0 (B, D, F, 2)", {n.B, n.D, n.F, 2}, theta.scalar_type());
  auto y = torch::empty({n.B, n.L, n.D}, u.options());
  auto final_state = torch::empty_like(state0);
  auto ckpt = torch::empty({n.B, n.NC, n.D, n.F, 2}, theta.options());
  AT_DISPATCH_FLOATING_TYPES(theta.scalar_type(), "tv_iir_scan_fwd", [&] {
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
                                                            int64_t chunk, int64_t bin_size) {
  const Shape n = shape_of(theta, u, chunk, bin_size);
  const auto dtype = theta.scalar_type();
  check_tensor(ckpt, "ckpt (B, ceil(L / chunk), D, F, 2)", {n.B, n.NC, n.D, n.F, 2}, dtype);
  check_tensor(dy, "dy (B, L, D)", {n.B, n.L, n.D}, dtype);
  check_tensor(dfinal, "dfinal (B, D, F, 2)", {n.B, n.D, n.F, 2}, dtype);
  auto dtheta = torch::zeros_like(theta);  // accumulated: a bin's row sums its steps
  auto du = torch::empty_like(u);
  auto dstate0 = torch::empty_like(dfinal);
  AT_DISPATCH_FLOATING_TYPES(dtype, "tv_iir_scan_bwd", [&] {
    for_items(n, [&](int64_t b, int64_t d0, int64_t d1) {
      backward_item<scalar_t>(n, theta.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), ckpt.data_ptr<scalar_t>(),
                              dy.data_ptr<scalar_t>(), dfinal.data_ptr<scalar_t>(), lattice, b, d0, d1,
                              dtheta.data_ptr<scalar_t>(), du.data_ptr<scalar_t>(), dstate0.data_ptr<scalar_t>());
    });
  });
  return {dtheta, du, dstate0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using release_gil = py::call_guard<py::gil_scoped_release>;
  m.def("fwd", &fwd, "the time-varying order-2 IIR scan, forward: (y, final state, chunk-entry states)",
        py::arg("theta"), py::arg("u"), py::arg("state0"), py::arg("lattice"), py::arg("chunk"),
        py::arg("bin_size"), release_gil());
  m.def("bwd", &bwd, "its adjoint: (dtheta, du, dstate0)", py::arg("theta"), py::arg("u"), py::arg("ckpt"),
        py::arg("dy"), py::arg("dfinal"), py::arg("lattice"), py::arg("chunk"), py::arg("bin_size"), release_gil());
}
