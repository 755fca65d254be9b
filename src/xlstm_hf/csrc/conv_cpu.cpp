// The depthwise causal convolution over time on the CPU, forward and backward, in one pass over the rows
// each (the PyTorch reference, src/xlstm_hf/ops/conv.py, spends a tensor operation per tap). Shapes:
//   x [B, T, F]   history [B, K-1, F], the inputs before x   weight [F, K]   bias [F]   y [B, T, F]
// with y[b, t] = bias + sum_k weight[:, k] * window[b, t + k], window = history then x (K - 1 + T rows).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

namespace xlstm_hf {
namespace {

struct ConvDims {
  int64_t B, T, F, K;
};

// The rows of the window of one batch row: history, then x
template <typename Real>
struct Window {
  const Real* history;
  const Real* x;
  int64_t K, F;
  const Real* row(int64_t s) const { return s < K - 1 ? history + s * F : x + (s - K + 1) * F; }
};

ConvDims check_conv(const at::Tensor& x, const at::Tensor& history, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 3, "causal_conv1d: x must be [B, T, F], got ", x.sizes());
  const ConvDims dims{x.size(0), x.size(1), x.size(2), weight.size(-1)};
  TORCH_CHECK(weight.numel() == dims.F * dims.K, "causal_conv1d: weight must be [F, K]");
  TORCH_CHECK(history.sizes() == at::IntArrayRef({dims.B, dims.K - 1, dims.F}),
              "causal_conv1d: history must be [B, K - 1, F], got ", history.sizes());
  TORCH_CHECK(bias.sizes() == at::IntArrayRef({dims.F}), "causal_conv1d: bias must be [F]");
  for (const at::Tensor* t : {&history, &weight, &bias}) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "causal_conv1d: the inputs must share one dtype");
  }
  return dims;
}

template <typename Real>
void forward_kernel(const Real* x, const Real* history, const Real* taps, const Real* bias, const ConvDims& d,
                    Real* y) {
  at::parallel_for(0, d.B * d.T, std::max<int64_t>(1, 16384 / (d.F * d.K)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / d.T, t = row % d.T;
      const Window<Real> window{history + b * (d.K - 1) * d.F, x + b * d.T * d.F, d.K, d.F};
      Real* out = y + row * d.F;
      const Real* first = window.row(t);
      for (int64_t f = 0; f < d.F; ++f) out[f] = bias[f] + first[f] * taps[f];
      for (int64_t k = 1; k < d.K; ++k) {
        const Real* in = window.row(t + k);
        const Real* tap = taps + k * d.F;
        for (int64_t f = 0; f < d.F; ++f) out[f] += in[f] * tap[f];
      }
    }
  });
}

// grad_window[b, s] = sum over k with 0 <= s - k < T of weight[:, k] * grad_y[b, s - k]
template <typename Real>
void window_grad_kernel(const Real* grad_y, const Real* taps, const ConvDims& d, Real* grad_x, Real* grad_history) {
  const int64_t S = d.T + d.K - 1;
  at::parallel_for(0, d.B * S, std::max<int64_t>(1, 16384 / (d.F * d.K)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / S, s = row % S;
      Real* out = s < d.K - 1 ? grad_history + (b * (d.K - 1) + s) * d.F : grad_x + (b * d.T + s - d.K + 1) * d.F;
      std::fill_n(out, d.F, Real(0));
      for (int64_t k = std::max<int64_t>(0, s - d.T + 1); k <= std::min(s, d.K - 1); ++k) {
        const Real* g = grad_y + (b * d.T + s - k) * d.F;
        const Real* tap = taps + k * d.F;
        for (int64_t f = 0; f < d.F; ++f) out[f] += g[f] * tap[f];
      }
    }
  });
}

// grad_taps[k] = sum_{b, t} window[b, t + k] * grad_y[b, t]; grad_bias = sum_{b, t} grad_y[b, t]; parallel over
// blocks of features, so that every thread owns its sums
template <typename Real>
void weight_grad_kernel(const Real* x, const Real* history, const Real* grad_y, const ConvDims& d, Real* grad_taps,
                        Real* grad_bias) {
  constexpr int64_t kBlock = 64;
  at::parallel_for(0, (d.F + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t f0 = block * kBlock, f1 = std::min(d.F, f0 + kBlock);
      for (int64_t k = 0; k < d.K; ++k) std::fill(grad_taps + k * d.F + f0, grad_taps + k * d.F + f1, Real(0));
      std::fill(grad_bias + f0, grad_bias + f1, Real(0));
      for (int64_t b = 0; b < d.B; ++b) {
        const Window<Real> window{history + b * (d.K - 1) * d.F, x + b * d.T * d.F, d.K, d.F};
        for (int64_t t = 0; t < d.T; ++t) {
          const Real* g = grad_y + (b * d.T + t) * d.F;
          for (int64_t f = f0; f < f1; ++f) grad_bias[f] += g[f];
          for (int64_t k = 0; k < d.K; ++k) {
            const Real* in = window.row(t + k);
            Real* sums = grad_taps + k * d.F;
            for (int64_t f = f0; f < f1; ++f) sums[f] += in[f] * g[f];
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor causal_conv1d_cpu(const at::Tensor& x, const at::Tensor& history, const at::Tensor& weight,
                             const at::Tensor& bias) {
  const ConvDims d = check_conv(x, history, weight, bias);
  const at::Tensor x_c = x.contiguous(), history_c = history.contiguous(), bias_c = bias.contiguous();
  const at::Tensor taps = weight.reshape({d.F, d.K}).t().contiguous();  // [K, F]: one row of weights per tap
  at::Tensor y = at::empty({d.B, d.T, d.F}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_cpu", [&] {
    forward_kernel<scalar_t>(x_c.data_ptr<scalar_t>(), history_c.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(),
                             bias_c.data_ptr<scalar_t>(), d, y.data_ptr<scalar_t>());
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> causal_conv1d_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& history, const at::Tensor& weight) {
  const ConvDims d{x.size(0), x.size(1), x.size(2), weight.size(-1)};
  TORCH_CHECK(grad_y.sizes() == x.sizes(), "causal_conv1d_backward: grad_y must be [B, T, F]");
  const at::Tensor g = grad_y.contiguous(), x_c = x.contiguous(), history_c = history.contiguous();
  const at::Tensor taps = weight.reshape({d.F, d.K}).t().contiguous();
  at::Tensor grad_x = at::empty_like(x_c), grad_history = at::empty_like(history_c);
  at::Tensor grad_taps = at::empty({d.K, d.F}, x.options()), grad_bias = at::empty({d.F}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_backward_cpu", [&] {
    window_grad_kernel<scalar_t>(g.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(), d, grad_x.data_ptr<scalar_t>(),
                                 grad_history.data_ptr<scalar_t>());
    weight_grad_kernel<scalar_t>(x_c.data_ptr<scalar_t>(), history_c.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), d,
                                 grad_taps.data_ptr<scalar_t>(), grad_bias.data_ptr<scalar_t>());
  });
  return {grad_x, grad_history, grad_taps.t().contiguous().view(weight.sizes()), grad_bias};
}

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("causal_conv1d", &causal_conv1d_cpu);
  m.impl("causal_conv1d_backward", &causal_conv1d_backward_cpu);
}

}  // namespace xlstm_hf
