// Per-element math of the xLSTM cells (docs/design.md 1.1, 1.4), shared by the CPU kernels and, through
// XLSTM_HD, by CUDA kernels. Every function mirrors a line of the PyTorch reference in
// src/xlstm_hf/ops, so that the kernels compute the same function and the tests can hold them to it.
//
// The functions are templates over the value type: a scalar (CUDA threads, CPU loop tails) or a SIMD
// vector of the CPU kernels (vec_math.h, included before this header, overloads the math_* functions
// for it). Branches are written as math_select so that both compile.
#pragma once

#include <cmath>

#ifdef __CUDACC__
#define XLSTM_HD __host__ __device__ __forceinline__
#else
#define XLSTM_HD inline
#endif

namespace xlstm_hf {

// log-space "minus infinity": exp() of it and of its differences with finite values is exactly 0
constexpr double kMaskedLogGate = -1e30;
// the normaliser's floor exp(-m) is capped at exp(80), so that it stays finite (LOG_FLOOR_CAP in ops/gates.py)
constexpr double kLogFloorCap = 80.0;

// ---- scalar math (the SIMD overloads live in vec_math.h) --------------------------------------------
template <typename T>
XLSTM_HD T math_exp(T x) {
  return exp(x);
}
template <typename T>
XLSTM_HD T math_log1p(T x) {
  return log1p(x);
}
template <typename T>
XLSTM_HD T math_tanh(T x) {
  return tanh(x);
}
template <typename T>
XLSTM_HD T math_abs(T x) {
  return fabs(x);
}
template <typename T>
XLSTM_HD T math_max(T a, T b) {
  return a > b ? a : b;
}
template <typename T>
XLSTM_HD T math_min(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
XLSTM_HD T math_select(bool condition, T if_true, T if_false) {
  return condition ? if_true : if_false;
}

// ---- functions of the reference ----------------------------------------------------------------------
template <typename T>
XLSTM_HD T sigmoid(T x) {
  return T(1) / (T(1) + math_exp(-x));
}

// log(sigmoid(x)) as torch computes it: min(x, 0) - log1p(exp(-|x|))
template <typename T>
XLSTM_HD T log_sigmoid(T x) {
  return math_min(x, T(0)) - math_log1p(math_exp(-math_abs(x)));
}

// Gradient of max(a, b) as torch routes it: to the larger input, split evenly on a tie.
template <typename T>
XLSTM_HD void route_max_grad(T a, T b, T grad, T& grad_a, T& grad_b) {
  const T half = grad * T(0.5);
  grad_a += math_select(a > b, grad, math_select(a < b, T(0), half));
  grad_b += math_select(a < b, grad, math_select(a > b, T(0), half));
}

// ---- mLSTM, the gates and normaliser of one step ---------------------------------------------------------

template <typename T>
struct MLSTMGates {
  T m, decay, write;  // the next stabiliser; the factors of the old memory and of the new key-value
};

// Gate pre-activations i, f and the stabiliser m of a (batch row, head); a padded step is an identity step
template <typename T>
XLSTM_HD MLSTMGates<T> mlstm_gates(T i, T f, T m, bool real) {
  const T input = real ? i : T(kMaskedLogGate);
  const T log_f = real ? log_sigmoid(f) : T(0);
  const T m_next = log_f + m > input ? log_f + m : input;
  return {m_next, math_exp(log_f + m - m_next), math_exp(input - m_next)};
}

// max(|n^T q|, exp(-m)) + eps: the normaliser of the read, in stabilised units
template <typename T>
XLSTM_HD T mlstm_normaliser(T denominator, T m, double eps) {
  const T floor = math_exp(math_min(-m, T(kLogFloorCap)));
  return (math_abs(denominator) > floor ? math_abs(denominator) : floor) + T(eps);
}

// ---- sLSTM, one unit of one step --------------------------------------------------------------------

// exp(i - m) and exp(log_f_plus_m - m) with m = max(i, log_f_plus_m): one of them is exp(0) = 1, so one
// exponential gives both, bit for bit
template <typename T>
XLSTM_HD void stabilised_gates(T i, T log_f_plus_m, T& input_gate, T& forget_gate) {
  const T smaller = math_exp(-math_abs(i - log_f_plus_m));
  const auto input_larger = i > log_f_plus_m;
  input_gate = math_select(input_larger, T(1), smaller);
  forget_gate = math_select(input_larger, smaller, T(1));
}

template <typename T>
struct SLSTMUnit {
  T h, c, n, m;
};

// Gate pre-activations (i, f, z, o) and the previous state -> the next state. An empty memory (n = 0)
// restarts the stabiliser at the input gate.
template <typename T>
XLSTM_HD SLSTMUnit<T> slstm_unit_forward(T i, T f, T z, T o, SLSTMUnit<T> prev) {
  const T m_prev = math_select(prev.n == T(0), T(kMaskedLogGate), prev.m);
  const T log_f_plus_m = m_prev + log_sigmoid(f);
  const T m = math_max(i, log_f_plus_m);
  T input_gate, forget_gate;
  stabilised_gates(i, log_f_plus_m, input_gate, forget_gate);
  const T c = forget_gate * prev.c + input_gate * math_tanh(z);
  const T n = forget_gate * prev.n + input_gate;
  return {sigmoid(o) * c / n, c, n, m};
}

template <typename T>
struct SLSTMUnitGrad {
  T di, df, dz, do_;  // gradients of the gate pre-activations
  T dc_prev, dn_prev, dm_prev;  // gradients of the previous state (h_prev's goes through the recurrence)
};

// The backward of slstm_unit_forward: dh, dc, dn, dm are the gradients of the next state.
template <typename T>
XLSTM_HD SLSTMUnitGrad<T> slstm_unit_backward(T i, T f, T z, T o, SLSTMUnit<T> prev, T dh, T dc, T dn, T dm) {
  const auto empty = prev.n == T(0);
  const T m_prev = math_select(empty, T(kMaskedLogGate), prev.m);
  const T log_f_plus_m = m_prev + log_sigmoid(f);
  T input_gate, forget_gate;
  stabilised_gates(i, log_f_plus_m, input_gate, forget_gate);
  const T tanh_z = math_tanh(z);
  const T c = forget_gate * prev.c + input_gate * tanh_z;
  const T n = forget_gate * prev.n + input_gate;
  const T sigmoid_o = sigmoid(o);

  // h = sigmoid(o) * c / n
  const T d_sigmoid_o = dh * c / n;
  dc += dh * sigmoid_o / n;
  dn -= dh * sigmoid_o * c / (n * n);
  SLSTMUnitGrad<T> grad;
  grad.do_ = d_sigmoid_o * sigmoid_o * (T(1) - sigmoid_o);
  // c = forget_gate * c_prev + input_gate * tanh(z);  n = forget_gate * n_prev + input_gate
  const T d_forget_gate = dc * prev.c + dn * prev.n;
  const T d_input_gate = dc * tanh_z + dn;
  grad.dz = dc * input_gate * (T(1) - tanh_z * tanh_z);
  grad.dc_prev = dc * forget_gate;
  grad.dn_prev = dn * forget_gate;
  // input_gate = exp(i - m);  forget_gate = exp(log_f_plus_m - m);  m = max(i, log_f_plus_m)
  grad.di = d_input_gate * input_gate;
  T d_log_f_plus_m = d_forget_gate * forget_gate;
  const T dm_total = dm - d_input_gate * input_gate - d_forget_gate * forget_gate;
  route_max_grad(i, log_f_plus_m, dm_total, grad.di, d_log_f_plus_m);
  // log_f_plus_m = m_prev + log_sigmoid(f)
  grad.df = d_log_f_plus_m * sigmoid(-f);
  grad.dm_prev = math_select(empty, T(0), d_log_f_plus_m);
  return grad;
}

}  // namespace xlstm_hf
