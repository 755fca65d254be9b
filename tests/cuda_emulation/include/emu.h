// CUDA's device language on the CPU, for the kernels of src/xlstm_hf/csrc/cuda compiled as C++ (g++, C++20).
// Each CUDA thread is an OS thread; a launch runs its blocks one after another, or all at once where it is
// cooperative. __syncthreads, warp shuffles and grid.sync() are exact barriers; shared memory and each
// static __shared__ array are fresh NaN-filled allocations per block. rewrite.py turns the launch syntax
// into calls of emu::launch and emu::launch_cooperative; runtime.cpp holds the machinery.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

// the device math CUDA declares in the global namespace, with its float overloads
using std::exp;
using std::fabs;
using std::fmax;
using std::fmin;
using std::log1p;
using std::max;
using std::min;
using std::sqrt;
using std::tanh;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorCooperativeLaunchTooLarge = 720,
};
using cudaStream_t = struct CUstream_st*;

namespace emu {

// ---- device side ----------------------------------------------------------------------------------------

void syncthreads();
void grid_sync();
// the value of lane `source` of the calling warp; every lane of a full warp must take part
std::uint64_t warp_exchange(unsigned mask, std::uint64_t bits, int source);
void warp_sync();  // the warp-wide part of the wmma collectives
unsigned lane();
// a kernel's failure (misuse of CUDA that the hardware would not forgive): the launch reports it
void fail(const std::string& message);

// This block's instance of the next static __shared__ variable of the kernel (declared in the same order by
// every thread), aligned to `alignment` bytes and to no more, filled with NaN.
void* shared_slot(std::size_t bytes, std::size_t alignment);
template <typename T>
T& shared(std::size_t alignment = alignof(T)) {
  return *static_cast<T*>(shared_slot(sizeof(T), std::max(alignment, alignof(T))));
}
// the block's dynamic shared memory (the launch's size), 16-byte aligned and to no more, filled with NaN
void* dynamic_shared_bytes();
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_bytes());
}
// false (and the launch fails as "too many resources requested") where the block exceeds __launch_bounds__
bool within_launch_bounds(unsigned max_threads);

// ---- host side ------------------------------------------------------------------------------------------

struct LaunchConfig {
  const void* kernel;
  const char* name;
  dim3 grid, block;
  std::size_t shared;
  bool cooperative;
};
// runs `thread` (a call of the kernel) as every CUDA thread of the launch; the launch's error
cudaError_t run(const LaunchConfig& config, const std::function<void()>& thread);

template <typename... Params, typename... Args>
cudaError_t launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared,
                   cudaStream_t, Args&&... args) {
  const std::tuple<std::decay_t<Params>...> copies(std::forward<Args>(args)...);
  const LaunchConfig config{reinterpret_cast<const void*>(kernel), name, grid, block, shared, false};
  return run(config, [&] { std::apply(kernel, copies); });
}

// cudaLaunchCooperativeKernel with the kernel's type kept, so that the parameters can be unpacked
template <typename... Params>
cudaError_t launch_cooperative(void (*kernel)(Params...), dim3 grid, dim3 block, void** parameters,
                               std::size_t shared, cudaStream_t) {
  const auto copies = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<std::decay_t<Params>...>(*static_cast<std::decay_t<Params>*>(parameters[I])...);
  }(std::index_sequence_for<Params...>());
  const LaunchConfig config{reinterpret_cast<const void*>(kernel), "cooperative", grid, block, shared, true};
  return run(config, [&] { std::apply(kernel, copies); });
}

// The emulated device: an H100/H200-like part (132 multiprocessors, 227 KB of opt-in shared memory per block)
struct Device {
  int multiprocessors = 132;
  int shared_per_block_optin = 232448;
  int shared_per_multiprocessor = 233472;
  bool cooperative_launch_fails = false;  // as under MPS or with the multiprocessors taken
};
Device& device();

// What the runtime saw since the last reset: the launches and the calls of cudaFuncSetAttribute
struct LaunchRecord {
  std::string name;  // "cooperative" for cudaLaunchCooperativeKernel
  unsigned threads;  // per block
  std::size_t shared;
  cudaError_t error;
};
struct Stats {
  std::vector<LaunchRecord> launches;
  int attribute_sets = 0;
};
Stats stats();
void reset_stats();

}  // namespace emu

inline void __syncthreads() { emu::syncthreads(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable_v<T>);
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = emu::warp_exchange(mask, bits, static_cast<int>(emu::lane()) ^ lane_mask);
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

float atomicAdd(float* address, float value);
double atomicAdd(double* address, double value);
