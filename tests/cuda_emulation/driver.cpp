// Runs the CUDA kernels on small inputs, without torch, for the builds under AddressSanitizer and
// ThreadSanitizer: every launcher, forward and backward, with padding masks, starts of packed sequences (the
// sLSTM) and initial states; the outputs start as NaN and must come back finite. The slstm-packed cases also
// check what a start means: a packed row gives what its sequences give alone. `driver [case...]`, cases:
// slstm-cooperative, slstm-per-pair, slstm-packed-cooperative, slstm-packed-per-pair, chunkwise-float,
// chunkwise-bf16, step. Prints one line per case; exit status 1 where one failed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_bf16.h"
#include "launch.h"

namespace {

using namespace xlstm_hf::cuda;

std::mt19937 generator(0);
bool ok = true;

template <typename T>
T from_float(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(x);
  } else {
    return static_cast<T>(x);
  }
}

template <typename T>
std::vector<T> random(std::size_t size, float scale = 1.0f, float shift = 0.0f) {
  std::normal_distribution<float> normal(shift, scale);
  std::vector<T> values(size);
  for (T& value : values) value = from_float<T>(normal(generator));
  return values;
}

template <typename T>
std::vector<T> nans(std::size_t size) {
  return std::vector<T>(size, std::numeric_limits<T>::quiet_NaN());
}

std::vector<unsigned char> mask(std::size_t B, std::size_t T) {  // bool [B, T]: row 0 padded at its start
  std::vector<unsigned char> values(B * T, 1);
  for (std::size_t t = 0; t < T / 3; ++t) values[t] = 0;
  return values;
}

const bool* as_bools(const std::vector<unsigned char>& values) { return reinterpret_cast<const bool*>(values.data()); }

void expect(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return;
  std::printf("%s: %s\n", what, cudaGetErrorString(error));
  ok = false;
}

template <typename T>
void expect_finite(const std::vector<T>& values, const char* what) {
  for (const T& value : values) {
    if (!std::isfinite(value)) {
      std::printf("%s: an element is not finite (not written?)\n", what);
      ok = false;
      return;
    }
  }
}

// sLSTM forward and backward, float, B = 2, H = 1, T = 3, D = 72: a cooperative launch splits each head's
// cells over two blocks; step kinds: row 0 padded, real, a start; row 1 a start, real, a start
void slstm(bool per_pair) {
  setenv("XLSTM_HF_SLSTM_PER_PAIR", per_pair ? "1" : "0", 1);
  const std::size_t B = 2, H = 1, T = 3, D = 72, G = 4 * D;
  const auto gates_x = random<float>(B * H * T * G, 2.0f), kernel = random<float>(H * D * G, 0.1f);
  const auto bias = random<float>(H * G, 0.5f);
  const std::vector<uint8_t> kinds{kPadded, kReal, kStart, kStart, kReal, kStart};
  auto states = nans<float>(4 * B * H * (T + 1) * D), h = nans<float>(B * T * H * D), raw = nans<float>(B * H * T * G);
  std::vector<float> exchange(3 * B * H * D, 0.0f);
  for (std::size_t s = 0; s < 4; ++s) {  // the initial state at step 0: h, c, m = 0.3 and n = 1.5
    for (std::size_t pair = 0; pair < B * H; ++pair) {
      for (std::size_t e = 0; e < D; ++e) states[(s * B * H + pair) * (T + 1) * D + e] = s == 2 ? 1.5f : 0.3f;
    }
  }
  const SLSTMForwardArgs<float> forward{gates_x.data(), kernel.data(), bias.data(), kinds.data(), states.data(),
                                        h.data(), raw.data(), exchange.data(), B, H, T, D, H * T * G, T * G, G, D};
  expect(slstm_forward(forward, nullptr), "slstm_forward");
  expect_finite(states, "slstm states");
  expect_finite(h, "slstm h");
  const auto grad_h = random<float>(B * H * T * D), grad_final = random<float>(4 * B * H * D);
  auto grad_gates_x = nans<float>(H * B * T * G), grad_initial = nans<float>(4 * B * H * D);
  std::fill(exchange.begin(), exchange.end(), 0.0f);
  const SLSTMBackwardArgs<float> backward{grad_h.data(), grad_final.data(), kernel.data(), states.data(), raw.data(),
                                          kinds.data(), grad_gates_x.data(), grad_initial.data(), exchange.data(),
                                          B, H, T, D, H * T * D, T * D, D};
  expect(slstm_backward(backward, nullptr), "slstm_backward");
  expect_finite(grad_gates_x, "slstm grad_gates_x");
  expect_finite(grad_initial, "slstm grad_initial");
}

// The results of one sLSTM run, B = H = 1, forward and backward: h [T, D], the final state [4, D], the
// gradients of gates_x [T, 4, D] and of the initial state [4, D]
struct SLSTMRun {
  std::vector<float> h, final, grad_gates_x, grad_initial;
};

// gates_x [T, 4, D], kernel [D, 4, D], bias [4, D], initial [4, D] (h, c, n, m), kinds [T] (empty: every step
// real), grad_h [T, D], grad_final [4, D]
SLSTMRun run_slstm(const std::vector<float>& gates_x, const std::vector<float>& kernel, const std::vector<float>& bias,
                   const std::vector<float>& initial, const std::vector<uint8_t>& kinds,
                   const std::vector<float>& grad_h, const std::vector<float>& grad_final, int64_t D) {
  const int64_t G = 4 * D, T = static_cast<int64_t>(gates_x.size()) / G;
  auto states = nans<float>(4 * (T + 1) * D), raw = nans<float>(T * G);
  for (int64_t s = 0; s < 4; ++s) std::copy_n(&initial[s * D], D, &states[s * (T + 1) * D]);
  std::vector<float> exchange(3 * D, 0.0f);
  const uint8_t* step_kinds = kinds.empty() ? nullptr : kinds.data();
  SLSTMRun run{nans<float>(T * D), std::vector<float>(4 * D), nans<float>(T * G), nans<float>(4 * D)};
  const SLSTMForwardArgs<float> forward{gates_x.data(), kernel.data(), bias.data(), step_kinds, states.data(),
                                        run.h.data(), raw.data(), exchange.data(), 1, 1, T, D, T * G, T * G, G, D};
  expect(slstm_forward(forward, nullptr), "slstm_forward");
  for (int64_t s = 0; s < 4; ++s) std::copy_n(&states[(s * (T + 1) + T) * D], D, &run.final[s * D]);
  std::fill(exchange.begin(), exchange.end(), 0.0f);
  const SLSTMBackwardArgs<float> backward{grad_h.data(), grad_final.data(), kernel.data(), states.data(), raw.data(),
                                          step_kinds, run.grad_gates_x.data(), run.grad_initial.data(),
                                          exchange.data(), 1, 1, T, D, T * D, T * D, D};
  expect(slstm_backward(backward, nullptr), "slstm_backward");
  return run;
}

std::vector<float> slice(const std::vector<float>& x, std::size_t begin, std::size_t end) {
  return {x.begin() + begin, x.begin() + end};
}

std::vector<float> joined(std::vector<float> x, const std::vector<float>& y) {
  x.insert(x.end(), y.begin(), y.end());
  return x;
}

void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, const char* what) {
  for (std::size_t x = 0; x < expected.size(); ++x) {
    if (!(std::abs(actual[x] - expected[x]) <= 1e-5f * std::max(1.0f, std::abs(expected[x])))) {
      std::printf("%s: element %zu is %g, alone %g\n", what, x, actual[x], expected[x]);
      ok = false;
      return;
    }
  }
}

// A packed row, T = 5, D = 72 (two blocks of a cooperative launch), a sequence from the initial state at steps
// 0..1 and one starting at step 2, against the two run alone: the second from the zero state, the first with no
// gradient reaching its final state
void slstm_packed(bool per_pair) {
  setenv("XLSTM_HF_SLSTM_PER_PAIR", per_pair ? "1" : "0", 1);
  const std::size_t T = 5, S = 2, D = 72, G = 4 * D;
  const auto gates_x = random<float>(T * G, 2.0f), kernel = random<float>(D * G, 0.1f);
  const auto bias = random<float>(G, 0.5f), grad_h = random<float>(T * D), grad_final = random<float>(4 * D);
  std::vector<float> initial(4 * D, 0.3f), zeros(4 * D, 0.0f);
  std::fill(&initial[2 * D], &initial[3 * D], 1.5f);  // n
  std::vector<uint8_t> kinds(T, kReal);
  kinds[S] = kStart;
  const SLSTMRun packed = run_slstm(gates_x, kernel, bias, initial, kinds, grad_h, grad_final, D);
  const SLSTMRun first = run_slstm(slice(gates_x, 0, S * G), kernel, bias, initial, {}, slice(grad_h, 0, S * D),
                                   zeros, D);
  const SLSTMRun second = run_slstm(slice(gates_x, S * G, T * G), kernel, bias, zeros, {},
                                    slice(grad_h, S * D, T * D), grad_final, D);
  expect_close(packed.h, joined(first.h, second.h), "packed h");
  expect_close(packed.final, second.final, "packed final state");
  expect_close(packed.grad_gates_x, joined(first.grad_gates_x, second.grad_gates_x), "packed grad_gates_x");
  expect_close(packed.grad_initial, first.grad_initial, "packed grad_initial");
}

template <typename T>
float to_float(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return static_cast<float>(x);
  }
}

// The chunkwise mLSTM forward and backward, B = 1, H = 1, T = 21 (a short last chunk), Dqk = 16, Dv = 40
template <typename In>
void chunkwise(std::int64_t L) {
  const std::int64_t B = 1, H = 1, T = 21, Dqk = 16, Dv = 40, N = (T + L - 1) / L;
  const auto q = random<In>(B * H * T * Dqk), k = random<In>(B * H * T * Dqk), v = random<In>(B * H * T * Dv);
  const auto i = random<float>(B * H * T, 2.0f), f = random<float>(B * H * T, 2.0f, 3.0f);
  const auto padding = mask(B, T);
  const auto C = random<float>(B * H * Dqk * Dv), n = random<float>(B * H * Dqk), m = random<float>(B * H);
  auto C_chunks = nans<float>(B * H * N * Dqk * Dv), n_chunks = nans<float>(B * H * N * Dqk);
  auto m_chunks = nans<float>(B * H * N), C_final = nans<float>(B * H * Dqk * Dv), n_final = nans<float>(B * H * Dqk);
  auto m_final = nans<float>(B * H);
  std::vector<In> h(B * H * T * Dv, from_float<In>(NAN));
  const MLSTMChunkwiseArgs<In, float> forward{
      q.data(), k.data(), v.data(), i.data(), f.data(), C.data(), n.data(), m.data(), as_bools(padding),
      C_chunks.data(), n_chunks.data(), m_chunks.data(), C_final.data(), n_final.data(), m_final.data(), h.data(),
      B, H, T, Dqk, Dv, L, 1e-6};
  expect(mlstm_chunkwise_forward(forward, nullptr), "mlstm_chunkwise_forward");
  std::vector<float> h_float(h.size());
  for (std::size_t x = 0; x < h.size(); ++x) h_float[x] = to_float(h[x]);
  expect_finite(h_float, "chunkwise h");
  expect_finite(C_final, "chunkwise C_final");

  auto grad_h = random<In>(B * H * T * Dv);
  for (std::int64_t t = 0; t < T; ++t) {  // no gradient reaches padded steps (as the bindings pass it)
    for (std::int64_t x = 0; !padding[t] && x < H * Dv; ++x) grad_h[(x / Dv * T + t) * Dv + x % Dv] = from_float<In>(0);
  }
  const auto grad_C = random<float>(B * H * Dqk * Dv), grad_n = random<float>(B * H * Dqk);
  const auto grad_m = random<float>(B * H);
  auto dC_out = nans<float>(B * H * N * Dqk * Dv), dn_out = nans<float>(B * H * N * Dqk);
  auto dm_out = nans<float>(B * H * N), da = nans<float>(B * H * N * L), db = nans<float>(B * H * N * L);
  auto dii = nans<float>(B * H * N * L), dq = nans<float>(B * H * T * Dqk), dk = nans<float>(B * H * T * Dqk);
  auto dv = nans<float>(B * H * T * Dv), di = nans<float>(B * H * T), df = nans<float>(B * H * T);
  auto dC0 = nans<float>(B * H * Dqk * Dv), dn0 = nans<float>(B * H * Dqk), dm0 = nans<float>(B * H);
  std::vector<float> d_decay(B * H * N, 0.0f);
  const MLSTMChunkwiseBackwardArgs<In, float> backward{
      forward, grad_h.data(), grad_C.data(), grad_n.data(), grad_m.data(), dC_out.data(), dn_out.data(),
      dm_out.data(), d_decay.data(), da.data(), db.data(), dii.data(), dq.data(), dk.data(), dv.data(), di.data(),
      df.data(), dC0.data(), dn0.data(), dm0.data()};
  expect(mlstm_chunkwise_backward(backward, nullptr), "mlstm_chunkwise_backward");
  for (const auto* grad : {&dq, &dk, &dv, &di, &df, &dC0, &dn0, &dm0}) expect_finite(*grad, "chunkwise gradient");
}

// One mLSTM step, B = 2, H = 2, Dqk = 20, Dv = 33, batch row 1 padded
void step() {
  const std::int64_t B = 2, H = 2, Dqk = 20, Dv = 33;
  const auto q = random<float>(B * H * Dqk), k = random<float>(B * H * Dqk), v = random<float>(B * H * Dv);
  const auto i = random<float>(B * H, 2.0f), f = random<float>(B * H, 2.0f, 3.0f);
  const auto C = random<float>(B * H * Dqk * Dv), n = random<float>(B * H * Dqk), m = random<float>(B * H);
  const std::vector<unsigned char> padding{1, 0};
  auto h = nans<float>(B * H * Dv), C_out = nans<float>(C.size()), n_out = nans<float>(n.size());
  auto m_out = nans<float>(m.size());
  const MLSTMStepArgs<float> args{q.data(), k.data(), v.data(), i.data(), f.data(), C.data(), n.data(), m.data(),
                                  as_bools(padding), h.data(), C_out.data(), n_out.data(), m_out.data(), B, H, Dqk, Dv,
                                  1e-6};
  expect(mlstm_step(args, nullptr), "mlstm_step");
  for (const auto* out : {&h, &C_out, &n_out, &m_out}) expect_finite(*out, "step output");
}

}  // namespace

int main(int argc, char** argv) {
  for (int a = 1; a < argc; ++a) {
    const std::string name = argv[a];
    if (name == "slstm-cooperative" || name == "slstm-per-pair") {
      slstm(name == "slstm-per-pair");
    } else if (name == "slstm-packed-cooperative" || name == "slstm-packed-per-pair") {
      slstm_packed(name == "slstm-packed-per-pair");
    } else if (name == "chunkwise-float") {
      chunkwise<float>(7);
    } else if (name == "chunkwise-bf16") {
      chunkwise<__nv_bfloat16>(16);
    } else if (name == "step") {
      step();
    } else {
      std::printf("unknown case %s\n", argv[a]);
      return 2;
    }
    std::printf("%s %s\n", ok ? "ran" : "FAILED", argv[a]);
    std::fflush(stdout);
  }
  return ok ? 0 : 1;
}
