// One mLSTM step (docs/design.md 1.1) for every (batch row, head) pair: the arithmetic of the decoding step,
// shared by the mlstm_step op (mlstm_cpu.cpp) and the whole-block step (decode_cpu.cpp). It reads and
// writes the matrix memory once, parallel over the pairs. Layouts as in the PyTorch reference
// (src/xlstm_hf/ops/mlstm/recurrent.py): C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H], h [B, H, Dv];
// q, k, v and the gate pre-activations may sit inside wider rows (see StepInputs).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "vec_math.h"
#include "pointwise.h"  // after vec_math.h, whose overloads it uses

namespace xlstm_hf {

// q[b, h, :] starts at q + b * q_row + h * Dqk; k and v likewise (v with Dv); i[b, h] at i + b * gate_row + h
template <typename Real>
struct StepInputs {
  const Real *q, *k, *v, *i, *f;
  int64_t q_row, k_row, v_row, gate_row;
};

struct StepDims {
  int64_t B, H, Dqk, Dv;
};

// mask [B] (optional): a padded row takes an identity step and outputs h = 0
template <typename Real>
void mlstm_step_kernel(const StepInputs<Real>& in, const Real* C, const Real* n, const Real* m, const bool* mask,
                       double eps, const StepDims& dims, Real* h_out, Real* C_out, Real* n_out, Real* m_out) {
  const auto [B, H, Dqk, Dv] = dims;
  const Real scale = Real(1) / std::sqrt(Real(Dqk));
  const int64_t grain = std::max<int64_t>(1, 16384 / (Dqk * Dv));  // small layers run on one thread
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<Real> numerator(Dv);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, head = bh % H;
      const bool real = mask == nullptr || mask[b];
      const auto [m_next, decay, write] =
          mlstm_gates(in.i[b * in.gate_row + head], in.f[b * in.gate_row + head], m[bh], real);
      const Real* q_bh = in.q + b * in.q_row + head * Dqk;
      const Real* k_bh = in.k + b * in.k_row + head * Dqk;
      const Real* v_bh = in.v + b * in.v_row + head * Dv;
      std::fill(numerator.begin(), numerator.end(), Real(0));
      Real denominator = Real(0);
      for (int64_t a = 0; a < Dqk; ++a) {
        const Real q_a = q_bh[a] * scale;
        const Real wk_a = write * k_bh[a];
        const Real* C_row = C + (bh * Dqk + a) * Dv;
        Real* C_next = C_out + (bh * Dqk + a) * Dv;
        for (int64_t e = 0; e < Dv; ++e) {
          C_next[e] = decay * C_row[e] + wk_a * v_bh[e];
          numerator[e] += q_a * C_next[e];
        }
        n_out[bh * Dqk + a] = decay * n[bh * Dqk + a] + wk_a;
        denominator += q_a * n_out[bh * Dqk + a];
      }
      const Real normaliser = mlstm_normaliser(denominator, m_next, eps);
      for (int64_t e = 0; e < Dv; ++e) h_out[bh * Dv + e] = real ? numerator[e] / normaliser : Real(0);
      m_out[bh] = m_next;
    }
  });
}

}  // namespace xlstm_hf
