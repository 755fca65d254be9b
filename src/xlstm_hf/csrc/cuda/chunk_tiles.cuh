// Device helpers of the chunkwise mLSTM kernels (forward and backward): conversions from the input types,
// the gates of a chunk and the decay of the memory over it, tiles of a chunk's rows in shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "launch.h"

#include "../pointwise.h"

namespace xlstm_hf {
namespace cuda {

// bfloat16 and float16 inputs take the tensor cores
template <typename In>
constexpr bool kTensorCoreInput = std::is_same_v<In, __nv_bfloat16> || std::is_same_v<In, __half>;

template <typename Real>
__device__ Real to_real(float x) {
  return Real(x);
}
template <typename Real>
__device__ Real to_real(double x) {
  return Real(x);
}
template <typename Real>
__device__ Real to_real(__nv_bfloat16 x) {
  return Real(__bfloat162float(x));
}
template <typename Real>
__device__ Real to_real(__half x) {
  return Real(__half2float(x));
}
template <typename In, typename Real>
__device__ In from_real(Real x) {
  if constexpr (std::is_same_v<In, __nv_bfloat16>) {
    return __float2bfloat16(static_cast<float>(x));
  } else if constexpr (std::is_same_v<In, __half>) {
    return __float2half(static_cast<float>(x));
  } else {
    return static_cast<In>(x);
  }
}

// The gates of chunk c in shared memory: cumulative log forget gates b[j] from the chunk start and input
// gates ii[j]; padded steps and the steps past T are identity steps (log f = 0, i = -inf).
template <typename Args, typename Real>
__device__ void load_chunk_gates(const Args& a, int64_t bh, int64_t c, Real* b, Real* ii) {
  const int64_t batch = bh / a.H;
  for (int64_t j = threadIdx.x; j < a.L; j += blockDim.x) {
    const int64_t t = c * a.L + j;
    const bool real = t < a.T && (a.mask == nullptr || a.mask[batch * a.T + t]);
    b[j] = real ? log_sigmoid(a.f[bh * a.T + t]) : Real(0);
    ii[j] = real ? a.i[bh * a.T + t] : Real(kMaskedLogGate);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int64_t j = 1; j < a.L; ++j) b[j] += b[j - 1];
  }
  __syncthreads();
}

// rows [0, L) x columns [column0, column0 + kColumns) of x [T, width] (the chunk starting at row t0) as Real,
// zero past T and past the width
template <int kColumns, typename In, typename Real>
__device__ void load_tile(const In* x, int64_t t0, int64_t T, int64_t L, int64_t width, int64_t column0, Real* tile) {
  for (int64_t index = threadIdx.x; index < L * kColumns; index += blockDim.x) {
    const int64_t j = index / kColumns, column = column0 + index % kColumns;
    tile[index] = t0 + j < T && column < width ? to_real<Real>(x[(t0 + j) * width + column]) : Real(0);
  }
}

// The same tile in the input type, as the tensor cores read it (no conversions: torch builds with the
// implicit half-precision conversions switched off)
template <int kColumns, typename In>
__device__ void load_input_tile(const In* x, int64_t t0, int64_t T, int64_t L, int64_t width, int64_t column0,
                                In* tile) {
  const In zero = from_real<In, float>(0.0f);
  for (int64_t index = threadIdx.x; index < L * kColumns; index += blockDim.x) {
    const int64_t j = index / kColumns, column = column0 + index % kColumns;
    tile[index] = t0 + j < T && column < width ? x[(t0 + j) * width + column] : zero;
  }
}

// The decay of the memory over chunk c and the weights of its keys (forward quantities, recomputed):
// m' = max(g + m, max_j a_j), decay = exp(g + m - m'), weight_j = exp(a_j - m'), a_j = g - b_j + ii_j
template <typename Real>
__device__ void chunk_decay(const Real* b, const Real* ii, int64_t L, Real m_enter, Real* decay, Real* m_next,
                            Real* a_max) {
  const Real g = b[L - 1];
  Real largest = g - b[0] + ii[0];
  for (int64_t j = 1; j < L; ++j) largest = fmax(largest, g - b[j] + ii[j]);
  *a_max = largest;
  *m_next = fmax(g + m_enter, largest);
  *decay = exp(g + m_enter - *m_next);
}

}  // namespace cuda
}  // namespace xlstm_hf
