// One mLSTM step (DESIGN.md 1.1) for every head of a layer in one call, on the CPU: the decoding step.
// It reads and writes the matrix memory once, parallel over (batch row, head). Layouts as in the
// PyTorch reference (src/xlstm_hf/ops/mlstm/recurrent.py):
//   q, k [B, H, Dqk]   v [B, H, Dv]   i, f [B, H]   C [B, H, Dqk, Dv]   n [B, H, Dqk]   m [B, H]   mask [B]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "vec_math.h"
#include "pointwise.h"

namespace xlstm_hf {
namespace {

template <typename Real>
void step_kernel(const Real* q, const Real* k, const Real* v, const Real* i, const Real* f, const Real* C, const Real* n, const Real* m,
                 const bool* mask, double eps, int64_t BH, int64_t H, int64_t Dqk, int64_t Dv, Real* h_out, Real* C_out,
                 Real* n_out, Real* m_out) {
  const Real scale = Real(1) / std::sqrt(Real(Dqk));
  at::parallel_for(0, BH, 1, [&](int64_t begin, int64_t end) {
    std::vector<Real> numerator(Dv);
    for (int64_t bh = begin; bh < end; ++bh) {
      const bool real = mask == nullptr || mask[bh / H];
      const Real input = real ? i[bh] : Real(kMaskedLogGate);  // a padded step is an identity step
      const Real log_f = real ? log_sigmoid(f[bh]) : Real(0);
      const Real m_next = log_f + m[bh] > input ? log_f + m[bh] : input;
      const Real decay = exp(log_f + m[bh] - m_next);
      const Real write = exp(input - m_next);
      const Real* q_bh = q + bh * Dqk;
      const Real* k_bh = k + bh * Dqk;
      const Real* v_bh = v + bh * Dv;
      std::fill(numerator.begin(), numerator.end(), Real(0));
      Real denominator = Real(0);
      for (int64_t a = 0; a < Dqk; ++a) {
        const Real q_a = q_bh[a] * scale;
        const Real wk_a = write * k_bh[a];
        const Real* C_row = C + (bh * Dqk + a) * Dv;
        Real* C_next = C_out + (bh * Dqk + a) * Dv;
        for (int64_t b = 0; b < Dv; ++b) {
          C_next[b] = decay * C_row[b] + wk_a * v_bh[b];
          numerator[b] += q_a * C_next[b];
        }
        n_out[bh * Dqk + a] = decay * n[bh * Dqk + a] + wk_a;
        denominator += q_a * n_out[bh * Dqk + a];
      }
      const Real floor = exp(-m_next);
      const Real normaliser = (std::fabs(denominator) > floor ? std::fabs(denominator) : floor) + Real(eps);
      for (int64_t b = 0; b < Dv; ++b) h_out[bh * Dv + b] = real ? numerator[b] / normaliser : Real(0);
      m_out[bh] = m_next;
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_step_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, const c10::optional<at::Tensor>& mask,
    double eps) {
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
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), ic = i.contiguous(),
                   fc = f.contiguous(), Cc = C.contiguous(), nc = n.contiguous(), mc = m.contiguous();
  at::Tensor h_out = at::empty({B, H, Dv}, q.options());
  at::Tensor C_out = at::empty_like(Cc), n_out = at::empty_like(nc), m_out = at::empty_like(mc);
  const at::Tensor mask_c = mask.has_value() ? mask->contiguous() : at::Tensor();
  const bool* mask_ptr = mask.has_value() ? mask_c.data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "mlstm_step_cpu", [&] {
    step_kernel<scalar_t>(qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                          ic.data_ptr<scalar_t>(), fc.data_ptr<scalar_t>(), Cc.data_ptr<scalar_t>(),
                          nc.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(), mask_ptr, eps, B * H, H, Dqk, Dv,
                          h_out.data_ptr<scalar_t>(), C_out.data_ptr<scalar_t>(), n_out.data_ptr<scalar_t>(),
                          m_out.data_ptr<scalar_t>());
  });
  return {h_out, C_out, n_out, m_out};
}

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("mlstm_step", &mlstm_step_cpu);
}

}  // namespace xlstm_hf
