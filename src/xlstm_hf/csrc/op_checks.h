// The shape and dtype checks of the operators and the sLSTM's parameter gradients, shared by the CPU and
// CUDA bindings so that both accept the same inputs and give the same results.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace xlstm_hf {

struct SLSTMDims {
  int64_t B, H, T, D;
};

// Element strides of a [B, H, T, ...] tensor whose last dimension is contiguous; g: of the gate dimension.
struct Strides {
  int64_t b, h, t, g;
};

inline Strides strides_of(const at::Tensor& x) {
  TORCH_CHECK(x.stride(-1) == 1, "the last dimension must be contiguous");
  return {x.stride(0), x.stride(1), x.stride(2), x.dim() == 5 ? x.stride(3) : 0};
}

inline SLSTMDims check_slstm_inputs(const at::Tensor& gates_x, const at::Tensor& recurrent_kernel,
                                    const at::Tensor& bias, const c10::optional<at::Tensor>& mask,
                                    const at::Tensor& initial_states) {
  TORCH_CHECK(gates_x.dim() == 5 && gates_x.size(3) == 4, "gates_x must be [B, H, T, 4, D], got ", gates_x.sizes());
  const SLSTMDims dims{gates_x.size(0), gates_x.size(1), gates_x.size(2), gates_x.size(4)};
  TORCH_CHECK(recurrent_kernel.sizes() == at::IntArrayRef({dims.H, dims.D, 4, dims.D}),
              "recurrent_kernel must be [H, D, 4, D], got ", recurrent_kernel.sizes());
  TORCH_CHECK(bias.sizes() == at::IntArrayRef({dims.H, 4, dims.D}), "bias must be [H, 4, D], got ", bias.sizes());
  TORCH_CHECK(initial_states.sizes() == at::IntArrayRef({4, dims.B, dims.H, dims.D}),
              "initial_states must be [4, B, H, D] (h, c, n, m), got ", initial_states.sizes());
  for (const at::Tensor* t : {&recurrent_kernel, &bias, &initial_states}) {
    TORCH_CHECK(t->scalar_type() == gates_x.scalar_type(), "the sLSTM inputs must share one dtype");
  }
  if (mask.has_value()) {
    TORCH_CHECK(mask->sizes() == at::IntArrayRef({dims.B, dims.T}) && mask->scalar_type() == at::kBool,
                "mask must be a bool tensor [B, T]");
  }
  return dims;
}

// The kind of every sLSTM step as uint8 [B, T] (0 padded, 1 real, 2 a real step that starts a sequence of a packed
// row; docs/design.md 1.7) from the mask, bool (False: padded) or uint8 (the kinds themselves); undefined where
// every step is real
inline at::Tensor slstm_step_kinds(const c10::optional<at::Tensor>& mask, const SLSTMDims& dims) {
  if (!mask.has_value()) return at::Tensor();
  TORCH_CHECK(mask->sizes() == at::IntArrayRef({dims.B, dims.T}) &&
                  (mask->scalar_type() == at::kBool || mask->scalar_type() == at::kByte),
              "mask must be a bool or uint8 tensor [B, T]");
  return mask->to(at::kByte).contiguous();
}

// The gradients of the recurrent kernel [H, D, 4, D] and the bias [H, 4, D] from those of the gate
// pre-activations, head-major [H, B, T, 4, D], and the states [4, B, H, T + 1, D]: sums over (b, t)
inline std::tuple<at::Tensor, at::Tensor> slstm_parameter_grads(const at::Tensor& grad_raw, const at::Tensor& states) {
  const int64_t H = grad_raw.size(0), B = grad_raw.size(1), T = grad_raw.size(2), D = grad_raw.size(4);
  const at::Tensor h_prev = states[0].narrow(2, 0, T).permute({1, 3, 0, 2}).reshape({H, D, B * T});
  const at::Tensor draw = grad_raw.view({H, B * T, 4 * D});
  return {at::bmm(h_prev, draw).view({H, D, 4, D}), draw.sum(1).view({H, 4, D})};
}

struct MLSTMStepDims {
  int64_t B, H, Dqk, Dv;
};

inline MLSTMStepDims check_mlstm_step_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& i, const at::Tensor& f, const at::Tensor& C,
                                             const at::Tensor& n, const at::Tensor& m,
                                             const c10::optional<at::Tensor>& mask) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.dim() == 3 && v.size(0) == q.size(0) &&
                  v.size(1) == q.size(1),
              "q, k must be [B, H, Dqk] and v [B, H, Dv]");
  const int64_t B = q.size(0), H = q.size(1), Dqk = q.size(2), Dv = v.size(2);
  TORCH_CHECK(i.sizes() == at::IntArrayRef({B, H}) && f.sizes() == i.sizes() && m.sizes() == i.sizes(),
              "i, f and m must be [B, H]");
  TORCH_CHECK(C.sizes() == at::IntArrayRef({B, H, Dqk, Dv}) && n.sizes() == at::IntArrayRef({B, H, Dqk}),
              "C must be [B, H, Dqk, Dv] and n [B, H, Dqk]");
  for (const at::Tensor* t : {&k, &v, &i, &f, &C, &n, &m}) {
    TORCH_CHECK(t->scalar_type() == q.scalar_type(), "all mlstm_step inputs must share one dtype");
  }
  if (mask.has_value()) {
    TORCH_CHECK(mask->sizes() == at::IntArrayRef({B}) && mask->scalar_type() == at::kBool, "mask must be bool [B]");
  }
  return {B, H, Dqk, Dv};
}

}  // namespace xlstm_hf
