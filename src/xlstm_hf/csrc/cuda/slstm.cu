// sLSTM over a whole sequence on the GPU, forward and backward: one launch each, persistent over time,
// in one of two layouts:
//   * cooperative (the default where it fits): each head's D cells are split over P blocks of U cells;
//     block (head, part) keeps the recurrent matrix's columns of its cells, [D, 4, U], in shared memory
//     and steps those cells for every batch row at once; after every step the blocks of a head exchange h
//     (forward) or the gradient reaching h (backward) through global memory and a grid-wide barrier;
//   * per pair: one block per (batch row, head), thread j owning gate unit j of the 4 * D pre-activations,
//     the recurrent matrix read from L2 every step (where a cooperative launch does not fit, or
//     XLSTM_HF_SLSTM_PER_PAIR=1 asks for it, or the device refuses the cooperative launch).
// The per-unit math is pointwise.h's, shared with the CPU kernels. Layouts as in launch.h. Packed rows: at a
// step that starts a sequence (kStart) the recurrent product reads h = 0 and the cells start from zero rows,
// which the forward also writes over the stored previous state, so that the backward reads them as zero; the
// backward carries no gradient to before it.
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>

#include "launch.h"

#include "../pointwise.h"

namespace xlstm_hf {
namespace cuda {
namespace {

constexpr int kMaxThreads = 1024;  // of a per-pair block; its kernels are compiled to fit (__launch_bounds__)
constexpr size_t kDefaultSharedLimit = 48 * 1024;  // of dynamic shared memory, unless raised per kernel

// The kind of step t of batch row b (every step real without kinds), and whether it starts a sequence (false
// past the last step)
__device__ SLSTMStepKind step_kind(const uint8_t* kinds, int64_t b, int64_t T, int64_t t) {
  return kinds == nullptr ? kReal : static_cast<SLSTMStepKind>(kinds[b * T + t]);
}

__device__ bool starts(const uint8_t* kinds, int64_t b, int64_t T, int64_t t) {
  return t < T && step_kind(kinds, b, T, t) == kStart;
}

// The h, c, n, m rows of one cell before a start, zeroed in place
template <typename Real>
__device__ void zero_state_rows(Real* states, int64_t plane, int64_t now) {
  for (int s = 0; s < 4; ++s) states[s * plane + now] = Real(0);
}

int threads_for(int64_t D) {
  const int64_t units = 4 * D;
  return static_cast<int>(units < kMaxThreads ? (units + 31) / 32 * 32 : kMaxThreads);
}

// raw[j] = gates_x[g, e] + bias[j] + sum_d h[d] * kernel[d, j] for j = g * D + e, j over the 4 * D units (h null:
// h = 0, no product)
template <typename Real>
__device__ void gate_preactivations(const Real* gates_x, int64_t gate_stride, const Real* bias, const Real* kernel,
                                    const Real* h, int64_t D, Real* raw) {
  const int64_t terms = h == nullptr ? 0 : D;
  for (int64_t j = threadIdx.x; j < 4 * D; j += blockDim.x) {
    Real sum = gates_x[(j / D) * gate_stride + j % D] + bias[j];
    for (int64_t d = 0; d < terms; ++d) sum += h[d] * kernel[d * 4 * D + j];
    raw[j] = sum;
  }
}

template <typename Real>
__global__ void __launch_bounds__(kMaxThreads) slstm_forward_kernel(SLSTMForwardArgs<Real> a) {
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
    const SLSTMStepKind kind = step_kind(a.kinds, b, a.T, t);
    if (kind == kStart) {  // the stored previous state zeroed: the update below starts from it, the backward reads it
      for (int64_t e = threadIdx.x; e < D; e += blockDim.x) zero_state_rows(states, plane, t * D + e);
    }
    Real* raw = a.raw + (pair * a.T + t) * G;  // this step's gate pre-activations, from h = 0 at a start
    gate_preactivations(a.gates_x + b * a.gx_b + head * a.gx_h + t * a.gx_t, a.gx_g, bias, kernel,
                        kind == kStart ? nullptr : h, D, raw);
    __syncthreads();  // raw complete (the block's own writes), h read by every thread
    Real* h_t = a.h_out + ((b * a.T + t) * a.H + head) * D;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      const int64_t now = t * D + e, next = (t + 1) * D + e;
      const SLSTMUnit<Real> prev{states[now], states[plane + now], states[2 * plane + now], states[3 * plane + now]};
      const SLSTMUnit<Real> updated =
          kind != kPadded ? slstm_unit_forward(raw[e], raw[D + e], raw[2 * D + e], raw[3 * D + e], prev) : prev;
      states[next] = updated.h;
      states[plane + next] = updated.c;
      states[2 * plane + next] = updated.n;
      states[3 * plane + next] = updated.m;
      h_t[e] = kind != kPadded ? updated.h : Real(0);  // a padded step passes the state through and outputs 0
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
__global__ void __launch_bounds__(kMaxThreads) slstm_backward_kernel(SLSTMBackwardArgs<Real> a) {
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
    const SLSTMStepKind kind = step_kind(a.kinds, b, a.T, t);
    if (kind == kPadded) {  // a padded step passed every state through: no gradient to its gates
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
      const bool start = kind == kStart;  // the state before a start was discarded: no gradient reaches it
      dc[s] = start ? Real(0) : grad.dc_prev;
      dn[s] = start ? Real(0) : grad.dn_prev;
      dm[s] = start ? Real(0) : grad.dm_prev;
    }
    __syncthreads();  // draw complete, dh_carry read
    for (int64_t j = threadIdx.x; j < G; j += blockDim.x) dgx_t[j] = draw[j];
    if (kind == kStart) {
      for (int64_t e = threadIdx.x; e < D; e += blockDim.x) dh_carry[e] = Real(0);
    } else {
      recurrent_input_grad(kernel, draw, D, dh_carry);  // raw = ... + h_prev @ kernel
    }
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

// ---- cooperative: a head's cells split over P blocks, every batch row in each ------------------------------

constexpr int kCooperativeThreads = 256;
constexpr size_t kMatrixSliceBytes = 64 * 1024;  // of the recurrent matrix per block

// This block's head and cells e0 .. e0 + units (U per block, the last block of a head may hold fewer)
struct HeadPart {
  int64_t head, e0, units;
};

__device__ HeadPart head_part(int64_t H, int64_t D, int64_t U) {
  const int64_t parts = gridDim.x / H, e0 = blockIdx.x % parts * U;
  return {static_cast<int64_t>(blockIdx.x) / parts, e0, min(U, D - e0)};
}

// The block's columns of the recurrent matrix, Ks[d][g][u] = kernel[head, d, g, e0 + u] (0 past the cells)
template <typename Real>
__device__ void load_matrix_slice(const Real* kernel, const HeadPart& p, int64_t D, int64_t U, Real* Ks) {
  for (int64_t index = threadIdx.x; index < D * 4 * U; index += blockDim.x) {
    const int64_t d = index / (4 * U), g = index / U % 4, u = index % U;
    Ks[index] = u < p.units ? kernel[(p.head * D + d) * 4 * D + g * D + p.e0 + u] : Real(0);
  }
}

template <typename Real>
__global__ void __launch_bounds__(kCooperativeThreads) slstm_forward_cooperative_kernel(SLSTMForwardArgs<Real> a,
                                                                                      int64_t U) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  extern __shared__ unsigned char shared_bytes[];
  const int64_t B = a.B, H = a.H, T = a.T, D = a.D, G = 4 * D;
  const HeadPart part = head_part(H, D, U);
  const int64_t head = part.head, e0 = part.e0, units = part.units;
  const int64_t plane = B * H * (T + 1) * D, exchange_plane = B * H * D;
  Real* Ks = reinterpret_cast<Real*>(shared_bytes);  // [D, 4, U]
  Real* h_all = Ks + D * 4 * U;                       // [B, D] the previous output of every batch row
  Real* raw = h_all + B * D;                          // [B, 4, U] this step's pre-activations of the block's cells
  load_matrix_slice(a.kernel, part, D, U, Ks);
  for (int64_t index = threadIdx.x; index < B * D; index += blockDim.x) {
    const int64_t b = index / D;
    h_all[index] = starts(a.kinds, b, T, 0) ? Real(0) : a.states[(b * H + head) * (T + 1) * D + index % D];
  }
  __syncthreads();
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t index = threadIdx.x; index < B * 4 * U; index += blockDim.x) {
      const int64_t b = index / (4 * U), g = index / U % 4, u = index % U, e = e0 + u;
      if (u >= units) continue;
      Real sum = a.gates_x[b * a.gx_b + head * a.gx_h + t * a.gx_t + g * a.gx_g + e] + a.bias[head * G + g * D + e];
      for (int64_t d = 0; d < D; ++d) sum += h_all[b * D + d] * Ks[(d * 4 + g) * U + u];
      raw[index] = sum;
      a.raw[((b * H + head) * T + t) * G + g * D + e] = sum;
    }
    __syncthreads();
    Real* exchange = a.exchange + (t % 2) * exchange_plane;
    for (int64_t index = threadIdx.x; index < B * U; index += blockDim.x) {
      const int64_t b = index / U, u = index % U, e = e0 + u;
      if (u >= units) continue;
      const int64_t now = ((b * H + head) * (T + 1) + t) * D + e, next = now + D;
      const SLSTMStepKind kind = step_kind(a.kinds, b, T, t);
      const Real* r = raw + b * 4 * U + u;
      if (kind == kStart) zero_state_rows(a.states, plane, now);  // then read as the zero state it starts from
      const SLSTMUnit<Real> prev{a.states[now], a.states[plane + now], a.states[2 * plane + now],
                                 a.states[3 * plane + now]};
      const SLSTMUnit<Real> updated =
          kind != kPadded ? slstm_unit_forward(r[0], r[U], r[2 * U], r[3 * U], prev) : prev;
      a.states[next] = updated.h;
      a.states[plane + next] = updated.c;
      a.states[2 * plane + next] = updated.n;
      a.states[3 * plane + next] = updated.m;
      a.h_out[((b * T + t) * H + head) * D + e] = kind != kPadded ? updated.h : Real(0);
      exchange[(b * H + head) * D + e] = updated.h;
    }
    grid.sync();  // every block's cells written: h complete for every batch row
    for (int64_t index = threadIdx.x; index < B * D; index += blockDim.x) {
      const int64_t b = index / D;  // the next step's recurrent product reads h = 0 where it starts
      h_all[index] = starts(a.kinds, b, T, t + 1) ? Real(0) : exchange[(b * H + head) * D + index % D];
    }
    __syncthreads();
  }
}

template <typename Real>
__global__ void __launch_bounds__(kCooperativeThreads) slstm_backward_cooperative_kernel(SLSTMBackwardArgs<Real> a,
                                                                                       int64_t U) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  extern __shared__ unsigned char shared_bytes[];
  const int64_t B = a.B, H = a.H, T = a.T, D = a.D, G = 4 * D;
  const HeadPart part = head_part(H, D, U);
  const int64_t head = part.head, e0 = part.e0, units = part.units;
  const int64_t plane = B * H * (T + 1) * D, carry_plane = B * H * D;
  Real* Ks = reinterpret_cast<Real*>(shared_bytes);  // [D, 4, U]
  Real* draw = Ks + D * 4 * U;                        // [B, 4, U] gradients of the pre-activations
  Real* carry = draw + B * 4 * U;                     // [4, B, U] gradients of the cells' h, c, n, m
  load_matrix_slice(a.kernel, part, D, U, Ks);
  for (int64_t index = threadIdx.x; index < 4 * B * U; index += blockDim.x) {
    const int64_t s = index / (B * U), b = index / U % B, u = index % U;
    carry[index] = u < units ? a.grad_final[s * carry_plane + (b * H + head) * D + e0 + u] : Real(0);
  }
  __syncthreads();
  for (int64_t t = T - 1; t >= 0; --t) {
    for (int64_t index = threadIdx.x; index < B * U; index += blockDim.x) {
      const int64_t b = index / U, u = index % U, e = e0 + u;
      if (u >= units) continue;
      Real* dgx = a.grad_gates_x + ((head * B + b) * T + t) * G + e;  // head-major, as on the CPU
      Real* d = draw + b * 4 * U + u;
      const SLSTMStepKind kind = step_kind(a.kinds, b, T, t);
      if (kind == kPadded) {  // a padded step passed the state through: no gradient
        for (int g = 0; g < 4; ++g) d[g * U] = dgx[g * D] = Real(0);
        continue;
      }
      const int64_t now = ((b * H + head) * (T + 1) + t) * D + e;
      const Real* r = a.raw + ((b * H + head) * T + t) * G + e;
      const SLSTMUnit<Real> prev{a.states[now], a.states[plane + now], a.states[2 * plane + now],
                                 a.states[3 * plane + now]};
      Real* dh = carry + index;
      Real *dc = dh + B * U, *dn = dc + B * U, *dm = dn + B * U;
      const Real dh_total = a.grad_h[b * a.gh_b + head * a.gh_h + t * a.gh_t + e] + *dh;
      const SLSTMUnitGrad<Real> grad =
          slstm_unit_backward(r[0], r[D], r[2 * D], r[3 * D], prev, dh_total, *dc, *dn, *dm);
      d[0] = dgx[0] = grad.di;
      d[U] = dgx[D] = grad.df;
      d[2 * U] = dgx[2 * D] = grad.dz;
      d[3 * U] = dgx[3 * D] = grad.do_;
      const bool start = kind == kStart;  // the state before a start was discarded: no gradient reaches it
      *dc = start ? Real(0) : grad.dc_prev;
      *dn = start ? Real(0) : grad.dn_prev;
      *dm = start ? Real(0) : grad.dm_prev;
    }
    __syncthreads();
    // raw = gates_x + bias + h_prev @ kernel: h_prev receives kernel @ draw, summed over the blocks of the head
    Real* sums = a.exchange + (t % 3) * carry_plane;
    for (int64_t index = threadIdx.x; index < B * D; index += blockDim.x) {
      const int64_t b = index / D, d = index % D;
      Real sum = 0;
      for (int64_t gu = 0; gu < 4 * units; ++gu) {
        const int64_t g = gu / units, u = gu % units;
        sum += Ks[(d * 4 + g) * U + u] * draw[b * 4 * U + g * U + u];
      }
      atomicAdd(sums + (b * H + head) * D + d, sum);
    }
    grid.sync();  // every block's part added
    Real* next_sums = a.exchange + ((t + 1) % 3) * carry_plane;  // read by every block before this barrier
    for (int64_t index = threadIdx.x; index < B * U; index += blockDim.x) {
      const int64_t b = index / U, u = index % U, at = (b * H + head) * D + e0 + u;
      if (u >= units) continue;
      next_sums[at] = Real(0);  // ready for step t - 2
      const SLSTMStepKind kind = step_kind(a.kinds, b, T, t);
      if (kind != kPadded) carry[index] = kind == kStart ? Real(0) : sums[at];  // padded: h passed through
    }
    __syncthreads();
  }
  for (int64_t index = threadIdx.x; index < 4 * B * U; index += blockDim.x) {
    const int64_t s = index / (B * U), b = index / U % B, u = index % U;
    if (u < units) a.grad_initial[s * carry_plane + (b * H + head) * D + e0 + u] = carry[index];
  }
}

// Lets `kernel` take `bytes` of dynamic shared memory: above the default 48 KB by raising its limit to the
// device's opt-in maximum, once per kernel and device (a limit set per launch would race with host threads
// launching the kernel with other sizes).
cudaError_t allow_shared_memory(const void* kernel, size_t bytes) {
  if (bytes <= kDefaultSharedLimit) return cudaSuccess;
  int device = 0, limit = 0;
  cudaError_t error = cudaGetDevice(&device);
  if (error == cudaSuccess) error = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (error != cudaSuccess) return error;
  if (bytes > static_cast<size_t>(limit)) return cudaErrorInvalidValue;
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, cudaError_t> raised;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto [entry, first] = raised.try_emplace({kernel, device}, cudaSuccess);
  if (first) entry->second = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
  return entry->second;
}

// Cells per block where a cooperative launch of `kernel` fits on this device, else 0.
template <typename Kernel>
int64_t cooperative_split(Kernel kernel, int64_t B, int64_t H, int64_t D, size_t real_size,
                          size_t (*shared_bytes)(int64_t, int64_t, int64_t, size_t)) {
  const char* per_pair = std::getenv("XLSTM_HF_SLSTM_PER_PAIR");
  if (per_pair != nullptr && per_pair[0] == '1') return 0;
  int device = 0, cooperative = 0, multiprocessors = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device);
  cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device);
  const int64_t most_cells = std::max<int64_t>(1, kMatrixSliceBytes / (4 * D * real_size));
  const int64_t parts = (D + most_cells - 1) / most_cells, U = (D + parts - 1) / parts;
  const size_t shared = shared_bytes(B, D, U, real_size);
  if (!cooperative) return 0;
  if (allow_shared_memory(reinterpret_cast<const void*>(kernel), shared) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  int per_multiprocessor = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, kCooperativeThreads, shared);
  return per_multiprocessor * multiprocessors >= H * parts ? U : 0;
}

size_t forward_shared_bytes(int64_t B, int64_t D, int64_t U, size_t real_size) {
  return (D * 4 * U + B * D + B * 4 * U) * real_size;
}

size_t backward_shared_bytes(int64_t B, int64_t D, int64_t U, size_t real_size) {
  return (D * 4 * U + B * 4 * U + 4 * B * U) * real_size;
}

// The cooperative launch of `kernel` with U cells per block; where the device refuses it (under MPS, or with
// multiprocessors taken by other work), the error is cleared and returned, and the caller runs per pair.
template <typename Kernel, typename Args>
cudaError_t launch_cooperative(Kernel kernel, const Args& args, int64_t U, size_t shared, cudaStream_t stream) {
  const int64_t parts = (args.D + U - 1) / U;
  Args copy = args;
  void* parameters[] = {&copy, &U};
  const cudaError_t error = cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), dim3(args.H * parts),
                                                        dim3(kCooperativeThreads), parameters, shared, stream);
  if (error != cudaSuccess) cudaGetLastError();
  return error;
}

}  // namespace

template <typename Real>
cudaError_t slstm_forward(const SLSTMForwardArgs<Real>& args, cudaStream_t stream) {
  const auto cooperative = slstm_forward_cooperative_kernel<Real>;
  const int64_t U = cooperative_split(cooperative, args.B, args.H, args.D, sizeof(Real), forward_shared_bytes);
  if (U > 0 && launch_cooperative(cooperative, args, U, forward_shared_bytes(args.B, args.D, U, sizeof(Real)),
                                  stream) == cudaSuccess) {
    return cudaSuccess;
  }
  const size_t shared = args.D * sizeof(Real);
  const cudaError_t error = allow_shared_memory(reinterpret_cast<const void*>(slstm_forward_kernel<Real>), shared);
  if (error != cudaSuccess) return error;
  slstm_forward_kernel<Real><<<args.B * args.H, threads_for(args.D), shared, stream>>>(args);
  return cudaGetLastError();
}

template <typename Real>
cudaError_t slstm_backward(const SLSTMBackwardArgs<Real>& args, cudaStream_t stream) {
  const auto cooperative = slstm_backward_cooperative_kernel<Real>;
  const int64_t U = cooperative_split(cooperative, args.B, args.H, args.D, sizeof(Real), backward_shared_bytes);
  if (U > 0 && launch_cooperative(cooperative, args, U, backward_shared_bytes(args.B, args.D, U, sizeof(Real)),
                                  stream) == cudaSuccess) {
    return cudaSuccess;
  }
  const int threads = threads_for(args.D);
  if (args.D > 2 * threads) return cudaErrorInvalidValue;  // more cells than the block holds gradients for
  const size_t shared = 5 * args.D * sizeof(Real);
  const cudaError_t error = allow_shared_memory(reinterpret_cast<const void*>(slstm_backward_kernel<Real>), shared);
  if (error != cudaSuccess) return error;
  slstm_backward_kernel<Real><<<args.B * args.H, threads, shared, stream>>>(args);
  return cudaGetLastError();
}

template cudaError_t slstm_forward<float>(const SLSTMForwardArgs<float>&, cudaStream_t);
template cudaError_t slstm_forward<double>(const SLSTMForwardArgs<double>&, cudaStream_t);
template cudaError_t slstm_backward<float>(const SLSTMBackwardArgs<float>&, cudaStream_t);
template cudaError_t slstm_backward<double>(const SLSTMBackwardArgs<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace xlstm_hf
