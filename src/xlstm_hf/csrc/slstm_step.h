// One sLSTM step (docs/design.md 1.4) of one (batch row, head) pair on the CPU: the gate pre-activations
// with the recurrent matrix, then the cell in SIMD vectors. Shared by the sequence kernels
// (slstm_cpu.cpp) and the whole-block decoding step (decode_cpu.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "matvec.h"
#include "pointwise.h"  // after vec_math.h (through matvec.h), whose overloads it uses

namespace xlstm_hf {

// raw[j] = gates_x[j] + bias[j] + sum_d h[d] * kernel[d, j], j over the 4 * D gate units of one head
template <typename Real>
inline void gate_preactivations(const Real* gates_x, int64_t gate_stride, const Real* bias, const Real* kernel,
                                const Real* h, int64_t D, Real* raw) {
  for (int64_t g = 0; g < 4; ++g) {
    for (int64_t e = 0; e < D; ++e) raw[g * D + e] = gates_x[g * gate_stride + e] + bias[g * D + e];
  }
  add_vecmat(h, kernel, D, 4 * D, raw);
}

// The state rows (h, c, n, m) of one (batch row, head) at one step
template <typename Real>
struct Rows {
  Real *h, *c, *n, *m;
};

template <typename Real>
inline void forward_step(const Real* raw, Rows<Real> prev, Rows<Real> next, int64_t D) {
  using V = Vec<Real>;
  for (int64_t e = 0; e < D; e += V::size()) {
    const int64_t count = std::min<int64_t>(V::size(), D - e);
    const SLSTMUnit<V> state{V::loadu(prev.h + e, count), V::loadu(prev.c + e, count), V::loadu(prev.n + e, count),
                             V::loadu(prev.m + e, count)};
    const SLSTMUnit<V> updated = slstm_unit_forward(V::loadu(raw + e, count), V::loadu(raw + D + e, count),
                                                    V::loadu(raw + 2 * D + e, count),
                                                    V::loadu(raw + 3 * D + e, count), state);
    updated.h.store(next.h + e, count);
    updated.c.store(next.c + e, count);
    updated.n.store(next.n + e, count);
    updated.m.store(next.m + e, count);
  }
}

}  // namespace xlstm_hf
