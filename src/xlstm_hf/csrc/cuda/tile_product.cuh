// Products of float32 tiles in shared memory, on the TF32 tensor cores or on the CUDA cores: the matrix
// products of the chunkwise mLSTM backward go through this one function.
#pragma once

#include <mma.h>

#include <type_traits>

namespace xlstm_hf {
namespace cuda {

constexpr int kTF32Rows = 16;  // the m and n of a TF32 wmma product
constexpr int kTF32Depth = 8;  // its k

// element (row, column) of op(X), X stored with rows of `stride` floats, op(X) = X^T where kTransposed
template <bool kTransposed>
__device__ float element(const float* X, int stride, int row, int column) {
  return kTransposed ? X[column * stride + row] : X[row * stride + column];
}

// out [M, N] (+)= op(A) op(B) on the TF32 tensor cores, one 16 x 16 output tile per warp at a time
template <bool kTransposeA, bool kTransposeB>
__device__ void tf32_product(bool accumulate, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                             float* out, int ldo) {
  namespace wmma = nvcuda::wmma;
  using LayoutA = std::conditional_t<kTransposeA, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<kTransposeB, wmma::col_major, wmma::row_major>;
  const int tiles_n = N / kTF32Rows;
  for (int tile = threadIdx.x / 32; tile < M / kTF32Rows * tiles_n; tile += blockDim.x / 32) {
    const int m0 = tile / tiles_n * kTF32Rows, n0 = tile % tiles_n * kTF32Rows;
    float* out_tile = out + m0 * ldo + n0;
    wmma::fragment<wmma::accumulator, kTF32Rows, kTF32Rows, kTF32Depth, float> sums;
    if (accumulate) {
      wmma::load_matrix_sync(sums, out_tile, ldo, wmma::mem_row_major);
    } else {
      wmma::fill_fragment(sums, 0.0f);
    }
    for (int k0 = 0; k0 < K; k0 += kTF32Depth) {
      wmma::fragment<wmma::matrix_a, kTF32Rows, kTF32Rows, kTF32Depth, wmma::precision::tf32, LayoutA> a;
      wmma::fragment<wmma::matrix_b, kTF32Rows, kTF32Rows, kTF32Depth, wmma::precision::tf32, LayoutB> b;
      wmma::load_matrix_sync(a, kTransposeA ? A + k0 * lda + m0 : A + m0 * lda + k0, lda);
      wmma::load_matrix_sync(b, kTransposeB ? B + n0 * ldb + k0 : B + k0 * ldb + n0, ldb);
      for (int x = 0; x < a.num_elements; ++x) a.x[x] = wmma::__float_to_tf32(a.x[x]);
      for (int x = 0; x < b.num_elements; ++x) b.x[x] = wmma::__float_to_tf32(b.x[x]);
      wmma::mma_sync(sums, a, b, sums);
    }
    wmma::store_matrix_sync(out_tile, sums, ldo, wmma::mem_row_major);
  }
}

// out [M, N] = op(A) op(B), plus out where `accumulate`: A is [M, K] ([K, M] where kTransposeA) with rows of
// lda floats, B is [K, N] ([N, K] where kTransposeB) with rows of ldb, out has rows of ldo. On the TF32 tensor
// cores where `tensor_cores` (M, N multiples of 16, K of 8, every stride a multiple of 8 floats, the tiles
// 32-byte aligned), else in float32 on the CUDA cores. The caller synchronises the block before; this
// function does after.
template <bool kTransposeA, bool kTransposeB>
__device__ void tile_product(bool tensor_cores, bool accumulate, int M, int N, int K, const float* A, int lda,
                             const float* B, int ldb, float* out, int ldo) {
  if (tensor_cores) {
    tf32_product<kTransposeA, kTransposeB>(accumulate, M, N, K, A, lda, B, ldb, out, ldo);
  } else {
    for (int index = threadIdx.x; index < M * N; index += blockDim.x) {
      const int m = index / N, n = index % N;
      float sum = accumulate ? out[m * ldo + n] : 0.0f;
      for (int k = 0; k < K; ++k) sum += element<kTransposeA>(A, lda, m, k) * element<kTransposeB>(B, ldb, k, n);
      out[m * ldo + n] = sum;
    }
  }
  __syncthreads();
}

}  // namespace cuda
}  // namespace xlstm_hf
