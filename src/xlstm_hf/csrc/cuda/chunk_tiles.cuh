// Device helpers of the chunkwise mLSTM kernels (forward and backward): conversions from the input types,
// the gates of a chunk, the log weights of its keys and the decay of the memory over it, tiles of a chunk's
// rows in shared memory.
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

// The gates of chunk c in shared memory: log forget gates log_f[j] and input gates ii[j]; padded steps and the
// steps past T are identity steps (log f = 0, i = -inf).
template <typename Args, typename Real>
__device__ void load_chunk_gates(const Args& a, int64_t bh, int64_t c, Real* log_f, Real* ii) {
  const int64_t batch = bh / a.H;
  for (int64_t j = threadIdx.x; j < a.L; j += blockDim.x) {
    const int64_t t = c * a.L + j;
    const bool real = t < a.T && (a.mask == nullptr || a.mask[batch * a.T + t]);
    log_f[j] = real ? log_sigmoid(a.f[bh * a.T + t]) : Real(0);
    ii[j] = real ? a.i[bh * a.T + t] : Real(kMaskedLogGate);
  }
  __syncthreads();
}

// Calls visit(j, log_D) for the keys j = t, t - 1, ..., 0 of step t, log_D = ii_j + the log forget over steps
// j+1..t; returns the log forget over steps 0..t (the weight of the memory entering the chunk). Every sum of
// log forget gates over a span of steps is summed over that span, as in the reference
// (ops/mlstm/chunkwise.py), never taken as a difference of sums from the chunk start: those grow along the
// chunk (to thousands with forget gates near 0) and float32 keeps their difference only to their own ulp.
template <typename Real, typename Visit>
__device__ Real visit_keys(const Real* log_f, const Real* ii, int64_t t, Visit&& visit) {
  Real span = 0;
  for (int64_t j = t; j >= 0; --j) {
    visit(j, span + ii[j]);
    span += log_f[j];
  }
  return span;
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

// The memory over a chunk (forward quantities, recomputed): g the log forget over the chunk, key_max the
// largest log weight of its keys at the chunk end, m_next = max(g + m, key_max) the stabiliser after it,
// decay = exp(g + m - m_next) that of the memory entering it
template <typename Real>
struct ChunkDecay {
  Real g, key_max, m_next, decay;
};

// The ChunkDecay of a chunk entered with stabiliser m_enter, and key_log[j] = ii_j + the log forget over steps
// j+1..L-1, the log weight of key j at the chunk end (one thread)
template <typename Real>
__device__ ChunkDecay<Real> chunk_decay(const Real* log_f, const Real* ii, int64_t L, Real m_enter, Real* key_log) {
  Real key_max = -INFINITY;
  const Real g = visit_keys(log_f, ii, L - 1, [&](int64_t j, Real key) {
    key_log[j] = key;
    key_max = fmax(key_max, key);
  });
  const Real m_next = fmax(g + m_enter, key_max);
  return {g, key_max, m_next, exp(g + m_enter - m_next)};
}

}  // namespace cuda
}  // namespace xlstm_hf
