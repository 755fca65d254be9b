// The chunkwise mLSTM (docs/design.md 1.3) forward on the GPU, in two launches (the backward:
// mlstm_chunkwise_backward.cu):
//   1. the memory entering every chunk: one block per (batch row, head, 32 x 32 tile of C), walking the
//      chunks in order; each chunk adds its keys and values weighted by their gates in one product;
//   2. the outputs: one block per (batch row, head, chunk, 32 columns of h), the attention-like product
//      within the chunk plus the read of the memory that entered it, under the stabiliser of the step
//      recurrence, so that the forms agree to rounding.
// Float32 arithmetic on float32, bfloat16 or float16 inputs; the per-element math is pointwise.h's.
// Layouts in launch.h. Tiles in shared memory; with bfloat16 or float16 inputs and chunks of a multiple of
// 16 steps, the products within a chunk (Q K^T and S V, S rounded to the input type), the keys and
// values written into the memory ((w K)^T V) and the read of the memory (Q C, in TF32) run on the tensor
// cores (wmma), the rest in float32 on the CUDA cores.
#include <mma.h>

#include "chunk_tiles.cuh"

namespace xlstm_hf {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 32;      // rows or columns of a tile of C or h
constexpr int kMaxChunk = 64;  // L
constexpr int kWmma = 16;      // the m, n, k of a wmma product

// update[d][e] = sum_j weight_j k_j[d0 + d] v_j[e0 + e] for a 32 x 32 tile of the memory: (w K)^T V on the
// tensor cores, w K rounded to the input type; kw16 [32, L] and v16 [L, 32] operand tiles
template <typename In, typename Real>
__device__ void chunk_update_tensor_cores(const MLSTMChunkwiseArgs<In, Real>& a, int64_t bh, int64_t c, int64_t e0,
                                          const Real* k_tile, const Real* weight, In* kw16, In* v16, Real* update) {
  namespace wmma = nvcuda::wmma;
  const int64_t L = a.L;
  for (int64_t index = threadIdx.x; index < kTile * L; index += blockDim.x) {
    const int64_t d = index / L, j = index % L;
    kw16[index] = from_real<In, Real>(weight[j] * k_tile[j * kTile + d]);
  }
  load_input_tile<kTile>(a.v + bh * a.T * a.Dv, c * L, a.T, L, a.Dv, e0, v16);
  __syncthreads();
  const int warp = threadIdx.x / 32, tm = warp / (kTile / kWmma), tn = warp % (kTile / kWmma);
  if (tm < kTile / kWmma) {
    wmma::fragment<wmma::accumulator, kWmma, kWmma, kWmma, float> sums;
    wmma::fill_fragment(sums, 0.0f);
    for (int64_t ks = 0; ks < L / kWmma; ++ks) {
      wmma::fragment<wmma::matrix_a, kWmma, kWmma, kWmma, In, wmma::row_major> kw_fragment;
      wmma::fragment<wmma::matrix_b, kWmma, kWmma, kWmma, In, wmma::row_major> v_fragment;
      wmma::load_matrix_sync(kw_fragment, kw16 + tm * kWmma * L + ks * kWmma, L);
      wmma::load_matrix_sync(v_fragment, v16 + ks * kWmma * kTile + tn * kWmma, kTile);
      wmma::mma_sync(sums, kw_fragment, v_fragment, sums);
    }
    wmma::store_matrix_sync(update + tm * kWmma * kTile + tn * kWmma, sums, kTile, wmma::mem_row_major);
  }
  __syncthreads();
}

template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) chunk_states_kernel(MLSTMChunkwiseArgs<In, Real> a) {
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], key_log[kMaxChunk], weight[kMaxChunk];
  __shared__ ChunkDecay<Real> chunk;
  __shared__ Real k_tile[kMaxChunk * kTile], v_tile[kMaxChunk * kTile];
  __shared__ __align__(32) Real update[kTile * kTile];
  __shared__ __align__(32) unsigned char tensor_core_tiles[2 * kTile * kMaxChunk * 2];  // kw16, v16
  const int64_t bh = blockIdx.x, d0 = blockIdx.y * kTile, e0 = blockIdx.z * kTile;
  const int64_t N = (a.T + a.L - 1) / a.L;
  const int e = threadIdx.x % kTile, row = threadIdx.x / kTile;  // this thread: C[d0 + row + 8 r, e0 + e]
  constexpr int kRows = kTile * kTile / kThreads;
  const bool owns_n = blockIdx.z == 0 && threadIdx.x < kTile && d0 + threadIdx.x < a.Dqk;
  Real C[kRows], n = owns_n ? a.n[bh * a.Dqk + d0 + threadIdx.x] : Real(0), m = a.m[bh];
  for (int r = 0; r < kRows; ++r) {
    const int64_t d = d0 + row + r * (kThreads / kTile);
    C[r] = d < a.Dqk && e0 + e < a.Dv ? a.C[(bh * a.Dqk + d) * a.Dv + e0 + e] : Real(0);
  }
  for (int64_t c = 0; c < N; ++c) {
    // the memory entering chunk c
    for (int r = 0; r < kRows; ++r) {
      const int64_t d = d0 + row + r * (kThreads / kTile);
      if (d < a.Dqk && e0 + e < a.Dv) a.C_chunks[((bh * N + c) * a.Dqk + d) * a.Dv + e0 + e] = C[r];
    }
    if (owns_n) a.n_chunks[(bh * N + c) * a.Dqk + d0 + threadIdx.x] = n;
    if (blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) a.m_chunks[bh * N + c] = m;
    // its gates: key-value j enters with weight exp(key_log_j - m_next), the memory decays by exp(g + m - m_next)
    load_chunk_gates(a, bh, c, log_f, ii);
    if (threadIdx.x == 0) chunk = chunk_decay(log_f, ii, a.L, m, key_log);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < a.L; j += blockDim.x) weight[j] = exp(key_log[j] - chunk.m_next);
    load_tile<kTile>(a.k + bh * a.T * a.Dqk, c * a.L, a.T, a.L, a.Dqk, d0, k_tile);
    load_tile<kTile>(a.v + bh * a.T * a.Dv, c * a.L, a.T, a.L, a.Dv, e0, v_tile);
    __syncthreads();
    bool tensor_cores = false;
    if constexpr (kTensorCoreInput<In>) {
      if (a.L % kWmma == 0) {
        In* tiles = reinterpret_cast<In*>(tensor_core_tiles);
        chunk_update_tensor_cores(a, bh, c, e0, k_tile, weight, tiles, tiles + kTile * kMaxChunk, update);
        tensor_cores = true;
      }
    }
    for (int r = 0; r < kRows; ++r) {
      const int local_d = row + r * (kThreads / kTile);
      Real sum = 0;
      if (tensor_cores) {
        sum = update[local_d * kTile + e];
      } else {
        for (int64_t j = 0; j < a.L; ++j) sum += weight[j] * k_tile[j * kTile + local_d] * v_tile[j * kTile + e];
      }
      C[r] = chunk.decay * C[r] + sum;
    }
    if (owns_n) {
      Real sum = 0;
      for (int64_t j = 0; j < a.L; ++j) sum += weight[j] * k_tile[j * kTile + threadIdx.x];
      n = chunk.decay * n + sum;
    }
    m = chunk.m_next;
    __syncthreads();  // shared memory free for the next chunk
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t d = d0 + row + r * (kThreads / kTile);
    if (d < a.Dqk && e0 + e < a.Dv) a.C_final[(bh * a.Dqk + d) * a.Dv + e0 + e] = C[r];
  }
  if (owns_n) a.n_final[bh * a.Dqk + d0 + threadIdx.x] = n;
  if (blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) a.m_final[bh] = m;
}

// ---- the products within a chunk on the tensor cores (bfloat16, float16 inputs) ----------------------------

constexpr int kStride = kMaxChunk + 4;                                     // of S's rows: a multiple of 4 for wmma
constexpr int kTensorCoreBytes = (kMaxChunk * kMaxChunk + kMaxChunk * kTile) * 2;  // S and V in the input type

// S[t][j] = q_t . k_j for the tiles on and below the diagonal, and denominator[t] += read_scale[t] q_t . n,
// slice by slice of 16 key columns; q16, k16: [L, 16] operand tiles in the input type
template <typename In, typename Real>
__device__ void chunk_scores_tensor_cores(const MLSTMChunkwiseArgs<In, Real>& a, int64_t bh, int64_t c, Real* S,
                                          Real* denominator, const Real* read_scale, In* q16, In* k16) {
  namespace wmma = nvcuda::wmma;
  const int64_t N = (a.T + a.L - 1) / a.L, t0 = c * a.L, tiles = a.L / kWmma;
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  wmma::fragment<wmma::accumulator, kWmma, kWmma, kWmma, float> scores[2];  // tiles warp and warp + warps
  for (auto& fragment : scores) wmma::fill_fragment(fragment, 0.0f);
  const Real* n = a.n_chunks + (bh * N + c) * a.Dqk;
  for (int64_t d0 = 0; d0 < a.Dqk; d0 += kWmma) {
    load_input_tile<kWmma>(a.q + bh * a.T * a.Dqk, t0, a.T, a.L, a.Dqk, d0, q16);
    load_input_tile<kWmma>(a.k + bh * a.T * a.Dqk, t0, a.T, a.L, a.Dqk, d0, k16);
    __syncthreads();
    for (int f = 0; f < 2; ++f) {
      const int64_t tile = warp + f * warps, tm = tile / tiles, tn = tile % tiles;
      if (tile >= tiles * tiles || tn > tm) continue;
      wmma::fragment<wmma::matrix_a, kWmma, kWmma, kWmma, In, wmma::row_major> q_fragment;
      wmma::fragment<wmma::matrix_b, kWmma, kWmma, kWmma, In, wmma::col_major> k_fragment;  // K^T
      wmma::load_matrix_sync(q_fragment, q16 + tm * kWmma * kWmma, kWmma);
      wmma::load_matrix_sync(k_fragment, k16 + tn * kWmma * kWmma, kWmma);
      wmma::mma_sync(scores[f], q_fragment, k_fragment, scores[f]);
    }
    for (int64_t t = threadIdx.x; t < a.L; t += blockDim.x) {
      Real sum = 0;
      for (int dd = 0; dd < kWmma && d0 + dd < a.Dqk; ++dd) sum += to_real<Real>(q16[t * kWmma + dd]) * n[d0 + dd];
      denominator[t] += read_scale[t] * sum;
    }
    __syncthreads();
  }
  for (int f = 0; f < 2; ++f) {
    const int64_t tile = warp + f * warps, tm = tile / tiles, tn = tile % tiles;
    if (tile < tiles * tiles && tn <= tm) {
      wmma::store_matrix_sync(S + tm * kWmma * kStride + tn * kWmma, scores[f], kStride, wmma::mem_row_major);
    }
  }
  __syncthreads();
}

// out [L, kTile] = S V for the value columns e0 .. e0 + kTile, S rounded to the input type
template <typename In, typename Real>
__device__ void chunk_values_tensor_cores(const MLSTMChunkwiseArgs<In, Real>& a, int64_t bh, int64_t c, int64_t e0,
                                          const Real* S, In* s16, In* v16, Real* out) {
  namespace wmma = nvcuda::wmma;
  const int64_t L = a.L, tiles = L / kWmma;
  for (int64_t index = threadIdx.x; index < L * L; index += blockDim.x) {
    s16[index] = from_real<In, Real>(S[index / L * kStride + index % L]);
  }
  load_input_tile<kTile>(a.v + bh * a.T * a.Dv, c * L, a.T, L, a.Dv, e0, v16);
  __syncthreads();
  const int warp = threadIdx.x / 32, tm = warp / (kTile / kWmma), tn = warp % (kTile / kWmma);
  if (tm < tiles) {
    wmma::fragment<wmma::accumulator, kWmma, kWmma, kWmma, float> values;
    wmma::fill_fragment(values, 0.0f);
    for (int64_t ks = 0; ks <= tm; ++ks) {  // S is zero above the diagonal
      wmma::fragment<wmma::matrix_a, kWmma, kWmma, kWmma, In, wmma::row_major> s_fragment;
      wmma::fragment<wmma::matrix_b, kWmma, kWmma, kWmma, In, wmma::row_major> v_fragment;
      wmma::load_matrix_sync(s_fragment, s16 + tm * kWmma * L + ks * kWmma, L);
      wmma::load_matrix_sync(v_fragment, v16 + ks * kWmma * kTile + tn * kWmma, kTile);
      wmma::mma_sync(values, s_fragment, v_fragment, values);
    }
    wmma::store_matrix_sync(out + tm * kWmma * kTile + tn * kWmma, values, kTile, wmma::mem_row_major);
  }
  __syncthreads();
}

// q C_enter for a chunk's rows and 32 value columns on the TF32 tensor cores, accumulated over slices of
// the key width: warp w holds output tile (w / 2, w % 2) of the [L, 32] result
template <typename Real>
struct MemoryRead {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kWmma, kWmma, 8, float> sums;
  int64_t tiles = 0;

  __device__ void start(bool enabled, int64_t L) {
    tiles = enabled ? L / kWmma : 0;
    nvcuda::wmma::fill_fragment(sums, 0.0f);
  }

  // q_tile [L, kTile] times C_tile [kTile, kTile], both float32 rows in shared memory
  __device__ void add(const Real* q_tile, const Real* C_tile) {
    namespace wmma = nvcuda::wmma;
    const int warp = threadIdx.x / 32, tm = warp / (kTile / kWmma), tn = warp % (kTile / kWmma);
    if (tm >= tiles) return;
    for (int ks = 0; ks < kTile / 8; ++ks) {
      wmma::fragment<wmma::matrix_a, kWmma, kWmma, 8, wmma::precision::tf32, wmma::row_major> q_fragment;
      wmma::fragment<wmma::matrix_b, kWmma, kWmma, 8, wmma::precision::tf32, wmma::row_major> C_fragment;
      wmma::load_matrix_sync(q_fragment, q_tile + tm * kWmma * kTile + ks * 8, kTile);
      wmma::load_matrix_sync(C_fragment, C_tile + ks * 8 * kTile + tn * kWmma, kTile);
      for (int x = 0; x < q_fragment.num_elements; ++x) q_fragment.x[x] = wmma::__float_to_tf32(q_fragment.x[x]);
      for (int x = 0; x < C_fragment.num_elements; ++x) C_fragment.x[x] = wmma::__float_to_tf32(C_fragment.x[x]);
      wmma::mma_sync(sums, q_fragment, C_fragment, sums);
    }
  }

  // the result into out [L, kTile] (float32 rows), visible to the whole block on return
  __device__ void finish(Real* out) {
    const int warp = threadIdx.x / 32, tm = warp / (kTile / kWmma), tn = warp % (kTile / kWmma);
    if (tm < tiles) {
      nvcuda::wmma::store_matrix_sync(out + tm * kWmma * kTile + tn * kWmma, sums, kTile, nvcuda::wmma::mem_row_major);
    }
    __syncthreads();
  }
};

template <typename In, typename Real>
__global__ void __launch_bounds__(kThreads) chunk_outputs_kernel(MLSTMChunkwiseArgs<In, Real> a) {
  __shared__ Real log_f[kMaxChunk], ii[kMaxChunk], m_t[kMaxChunk], read_scale[kMaxChunk], denominator[kMaxChunk];
  __shared__ __align__(32) Real S[kMaxChunk * kStride];  // [t][j]
  __shared__ __align__(32) Real left[kMaxChunk * kTile];
  __shared__ __align__(32) Real right[kMaxChunk * kTile];
  __shared__ __align__(32) unsigned char tensor_core_tiles[kTensorCoreBytes];
  const int64_t N = (a.T + a.L - 1) / a.L;
  const int64_t bh = blockIdx.x / N, c = blockIdx.x % N, e0 = blockIdx.y * kTile, t0 = c * a.L;
  const Real scale = Real(1) / sqrt(Real(a.Dqk));
  const Real m_enter = a.m_chunks[bh * N + c];
  bool tensor_cores = false;
  if constexpr (kTensorCoreInput<In>) tensor_cores = a.L % kWmma == 0;
  load_chunk_gates(a, bh, c, log_f, ii);
  // the stabiliser of every step: the largest log weight of its keys and of the entering memory
  for (int64_t t = threadIdx.x; t < a.L; t += blockDim.x) {
    Real largest = -INFINITY;
    const Real rho = visit_keys(log_f, ii, t, [&](int64_t, Real key) { largest = fmax(largest, key); }) + m_enter;
    m_t[t] = fmax(largest, rho);
    read_scale[t] = scale * exp(rho - m_t[t]);
    denominator[t] = 0;
  }
  for (int64_t index = threadIdx.x; index < a.L * kStride; index += blockDim.x) S[index] = 0;
  __syncthreads();
  // S = Q K^T over the chunk, slice by slice of the key width; the read of n alongside
  if constexpr (kTensorCoreInput<In>) {
    if (tensor_cores) {
      In* tiles = reinterpret_cast<In*>(tensor_core_tiles);
      chunk_scores_tensor_cores(a, bh, c, S, denominator, read_scale, tiles, tiles + kMaxChunk * kWmma);
    }
  }
  for (int64_t d0 = 0; !tensor_cores && d0 < a.Dqk; d0 += kTile) {
    load_tile<kTile>(a.q + bh * a.T * a.Dqk, t0, a.T, a.L, a.Dqk, d0, left);
    load_tile<kTile>(a.k + bh * a.T * a.Dqk, t0, a.T, a.L, a.Dqk, d0, right);
    __syncthreads();
    for (int64_t index = threadIdx.x; index < a.L * a.L; index += blockDim.x) {
      const int64_t t = index / a.L, j = index % a.L;
      if (j > t) continue;
      Real sum = 0;
      for (int dd = 0; dd < kTile; ++dd) sum += left[t * kTile + dd] * right[j * kTile + dd];
      S[t * kStride + j] += sum;
    }
    for (int64_t t = threadIdx.x; t < a.L; t += blockDim.x) {
      Real sum = 0;
      for (int dd = 0; dd < kTile && d0 + dd < a.Dqk; ++dd) {
        sum += left[t * kTile + dd] * a.n_chunks[(bh * N + c) * a.Dqk + d0 + dd];
      }
      denominator[t] += read_scale[t] * sum;
    }
    __syncthreads();
  }
  // the gate weights row by row, and the sum of every row into the denominator
  for (int64_t t = threadIdx.x; t < a.L; t += blockDim.x) {
    Real* S_t = S + t * kStride;
    Real sum = 0;
    visit_keys(log_f, ii, t, [&](int64_t j, Real key) {
      S_t[j] *= scale * exp(key - m_t[t]);
      sum += S_t[j];
    });
    for (int64_t j = t + 1; j < a.L; ++j) S_t[j] = 0;
    denominator[t] += sum;
  }
  __syncthreads();
  // numerator = S V + (read_scale q) C_enter for this block's columns
  const int e = threadIdx.x % kTile, row = threadIdx.x / kTile;  // this thread: h[t0 + row + 8 r, e0 + e]
  constexpr int kRows = kMaxChunk * kTile / kThreads;
  Real numerator[kRows];
  if constexpr (kTensorCoreInput<In>) {
    if (tensor_cores) {
      In* tiles = reinterpret_cast<In*>(tensor_core_tiles);
      chunk_values_tensor_cores(a, bh, c, e0, S, tiles, tiles + kMaxChunk * kMaxChunk, left);  // S V -> left
      for (int r = 0; r < kRows; ++r) {
        const int64_t t = row + r * (kThreads / kTile);
        numerator[r] = t < a.L ? left[t * kTile + e] : Real(0);
      }
      __syncthreads();
    }
  }
  if (!tensor_cores) {
    load_tile<kTile>(a.v + bh * a.T * a.Dv, t0, a.T, a.L, a.Dv, e0, right);
    __syncthreads();
    for (int r = 0; r < kRows; ++r) {
      const int64_t t = row + r * (kThreads / kTile);
      Real sum = 0;
      for (int64_t j = 0; t < a.L && j <= t; ++j) sum += S[t * kStride + j] * right[j * kTile + e];
      numerator[r] = sum;
    }
    __syncthreads();
  }
  // + read_scale q C_enter, slice by slice of the key width (TF32 tensor cores with half-precision inputs)
  const Real* C_enter = a.C_chunks + (bh * N + c) * a.Dqk * a.Dv;
  MemoryRead<Real> read;
  if constexpr (kTensorCoreInput<In>) read.start(tensor_cores, a.L);
  for (int64_t d0 = 0; d0 < a.Dqk; d0 += kTile) {
    load_tile<kTile>(a.q + bh * a.T * a.Dqk, t0, a.T, a.L, a.Dqk, d0, left);
    for (int64_t index = threadIdx.x; index < kTile * kTile; index += blockDim.x) {  // C_enter[d0 + dd, e0 + e']
      const int64_t d = d0 + index / kTile, column = e0 + index % kTile;
      right[index] = d < a.Dqk && column < a.Dv ? C_enter[d * a.Dv + column] : Real(0);
    }
    __syncthreads();
    if (tensor_cores) {
      if constexpr (kTensorCoreInput<In>) read.add(left, right);
    } else {
      for (int r = 0; r < kRows; ++r) {
        const int64_t t = row + r * (kThreads / kTile);
        if (t >= a.L) continue;
        Real sum = 0;
        for (int dd = 0; dd < kTile; ++dd) sum += left[t * kTile + dd] * right[dd * kTile + e];
        numerator[r] += read_scale[t] * sum;
      }
    }
    __syncthreads();
  }
  if constexpr (kTensorCoreInput<In>) {
    if (tensor_cores) {
      read.finish(S);  // S is free again: q C_enter as [L, kTile]
      for (int r = 0; r < kRows; ++r) {
        const int64_t t = row + r * (kThreads / kTile);
        if (t < a.L) numerator[r] += read_scale[t] * S[t * kTile + e];
      }
    }
  }
  const int64_t batch = bh / a.H;
  for (int r = 0; r < kRows; ++r) {
    const int64_t t = row + r * (kThreads / kTile);
    if (t >= a.L || t0 + t >= a.T || e0 + e >= a.Dv) continue;
    const bool real = a.mask == nullptr || a.mask[batch * a.T + t0 + t];
    const Real normaliser = mlstm_normaliser(denominator[t], m_t[t], a.eps);
    a.h[(bh * a.T + t0 + t) * a.Dv + e0 + e] = from_real<In, Real>(real ? numerator[r] / normaliser : Real(0));
  }
}

}  // namespace

template <typename In, typename Real>
cudaError_t mlstm_chunk_states(const MLSTMChunkwiseArgs<In, Real>& args, cudaStream_t stream) {
  if (args.L < 1 || args.L > kMaxChunk) return cudaErrorInvalidValue;
  const dim3 state_grid(args.B * args.H, (args.Dqk + kTile - 1) / kTile, (args.Dv + kTile - 1) / kTile);
  chunk_states_kernel<In, Real><<<state_grid, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename In, typename Real>
cudaError_t mlstm_chunkwise_forward(const MLSTMChunkwiseArgs<In, Real>& args, cudaStream_t stream) {
  const cudaError_t error = mlstm_chunk_states(args, stream);
  if (error != cudaSuccess) return error;
  const int64_t N = (args.T + args.L - 1) / args.L;
  const dim3 output_grid(args.B * args.H * N, (args.Dv + kTile - 1) / kTile);
  chunk_outputs_kernel<In, Real><<<output_grid, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

template cudaError_t mlstm_chunk_states<float, float>(const MLSTMChunkwiseArgs<float, float>&, cudaStream_t);
template cudaError_t mlstm_chunk_states<__nv_bfloat16, float>(const MLSTMChunkwiseArgs<__nv_bfloat16, float>&,
                                                              cudaStream_t);
template cudaError_t mlstm_chunk_states<__half, float>(const MLSTMChunkwiseArgs<__half, float>&, cudaStream_t);
template cudaError_t mlstm_chunkwise_forward<float, float>(const MLSTMChunkwiseArgs<float, float>&, cudaStream_t);
template cudaError_t mlstm_chunkwise_forward<__nv_bfloat16, float>(const MLSTMChunkwiseArgs<__nv_bfloat16, float>&,
                                                                   cudaStream_t);
template cudaError_t mlstm_chunkwise_forward<__half, float>(const MLSTMChunkwiseArgs<__half, float>&, cudaStream_t);

}  // namespace cuda
}  // namespace xlstm_hf
