// sLSTM over a whole sequence on the CPU, forward and backward. Every (batch row, head) pair is an
// independent recurrence (the recurrent matrix is block-diagonal per head), so the pairs run in
// parallel with at::parallel_for, each its time loop without synchronisation, and the units of a head
// are processed in SIMD vectors (vec_math.h). Shapes as in the PyTorch reference
// (src/xlstm_hf/ops/slstm/recurrent.py):
//   gates_x [B, H, T, 4, D] (any strides, D contiguous)   recurrent_kernel [H, D, 4, D]   bias [H, 4, D]
//   mask [B, T] (optional): what each step is, bool (False: padded) or uint8 (kPadded, kReal, kStart: a real
//   step that starts a sequence of a packed row, whose state before it is discarded; docs/design.md 1.7)
//   initial_states [4, B, H, D]: h, c, n, m
// and, kept for the backward: states [4, B, H, T + 1, D] before step 0 and after every step, and
// raw [B, H, T, 4, D], the gate pre-activations. h is written as [B, T, H, D] and returned as its
// [B, H, T, D] view, the layout the per-head norm reads. The gradient of gates_x comes back as the
// [B, H, T, 4, D] view of a head-major [H, B, T, 4, D] tensor, the layout SLSTMLayer makes gates_x in.
//
// slstm_forward_bf16_rounding is the forward with the rounding of TiRex's PyTorch sLSTM (the reference's
// `bf16_rounding`, src/xlstm_hf/ops/slstm/recurrent.py): the caller rounds the kernel and the initial
// states; here gates_x, the product of the kernel with the previous output and every new state are rounded
// to bfloat16, and the forget pre-activation is clamped. Its backward is slstm_backward (straight-through).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "op_checks.h"
#include "slstm_step.h"

namespace xlstm_hf {
namespace {

enum StepKind : uint8_t { kPadded = 0, kReal = 1, kStart = 2 };

inline uint8_t kind_of(const uint8_t* kinds, int64_t index) { return kinds == nullptr ? kReal : kinds[index]; }

template <typename Real>
void zero_rows(Rows<Real> rows, int64_t D) {
  for (Real* row : {rows.h, rows.c, rows.n, rows.m}) std::fill_n(row, D, Real(0));
}

// Gradients of the pre-activations `draw` from those of the next state (dh, dc, dn, dm), which become
// those of the previous state (dh without the part through the recurrent matrix).
template <typename Real>
void backward_step(const Real* raw, Rows<Real> prev, const Real* dh_out, Real* dh, Real* dc, Real* dn, Real* dm,
                   Real* draw, int64_t D) {
  using V = Vec<Real>;
  for (int64_t e = 0; e < D; e += V::size()) {
    const int64_t count = std::min<int64_t>(V::size(), D - e);
    const SLSTMUnit<V> state{V::loadu(prev.h + e, count), V::loadu(prev.c + e, count), V::loadu(prev.n + e, count),
                             V::loadu(prev.m + e, count)};
    const SLSTMUnitGrad<V> grad = slstm_unit_backward(
        V::loadu(raw + e, count), V::loadu(raw + D + e, count), V::loadu(raw + 2 * D + e, count),
        V::loadu(raw + 3 * D + e, count), state, V::loadu(dh_out + e, count) + V::loadu(dh + e, count),
        V::loadu(dc + e, count), V::loadu(dn + e, count), V::loadu(dm + e, count));
    grad.di.store(draw + e, count);
    grad.df.store(draw + D + e, count);
    grad.dz.store(draw + 2 * D + e, count);
    grad.do_.store(draw + 3 * D + e, count);
    grad.dc_prev.store(dc + e, count);
    grad.dn_prev.store(dn + e, count);
    grad.dm_prev.store(dm + e, count);
  }
}

// x rounded to the nearest bfloat16 (ties to even) and back, as `x.to(torch.bfloat16)` rounds
template <typename Real>
inline Real round_to_bfloat16(Real x) {
  return static_cast<Real>(static_cast<float>(c10::BFloat16(static_cast<float>(x))));
}

constexpr double kForgetClamp = 15.0;  // FORGET_CLAMP of the reference

// The gate pre-activations of one step, in two halves around the recurrent product acc += h @ kernel (which
// forward_kernel takes for several batch rows at once): `start_preactivations` fills raw with what precedes
// the product, `finish_preactivations` adds what follows it. Unrounded: raw = (gates_x + bias) + h @ kernel,
// as gate_preactivations; rounded, TiRex's order: raw = (bf16(gates_x) + bf16(h @ kernel)) + bias, with the
// forget pre-activation clamped.
template <typename Real, bool kRounded>
void start_preactivations(const Real* gates_x, int64_t gate_stride, const Real* bias, int64_t D, Real* raw) {
  for (int64_t g = 0; g < 4; ++g) {
    for (int64_t e = 0; e < D; ++e) raw[g * D + e] = kRounded ? Real(0) : gates_x[g * gate_stride + e] + bias[g * D + e];
  }
}

template <typename Real, bool kRounded>
void finish_preactivations(const Real* gates_x, int64_t gate_stride, const Real* bias, int64_t D, Real* raw) {
  if constexpr (kRounded) {
    for (int64_t g = 0; g < 4; ++g) {
      for (int64_t e = 0; e < D; ++e) {
        Real& value = raw[g * D + e];
        value = (round_to_bfloat16(gates_x[g * gate_stride + e]) + round_to_bfloat16(value)) + bias[g * D + e];
      }
    }
    Real* forget = raw + D;
    for (int64_t e = 0; e < D; ++e) forget[e] = std::min(forget[e], Real(kForgetClamp));
  }
}

constexpr int kRowsPerBlock = 4;  // batch rows whose recurrent products share each load of the kernel

// acc[r][0 .. width) += h[r] M for kRows rows h[r] [D] and M [D, width] (row-major): like add_vecmat (the
// same sums in the same order), with every vector of M loaded once for all rows
template <typename Real, int kRows>
void add_vecmat_rows(const Real* const* h, const Real* M, int64_t D, int64_t width, Real* const* acc) {
  using V = Vec<Real>;
  constexpr int kVectors = 2;
  constexpr int64_t kPanel = kVectors * V::size();
  int64_t j = 0;
  for (; j + kPanel <= width; j += kPanel) {
    V sums[kRows][kVectors];
    for (int r = 0; r < kRows; ++r) {
      for (int k = 0; k < kVectors; ++k) sums[r][k] = V::loadu(acc[r] + j + k * V::size());
    }
    for (int64_t d = 0; d < D; ++d) {
      const Real* row = M + d * width + j;
      V columns[kVectors];
      for (int k = 0; k < kVectors; ++k) columns[k] = V::loadu(row + k * V::size());
      for (int r = 0; r < kRows; ++r) {
        const V h_d(h[r][d]);
        for (int k = 0; k < kVectors; ++k) sums[r][k] = at::vec::fmadd(h_d, columns[k], sums[r][k]);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      for (int k = 0; k < kVectors; ++k) sums[r][k].store(acc[r] + j + k * V::size());
    }
  }
  for (; j < width; ++j) {
    for (int r = 0; r < kRows; ++r) {
      for (int64_t d = 0; d < D; ++d) acc[r][j] = std::fma(h[r][d], M[d * width + j], acc[r][j]);
    }
  }
}

template <typename Real>
void round_rows(Rows<Real> rows, int64_t D) {
  for (Real* row : {rows.h, rows.c, rows.n, rows.m}) {
    for (int64_t e = 0; e < D; ++e) row[e] = round_to_bfloat16(row[e]);
  }
}

template <typename Real>
void copy_rows(Rows<Real> from, Rows<Real> to, int64_t D) {
  std::copy_n(from.h, D, to.h);
  std::copy_n(from.c, D, to.c);
  std::copy_n(from.n, D, to.n);
  std::copy_n(from.m, D, to.m);
}

template <typename Real>
Rows<Real> state_rows(Real* states, int64_t state_stride, int64_t offset) {
  return {states + offset, states + state_stride + offset, states + 2 * state_stride + offset,
          states + 3 * state_stride + offset};
}

// Every (block of up to kRowsPerBlock batch rows, head) runs its time loop on its own; the rows of a block
// share the loads of the head's recurrent kernel.
template <typename Real, bool kRounded>
void forward_kernel(const at::Tensor& gates_x, const Real* kernel, const Real* bias, const uint8_t* kinds,
                    at::Tensor& h_out, Real* states, Real* raw, const SLSTMDims& dims) {
  const auto [B, H, T, D] = dims;
  const int64_t G = 4 * D, rows_per_pair = (T + 1) * D, state_stride = B * H * rows_per_pair;
  const int64_t blocks = (B + kRowsPerBlock - 1) / kRowsPerBlock;
  const Strides in = strides_of(gates_x), out = strides_of(h_out);
  const Real* gx = gates_x.data_ptr<Real>();
  Real* h_ptr = h_out.data_ptr<Real>();
  at::parallel_for(0, H * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t head = unit / blocks, first = unit % blocks * kRowsPerBlock;
      const int64_t rows = std::min<int64_t>(kRowsPerBlock, B - first);
      const Real* head_kernel = kernel + head * D * G;
      for (int64_t t = 0; t < T; ++t) {
        Rows<Real> prev[kRowsPerBlock], next[kRowsPerBlock];
        const Real* gx_t[kRowsPerBlock];
        const Real* h_prev[kRowsPerBlock];
        Real* raw_t[kRowsPerBlock];
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t b = first + r, pair = b * H + head;
          prev[r] = state_rows(states, state_stride, pair * rows_per_pair + t * D);
          next[r] = state_rows(states, state_stride, pair * rows_per_pair + (t + 1) * D);
          if (kind_of(kinds, b * T + t) == kStart) zero_rows(prev[r], D);  // kept so: the backward reads it
          gx_t[r] = gx + b * in.b + head * in.h + t * in.t;
          h_prev[r] = prev[r].h;
          raw_t[r] = raw + (pair * T + t) * G;
          start_preactivations<Real, kRounded>(gx_t[r], in.g, bias + head * G, D, raw_t[r]);
        }
        if (rows == kRowsPerBlock) {
          add_vecmat_rows<Real, kRowsPerBlock>(h_prev, head_kernel, D, G, raw_t);
        } else {
          for (int64_t r = 0; r < rows; ++r) add_vecmat(h_prev[r], head_kernel, D, G, raw_t[r]);
        }
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t b = first + r;
          finish_preactivations<Real, kRounded>(gx_t[r], in.g, bias + head * G, D, raw_t[r]);
          Real* h_t = h_ptr + b * out.b + head * out.h + t * out.t;
          if (kind_of(kinds, b * T + t) != kPadded) {
            forward_step(raw_t[r], prev[r], next[r], D);
            if constexpr (kRounded) round_rows(next[r], D);
            std::copy(next[r].h, next[r].h + D, h_t);
          } else {  // a padded step passes the state through and outputs 0
            copy_rows(prev[r], next[r], D);
            std::fill(h_t, h_t + D, Real(0));
          }
        }
      }
    }
  });
}

// The recurrence backwards: the gradients of the gate pre-activations at every step (grad_gates_x,
// zero at padded steps) and of the initial state. Those of the recurrent kernel and the bias are sums
// over all steps of these, taken afterwards as matrix products.
template <typename Real>
void backward_kernel(const at::Tensor& grad_h, const Real* grad_final, const Real* kernel, const uint8_t* kinds,
                     Real* states, const Real* raw, Real* grad_gates_x, Real* grad_initial, const SLSTMDims& dims) {
  const auto [B, H, T, D] = dims;
  const int64_t G = 4 * D, rows_per_pair = (T + 1) * D, state_stride = B * H * rows_per_pair;
  const int64_t carry_stride = B * H * D;  // between the h, c, n, m planes of grad_final / grad_initial
  const Strides dh_in = strides_of(grad_h);
  const Real* dh_ptr = grad_h.data_ptr<Real>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<Real> carry(4 * D);  // gradients of the state (h, c, n, m)
    Real *dh = carry.data(), *dc = dh + D, *dn = dc + D, *dm = dn + D;
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / H, head = pair % H;
      const Real* head_kernel = kernel + head * D * G;
      for (int64_t s = 0; s < 4; ++s) std::copy_n(grad_final + s * carry_stride + pair * D, D, carry.data() + s * D);
      for (int64_t t = T - 1; t >= 0; --t) {
        Real* dgx_t = grad_gates_x + ((head * B + b) * T + t) * G;  // head-major, see slstm_backward_cpu
        const uint8_t kind = kind_of(kinds, b * T + t);
        if (kind == kPadded) {  // a padded step passed every state through
          std::fill_n(dgx_t, G, Real(0));
          continue;
        }
        const Rows<Real> prev = state_rows(states, state_stride, pair * rows_per_pair + t * D);
        backward_step(raw + (pair * T + t) * G, prev, dh_ptr + b * dh_in.b + head * dh_in.h + t * dh_in.t, dh, dc, dn,
                      dm, dgx_t, D);
        // raw = gates_x + bias + h_prev @ kernel: h_prev receives kernel @ draw
        matvec(head_kernel, dgx_t, D, G, dh);
        if (kind == kStart) std::fill(carry.begin(), carry.end(), Real(0));  // the state before was discarded
      }
      for (int64_t s = 0; s < 4; ++s) std::copy_n(carry.data() + s * D, D, grad_initial + s * carry_stride + pair * D);
    }
  });
}

}  // namespace

namespace {

template <bool kRounded>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_forward(
    const at::Tensor& gates_x, const at::Tensor& recurrent_kernel, const at::Tensor& bias,
    const c10::optional<at::Tensor>& mask, const at::Tensor& initial_states) {
  const SLSTMDims dims = check_slstm_inputs(gates_x, recurrent_kernel, bias, c10::nullopt, initial_states);
  const auto [B, H, T, D] = dims;
  const at::Tensor gx = gates_x.stride(-1) == 1 ? gates_x : gates_x.contiguous();
  const at::Tensor kernel = recurrent_kernel.contiguous(), b = bias.contiguous();
  at::Tensor h_out = at::empty({B, T, H, D}, gx.options()).permute({0, 2, 1, 3});
  at::Tensor states = at::empty({4, B, H, T + 1, D}, gx.options());
  at::Tensor raw = at::empty({B, H, T, 4, D}, gx.options());
  states.select(3, 0).copy_(initial_states);
  const at::Tensor kinds = slstm_step_kinds(mask, dims);
  const uint8_t* kinds_ptr = kinds.defined() ? kinds.data_ptr<uint8_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "slstm_forward_cpu", [&] {
    forward_kernel<scalar_t, kRounded>(gx, kernel.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), kinds_ptr, h_out,
                                       states.data_ptr<scalar_t>(), raw.data_ptr<scalar_t>(), dims);
  });
  at::Tensor final_states = states.select(3, T).clone();
  return {h_out, final_states, states, raw};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_forward_cpu(
    const at::Tensor& gates_x, const at::Tensor& recurrent_kernel, const at::Tensor& bias,
    const c10::optional<at::Tensor>& mask, const at::Tensor& initial_states) {
  return slstm_forward<false>(gates_x, recurrent_kernel, bias, mask, initial_states);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_forward_bf16_rounding_cpu(
    const at::Tensor& gates_x, const at::Tensor& recurrent_kernel, const at::Tensor& bias,
    const c10::optional<at::Tensor>& mask, const at::Tensor& initial_states) {
  return slstm_forward<true>(gates_x, recurrent_kernel, bias, mask, initial_states);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_backward_cpu(
    const at::Tensor& grad_h, const at::Tensor& grad_final_states, const at::Tensor& recurrent_kernel,
    const c10::optional<at::Tensor>& mask, const at::Tensor& states,
    const at::Tensor& raw) {
  const SLSTMDims dims{raw.size(0), raw.size(1), raw.size(2), raw.size(4)};
  const auto [B, H, T, D] = dims;
  TORCH_CHECK(grad_h.sizes() == at::IntArrayRef({B, H, T, D}), "grad_h must be [B, H, T, D]");
  TORCH_CHECK(grad_final_states.sizes() == at::IntArrayRef({4, B, H, D}), "grad_final_states must be [4, B, H, D]");
  const at::Tensor dh = grad_h.stride(-1) == 1 ? grad_h : grad_h.contiguous();
  const at::Tensor d_final = grad_final_states.contiguous(), kernel = recurrent_kernel.contiguous();
  at::Tensor states_c = states.contiguous();
  const at::Tensor raw_c = raw.contiguous();
  // head-major [H, B, T, 4, D], so that the sums over (b, t) below read it as it is; returned as [B, H, T, 4, D]
  at::Tensor grad_gates_x = at::empty({H, B, T, 4, D}, raw.options());
  at::Tensor grad_initial = at::empty({4, B, H, D}, raw.options());
  const at::Tensor kinds = slstm_step_kinds(mask, dims);
  const uint8_t* kinds_ptr = kinds.defined() ? kinds.data_ptr<uint8_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "slstm_backward_cpu", [&] {
    backward_kernel<scalar_t>(dh, d_final.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), kinds_ptr,
                              states_c.data_ptr<scalar_t>(), raw_c.data_ptr<scalar_t>(),
                              grad_gates_x.data_ptr<scalar_t>(), grad_initial.data_ptr<scalar_t>(), dims);
  });
  auto [grad_kernel, grad_bias] = slstm_parameter_grads(grad_gates_x, states_c);
  return {grad_gates_x.permute({1, 0, 2, 3, 4}), grad_kernel, grad_bias, grad_initial};
}

// a CPU-only operator, so declared here rather than with the shared schemas in ops.cpp
TORCH_LIBRARY_FRAGMENT(xlstm_hf, m) {
  m.def("slstm_forward_bf16_rounding(Tensor gates_x, Tensor recurrent_kernel, Tensor bias, Tensor? mask,"
        " Tensor initial_states) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("slstm_forward", &slstm_forward_cpu);
  m.impl("slstm_forward_bf16_rounding", &slstm_forward_bf16_rounding_cpu);
  m.impl("slstm_backward", &slstm_backward_cpu);
}

}  // namespace xlstm_hf
