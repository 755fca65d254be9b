// One mLSTM step (docs/design.md 1.1) for all heads of a layer in one launch: the decoding step. One block per
// (batch row, head); its threads own columns of the matrix memory C [Dqk, Dv], which is read and written
// once, coalesced, so the step runs at memory bandwidth. No allocation and no host synchronisation: it
// can be captured in a CUDA graph.
#include "launch.h"
#include "reduce.cuh"

#include "../pointwise.h"

namespace xlstm_hf {
namespace cuda {
namespace {

constexpr int kThreads = 256;


template <typename Real>
__global__ void __launch_bounds__(kThreads) mlstm_step_kernel(MLSTMStepArgs<Real> a) {
  extern __shared__ unsigned char shared_bytes[];
  Real* scaled_q = reinterpret_cast<Real*>(shared_bytes);  // q / sqrt(Dqk)
  Real* written_k = scaled_q + a.Dqk;                       // exp(i - m_next) * k
  Real* scratch = written_k + a.Dqk;                        // one value per warp
  const int64_t bh = blockIdx.x, b = bh / a.H;
  const bool real = a.mask == nullptr || a.mask[b];
  const auto [m_next, decay, write] = mlstm_gates(a.i[bh], a.f[bh], a.m[bh], real);  // padded: identity step
  const Real scale = Real(1) / sqrt(Real(a.Dqk));
  Real denominator = 0;
  for (int64_t d = threadIdx.x; d < a.Dqk; d += blockDim.x) {
    scaled_q[d] = a.q[bh * a.Dqk + d] * scale;
    written_k[d] = write * a.k[bh * a.Dqk + d];
    const Real n_next = decay * a.n[bh * a.Dqk + d] + written_k[d];
    a.n_out[bh * a.Dqk + d] = n_next;
    denominator += scaled_q[d] * n_next;
  }
  denominator = block_sum(denominator, scratch);  // also the barrier before scaled_q, written_k are read
  const Real normaliser = mlstm_normaliser(denominator, m_next, a.eps);
  const Real* C = a.C + bh * a.Dqk * a.Dv;
  Real* C_next = a.C_out + bh * a.Dqk * a.Dv;
  for (int64_t e = threadIdx.x; e < a.Dv; e += blockDim.x) {
    const Real v_e = a.v[bh * a.Dv + e];
    Real numerator = 0;
    for (int64_t d = 0; d < a.Dqk; ++d) {
      const Real c = decay * C[d * a.Dv + e] + written_k[d] * v_e;
      C_next[d * a.Dv + e] = c;
      numerator += scaled_q[d] * c;
    }
    a.h_out[bh * a.Dv + e] = real ? numerator / normaliser : Real(0);
  }
  if (threadIdx.x == 0) a.m_out[bh] = m_next;
}

}  // namespace

template <typename Real>
cudaError_t mlstm_step(const MLSTMStepArgs<Real>& args, cudaStream_t stream) {
  const size_t shared = (2 * args.Dqk + kThreads / 32) * sizeof(Real);
  mlstm_step_kernel<Real><<<args.B * args.H, kThreads, shared, stream>>>(args);
  return cudaGetLastError();
}

template cudaError_t mlstm_step<float>(const MLSTMStepArgs<float>&, cudaStream_t);
template cudaError_t mlstm_step<double>(const MLSTMStepArgs<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace xlstm_hf
