// The CUDA kernels' interface to the C++ bindings (../cuda_ops.cpp): plain structs of device pointers and
// sizes, one launcher per kernel. Only CUDA's runtime header here, so that the .cu files compile with
// nvcc alone (CI compiles them on machines without a GPU or a CUDA build of torch; docs/design.md 3).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace xlstm_hf {
namespace cuda {

// One mLSTM step for every (batch row, head), shapes as the CPU op (../mlstm_cpu.cpp): q, k [B, H, Dqk],
// v [B, H, Dv], i, f [B, H], C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H], mask [B] or null; all contiguous.
template <typename Real>
struct MLSTMStepArgs {
  const Real *q, *k, *v, *i, *f, *C, *n, *m;
  const bool* mask;
  Real *h_out, *C_out, *n_out, *m_out;
  int64_t B, H, Dqk, Dv;
  double eps;
};

// What each step of an sLSTM row is (the values of the CPU kernel's mask, ../slstm_cpu.cpp): padded, real, or
// real and the start of a sequence of a packed row, whose state before it is discarded (docs/design.md 1.7)
enum SLSTMStepKind : uint8_t { kPadded = 0, kReal = 1, kStart = 2 };

// sLSTM over a sequence, shapes and layouts as the CPU op (../slstm_cpu.cpp): gates_x [B, H, T, 4, D] with
// element strides (gx_b, gx_h, gx_t, gx_g) and D contiguous; recurrent_kernel [H, D, 4, D]; bias [H, 4, D];
// kinds [B, T] (SLSTMStepKind) or null (every step real); states [4, B, H, T + 1, D] (step 0 filled with the
// initial state); -> the states, h_out [B, T, H, D] and raw [B, H, T, 4, D], the gate pre-activations kept for
// the backward. The states before a start are zeroed in place, so that the backward reads them as zero.
// exchange: 3 x [B, H, D] zeros, through which the blocks of a head pass h (forward) or its gradient
// (backward) from step to step where a head's cells are split over several blocks.
template <typename Real>
struct SLSTMForwardArgs {
  const Real *gates_x, *kernel, *bias;
  const uint8_t* kinds;
  Real *states, *h_out, *raw, *exchange;
  int64_t B, H, T, D;
  int64_t gx_b, gx_h, gx_t, gx_g;
};

// The backward: grad_h [B, H, T, D] with element strides (gh_b, gh_h, gh_t), D contiguous; grad_final
// [4, B, H, D]; states and raw of the forward; the forward's kinds; -> grad_gates_x head-major [H, B, T, 4, D]
// and grad_initial [4, B, H, D]. No gradient reaches the state before a start.
template <typename Real>
struct SLSTMBackwardArgs {
  const Real *grad_h, *grad_final, *kernel, *states, *raw;
  const uint8_t* kinds;
  Real *grad_gates_x, *grad_initial, *exchange;
  int64_t B, H, T, D;
  int64_t gh_b, gh_h, gh_t;
};

// The chunkwise mLSTM forward (it keeps nothing for the backward, which recomputes), shapes as the reference
// (src/xlstm_hf/ops/mlstm/chunkwise.py): q, k [B, H, T, Dqk], v [B, H, T, Dv] of type In; i, f [B, H, T]
// float32; mask [B, T] or null; the initial state C [B, H, Dqk, Dv], n [B, H, Dqk],
// m [B, H]; chunks of L <= 64 steps. Scratch: C_chunks [B, H, N, Dqk, Dv], n_chunks [B, H, N, Dqk],
// m_chunks [B, H, N], the memory entering every chunk. -> h [B, H, T, Dv] (In) and the final state.
template <typename In, typename Real>
struct MLSTMChunkwiseArgs {
  const In *q, *k, *v;
  const Real *i, *f, *C, *n, *m;
  const bool* mask;
  Real *C_chunks, *n_chunks, *m_chunks, *C_final, *n_final, *m_final;
  In* h;
  int64_t B, H, T, Dqk, Dv, L;
  double eps;
};

// The chunkwise mLSTM backward (the specification: src/xlstm_hf/ops/mlstm/chunkwise_backward.py): the
// forward's arguments (their h and final-state pointers serve as scratch) and the gradients of its outputs,
// grad_h [B, H, T, Dv] of type In and grad_C, grad_n, grad_m of the final state. Float32 scratch:
// dC_out [B, H, N, Dqk, Dv] and dn_out [B, H, N, Dqk] (what the outputs send to the memory entering each
// chunk, then the gradient of the memory leaving it), dm_out, d_decay (zeroed) [B, H, N], da, db, dii
// [B, H, N, L]. -> float32 dq, dk, dv (shapes of q, k, v), di, df [B, H, T], dC0, dn0, dm0 (initial state).
template <typename In, typename Real>
struct MLSTMChunkwiseBackwardArgs {
  MLSTMChunkwiseArgs<In, Real> forward;
  const In* grad_h;
  const Real *grad_C, *grad_n, *grad_m;
  Real *dC_out, *dn_out, *dm_out, *d_decay, *da, *db, *dii;
  Real *dq, *dk, *dv, *di, *df, *dC0, *dn0, *dm0;
};

// Each launcher checks nothing the binding has not checked; it returns the launch's error, if any.
template <typename Real>
cudaError_t mlstm_step(const MLSTMStepArgs<Real>& args, cudaStream_t stream);
template <typename Real>
cudaError_t slstm_forward(const SLSTMForwardArgs<Real>& args, cudaStream_t stream);
template <typename Real>
cudaError_t slstm_backward(const SLSTMBackwardArgs<Real>& args, cudaStream_t stream);
template <typename In, typename Real>
cudaError_t mlstm_chunkwise_forward(const MLSTMChunkwiseArgs<In, Real>& args, cudaStream_t stream);
template <typename In, typename Real>
cudaError_t mlstm_chunk_states(const MLSTMChunkwiseArgs<In, Real>& args, cudaStream_t stream);
template <typename In, typename Real>
cudaError_t mlstm_chunkwise_backward(const MLSTMChunkwiseBackwardArgs<In, Real>& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace xlstm_hf
