// The CUDA kernels (cuda/*.cu) as the CUDA implementations of the xlstm_hf operators: the same checks and
// the same results, layouts included, as the CPU bindings. Compiled only into a CUDA build of the
// extension. The sLSTM and the step take float32 or float64 (the Python wrappers promote half precision
// inputs); the chunkwise forward reads float32, bfloat16 or float16 and computes in float32.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <vector>

#include "cuda/launch.h"
#include "op_checks.h"

namespace xlstm_hf {
namespace {

void check_launch(cudaError_t error, const char* kernel) {
  TORCH_CHECK(error == cudaSuccess, kernel, " failed to launch: ", cudaGetErrorString(error));
}

const bool* mask_data(const at::Tensor& mask) {
  return mask.defined() ? mask.data_ptr<bool>() : nullptr;
}

const uint8_t* kinds_data(const at::Tensor& kinds) {
  return kinds.defined() ? kinds.data_ptr<uint8_t>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_forward_cuda(
    const at::Tensor& gates_x, const at::Tensor& recurrent_kernel, const at::Tensor& bias,
    const c10::optional<at::Tensor>& mask, const at::Tensor& initial_states) {
  const SLSTMDims d = check_slstm_inputs(gates_x, recurrent_kernel, bias, c10::nullopt, initial_states);
  const c10::cuda::CUDAGuard guard(gates_x.device());
  const at::Tensor gx = gates_x.stride(-1) == 1 ? gates_x : gates_x.contiguous();
  const at::Tensor kernel = recurrent_kernel.contiguous(), b = bias.contiguous();
  const at::Tensor kinds = slstm_step_kinds(mask, d);
  at::Tensor h_out = at::empty({d.B, d.T, d.H, d.D}, gx.options());
  at::Tensor states = at::empty({4, d.B, d.H, d.T + 1, d.D}, gx.options());
  at::Tensor raw = at::empty({d.B, d.H, d.T, 4, d.D}, gx.options());
  at::Tensor exchange = at::zeros({3, d.B, d.H, d.D}, gx.options());
  states.select(3, 0).copy_(initial_states);
  const Strides in = strides_of(gx);
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "slstm_forward_cuda", [&] {
    const cuda::SLSTMForwardArgs<scalar_t> args{
        gx.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), kinds_data(kinds),
        states.data_ptr<scalar_t>(), h_out.data_ptr<scalar_t>(), raw.data_ptr<scalar_t>(),
        exchange.data_ptr<scalar_t>(), d.B, d.H, d.T, d.D, in.b, in.h, in.t, in.g};
    check_launch(cuda::slstm_forward(args, c10::cuda::getCurrentCUDAStream()), "slstm_forward");
  });
  return {h_out.permute({0, 2, 1, 3}), states.select(3, d.T).clone(), states, raw};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_backward_cuda(
    const at::Tensor& grad_h, const at::Tensor& grad_final_states, const at::Tensor& recurrent_kernel,
    const c10::optional<at::Tensor>& mask, const at::Tensor& states, const at::Tensor& raw) {
  const SLSTMDims d{raw.size(0), raw.size(1), raw.size(2), raw.size(4)};
  TORCH_CHECK(grad_h.sizes() == at::IntArrayRef({d.B, d.H, d.T, d.D}), "grad_h must be [B, H, T, D]");
  TORCH_CHECK(grad_final_states.sizes() == at::IntArrayRef({4, d.B, d.H, d.D}),
              "grad_final_states must be [4, B, H, D]");
  TORCH_CHECK(states.sizes() == at::IntArrayRef({4, d.B, d.H, d.T + 1, d.D}), "states must be [4, B, H, T + 1, D]");
  const c10::cuda::CUDAGuard guard(raw.device());
  const at::Tensor dh = grad_h.stride(-1) == 1 ? grad_h : grad_h.contiguous();
  const at::Tensor d_final = grad_final_states.contiguous(), kernel = recurrent_kernel.contiguous();
  const at::Tensor states_c = states.contiguous(), raw_c = raw.contiguous();
  const at::Tensor kinds = slstm_step_kinds(mask, d);
  at::Tensor grad_raw = at::empty({d.H, d.B, d.T, 4, d.D}, raw.options());  // head-major, as on the CPU
  at::Tensor grad_initial = at::empty({4, d.B, d.H, d.D}, raw.options());
  at::Tensor exchange = at::zeros({3, d.B, d.H, d.D}, raw.options());
  const Strides dh_in = strides_of(dh);
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "slstm_backward_cuda", [&] {
    const cuda::SLSTMBackwardArgs<scalar_t> args{
        dh.data_ptr<scalar_t>(), d_final.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(),
        states_c.data_ptr<scalar_t>(), raw_c.data_ptr<scalar_t>(), kinds_data(kinds), grad_raw.data_ptr<scalar_t>(),
        grad_initial.data_ptr<scalar_t>(), exchange.data_ptr<scalar_t>(), d.B, d.H, d.T, d.D, dh_in.b, dh_in.h,
        dh_in.t};
    check_launch(cuda::slstm_backward(args, c10::cuda::getCurrentCUDAStream()), "slstm_backward");
  });
  auto [grad_kernel, grad_bias] = slstm_parameter_grads(grad_raw, states_c);
  return {grad_raw.permute({1, 0, 2, 3, 4}), grad_kernel, grad_bias, grad_initial};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_step_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, const c10::optional<at::Tensor>& mask,
    double eps) {
  const auto [B, H, Dqk, Dv] = check_mlstm_step_inputs(q, k, v, i, f, C, n, m, mask);
  const c10::cuda::CUDAGuard guard(q.device());
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), ic = i.contiguous(),
                   fc = f.contiguous(), Cc = C.contiguous(), nc = n.contiguous(), mc = m.contiguous();
  const at::Tensor mask_c = mask.has_value() ? mask->contiguous() : at::Tensor();
  at::Tensor h_out = at::empty({B, H, Dv}, q.options());
  at::Tensor C_out = at::empty_like(Cc), n_out = at::empty_like(nc), m_out = at::empty_like(mc);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "mlstm_step_cuda", [&] {
    const cuda::MLSTMStepArgs<scalar_t> args{
        qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(), ic.data_ptr<scalar_t>(),
        fc.data_ptr<scalar_t>(), Cc.data_ptr<scalar_t>(), nc.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(),
        mask_data(mask_c), h_out.data_ptr<scalar_t>(), C_out.data_ptr<scalar_t>(),
        n_out.data_ptr<scalar_t>(), m_out.data_ptr<scalar_t>(), B, H, Dqk, Dv, eps};
    check_launch(cuda::mlstm_step(args, c10::cuda::getCurrentCUDAStream()), "mlstm_step");
  });
  return {h_out, C_out, n_out, m_out};
}

// The chunkwise mLSTM's inputs, checked and laid out as the kernels read them (launch.h), and its scratch.
struct Chunkwise {
  at::Tensor q, k, v, i, f, mask, C, n, m;  // q, k, v of one dtype; the others float32
  at::Tensor C_chunks, n_chunks, m_chunks, C_final, n_final, m_final;
  int64_t B, H, T, Dqk, Dv, L;
  double eps;

  template <typename In>
  cuda::MLSTMChunkwiseArgs<In, float> args(at::Tensor& h) const {
    const auto in = [](const at::Tensor& t) { return reinterpret_cast<const In*>(t.data_ptr()); };
    return {in(q), in(k), in(v), i.data_ptr<float>(), f.data_ptr<float>(), C.data_ptr<float>(),
            n.data_ptr<float>(), m.data_ptr<float>(), mask_data(mask), C_chunks.data_ptr<float>(),
            n_chunks.data_ptr<float>(), m_chunks.data_ptr<float>(), C_final.data_ptr<float>(),
            n_final.data_ptr<float>(), m_final.data_ptr<float>(), reinterpret_cast<In*>(h.data_ptr()), B, H, T, Dqk,
            Dv, L, eps};
  }
};

Chunkwise prepare_chunkwise(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i,
                            const at::Tensor& f, const c10::optional<at::Tensor>& mask, const at::Tensor& C,
                            const at::Tensor& n, const at::Tensor& m, int64_t chunk_size, double eps) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.sizes().slice(0, 3) == q.sizes().slice(0, 3),
              "q, k must be [B, H, T, Dqk] and v [B, H, T, Dv]");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dqk = q.size(3), Dv = v.size(3);
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "q, k, v must share a dtype");
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf,
              "the chunkwise mLSTM takes float32, bfloat16 or float16 q, k, v, got ", q.scalar_type());
  TORCH_CHECK(i.sizes() == at::IntArrayRef({B, H, T}) && f.sizes() == i.sizes(), "i and f must be [B, H, T]");
  TORCH_CHECK(C.sizes() == at::IntArrayRef({B, H, Dqk, Dv}) && n.sizes() == at::IntArrayRef({B, H, Dqk}) &&
                  m.sizes() == at::IntArrayRef({B, H}),
              "the state must be C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H]");
  TORCH_CHECK(chunk_size >= 1 && chunk_size <= 64, "chunk_size must be in [1, 64], got ", chunk_size);
  if (mask.has_value()) {
    TORCH_CHECK(mask->sizes() == at::IntArrayRef({B, T}) && mask->scalar_type() == at::kBool,
                "mask must be bool [B, T]");
  }
  const auto as_float = [](const at::Tensor& t) { return t.to(at::kFloat).contiguous(); };
  const int64_t N = (T + chunk_size - 1) / chunk_size;
  const at::TensorOptions floats = q.options().dtype(at::kFloat);
  return {q.contiguous(), k.contiguous(), v.contiguous(), as_float(i), as_float(f),
          mask.has_value() ? mask->contiguous() : at::Tensor(), as_float(C), as_float(n), as_float(m),
          at::empty({B, H, N, Dqk, Dv}, floats), at::empty({B, H, N, Dqk}, floats), at::empty({B, H, N}, floats),
          at::empty({B, H, Dqk, Dv}, floats), at::empty({B, H, Dqk}, floats), at::empty({B, H}, floats),
          B, H, T, Dqk, Dv, chunk_size, eps};
}

// Calls `launch.template operator()<In>()` with In the CUDA type of the chunkwise inputs' dtype.
template <typename Launch>
void dispatch_chunkwise(at::ScalarType dtype, const Launch& launch) {
  switch (dtype) {
    case at::kFloat: launch.template operator()<float>(); break;
    case at::kBFloat16: launch.template operator()<__nv_bfloat16>(); break;
    default: launch.template operator()<__half>(); break;  // checked by prepare_chunkwise
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_chunkwise_forward_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const c10::optional<at::Tensor>& mask, const at::Tensor& C, const at::Tensor& n, const at::Tensor& m,
    int64_t chunk_size, double eps) {
  const c10::cuda::CUDAGuard guard(q.device());
  const Chunkwise inputs = prepare_chunkwise(q, k, v, i, f, mask, C, n, m, chunk_size, eps);
  at::Tensor h = at::empty({inputs.B, inputs.H, inputs.T, inputs.Dv}, v.options());
  dispatch_chunkwise(q.scalar_type(), [&]<typename In>() {
    check_launch(cuda::mlstm_chunkwise_forward(inputs.args<In>(h), c10::cuda::getCurrentCUDAStream()),
                 "mlstm_chunkwise_forward");
  });
  return {h, inputs.C_final, inputs.n_final, inputs.m_final};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
mlstm_chunkwise_backward_cuda(const at::Tensor& grad_h, const at::Tensor& grad_C, const at::Tensor& grad_n,
                              const at::Tensor& grad_m, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& i, const at::Tensor& f, const c10::optional<at::Tensor>& mask,
                              const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, int64_t chunk_size,
                              double eps) {
  const c10::cuda::CUDAGuard guard(q.device());
  const Chunkwise inputs = prepare_chunkwise(q, k, v, i, f, mask, C, n, m, chunk_size, eps);
  const int64_t B = inputs.B, H = inputs.H, T = inputs.T, L = inputs.L, N = (T + L - 1) / L;
  TORCH_CHECK(grad_h.sizes() == v.sizes() && grad_C.sizes() == C.sizes() && grad_n.sizes() == n.sizes() &&
                  grad_m.sizes() == m.sizes(),
              "the gradients must have the shapes of h and of the final state");
  at::Tensor gh = grad_h.to(q.scalar_type());  // the reference zeroes h at padded steps: no gradient there
  gh = (mask.has_value() ? gh.masked_fill(~(*mask).view({B, 1, T, 1}), 0) : gh).contiguous();
  const at::Tensor dC_final = grad_C.to(at::kFloat).contiguous(), dn_final = grad_n.to(at::kFloat).contiguous();
  const at::Tensor dm_final = grad_m.to(at::kFloat).contiguous();
  const at::TensorOptions floats = q.options().dtype(at::kFloat);
  at::Tensor dC_out = at::empty_like(inputs.C_chunks), dn_out = at::empty_like(inputs.n_chunks);
  at::Tensor dm_out = at::empty({B, H, N}, floats), d_decay = at::zeros({B, H, N}, floats);
  at::Tensor da = at::empty({B, H, N, L}, floats), db = at::empty({B, H, N, L}, floats);
  at::Tensor dii = at::empty({B, H, N, L}, floats);
  at::Tensor dq = at::empty(q.sizes(), floats), dk = at::empty(k.sizes(), floats), dv = at::empty(v.sizes(), floats);
  at::Tensor di = at::empty({B, H, T}, floats), df = at::empty({B, H, T}, floats);
  at::Tensor dC0 = at::empty_like(inputs.C), dn0 = at::empty_like(inputs.n), dm0 = at::empty_like(inputs.m);
  at::Tensor unused_h = at::empty({0}, v.options());
  dispatch_chunkwise(q.scalar_type(), [&]<typename In>() {
    const cuda::MLSTMChunkwiseBackwardArgs<In, float> args{
        inputs.args<In>(unused_h), reinterpret_cast<const In*>(gh.data_ptr()), dC_final.data_ptr<float>(),
        dn_final.data_ptr<float>(), dm_final.data_ptr<float>(), dC_out.data_ptr<float>(), dn_out.data_ptr<float>(),
        dm_out.data_ptr<float>(), d_decay.data_ptr<float>(), da.data_ptr<float>(), db.data_ptr<float>(),
        dii.data_ptr<float>(), dq.data_ptr<float>(), dk.data_ptr<float>(), dv.data_ptr<float>(),
        di.data_ptr<float>(), df.data_ptr<float>(), dC0.data_ptr<float>(), dn0.data_ptr<float>(),
        dm0.data_ptr<float>()};
    check_launch(cuda::mlstm_chunkwise_backward(args, c10::cuda::getCurrentCUDAStream()), "mlstm_chunkwise_backward");
  });
  return {dq.to(q.scalar_type()), dk.to(k.scalar_type()), dv.to(v.scalar_type()), di.to(i.scalar_type()),
          df.to(f.scalar_type()), dC0.to(C.scalar_type()), dn0.to(n.scalar_type()), dm0.to(m.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(xlstm_hf, CUDA, m) {
  m.impl("mlstm_chunkwise_forward", &mlstm_chunkwise_forward_cuda);
  m.impl("mlstm_chunkwise_backward", &mlstm_chunkwise_backward_cuda);
  m.impl("slstm_forward", &slstm_forward_cuda);
  m.impl("slstm_backward", &slstm_backward_cuda);
  m.impl("mlstm_step", &mlstm_step_cuda);
}

}  // namespace xlstm_hf
