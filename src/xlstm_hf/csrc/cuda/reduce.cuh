// Reductions over a thread block, shared by the CUDA kernels.
#pragma once

namespace xlstm_hf {
namespace cuda {

// The sum of `value` over the block (every thread gets it); `scratch` holds a value per warp.
template <typename Real>
__device__ Real block_sum(Real value, Real* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffff, value, offset);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  Real total = 0;
  for (int w = 0; w < (blockDim.x + 31) / 32; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace xlstm_hf
