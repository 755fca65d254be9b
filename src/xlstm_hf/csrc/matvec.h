// Matrix-vector products of the CPU kernels, in SIMD vectors: dot products with a row-major matrix
// (several rows at once, so that summing across the lanes is shared) and a row vector times a matrix
// (column panels accumulated in registers). Include vec_math.h's math through this header.
#pragma once

#include <cstdint>
#include <type_traits>

#include "vec_math.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace xlstm_hf {

// y[0 .. 8) = W[0 .. 8) x for eight rows of W (`n` apart) and x [n]: eight dot products whose SIMD lanes
// are summed together (with AVX2; one dot product at a time otherwise)
inline void eight_dots(const float* x, const float* W, int64_t n, float* y) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 sums[8];
  for (auto& sum : sums) sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x_i = _mm256_loadu_ps(x + i);
    for (int64_t r = 0; r < 8; ++r) sums[r] = _mm256_fmadd_ps(_mm256_loadu_ps(W + r * n + i), x_i, sums[r]);
  }
  const __m256 pairs01 = _mm256_hadd_ps(sums[0], sums[1]), pairs23 = _mm256_hadd_ps(sums[2], sums[3]);
  const __m256 pairs45 = _mm256_hadd_ps(sums[4], sums[5]), pairs67 = _mm256_hadd_ps(sums[6], sums[7]);
  const __m256 quads0123 = _mm256_hadd_ps(pairs01, pairs23), quads4567 = _mm256_hadd_ps(pairs45, pairs67);
  _mm256_storeu_ps(y, _mm256_add_ps(_mm256_permute2f128_ps(quads0123, quads4567, 0x20),
                                    _mm256_permute2f128_ps(quads0123, quads4567, 0x31)));
  for (; i < n; ++i) {
    for (int64_t r = 0; r < 8; ++r) y[r] += W[r * n + i] * x[i];
  }
#else
  for (int64_t r = 0; r < 8; ++r) y[r] = vec_dot(x, W + r * n, n);
#endif
}

// y[r] = W[r] x for the rows of W [rows, n]
template <typename Real>
inline void matvec(const Real* W, const Real* x, int64_t rows, int64_t n, Real* y) {
  int64_t r = 0;
  if constexpr (std::is_same_v<Real, float>) {
    for (; r + 8 <= rows; r += 8) eight_dots(x, W + r * n, n, y + r);
  }
  for (; r < rows; ++r) y[r] = vec_dot(x, W + r * n, n);
}

// acc[0 .. width) += h M for h [D] and M [D, width] (row-major): panels of up to eight SIMD vectors of
// columns are summed over d in registers and written once
template <typename Real, int kVectors>
inline void add_vecmat_panel(const Real* h, const Real* M, int64_t D, int64_t width, Real* acc) {
  using V = Vec<Real>;
  V sums[kVectors];
  for (int k = 0; k < kVectors; ++k) sums[k] = V::loadu(acc + k * V::size());
  for (int64_t d = 0; d < D; ++d) {
    const V h_d(h[d]);
    const Real* row = M + d * width;
    for (int k = 0; k < kVectors; ++k) sums[k] = at::vec::fmadd(h_d, V::loadu(row + k * V::size()), sums[k]);
  }
  for (int k = 0; k < kVectors; ++k) sums[k].store(acc + k * V::size());
}

template <typename Real>
inline void add_vecmat(const Real* h, const Real* M, int64_t D, int64_t width, Real* acc) {
  using V = Vec<Real>;
  int64_t j = 0;
  for (; j + 8 * V::size() <= width; j += 8 * V::size()) add_vecmat_panel<Real, 8>(h, M + j, D, width, acc + j);
  for (; j + V::size() <= width; j += V::size()) add_vecmat_panel<Real, 1>(h, M + j, D, width, acc + j);
  for (; j < width; ++j) {
    for (int64_t d = 0; d < D; ++d) acc[j] += h[d] * M[d * width + j];
  }
}

}  // namespace xlstm_hf
