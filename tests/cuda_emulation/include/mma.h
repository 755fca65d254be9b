// The wmma tensor-core API. Every lane holds a whole fragment (row-major, rows x columns), so the kernels'
// element-wise loops over `num_elements` see every element. Loads and stores check what the hardware
// requires (256-bit aligned tiles, a leading dimension of a multiple of 16 bytes); products are exact on
// the inputs as the tensor cores read them (TF32 inputs keep 10 mantissa bits, the low 13 are dropped) and
// summed in float32. A store is a warp collective: the warp meets, then each lane writes its share.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using element_type = std::conditional_t<std::is_same_v<T, precision::tf32>, float, T>;
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int columns = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * columns;
  element_type x[num_elements];
};

inline void check_tile(const void* pointer, unsigned ldm, std::size_t element_size, const char* what) {
  if (reinterpret_cast<std::uintptr_t>(pointer) % 32 != 0) emu::fail(std::string(what) + ": tile not 256-bit aligned");
  if (ldm * element_size % 16 != 0) {
    emu::fail(std::string(what) + ": ldm " + std::to_string(ldm) + " is not a multiple of 16 bytes");
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* pointer, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load names its layout");
  check_tile(pointer, ldm, sizeof(P), "load_matrix_sync");
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::rows; ++r) {
    for (int c = 0; c < F::columns; ++c) {
      f.x[r * F::columns + c] = std::is_same_v<Layout, row_major> ? pointer[r * ldm + c] : pointer[c * ldm + r];
    }
  }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* pointer, unsigned ldm, layout_t layout) {
  check_tile(pointer, ldm, sizeof(float), "load_matrix_sync");
  for (int r = 0; r < M; ++r) {
    for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_row_major ? pointer[r * ldm + c] : pointer[c * ldm + r];
  }
}

template <int M, int N, int K>
void store_matrix_sync(float* pointer, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  check_tile(pointer, ldm, sizeof(float), "store_matrix_sync");
  emu::warp_sync();
  for (int index = static_cast<int>(emu::lane()); index < M * N; index += 32) {
    const int r = index / N, c = index % N;
    (layout == mem_row_major ? pointer[r * ldm + c] : pointer[c * ldm + r]) = f.x[index];
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, V value) {
  for (auto& element : f.x) element = value;
}

// round to nearest, ties away from zero, to 10 mantissa bits (cvt.rna.tf32.f32)
inline float __float_to_tf32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;
  std::memcpy(&x, &bits, sizeof(bits));
  return x;
}

// an input as the tensor cores read it
inline float tensor_input(float x) {  // TF32: the low 13 mantissa bits are ignored
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits &= ~0x1fffu;
  std::memcpy(&x, &bits, sizeof(bits));
  return x;
}
inline float tensor_input(__half x) { return __half2float(x); }
inline float tensor_input(__nv_bfloat16 x) { return __bfloat162float(x); }

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  static_assert(std::is_same_v<TA, TB>, "both operands of one type");
  float result[M * N];
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      float sum = c.x[i * N + j];
      for (int k = 0; k < K; ++k) sum += tensor_input(a.x[i * K + k]) * tensor_input(b.x[k * N + j]);
      result[i * N + j] = sum;
    }
  }
  std::memcpy(d.x, result, sizeof(result));
}

}  // namespace nvcuda::wmma
