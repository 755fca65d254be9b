// The decoding step of a whole block on the CPU (one token, inference): the ATen operations of the
// Python modules in src/xlstm_hf/modeling_xlstm.py, in the same order, in one call per block, so that a
// generated token costs little more than its arithmetic. src/xlstm_hf/fused_decode.py lists each
// block's parameters and state in the order read here; the tests hold this step to the modules.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace xlstm_hf {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_step_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, const c10::optional<at::Tensor>& mask,
    double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> slstm_forward_cpu(
    const at::Tensor& gates_x, const at::Tensor& recurrent_kernel, const at::Tensor& bias,
    const c10::optional<at::Tensor>& mask, const at::Tensor& initial_states);

namespace {

enum BlockKind : int64_t { kNeuripsMLSTM = 0, kLargeMLSTM = 1, kSLSTM = 2 };
enum Activation : int64_t { kNone = -1, kGelu = 0, kSilu = 1, kRelu = 2, kReluSquared = 3, kSigmoid = 4 };

struct Settings {
  double norm_eps, gate_soft_cap, mlstm_eps;
  bool rms_norm;
  int64_t num_heads, activation, qk_size, v_size;
};

// The tensors of a list, in order; absent optional entries are undefined tensors.
class Reader {
 public:
  explicit Reader(const c10::List<c10::optional<at::Tensor>>& list) : list_(list) {}
  at::Tensor next() {
    TORCH_CHECK(position_ < list_.size(), "decode_block: fewer tensors than the block needs");
    const c10::optional<at::Tensor> value = list_.get(position_++);
    return value.has_value() ? *value : at::Tensor();
  }

 private:
  const c10::List<c10::optional<at::Tensor>>& list_;
  size_t position_ = 0;
};

c10::optional<at::Tensor> maybe(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

at::Tensor add_bias(at::Tensor x, const at::Tensor& bias) {
  return bias.defined() ? x + bias : x;
}

// XLSTMRMSNorm on float32 rows [B, hidden], in one pass (ATen's rms_norm is a chain of small ops)
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const at::Tensor x_c = x.contiguous(), weight_c = weight.contiguous();
  at::Tensor out = at::empty_like(x_c);
  const int64_t rows = x_c.size(0), width = x_c.size(1);
  const float* in = x_c.data_ptr<float>();
  const float* w = weight_c.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float sum_of_squares = 0;
    for (int64_t e = 0; e < width; ++e) sum_of_squares += in[r * width + e] * in[r * width + e];
    const float inverse_rms = 1.0f / std::sqrt(sum_of_squares / width + static_cast<float>(eps));
    for (int64_t e = 0; e < width; ++e) o[r * width + e] = in[r * width + e] * inverse_rms * w[e];
  }
  return add_bias(out, bias);
}

// make_norm: LayerNorm (NeurIPS) or RMSNorm (Large)
at::Tensor block_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Settings& s) {
  if (s.rms_norm) return rms_norm(x, weight, bias, s.norm_eps);
  return at::layer_norm(x, {x.size(-1)}, weight, maybe(bias), s.norm_eps);
}

// MultiHeadNorm on one step: h [B, H, D] -> [B, H * D]
at::Tensor multi_head_norm(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const at::Tensor normed = at::layer_norm(h.to(at::kFloat), {h.size(-1)}, c10::nullopt, c10::nullopt, eps);
  return add_bias(normed.to(h.scalar_type()).flatten(1) * weight, bias);
}

at::Tensor soft_cap(const at::Tensor& x, double cap) {
  return cap != 0 ? cap * at::tanh(x / cap) : x;
}

// HeadwiseLinear: x [B, F] with weight [blocks, out, in]
at::Tensor headwise(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const at::Tensor y = at::einsum("...hd,hod->...ho", {x.unflatten(-1, {weight.size(0), -1}), weight}).flatten(-2);
  return add_bias(y, bias);
}

at::Tensor activation(const at::Tensor& x, int64_t kind) {
  switch (kind) {
    case kGelu: return at::gelu(x);
    case kSilu: return at::silu(x);
    case kRelu: return at::relu(x);
    case kReluSquared: return at::relu(x).square();
    case kSigmoid: return at::sigmoid(x);
    default: TORCH_CHECK(false, "decode_block: unknown activation ", kind);
  }
}

// CausalConv1d on one step: x [B, F] and history [B, K-1, F] -> y [B, F]; history moves on by one. The
// weighted sum over the window directly: a convolution call costs far more than this arithmetic.
at::Tensor causal_conv_step(const at::Tensor& x, at::Tensor& history, const at::Tensor& weight, const at::Tensor& bias) {
  const at::Tensor window = at::cat({history.to(x.scalar_type()), x.unsqueeze(1)}, 1);  // [B, K, F]
  const at::Tensor y = (window * weight.squeeze(1).t()).sum(1) + bias;  // weight [F, 1, K] -> [K, F]
  history = window.narrow(1, 1, window.size(1) - 1);
  return y;
}

// The mLSTM step with gate pre-activations `gates` [B, 2H] and q, k [B, Dqk], v [B, Dv]
at::Tensor mlstm_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& gates,
                      std::vector<at::Tensor>& cell, const Settings& s) {
  const int64_t B = q.size(0), H = s.num_heads;
  const std::vector<at::Tensor> i_f = gates.chunk(2, -1);
  auto [h, C, n, m] = mlstm_step_cpu(q.view({B, H, -1}), k.view({B, H, -1}), v.view({B, H, -1}), i_f[0], i_f[1],
                                     cell[0], cell[1], cell[2], c10::nullopt, s.mlstm_eps);
  cell = {C, n, m};
  return h;  // [B, H, Dv]
}

// MLSTMLayer (NeurIPS); state: [conv history (with a conv)], C, n, m
at::Tensor neurips_mlstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const at::Tensor up_w = p.next(), up_b = p.next(), conv_w = p.next(), conv_b = p.next();
  const at::Tensor q_w = p.next(), q_b = p.next(), k_w = p.next(), k_b = p.next(), v_w = p.next(), v_b = p.next();
  const at::Tensor gate_w = p.next(), gate_b = p.next(), norm_w = p.next(), skip = p.next();
  const at::Tensor down_w = p.next(), down_b = p.next();
  const std::vector<at::Tensor> up = at::linear(x, up_w, maybe(up_b)).chunk(2, -1);  // x_mlstm, z
  at::Tensor x_conv = up[0];
  std::vector<at::Tensor> cell(state.end() - 3, state.end());
  if (conv_w.defined()) x_conv = causal_conv_step(up[0], state[0], conv_w, conv_b);
  x_conv = at::silu(x_conv);
  const at::Tensor q = headwise(x_conv, q_w, q_b), k = headwise(x_conv, k_w, k_b), v = headwise(up[0], v_w, v_b);
  const at::Tensor gates = soft_cap(at::linear(at::cat({q, k, v}, -1), gate_w, gate_b), s.gate_soft_cap);
  const at::Tensor h = mlstm_step(q, k, v, gates, cell, s);
  std::copy(cell.begin(), cell.end(), state.end() - 3);
  const at::Tensor mixed = multi_head_norm(h, norm_w, at::Tensor(), s.norm_eps) + skip * x_conv;
  return at::linear(mixed * at::silu(up[1]), down_w, maybe(down_b));
}

// MLSTMLargeLayer (xLSTM-7B); state: C, n, m
at::Tensor large_mlstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const at::Tensor qkvo_w = p.next(), qkvo_b = p.next(), gate_w = p.next(), gate_b = p.next();
  const at::Tensor norm_w = p.next(), norm_b = p.next(), out_w = p.next(), out_b = p.next();
  const std::vector<at::Tensor> qkvo =
      at::linear(x, qkvo_w, maybe(qkvo_b)).split_with_sizes({s.qk_size, s.qk_size, s.v_size, s.v_size}, -1);
  const at::Tensor gates = soft_cap(at::linear(x, gate_w, gate_b), s.gate_soft_cap);
  const at::Tensor h = mlstm_step(qkvo[0], qkvo[1], qkvo[2], gates, state, s);
  return at::linear(at::sigmoid(qkvo[3]) * multi_head_norm(h, norm_w, norm_b, s.norm_eps), out_w, maybe(out_b));
}

// SLSTMLayer; state: [conv history (with a conv)], h, c, n, m
at::Tensor slstm(const at::Tensor& x, Reader& p, std::vector<at::Tensor>& state, const Settings& s) {
  const at::Tensor conv_w = p.next(), conv_b = p.next();
  const at::Tensor i_w = p.next(), f_w = p.next(), z_w = p.next(), o_w = p.next();
  const at::Tensor kernel = p.next(), bias = p.next(), norm_w = p.next();
  at::Tensor x_conv = x;
  if (conv_w.defined()) x_conv = at::silu(causal_conv_step(x, state[0], conv_w, conv_b));
  const at::Tensor gates_x = at::stack({headwise(x_conv, i_w, at::Tensor()), headwise(x_conv, f_w, at::Tensor()),
                                        headwise(x, z_w, at::Tensor()), headwise(x, o_w, at::Tensor())},
                                       1);  // [B, 4, hidden]
  const int64_t B = x.size(0), H = kernel.size(0);
  const at::Tensor cell = at::stack({state.end()[-4], state.end()[-3], state.end()[-2], state.end()[-1]});
  auto [h, final_states, all_states, raw] = slstm_forward_cpu(
      gates_x.view({B, 4, H, -1}).permute({0, 2, 1, 3}).unsqueeze(2).to(at::kFloat), kernel.to(at::kFloat),
      bias.to(at::kFloat), c10::nullopt, cell);
  for (int64_t index = 0; index < 4; ++index) state.end()[index - 4] = final_states[index];
  return multi_head_norm(h.squeeze(2).to(x.scalar_type()), norm_w, at::Tensor(), s.norm_eps);
}

std::tuple<at::Tensor, std::vector<at::Tensor>> decode_block_cpu(
    const at::Tensor& hidden, const c10::List<c10::optional<at::Tensor>>& params,
    const c10::List<c10::optional<at::Tensor>>& state, int64_t kind, at::ArrayRef<double> floats,
    at::IntArrayRef ints) {
  TORCH_CHECK(hidden.dim() == 2, "decode_block: hidden must be [B, hidden]");
  TORCH_CHECK(floats.size() == 3 && ints.size() == 5, "decode_block: settings of the wrong length");
  const Settings s{floats[0], floats[1], floats[2], ints[0] != 0, ints[1], ints[2], ints[3], ints[4]};
  Reader p(params);
  std::vector<at::Tensor> new_state;
  for (size_t index = 0; index < state.size(); ++index) new_state.push_back(*state.get(index));
  const at::Tensor norm_w = p.next(), norm_b = p.next();
  const at::Tensor normed = block_norm(hidden, norm_w, norm_b, s);
  at::Tensor mixed;
  switch (kind) {
    case kNeuripsMLSTM: mixed = neurips_mlstm(normed, p, new_state, s); break;
    case kLargeMLSTM: mixed = large_mlstm(normed, p, new_state, s); break;
    case kSLSTM: mixed = slstm(normed, p, new_state, s); break;
    default: TORCH_CHECK(false, "decode_block: unknown block kind ", kind);
  }
  at::Tensor out = hidden + mixed;
  if (s.activation != kNone) {
    const at::Tensor ffn_norm_w = p.next(), ffn_norm_b = p.next();
    const at::Tensor up_w = p.next(), up_b = p.next(), down_w = p.next(), down_b = p.next();
    const std::vector<at::Tensor> gate_up =
        at::linear(block_norm(out, ffn_norm_w, ffn_norm_b, s), up_w, maybe(up_b)).chunk(2, -1);
    out = out + at::linear(activation(gate_up[0], s.activation) * gate_up[1], down_w, maybe(down_b));
  }
  return {out, new_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("decode_block", &decode_block_cpu);
}

}  // namespace xlstm_hf
