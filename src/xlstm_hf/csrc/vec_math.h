// SIMD overloads of the math_* functions of pointwise.h for ATen's at::vec::Vectorized, so that the CPU
// kernels evaluate the shared per-element math on whole vectors (exp, log1p, tanh from ATen's
// vectorised implementations). Include before pointwise.h.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

namespace xlstm_hf {

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
inline Vec<T> math_exp(const Vec<T>& x) {
  return x.exp();
}
template <typename T>
inline Vec<T> math_log1p(const Vec<T>& x) {
  return x.log1p();
}
template <typename T>
inline Vec<T> math_tanh(const Vec<T>& x) {
  return x.tanh();
}
template <typename T>
inline Vec<T> math_abs(const Vec<T>& x) {
  return x.abs();
}
template <typename T>
inline Vec<T> math_max(const Vec<T>& a, const Vec<T>& b) {
  return at::vec::maximum(a, b);
}
template <typename T>
inline Vec<T> math_min(const Vec<T>& a, const Vec<T>& b) {
  return at::vec::minimum(a, b);
}
// `condition` is a lane mask, as the comparison operators of Vectorized return
template <typename T>
inline Vec<T> math_select(const Vec<T>& condition, const Vec<T>& if_true, const Vec<T>& if_false) {
  return Vec<T>::blendv(if_false, if_true, condition);
}

// sum_j a[j] * b[j], in SIMD vectors
template <typename Real>
inline Real vec_dot(const Real* a, const Real* b, int64_t n) {
  using V = Vec<Real>;
  V sums(Real(0));
  for (int64_t j = 0; j < n; j += V::size()) {
    const int64_t count = std::min<int64_t>(V::size(), n - j);
    sums = sums + V::loadu(a + j, count) * V::loadu(b + j, count);
  }
  Real lanes[V::size()];
  sums.store(lanes);
  Real total = Real(0);
  for (int64_t k = 0; k < V::size(); ++k) total += lanes[k];
  return total;
}

}  // namespace xlstm_hf
