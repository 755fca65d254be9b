// The chunkwise mLSTM backward on the GPU, the products of src/xlstm_hf/ops/mlstm/chunkwise_backward.py
// (held to autograd in float64) as five launches after recomputing the memory entering every chunk:
//   1. per chunk, the outputs backwards: the step scalars (normaliser, stabiliser routing), dq, and the
//      parts of dk, dv, the gates and the entering memory that come through the chunk's outputs;
//   2. per tile of the memory, the reverse loop over chunks: the gradient of the memory leaving every chunk;
//   3. per chunk, what the keys and values wrote into the memory: the rest of dk, dv;
//   4. per (batch row, head), the stabilisers of the memory backwards, chunk by chunk (scalars);
//   5. per chunk, the gate gradients from the cumulative log forget gates.
// Tiles of 16 columns in shared memory; the matrix products of launches 1 and 3 through tile_product, on the
// TF32 tensor cores for bfloat16 and float16 inputs in chunks of a multiple of 16 steps, else float32 SIMT.
#include "chunk_tiles.cuh"
#include "reduce.cuh"
#include "tile_product.cuh"

namespace xlstm_hf {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kCols = 16;      // columns of a tile of q, k, v, h or of the memory
constexpr int kMaxChunk = 64;  // L
constexpr int kStateTile = 32;  // the memory tiles of launch 2

// U[t][dd] = sum_e grad_h[t, e] C[d0 + dd, e] for the chunk's rows: the memory read backwards, one tile of
// key columns, over all value columns
template <typename In, typename Real>
__device__ void memory_times_grad(const MLSTMChunkwiseBackwardArgs<In, Real>& a, int64_t bh, int64_t c, int64_t d0,
                                  bool tensor_cores, Real* gh_tile, Real* C_tile, Real* U) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  const int64_t N = (f.T + f.L - 1) / f.L;
  const Real* C = f.C_chunks + (bh * N + c) * f.Dqk * f.Dv;
  for (int64_t e0 = 0; e0 < f.Dv; e0 += kCols) {
    load_tile<kCols>(a.grad_h + bh * f.T * f.Dv, c * f.L, f.T, f.L, f.Dv, e0, gh_tile);
    for (int64_t index = threadIdx.x; index < kCols * kCols; index += blockDim.x) {
      const int64_t d = d0 + index / kCols, e = e0 + index % kCols;
      C_tile[index] = d < f.Dqk && e < f.Dv ? C[d * f.Dv + e] : Real(0);
    }
    __syncthreads();
    tile_product<false, true>(tensor_cores, e0 > 0, f.L, kCols, kCols, gh_tile, kCols, C_tile, kCols, U, kCols);
  }
}

// Launch 1: one block per (batch row, head, chunk).
template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) output_grads_kernel(MLSTMChunkwiseBackwardArgs<In, Real> a) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], m_t[kMaxChunk], R[kMaxChunk], largest[kMaxChunk];
  __shared__ Real qn[kMaxChunk], qCg[kMaxChunk], inv_N[kMaxChunk], delta[kMaxChunk], d_rho[kMaxChunk];
  __shared__ Real key_max_grad[kMaxChunk];  // what the maxima among the keys of the steps route to key j
  __shared__ __align__(32) Real S[kMaxChunk * kMaxChunk];   // q k^T, then S = scale (q k^T) * P
  __shared__ __align__(32) Real dS[kMaxChunk * kMaxChunk];  // grad_h v^T, then dS, then dA = dS * P
  __shared__ __align__(32) Real tile1[kMaxChunk * kCols];
  __shared__ __align__(32) Real tile2[kMaxChunk * kCols];
  __shared__ __align__(32) Real U[kMaxChunk * kCols];
  __shared__ __align__(32) Real C_tile[kCols * kCols];
  const int64_t N = (f.T + f.L - 1) / f.L, L = f.L;
  const int64_t bh = blockIdx.x / N, c = blockIdx.x % N, t0 = c * L;
  const bool tensor_cores = kTensorCoreInput<In> && L % kTF32Rows == 0;
  const Real scale = Real(1) / sqrt(Real(f.Dqk)), m_enter = f.m_chunks[bh * N + c];
  const Real* n_enter = f.n_chunks + (bh * N + c) * f.Dqk;
  const In* q = f.q + bh * f.T * f.Dqk;
  const In* k = f.k + bh * f.T * f.Dqk;
  const In* v = f.v + bh * f.T * f.Dv;
  const In* gh = a.grad_h + bh * f.T * f.Dv;
  Real* dq = a.dq + bh * f.T * f.Dqk;
  load_chunk_gates(f, bh, c, log_f, ii);
  for (int64_t t = threadIdx.x; t < L; t += blockDim.x) {
    Real key_max = -INFINITY;
    const Real rho = visit_keys(log_f, ii, t, [&](int64_t, Real key) { key_max = fmax(key_max, key); }) + m_enter;
    largest[t] = key_max;
    m_t[t] = fmax(key_max, rho);
    R[t] = exp(rho - m_t[t]);
    qn[t] = 0;
    qCg[t] = 0;
    key_max_grad[t] = 0;
  }
  __syncthreads();
  // q k^T and qs . n;  grad_h v^T
  for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
    load_tile<kCols>(q, t0, f.T, L, f.Dqk, d0, tile1);
    load_tile<kCols>(k, t0, f.T, L, f.Dqk, d0, tile2);
    __syncthreads();
    tile_product<false, true>(tensor_cores, d0 > 0, L, L, kCols, tile1, kCols, tile2, kCols, S, L);
    for (int64_t t = threadIdx.x; t < L; t += blockDim.x) {
      Real sum = 0;
      for (int dd = 0; dd < kCols && d0 + dd < f.Dqk; ++dd) sum += tile1[t * kCols + dd] * n_enter[d0 + dd];
      qn[t] += scale * sum;
    }
    __syncthreads();
  }
  for (int64_t e0 = 0; e0 < f.Dv; e0 += kCols) {
    load_tile<kCols>(gh, t0, f.T, L, f.Dv, e0, tile1);
    load_tile<kCols>(v, t0, f.T, L, f.Dv, e0, tile2);
    __syncthreads();
    tile_product<false, true>(tensor_cores, e0 > 0, L, L, kCols, tile1, kCols, tile2, kCols, dS, L);
  }
  // qs_t . (C grad_h_t), the read of the memory backwards; dq holds scale R (C grad_h) until the normaliser
  // is known
  for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
    memory_times_grad(a, bh, c, d0, tensor_cores, tile1, C_tile, U);
    load_tile<kCols>(q, t0, f.T, L, f.Dqk, d0, tile2);
    __syncthreads();
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t t = index / kCols, d = d0 + index % kCols;
      if (d < f.Dqk && t0 + t < f.T) dq[(t0 + t) * f.Dqk + d] = scale * R[t] * U[index];
    }
    for (int64_t t = threadIdx.x; t < L; t += blockDim.x) {
      Real sum = 0;
      for (int dd = 0; dd < kCols; ++dd) sum += tile2[t * kCols + dd] * U[t * kCols + dd];
      qCg[t] += scale * sum;
    }
    __syncthreads();
  }
  // the step scalars: h = numerator / normaliser, normaliser = max(|denominator|, exp(-m_t)) + eps
  for (int64_t t = threadIdx.x; t < L; t += blockDim.x) {
    Real row_S = 0, dot = 0;
    const Real rho = visit_keys(log_f, ii, t, [&](int64_t j, Real key) {
      const Real s = scale * S[t * L + j] * exp(key - m_t[t]);
      S[t * L + j] = s;
      row_S += s;
      dot += s * dS[t * L + j];
    }) + m_enter;
    const bool capped = -m_t[t] > Real(kLogFloorCap);  // the capped floor passes no gradient to m_t
    const Real denominator = row_S + R[t] * qn[t], floor = exp(capped ? Real(kLogFloorCap) : -m_t[t]);
    dot += R[t] * qCg[t];  // grad_h_t . numerator_t
    const Real normaliser = fmax(fabs(denominator), floor) + Real(f.eps);
    const Real d_normaliser = -dot / (normaliser * normaliser);
    Real d_abs = 0, d_floor = 0;
    route_max_grad(fabs(denominator), floor, d_normaliser, d_abs, d_floor);
    inv_N[t] = Real(1) / normaliser;
    delta[t] = denominator > 0 ? d_abs : (denominator < 0 ? -d_abs : Real(0));
    // dS = (grad_h v^T) / normaliser + delta;  d log_D = dS * S;  dR = read . qs
    Real row_dlogD = 0;
    for (int64_t j = 0; j <= t; ++j) {
      const Real ds = dS[t * L + j] * inv_N[t] + delta[t];
      dS[t * L + j] = ds;
      row_dlogD += ds * S[t * L + j];
    }
    const Real dR = inv_N[t] * qCg[t] + delta[t] * qn[t];
    d_rho[t] = dR * R[t];
    const Real d_m = (capped ? Real(0) : -floor * d_floor) - row_dlogD - d_rho[t];
    Real d_largest = 0, d_rho_max = 0;
    route_max_grad(largest[t], rho, d_m, d_largest, d_rho_max);
    d_rho[t] += d_rho_max;
    // the largest keys share d_largest evenly, as torch's amax routes it
    int count = 0;
    visit_keys(log_f, ii, t, [&](int64_t, Real key) { count += key == largest[t]; });
    visit_keys(log_f, ii, t, [&](int64_t j, Real key) {
      if (key == largest[t]) atomicAdd(key_max_grad + j, d_largest / count);
    });
    // db from the rows of d log_D (the query side) and the entering memory's weight; completed below
    a.db[(bh * N + c) * L + t] = row_dlogD + d_largest + d_rho[t];
  }
  __syncthreads();
  // the columns of d log_D: the key side of b, and the input gates
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
    Real column = key_max_grad[j];
    for (int64_t t = j; t < L; ++t) column += dS[t * L + j] * S[t * L + j];
    a.db[(bh * N + c) * L + j] -= column;
    a.dii[(bh * N + c) * L + j] = column;
  }
  Real rho_sum = 0;
  for (int64_t t = threadIdx.x; t < L; t += blockDim.x) rho_sum += d_rho[t];
  rho_sum = block_sum(rho_sum, U);  // also the barrier after the columns' reads of dS and S
  if (threadIdx.x == 0) a.dm_out[bh * N + c] = rho_sum;
  // dA = dS * P and S as the products below read them: zero above the diagonal
  for (int64_t t = threadIdx.x; t < L; t += blockDim.x) {
    visit_keys(log_f, ii, t, [&](int64_t j, Real key) { dS[t * L + j] *= exp(key - m_t[t]); });
    for (int64_t j = t + 1; j < L; ++j) S[t * L + j] = dS[t * L + j] = 0;
  }
  __syncthreads();
  // dq = inv_N (scale R C grad_h) + scale (R delta n + dA k)
  for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
    load_tile<kCols>(k, t0, f.T, L, f.Dqk, d0, tile1);
    __syncthreads();
    tile_product<false, false>(tensor_cores, false, L, kCols, L, dS, L, tile1, kCols, U, kCols);
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t t = index / kCols, d = d0 + index % kCols;
      if (d >= f.Dqk || t0 + t >= f.T) continue;
      Real& at = dq[(t0 + t) * f.Dqk + d];
      at = inv_N[t] * at + scale * (R[t] * delta[t] * n_enter[d] + U[index]);
    }
  }
  // dk = scale dA^T qs, dn_out = scale q^T (R delta)
  for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
    load_tile<kCols>(q, t0, f.T, L, f.Dqk, d0, tile2);
    __syncthreads();
    tile_product<true, false>(tensor_cores, false, L, kCols, L, dS, L, tile2, kCols, U, kCols);
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t j = index / kCols, d = d0 + index % kCols;
      if (d < f.Dqk && t0 + j < f.T) a.dk[(bh * f.T + t0 + j) * f.Dqk + d] = scale * U[index];
    }
    for (int64_t dd = threadIdx.x; dd < kCols; dd += blockDim.x) {
      if (d0 + dd >= f.Dqk) continue;
      Real sum = 0;
      for (int64_t t = 0; t < L; ++t) sum += tile2[t * kCols + dd] * R[t] * delta[t];
      a.dn_out[(bh * N + c) * f.Dqk + d0 + dd] = scale * sum;
    }
    __syncthreads();
  }
  // dv = S^T g, dC_out = scale (R q)^T g, g = grad_h / normaliser
  for (int64_t e0 = 0; e0 < f.Dv; e0 += kCols) {
    load_tile<kCols>(gh, t0, f.T, L, f.Dv, e0, tile1);
    __syncthreads();
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) tile1[index] *= inv_N[index / kCols];
    __syncthreads();
    tile_product<true, false>(tensor_cores, false, L, kCols, L, S, L, tile1, kCols, U, kCols);
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t j = index / kCols, e = e0 + index % kCols;
      if (t0 + j < f.T && e < f.Dv) a.dv[(bh * f.T + t0 + j) * f.Dv + e] = U[index];
    }
    for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
      load_tile<kCols>(q, t0, f.T, L, f.Dqk, d0, tile2);
      __syncthreads();
      for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) tile2[index] *= R[index / kCols];
      __syncthreads();
      tile_product<true, false>(tensor_cores, false, kCols, kCols, L, tile2, kCols, tile1, kCols, C_tile, kCols);
      for (int64_t index = threadIdx.x; index < kCols * kCols; index += blockDim.x) {
        const int64_t d = d0 + index / kCols, e = e0 + index % kCols;
        if (d < f.Dqk && e < f.Dv) a.dC_out[((bh * N + c) * f.Dqk + d) * f.Dv + e] = scale * C_tile[index];
      }
    }
  }
}

// Launch 2: one block per (batch row, head, 32 x 32 tile of the memory), chunks from the last.
template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) memory_grads_kernel(MLSTMChunkwiseBackwardArgs<In, Real> a) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], key_log[kMaxChunk], scratch[kThreads / 32];
  __shared__ ChunkDecay<Real> chunk;
  const int64_t N = (f.T + f.L - 1) / f.L, bh = blockIdx.x;
  const int64_t d0 = blockIdx.y * kStateTile, e0 = blockIdx.z * kStateTile;
  constexpr int kRows = kStateTile * kStateTile / kThreads;
  const int e = threadIdx.x % kStateTile, row = threadIdx.x / kStateTile;
  const bool owns_n = blockIdx.z == 0 && threadIdx.x < kStateTile && d0 + threadIdx.x < f.Dqk;
  Real dC[kRows], dn = owns_n ? a.grad_n[bh * f.Dqk + d0 + threadIdx.x] : Real(0);
  for (int r = 0; r < kRows; ++r) {
    const int64_t d = d0 + row + r * (kThreads / kStateTile);
    dC[r] = d < f.Dqk && e0 + e < f.Dv ? a.grad_C[(bh * f.Dqk + d) * f.Dv + e0 + e] : Real(0);
  }
  for (int64_t c = N - 1; c >= 0; --c) {
    load_chunk_gates(f, bh, c, log_f, ii);
    if (threadIdx.x == 0) chunk = chunk_decay(log_f, ii, f.L, f.m_chunks[bh * N + c], key_log);
    __syncthreads();
    const Real decay = chunk.decay;
    Real partial = 0;  // of d decay = <dC', C> + <dn', n>
    for (int r = 0; r < kRows; ++r) {
      const int64_t d = d0 + row + r * (kThreads / kStateTile);
      if (d >= f.Dqk || e0 + e >= f.Dv) continue;
      const int64_t at = ((bh * N + c) * f.Dqk + d) * f.Dv + e0 + e;
      partial += dC[r] * f.C_chunks[at];
      const Real from_outputs = a.dC_out[at];
      a.dC_out[at] = dC[r];  // now the gradient of the memory leaving chunk c
      dC[r] = decay * dC[r] + from_outputs;
    }
    if (owns_n) {
      const int64_t at = (bh * N + c) * f.Dqk + d0 + threadIdx.x;
      partial += dn * f.n_chunks[at];
      const Real from_outputs = a.dn_out[at];
      a.dn_out[at] = dn;
      dn = decay * dn + from_outputs;
    }
    partial = block_sum(partial, scratch);
    if (threadIdx.x == 0) atomicAdd(a.d_decay + bh * N + c, partial);
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t d = d0 + row + r * (kThreads / kStateTile);
    if (d < f.Dqk && e0 + e < f.Dv) a.dC0[(bh * f.Dqk + d) * f.Dv + e0 + e] = dC[r];
  }
  if (owns_n) a.dn0[bh * f.Dqk + d0 + threadIdx.x] = dn;
}

// Launch 3: one block per (batch row, head, chunk): C' = decay C + sum_j w_j k_j v_j^T (and n likewise)
// backwards, with dC', dn' the gradients of the memory leaving the chunk.
template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) key_value_grads_kernel(MLSTMChunkwiseBackwardArgs<In, Real> a) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], key_log[kMaxChunk], weight[kMaxChunk], dw[kMaxChunk];
  __shared__ ChunkDecay<Real> chunk;
  __shared__ __align__(32) Real k_tile[kMaxChunk * kCols];
  __shared__ __align__(32) Real v_tile[kMaxChunk * kCols];
  __shared__ __align__(32) Real product[kMaxChunk * kCols];
  __shared__ __align__(32) Real dC_tile[kCols * kCols];
  const int64_t N = (f.T + f.L - 1) / f.L, L = f.L;
  const int64_t bh = blockIdx.x / N, c = blockIdx.x % N, t0 = c * L;
  const bool tensor_cores = kTensorCoreInput<In> && L % kTF32Rows == 0;
  const Real* dC = a.dC_out + (bh * N + c) * f.Dqk * f.Dv;
  const Real* dn = a.dn_out + (bh * N + c) * f.Dqk;
  const In* k = f.k + bh * f.T * f.Dqk;
  const In* v = f.v + bh * f.T * f.Dv;
  load_chunk_gates(f, bh, c, log_f, ii);
  if (threadIdx.x == 0) chunk = chunk_decay(log_f, ii, L, f.m_chunks[bh * N + c], key_log);
  __syncthreads();
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
    weight[j] = exp(key_log[j] - chunk.m_next);
    dw[j] = 0;
  }
  // (k_j^T dC') v_j and dv_j += w_j k_j^T dC', tile by tile of value columns
  for (int64_t e0 = 0; e0 < f.Dv; e0 += kCols) {
    for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
      load_tile<kCols>(k, t0, f.T, L, f.Dqk, d0, k_tile);
      for (int64_t index = threadIdx.x; index < kCols * kCols; index += blockDim.x) {
        const int64_t d = d0 + index / kCols, e = e0 + index % kCols;
        dC_tile[index] = d < f.Dqk && e < f.Dv ? dC[d * f.Dv + e] : Real(0);
      }
      __syncthreads();
      tile_product<false, false>(tensor_cores, d0 > 0, L, kCols, kCols, k_tile, kCols, dC_tile, kCols, product, kCols);
    }
    load_tile<kCols>(v, t0, f.T, L, f.Dv, e0, v_tile);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      Real sum = 0;
      for (int ee = 0; ee < kCols; ++ee) sum += product[j * kCols + ee] * v_tile[j * kCols + ee];
      dw[j] += sum;
    }
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t j = index / kCols, e = e0 + index % kCols;
      if (t0 + j < f.T && e < f.Dv) a.dv[(bh * f.T + t0 + j) * f.Dv + e] += weight[j] * product[index];
    }
    __syncthreads();
  }
  // dC' v_j + dn', and k_j . dn'; dk_j += w_j (dC' v_j + dn'), tile by tile of key columns
  for (int64_t d0 = 0; d0 < f.Dqk; d0 += kCols) {
    for (int64_t e0 = 0; e0 < f.Dv; e0 += kCols) {
      load_tile<kCols>(v, t0, f.T, L, f.Dv, e0, v_tile);
      for (int64_t index = threadIdx.x; index < kCols * kCols; index += blockDim.x) {
        const int64_t d = d0 + index / kCols, e = e0 + index % kCols;
        dC_tile[index] = d < f.Dqk && e < f.Dv ? dC[d * f.Dv + e] : Real(0);
      }
      __syncthreads();
      tile_product<false, true>(tensor_cores, e0 > 0, L, kCols, kCols, v_tile, kCols, dC_tile, kCols, product, kCols);
    }
    load_tile<kCols>(k, t0, f.T, L, f.Dqk, d0, k_tile);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      Real sum = 0;
      for (int dd = 0; dd < kCols && d0 + dd < f.Dqk; ++dd) sum += k_tile[j * kCols + dd] * dn[d0 + dd];
      dw[j] += sum;
    }
    for (int64_t index = threadIdx.x; index < L * kCols; index += blockDim.x) {
      const int64_t j = index / kCols, d = d0 + index % kCols;
      if (t0 + j < f.T && d < f.Dqk) a.dk[(bh * f.T + t0 + j) * f.Dqk + d] += weight[j] * (product[index] + dn[d]);
    }
    __syncthreads();
  }
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) a.da[(bh * N + c) * L + j] = dw[j] * weight[j];
}

// Launch 4: one block per (batch row, head): the stabilisers of the memory backwards, chunk by chunk.
template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) stabiliser_grads_kernel(MLSTMChunkwiseBackwardArgs<In, Real> a) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], key_log[kMaxChunk], scratch[kThreads / 32];
  __shared__ ChunkDecay<Real> chunk;
  const int64_t N = (f.T + f.L - 1) / f.L, L = f.L, bh = blockIdx.x;
  Real dm = a.grad_m[bh];
  for (int64_t c = N - 1; c >= 0; --c) {
    load_chunk_gates(f, bh, c, log_f, ii);
    const Real m_enter = f.m_chunks[bh * N + c];
    if (threadIdx.x == 0) chunk = chunk_decay(log_f, ii, L, m_enter, key_log);
    __syncthreads();
    const Real decay = chunk.decay, a_max = chunk.key_max, g = chunk.g;
    Real* da = a.da + (bh * N + c) * L;
    Real da_sum = 0, max_count = 0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      da_sum += da[j];
      max_count += key_log[j] == a_max;
    }
    da_sum = block_sum(da_sum, scratch);
    max_count = block_sum(max_count, scratch);
    Real d_gm = a.d_decay[bh * N + c] * decay;
    Real d_gm_max = 0, d_a_max = 0;
    route_max_grad(g + m_enter, a_max, dm - d_gm - da_sum, d_gm_max, d_a_max);
    d_gm += d_gm_max;
    Real routed_sum = 0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      const Real routed = da[j] + (key_log[j] == a_max ? d_a_max / max_count : Real(0));
      a.db[(bh * N + c) * L + j] -= routed;
      a.dii[(bh * N + c) * L + j] += routed;
      routed_sum += routed;
    }
    routed_sum = block_sum(routed_sum, scratch);  // also orders the writes above before the one below
    if (threadIdx.x == 0) a.db[(bh * N + c) * L + L - 1] += d_gm + routed_sum;
    dm = d_gm + a.dm_out[bh * N + c];
    __syncthreads();
  }
  if (threadIdx.x == 0) a.dm0[bh] = dm;
}

// Launch 5: one block per (batch row, head, chunk): b = cumsum(log f) within the chunk, log f = logsigmoid(f).
template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) gate_grads_kernel(MLSTMChunkwiseBackwardArgs<In, Real> a) {
  const MLSTMChunkwiseArgs<In, Real>& f = a.forward;
  __shared__ Real d_log_f[kMaxChunk];
  const int64_t N = (f.T + f.L - 1) / f.L, L = f.L;
  const int64_t bh = blockIdx.x / N, c = blockIdx.x % N, batch = bh / f.H;
  if (threadIdx.x == 0) {
    Real sum = 0;
    for (int64_t s = L - 1; s >= 0; --s) {
      sum += a.db[(bh * N + c) * L + s];
      d_log_f[s] = sum;
    }
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < L; s += blockDim.x) {
    const int64_t t = c * L + s;
    if (t >= f.T) continue;
    const bool real = f.mask == nullptr || f.mask[batch * f.T + t];
    a.df[bh * f.T + t] = real ? d_log_f[s] * sigmoid(-f.f[bh * f.T + t]) : Real(0);
    a.di[bh * f.T + t] = real ? a.dii[(bh * N + c) * L + s] : Real(0);
  }
}

}  // namespace

template <typename In, typename Real>
cudaError_t mlstm_chunkwise_backward(const MLSTMChunkwiseBackwardArgs<In, Real>& args, cudaStream_t stream) {
  const MLSTMChunkwiseArgs<In, Real>& f = args.forward;
  cudaError_t error = mlstm_chunk_states(f, stream);  // the memory entering every chunk, again
  const int64_t N = (f.T + f.L - 1) / f.L;
  const dim3 per_chunk(f.B * f.H * N);
  const dim3 per_tile(f.B * f.H, (f.Dqk + kStateTile - 1) / kStateTile, (f.Dv + kStateTile - 1) / kStateTile);
  if (error == cudaSuccess) {
    output_grads_kernel<In, Real><<<per_chunk, kThreads, 0, stream>>>(args);
    error = cudaGetLastError();
  }
  if (error == cudaSuccess) {
    memory_grads_kernel<In, Real><<<per_tile, kThreads, 0, stream>>>(args);
    error = cudaGetLastError();
  }
  if (error == cudaSuccess) {
    key_value_grads_kernel<In, Real><<<per_chunk, kThreads, 0, stream>>>(args);
    error = cudaGetLastError();
  }
  if (error == cudaSuccess) {
    stabiliser_grads_kernel<In, Real><<<f.B * f.H, kThreads, 0, stream>>>(args);
    error = cudaGetLastError();
  }
  if (error == cudaSuccess) {
    gate_grads_kernel<In, Real><<<per_chunk, kThreads, 0, stream>>>(args);
    error = cudaGetLastError();
  }
  return error;
}

template cudaError_t mlstm_chunkwise_backward<float, float>(const MLSTMChunkwiseBackwardArgs<float, float>&,
                                                            cudaStream_t);
template cudaError_t mlstm_chunkwise_backward<__nv_bfloat16, float>(
    const MLSTMChunkwiseBackwardArgs<__nv_bfloat16, float>&, cudaStream_t);
template cudaError_t mlstm_chunkwise_backward<__half, float>(const MLSTMChunkwiseBackwardArgs<__half, float>&,
                                                             cudaStream_t);

}  // namespace cuda
}  // namespace xlstm_hf
