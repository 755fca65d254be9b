// __half: IEEE binary16 bits, converted with round to nearest even (g++'s _Float16).
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
  std::uint16_t bits;
};

inline __half __float2half(float x) {
  const _Float16 rounded = static_cast<_Float16>(x);
  __half result;
  std::memcpy(&result.bits, &rounded, sizeof(result.bits));
  return result;
}

inline float __half2float(__half x) {
  _Float16 value;
  std::memcpy(&value, &x.bits, sizeof(value));
  return static_cast<float>(value);
}
