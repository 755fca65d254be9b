// sLSTM over a whole sequence on the GPU, forward and backward: one launch each, persistent over time.
// One block per (batch row, head), whose recurrence is independent of the others (the recurrent matrix
// is block-diagonal per head): thread j of the block owns gate unit j of the 4 * D pre-activations and
// the first D threads own the cells. The previous output h and the step's pre-activations live in
// shared memory; the recurrent matrix is read from L2 each step. The per-unit math is pointwise.h's,
// shared with the CPU kernels. Layouts as in launch.h.
#include "launch.h"

#include "../pointwise.h"

namespace xlstm_hf {
namespace cuda {
namespace {

constexpr int kMaxThreads = 1024;

int threads_for(int64_t D) {
  const int64_t units = 4 * D;
  return static_cast<int>(units < kMaxThreads ? (units + 31) / 32 * 32 : kMaxThreads);
}

// raw[j] = gates_x[g, e] + bias[j] + sum_d h[d] * kernel[d, j] for j = g * D + e, j over the 4 * D units
template <typename Real>
__device__ void gate_preactivations(const Real* gates_x, int64_t gate_stride, const Real* bias, const Real* kernel,
                                    const Real* h, int64_t D, Real* raw) {
  for (int64_t j = threadIdx.x; j < 4 * D; j += blockDim.x) {
    Real sum = gates_x[(j / D) * gate_stride + j % D] + bias[j];
    for (int64_t d = 0; d < D; ++d) sum += h[d] * kernel[d * 4 * D + j];
    raw[j] = sum;
  }
}

template <typename Real>
__global__ void slstm_forward_kernel(SLSTMForwardArgs<Real> a) {
  extern __shared__ unsigned char shared_bytes[];
  const int64_t D = a.D, G = 4 * D;
  Real* h = reinterpret_cast<Real*>(shared_bytes);  // [D] the previous output
  const int64_t pair = blockIdx.x, b = pair / a.H, head = pair % a.H;
  const int64_t plane = a.B * a.H * (a.T + 1) * D;  // between the h, c, n, m planes of states
  Real* states = a.states + pair * (a.T + 1) * D;
  const Real* kernel = a.kernel + head * D * G;
  const Real* bias = a.bias + head * G;
  for (int64_t e = threadIdx.x; e < D; e += blockDim.x) h[e] = states[e];
  __syncthreads();
  for (int64_t t = 0; t < a.T; ++t) {
    Real* raw = a.raw + (pair * a.T + t) * G;  // this step's gate pre-activations
    gate_preactivations(a.gates_x + b * a.gx_b + head * a.gx_h + t * a.gx_t, a.gx_g, bias, kernel, h, D, raw);
    __syncthreads();  // raw complete (the block's own writes), h read by every thread
    const bool real = a.mask == nullptr || a.mask[b * a.T + t];
    Real* h_t = a.h_out + ((b * a.T + t) * a.H + head) * D;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      const int64_t now = t * D + e, next = (t + 1) * D + e;
      const SLSTMUnit<Real> prev{states[now], states[plane + now], states[2 * plane + now], states[3 * plane + now]};
      const SLSTMUnit<Real> updated =
          real ? slstm_unit_forward(raw[e], raw[D + e], raw[2 * D + e], raw[3 * D + e], prev) : prev;
      states[next] = updated.h;
      states[plane + next] = updated.c;
      states[2 * plane + next] = updated.n;
      states[3 * plane + next] = updated.m;
      h_t[e] = real ? updated.h : Real(0);  // a padded step passes the state through and outputs 0
      h[e] = updated.h;
    }
    __syncthreads();  // the new h complete before the next step reads it
  }
}

// dh[d] = sum_j kernel[d, j] * draw[j]: a warp per row d, its lanes along the (contiguous) row
template <typename Real>
__device__ void recurrent_input_grad(const Real* kernel, const Real* draw, int64_t D, Real* dh) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int64_t d = warp; d < D; d += warps) {
    Real sum = 0;
    for (int64_t j = lane; j < 4 * D; j += 32) sum += kernel[d * 4 * D + j] * draw[j];
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffff, sum, offset);
    if (lane == 0) dh[d] = sum;
  }
}

template <typename Real>
__global__ void slstm_backward_kernel(SLSTMBackwardArgs<Real> a) {
  extern __shared__ unsigned char shared_bytes[];
  const int64_t D = a.D, G = 4 * D;
  Real* draw = reinterpret_cast<Real*>(shared_bytes);  // [4D] gradients of the gate pre-activations
  Real* dh_carry = draw + G;                            // [D] gradient of h through the recurrence
  const int64_t pair = blockIdx.x, b = pair / a.H, head = pair % a.H;
  const int64_t plane = a.B * a.H * (a.T + 1) * D, carry_plane = a.B * a.H * D;
  const Real* states = a.states + pair * (a.T + 1) * D;
  const Real* kernel = a.kernel + head * D * G;
  // the gradients of the cell state (c, n, m) of unit e = threadIdx.x + s * blockDim.x, in registers
  constexpr int kSlots = 2;  // D <= kSlots * blockDim.x (checked by the launcher)
  Real dc[kSlots], dn[kSlots], dm[kSlots];
  for (int s = 0; s < kSlots; ++s) {
    const int64_t e = threadIdx.x + s * blockDim.x;
    if (e < D) {
      dh_carry[e] = a.grad_final[pair * D + e];
      dc[s] = a.grad_final[carry_plane + pair * D + e];
      dn[s] = a.grad_final[2 * carry_plane + pair * D + e];
      dm[s] = a.grad_final[3 * carry_plane + pair * D + e];
    }
  }
  for (int64_t t = a.T - 1; t >= 0; --t) {
    Real* dgx_t = a.grad_gates_x + ((head * a.B + b) * a.T + t) * G;
    const bool real = a.mask == nullptr || a.mask[b * a.T + t];
    if (!real) {  // a padded step passed every state through: no gradient to its gates
      for (int64_t j = threadIdx.x; j < G; j += blockDim.x) dgx_t[j] = Real(0);
      continue;
    }
    const Real* raw = a.raw + (pair * a.T + t) * G;
    for (int s = 0; s < kSlots; ++s) {
      const int64_t e = threadIdx.x + s * blockDim.x;
      if (e >= D) continue;
      const int64_t now = t * D + e;
      const SLSTMUnit<Real> prev{states[now], states[plane + now], states[2 * plane + now], states[3 * plane + now]};
      const Real dh = a.grad_h[b * a.gh_b + head * a.gh_h + t * a.gh_t + e] + dh_carry[e];
      const SLSTMUnitGrad<Real> grad =
          slstm_unit_backward(raw[e], raw[D + e], raw[2 * D + e], raw[3 * D + e], prev, dh, dc[s], dn[s], dm[s]);
      draw[e] = grad.di;
      draw[D + e] = grad.df;
      draw[2 * D + e] = grad.dz;
      draw[3 * D + e] = grad.do_;
      dc[s] = grad.dc_prev;
      dn[s] = grad.dn_prev;
      dm[s] = grad.dm_prev;
    }
    __syncthreads();  // draw complete, dh_carry read
    for (int64_t j = threadIdx.x; j < G; j += blockDim.x) dgx_t[j] = draw[j];
    recurrent_input_grad(kernel, draw, D, dh_carry);  // raw = ... + h_prev @ kernel
    __syncthreads();
  }
  for (int s = 0; s < kSlots; ++s) {
    const int64_t e = threadIdx.x + s * blockDim.x;
    if (e < D) {
      a.grad_initial[pair * D + e] = dh_carry[e];
      a.grad_initial[carry_plane + pair * D + e] = dc[s];
      a.grad_initial[2 * carry_plane + pair * D + e] = dn[s];
      a.grad_initial[3 * carry_plane + pair * D + e] = dm[s];
    }
  }
}

}  // namespace

template <typename Real>
cudaError_t slstm_forward(const SLSTMForwardArgs<Real>& args, cudaStream_t stream) {
  const size_t shared = args.D * sizeof(Real);
  slstm_forward_kernel<Real><<<args.B * args.H, threads_for(args.D), shared, stream>>>(args);
  return cudaGetLastError();
}

template <typename Real>
cudaError_t slstm_backward(const SLSTMBackwardArgs<Real>& args, cudaStream_t stream) {
  const int threads = threads_for(args.D);
  if (args.D > 2 * threads) return cudaErrorInvalidValue;  // more cells than the block holds gradients for
  const size_t shared = 5 * args.D * sizeof(Real);
  slstm_backward_kernel<Real><<<args.B * args.H, threads, shared, stream>>>(args);
  return cudaGetLastError();
}

template cudaError_t slstm_forward<float>(const SLSTMForwardArgs<float>&, cudaStream_t);
template cudaError_t slstm_forward<double>(const SLSTMForwardArgs<double>&, cudaStream_t);
template cudaError_t slstm_backward<float>(const SLSTMBackwardArgs<float>&, cudaStream_t);
template cudaError_t slstm_backward<double>(const SLSTMBackwardArgs<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace xlstm_hf
