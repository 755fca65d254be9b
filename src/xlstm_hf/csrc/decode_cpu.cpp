// The decoding step of the whole block stack on the CPU (one token, inference, float32): what the Python
// modules of src/xlstm_hf/modeling_xlstm.py compute, in the same order, written as loops over rows of
// floats in one call, so that a generated token costs its arithmetic and not a chain of small tensor
// operations. Each block lists its parameters and state in the order read here (decode_parameters); the
// tests hold this step to the modules. Shapes: hidden [B, hidden]; every intermediate is a row-major
// [B, width] buffer.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "matvec.h"
#include "mlstm_step.h"
#include "slstm_step.h"

namespace xlstm_hf {
namespace {

// A projection goes to BLAS as a matrix product from kBlasRows rows on, or from kBlasFewRows rows where its
// weight has kBlasWeight elements or more (too many to stay in cache while the rows go by); below, dot
// products are faster: BLAS repacks the weight on every call.
constexpr int64_t kBlasRows = 16, kBlasFewRows = 4, kBlasWeight = 1 << 17;

enum BlockKind : int64_t { kNeuripsMLSTM = 0, kLargeMLSTM = 1, kSLSTM = 2 };
enum Activation : int64_t { kNone = -1, kGelu = 0, kSilu = 1, kRelu = 2, kReluSquared = 3, kSigmoid = 4 };

struct Settings {
  double norm_eps, gate_soft_cap, mlstm_eps;
  bool rms_norm;
  int64_t num_heads, activation, qk_size, v_size;  // activation: of the current block's feed-forward
};

// A float32 parameter or state (contiguous), or nullptr for an absent optional entry.
const float* floats_of(const at::Tensor& t) {
  if (!t.defined()) return nullptr;
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(),
              "decode_step: parameters and states must be contiguous float32");
  return t.data_ptr<float>();
}

// The tensors of a list, in order; absent optional entries are undefined tensors.
class Reader {
 public:
  explicit Reader(const c10::List<c10::optional<at::Tensor>>& list) : list_(list) {}
  at::Tensor next() {
    TORCH_CHECK(position_ < list_.size(), "decode_step: fewer tensors than the block needs");
    const c10::optional<at::Tensor> value = list_.get(position_++);
    return value.has_value() ? *value : at::Tensor();
  }
  const float* next_floats() { return floats_of(next()); }  // the list keeps the tensor alive

 private:
  const c10::List<c10::optional<at::Tensor>>& list_;
  size_t position_ = 0;
};

// ---- rows of floats -----------------------------------------------------------------------------------

// y[b, :out] = x[b, :in] W^T (+ bias), W [out, in]; x and y rows `x_row` and `y_row` apart. A few rows as dot
// products, eight outputs at a time, parallel over the outputs where that pays for the threads; many rows
// through BLAS.
void linear(const float* x, int64_t x_row, int64_t B, int64_t in, const float* W, const float* bias, int64_t out,
            float* y, int64_t y_row) {
  if (B >= kBlasRows || (B >= kBlasFewRows && in * out >= kBlasWeight)) {
    const auto as_matrix = [](const float* data, int64_t rows, int64_t columns, int64_t row_stride) {
      return at::from_blob(const_cast<float*>(data), {rows, columns}, {row_stride, 1}, at::kFloat);
    };
    at::Tensor result = as_matrix(y, B, out, y_row);
    at::mm_out(result, as_matrix(x, B, in, x_row), as_matrix(W, out, in, in).t());
  } else {
    const int64_t blocks = out / 8, grain = std::max<int64_t>(1, 4096 / (B * in));  // grain: blocks of 8
    at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        for (int64_t b = 0; b < B; ++b) eight_dots(x + b * x_row, W + block * 8 * in, in, y + b * y_row + block * 8);
      }
    });
    for (int64_t o = blocks * 8; o < out; ++o) {
      for (int64_t b = 0; b < B; ++b) y[b * y_row + o] = vec_dot(x + b * x_row, W + o * in, in);
    }
  }
  if (bias) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t o = 0; o < out; ++o) y[b * y_row + o] += bias[o];
    }
  }
}

// HeadwiseLinear: `blocks` independent [d, d] maps of the groups of d = width / blocks features
void headwise(const float* x, int64_t x_row, int64_t B, int64_t width, const float* W, const float* bias,
              int64_t blocks, float* y, int64_t y_row) {
  const int64_t d = width / blocks;
  for (int64_t h = 0; h < blocks; ++h) {
    linear(x + h * d, x_row, B, d, W + h * d * d, bias ? bias + h * d : nullptr, d, y + h * d, y_row);
  }
}

// x = act(x) in place, in SIMD vectors: the feed-forward activations and the SiLU / sigmoid gates
void activate(float* x, int64_t count, int64_t kind) {
  using V = Vec<float>;
  const V one(1.0f), zero(0.0f);
  for (int64_t e = 0; e < count; e += V::size()) {
    const int64_t lanes = std::min<int64_t>(V::size(), count - e);
    const V v = V::loadu(x + e, lanes);
    V y;
    switch (kind) {
      case kGelu: y = v * V(0.5f) * (one + (v * V(static_cast<float>(M_SQRT1_2))).erf()); break;
      case kSilu: y = v / (one + v.neg().exp()); break;
      case kRelu: y = at::vec::maximum(v, zero); break;
      case kReluSquared: y = at::vec::maximum(v, zero) * at::vec::maximum(v, zero); break;
      case kSigmoid: y = one / (one + v.neg().exp()); break;
      default: TORCH_CHECK(false, "decode_step: unknown activation ", kind);
    }
    y.store(x + e, lanes);
  }
}

// activate() on the first `width` values of each of B rows `row` apart
void activate_rows(float* x, int64_t row, int64_t B, int64_t width, int64_t kind) {
  for (int64_t b = 0; b < B; ++b) activate(x + b * row, width, kind);
}

// out = (x - mean) / sqrt(var + eps) over `width` values (LayerNorm without its affine part)
void standardise(const float* x, int64_t width, double eps, float* out) {
  float mean = 0;
  for (int64_t e = 0; e < width; ++e) mean += x[e];
  mean /= width;
  float variance = 0;
  for (int64_t e = 0; e < width; ++e) variance += (x[e] - mean) * (x[e] - mean);
  const float inverse_std = 1.0f / std::sqrt(variance / width + static_cast<float>(eps));
  for (int64_t e = 0; e < width; ++e) out[e] = (x[e] - mean) * inverse_std;
}

// make_norm of each row: RMSNorm (Large) or LayerNorm (NeurIPS), weight and optional bias
void block_norm(const float* x, int64_t B, int64_t width, const float* weight, const float* bias, const Settings& s,
                float* out) {
  for (int64_t b = 0; b < B; ++b) {
    const float* row = x + b * width;
    float* normed = out + b * width;
    if (s.rms_norm) {
      float sum_of_squares = 0;
      for (int64_t e = 0; e < width; ++e) sum_of_squares += row[e] * row[e];
      const float inverse_rms = 1.0f / std::sqrt(sum_of_squares / width + static_cast<float>(s.norm_eps));
      for (int64_t e = 0; e < width; ++e) normed[e] = row[e] * inverse_rms;
    } else {
      standardise(row, width, s.norm_eps, normed);
    }
    for (int64_t e = 0; e < width; ++e) normed[e] = normed[e] * weight[e] + (bias ? bias[e] : 0.0f);
  }
}

// MultiHeadNorm: each head's h [B, H, D] standardised on its own, then weight (and bias) over all H * D
void multi_head_norm(const float* h, int64_t B, int64_t H, int64_t D, const float* weight, const float* bias,
                     double eps, float* out) {
  for (int64_t bh = 0; bh < B * H; ++bh) standardise(h + bh * D, D, eps, out + bh * D);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t e = 0; e < H * D; ++e) out[b * H * D + e] = out[b * H * D + e] * weight[e] + (bias ? bias[e] : 0.0f);
  }
}

void soft_cap(float* x, int64_t count, double cap) {
  if (cap == 0) return;
  for (int64_t e = 0; e < count; ++e) x[e] = static_cast<float>(cap) * std::tanh(x[e] / static_cast<float>(cap));
}

// CausalConv1d on one step: y = bias + sum_k window[k] * weight[:, 0, k] over the window (history [B, K-1, F],
// then x); the new history is the window without its oldest row.
at::Tensor causal_conv_step(const float* x, int64_t x_row, int64_t B, int64_t F, const at::Tensor& history,
                            const float* weight, const float* bias, float* y) {
  const int64_t K = history.size(1) + 1;
  at::Tensor next_history = at::empty_like(history);
  const float* old = floats_of(history);
  float* kept = next_history.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    auto window = [&](int64_t k) { return k < K - 1 ? old + (b * (K - 1) + k) * F : x + b * x_row; };
    for (int64_t e = 0; e < F; ++e) {
      float sum = bias[e] + window(0)[e] * weight[e * K];
      for (int64_t k = 1; k < K; ++k) sum += window(k)[e] * weight[e * K + k];
      y[b * F + e] = sum;
    }
    for (int64_t k = 1; k < K; ++k) std::copy_n(window(k), F, kept + (b * (K - 1) + k - 1) * F);
  }
  return next_history;
}

// ---- the mixers -----------------------------------------------------------------------------------------

at::Tensor rows(int64_t B, int64_t width, const at::Tensor& like) { return at::empty({B, width}, like.options()); }

// The mLSTM step from q, k, v and the gate pre-activations (i of head h at gates[b, h], f at gates[b, H + h]);
// the cell state (C, n, m) is replaced. -> h [B, H, Dv]
at::Tensor mlstm_cell(const StepInputs<float>& in, std::vector<at::Tensor>& cell, int64_t B, const Settings& s) {
  const int64_t H = s.num_heads, Dqk = cell[1].size(-1), Dv = cell[0].size(-1);
  at::Tensor h = at::empty({B, H, Dv}, cell[0].options());
  std::vector<at::Tensor> next = {at::empty_like(cell[0]), at::empty_like(cell[1]), at::empty_like(cell[2])};
  mlstm_step_kernel<float>(in, floats_of(cell[0]), floats_of(cell[1]), floats_of(cell[2]), nullptr, s.mlstm_eps,
                           {B, H, Dqk, Dv}, h.data_ptr<float>(), next[0].data_ptr<float>(),
                           next[1].data_ptr<float>(), next[2].data_ptr<float>());
  cell = next;
  return h;
}

// MLSTMLayer (NeurIPS): x [B, hidden] -> [B, hidden]; state: [conv history (with a conv)], C, n, m
at::Tensor neurips_mlstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const at::Tensor up_w = p.next();
  const float *up_b = p.next_floats(), *conv_w = p.next_floats(), *conv_b = p.next_floats();
  const at::Tensor q_weight = p.next();  // [blocks, d, d]
  const float *q_w = floats_of(q_weight), *q_b = p.next_floats(), *k_w = p.next_floats(), *k_b = p.next_floats();
  const float *v_w = p.next_floats(), *v_b = p.next_floats(), *gate_w = p.next_floats(), *gate_b = p.next_floats();
  const float *norm_w = p.next_floats(), *skip = p.next_floats();
  const at::Tensor down_w = p.next();
  const float* down_b = p.next_floats();
  const int64_t B = x.size(0), hidden = x.size(1), inner = up_w.size(0) / 2, H = s.num_heads;
  const int64_t blocks = q_weight.size(0);
  at::Tensor up = rows(B, 2 * inner, x), x_conv = rows(B, inner, x), qkv = rows(B, 3 * inner, x);
  at::Tensor gates = rows(B, 2 * H, x), mixed = rows(B, inner, x), out = rows(B, hidden, x);
  float *up_p = up.data_ptr<float>(), *conv_p = x_conv.data_ptr<float>(), *qkv_p = qkv.data_ptr<float>();
  linear(floats_of(x), hidden, B, hidden, floats_of(up_w), up_b, 2 * inner, up_p, 2 * inner);  // x_mlstm, z
  std::vector<at::Tensor> cell(state.end() - 3, state.end());
  if (conv_w) {
    state[0] = causal_conv_step(up_p, 2 * inner, B, inner, state[0], conv_w, conv_b, conv_p);
  } else {
    for (int64_t b = 0; b < B; ++b) std::copy_n(up_p + b * 2 * inner, inner, conv_p + b * inner);
  }
  activate(conv_p, B * inner, kSilu);
  headwise(conv_p, inner, B, inner, q_w, q_b, blocks, qkv_p, 3 * inner);
  headwise(conv_p, inner, B, inner, k_w, k_b, blocks, qkv_p + inner, 3 * inner);
  headwise(up_p, 2 * inner, B, inner, v_w, v_b, blocks, qkv_p + 2 * inner, 3 * inner);
  float* gates_p = gates.data_ptr<float>();
  linear(qkv_p, 3 * inner, B, 3 * inner, gate_w, gate_b, 2 * H, gates_p, 2 * H);
  soft_cap(gates_p, B * 2 * H, s.gate_soft_cap);
  const StepInputs<float> in{qkv_p, qkv_p + inner, qkv_p + 2 * inner, gates_p, gates_p + H,
                             3 * inner, 3 * inner, 3 * inner, 2 * H};
  const at::Tensor h = mlstm_cell(in, cell, B, s);
  std::copy(cell.begin(), cell.end(), state.end() - 3);
  float* mixed_p = mixed.data_ptr<float>();
  multi_head_norm(h.data_ptr<float>(), B, H, inner / H, norm_w, nullptr, s.norm_eps, mixed_p);
  float* z = up_p + inner;
  activate_rows(z, 2 * inner, B, inner, kSilu);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t e = 0; e < inner; ++e) {
      const int64_t i = b * inner + e;
      mixed_p[i] = (mixed_p[i] + skip[e] * conv_p[i]) * z[b * 2 * inner + e];
    }
  }
  linear(mixed_p, inner, B, inner, floats_of(down_w), down_b, hidden, out.data_ptr<float>(), hidden);
  return out;
}

// MLSTMLargeLayer (xLSTM-7B): x [B, hidden] -> [B, hidden]; state: C, n, m
at::Tensor large_mlstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const float *qkvo_w = p.next_floats(), *qkvo_b = p.next_floats(), *gate_w = p.next_floats();
  const float *gate_b = p.next_floats(), *norm_w = p.next_floats(), *norm_b = p.next_floats();
  const float *out_w = p.next_floats(), *out_b = p.next_floats();
  const int64_t B = x.size(0), hidden = x.size(1), H = s.num_heads, qk = s.qk_size, v = s.v_size;
  const int64_t width = 2 * qk + 2 * v;
  at::Tensor qkvo = rows(B, width, x), gates = rows(B, 2 * H, x), gated = rows(B, v, x), out = rows(B, hidden, x);
  float *qkvo_p = qkvo.data_ptr<float>(), *gates_p = gates.data_ptr<float>(), *gated_p = gated.data_ptr<float>();
  linear(floats_of(x), hidden, B, hidden, qkvo_w, qkvo_b, width, qkvo_p, width);  // q, k, v, o
  linear(floats_of(x), hidden, B, hidden, gate_w, gate_b, 2 * H, gates_p, 2 * H);
  soft_cap(gates_p, B * 2 * H, s.gate_soft_cap);
  const StepInputs<float> in{qkvo_p, qkvo_p + qk, qkvo_p + 2 * qk, gates_p, gates_p + H, width, width, width, 2 * H};
  const at::Tensor h = mlstm_cell(in, state, B, s);
  multi_head_norm(h.data_ptr<float>(), B, H, v / H, norm_w, norm_b, s.norm_eps, gated_p);
  float* o = qkvo_p + 2 * qk + v;
  activate_rows(o, width, B, v, kSigmoid);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t e = 0; e < v; ++e) gated_p[b * v + e] *= o[b * width + e];
  }
  linear(gated_p, v, B, v, out_w, out_b, hidden, out.data_ptr<float>(), hidden);
  return out;
}

// SLSTMLayer: x [B, hidden] -> [B, hidden]; state: [conv history (with a conv)], h, c, n, m (each [B, H, D])
at::Tensor slstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const float *conv_w = p.next_floats(), *conv_b = p.next_floats();
  const float *i_w = p.next_floats(), *f_w = p.next_floats(), *z_w = p.next_floats(), *o_w = p.next_floats();
  const at::Tensor kernel = p.next();  // [H, D, 4, D]
  const float *bias = p.next_floats(), *norm_w = p.next_floats();
  const int64_t B = x.size(0), hidden = x.size(1), H = kernel.size(0), D = kernel.size(1), G = 4 * D;
  at::Tensor x_conv = rows(B, hidden, x), gates_x = rows(B, 4 * hidden, x), out = rows(B, hidden, x);
  const float* x_p = floats_of(x);
  float *conv_p = x_conv.data_ptr<float>(), *gates_p = gates_x.data_ptr<float>();
  if (conv_w) {
    state[0] = causal_conv_step(x_p, hidden, B, hidden, state[0], conv_w, conv_b, conv_p);
    activate(conv_p, B * hidden, kSilu);
  } else {
    std::copy_n(x_p, B * hidden, conv_p);
  }
  // gates_x [B, 4, hidden]: i and f from the convolved input, z and o from the input
  headwise(conv_p, hidden, B, hidden, i_w, nullptr, H, gates_p, 4 * hidden);
  headwise(conv_p, hidden, B, hidden, f_w, nullptr, H, gates_p + hidden, 4 * hidden);
  headwise(x_p, hidden, B, hidden, z_w, nullptr, H, gates_p + 2 * hidden, 4 * hidden);
  headwise(x_p, hidden, B, hidden, o_w, nullptr, H, gates_p + 3 * hidden, 4 * hidden);
  const size_t first = state.size() - 4;
  std::vector<at::Tensor> next;
  for (size_t index = first; index < state.size(); ++index) next.push_back(at::empty_like(state[index]));
  // the rows (h, c, n, m) of one (batch row, head) pair in the four state tensors
  auto rows_of = [&](std::vector<at::Tensor>::const_iterator planes, int64_t pair) {
    float* unit[4];
    for (int64_t plane = 0; plane < 4; ++plane) unit[plane] = planes[plane].data_ptr<float>() + pair * D;
    return Rows<float>{unit[0], unit[1], unit[2], unit[3]};
  };
  for (size_t index = first; index < state.size(); ++index) floats_of(state[index]);
  std::vector<float> raw(G);
  for (int64_t pair = 0; pair < B * H; ++pair) {
    const int64_t b = pair / H, head = pair % H;
    const Rows<float> prev = rows_of(state.cbegin() + first, pair);  // read only
    gate_preactivations(gates_p + b * 4 * hidden + head * D, hidden, bias + head * G, floats_of(kernel) + head * D * G,
                        prev.h, D, raw.data());
    forward_step(raw.data(), prev, rows_of(next.cbegin(), pair), D);
  }
  std::copy(next.begin(), next.end(), state.begin() + first);
  multi_head_norm(next[0].data_ptr<float>(), B, H, D, norm_w, nullptr, s.norm_eps, out.data_ptr<float>());
  return out;
}

// ---- the block ----------------------------------------------------------------------------------------

// hidden + GatedFeedForward(ffn_norm(hidden)), in place on `hidden` [B, width]
void feed_forward(at::Tensor& hidden, Reader& p, const Settings& s) {
  const float *norm_w = p.next_floats(), *norm_b = p.next_floats();
  const at::Tensor up_w = p.next();
  const float *up_b = p.next_floats(), *down_w = p.next_floats(), *down_b = p.next_floats();
  const int64_t B = hidden.size(0), width = hidden.size(1), ffn = up_w.size(0) / 2;
  at::Tensor normed = rows(B, width, hidden), gate_up = rows(B, 2 * ffn, hidden), mixed = rows(B, width, hidden);
  float *hidden_p = hidden.data_ptr<float>(), *normed_p = normed.data_ptr<float>();
  float *gate_up_p = gate_up.data_ptr<float>(), *mixed_p = mixed.data_ptr<float>();
  block_norm(hidden_p, B, width, norm_w, norm_b, s, normed_p);
  linear(normed_p, width, B, width, floats_of(up_w), up_b, 2 * ffn, gate_up_p, 2 * ffn);  // gate, up
  activate_rows(gate_up_p, 2 * ffn, B, ffn, s.activation);
  for (int64_t b = 0; b < B; ++b) {
    float* row = gate_up_p + b * 2 * ffn;
    for (int64_t e = 0; e < ffn; ++e) row[e] *= row[ffn + e];
  }
  linear(gate_up_p, 2 * ffn, B, ffn, down_w, down_b, width, mixed_p, width);
  for (int64_t e = 0; e < B * width; ++e) hidden_p[e] += mixed_p[e];
}

// One block: hidden [B, width] -> hidden; `state` is the block's state, replaced by the new one
at::Tensor block_step(const at::Tensor& hidden, Reader& p, std::vector<at::Tensor>& state, int64_t kind,
                      const Settings& s) {
  const int64_t B = hidden.size(0), width = hidden.size(1);
  const float *norm_w = p.next_floats(), *norm_b = p.next_floats();
  at::Tensor normed = rows(B, width, hidden);
  block_norm(hidden.data_ptr<float>(), B, width, norm_w, norm_b, s, normed.data_ptr<float>());
  at::Tensor out;
  switch (kind) {
    case kNeuripsMLSTM: out = neurips_mlstm(normed, p, state, s); break;
    case kLargeMLSTM: out = large_mlstm(normed, p, state, s); break;
    case kSLSTM: out = slstm(normed, p, state, s); break;
    default: TORCH_CHECK(false, "decode_step: unknown block kind ", kind);
  }
  float* out_p = out.data_ptr<float>();
  const float* hidden_p = hidden.data_ptr<float>();
  for (int64_t e = 0; e < B * width; ++e) out_p[e] += hidden_p[e];  // the residual
  if (s.activation != kNone) feed_forward(out, p, s);
  return out;
}

// One token through the block stack and the out norm. `layout` holds three numbers per block: its kind,
// its feed-forward activation (kNone: none) and the number of its state tensors. floats: norm eps, gate
// soft cap, mLSTM eps; ints: RMSNorm (else LayerNorm), heads, q/k and v widths of Large blocks, out norm.
std::tuple<at::Tensor, std::vector<at::Tensor>> decode_step_cpu(
    const at::Tensor& hidden, const c10::List<c10::optional<at::Tensor>>& params, const at::TensorList state,
    at::IntArrayRef layout, at::ArrayRef<double> floats, at::IntArrayRef ints) {
  TORCH_CHECK(hidden.dim() == 2, "decode_step: hidden must be [B, hidden]");
  TORCH_CHECK(floats.size() == 3 && ints.size() == 5 && layout.size() % 3 == 0,
              "decode_step: settings of the wrong length");
  Settings s{floats[0], floats[1], floats[2], ints[0] != 0, ints[1], kNone, ints[2], ints[3]};
  at::Tensor x = hidden.contiguous();
  floats_of(x);  // checks the dtype
  Reader p(params);
  std::vector<at::Tensor> new_state;
  size_t first = 0;
  for (size_t block = 0; block < layout.size() / 3; ++block) {
    const int64_t kind = layout[3 * block], count = layout[3 * block + 2];
    s.activation = layout[3 * block + 1];
    TORCH_CHECK(first + count <= state.size(), "decode_step: fewer state tensors than the blocks need");
    std::vector<at::Tensor> block_state;
    for (int64_t index = 0; index < count; ++index) block_state.push_back(state[first + index].contiguous());
    x = block_step(x, p, block_state, kind, s);
    new_state.insert(new_state.end(), block_state.begin(), block_state.end());
    first += count;
  }
  if (ints[4] != 0) {  // the out norm
    const float *out_norm_w = p.next_floats(), *out_norm_b = p.next_floats();
    at::Tensor normed = rows(x.size(0), x.size(1), x);
    block_norm(x.data_ptr<float>(), x.size(0), x.size(1), out_norm_w, out_norm_b, s, normed.data_ptr<float>());
    x = normed;
  }
  return {x, new_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("decode_step", &decode_step_cpu);
}

}  // namespace xlstm_hf
