// The mlstm_step op on the CPU: one mLSTM step for every head of a layer in one call (mlstm_step.h).
//   q, k [B, H, Dqk]   v [B, H, Dv]   i, f [B, H]   C [B, H, Dqk, Dv]   n [B, H, Dqk]   m [B, H]   mask [B]
#include <ATen/ATen.h>
#include <torch/library.h>

#include "mlstm_step.h"
#include "op_checks.h"

namespace xlstm_hf {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_step_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, const c10::optional<at::Tensor>& mask,
    double eps) {
  const auto [B, H, Dqk, Dv] = check_mlstm_step_inputs(q, k, v, i, f, C, n, m, mask);
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), ic = i.contiguous(),
                   fc = f.contiguous(), Cc = C.contiguous(), nc = n.contiguous(), mc = m.contiguous();
  at::Tensor h_out = at::empty({B, H, Dv}, q.options());
  at::Tensor C_out = at::empty_like(Cc), n_out = at::empty_like(nc), m_out = at::empty_like(mc);
  const at::Tensor mask_c = mask.has_value() ? mask->contiguous() : at::Tensor();
  const bool* mask_ptr = mask.has_value() ? mask_c.data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "mlstm_step_cpu", [&] {
    const StepInputs<scalar_t> inputs{qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                                      ic.data_ptr<scalar_t>(), fc.data_ptr<scalar_t>(), H * Dqk, H * Dqk, H * Dv, H};
    mlstm_step_kernel<scalar_t>(inputs, Cc.data_ptr<scalar_t>(), nc.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(),
                                mask_ptr, eps, {B, H, Dqk, Dv}, h_out.data_ptr<scalar_t>(),
                                C_out.data_ptr<scalar_t>(), n_out.data_ptr<scalar_t>(), m_out.data_ptr<scalar_t>());
  });
  return {h_out, C_out, n_out, m_out};
}

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("mlstm_step", &mlstm_step_cpu);
}

}  // namespace xlstm_hf
