// The chunkwise mLSTM (docs/design.md 1.3) on the CPU: the operators xlstm_hf::mlstm_chunkwise_forward and
// mlstm_chunkwise_backward (schemas in ops.cpp), computing the PyTorch reference
// (src/xlstm_hf/ops/mlstm/chunkwise.py) and its backward as written out in chunkwise_backward.py.
//
// One task per (batch row, head), in parallel; inside a task the chunks of L steps run in order (forward) or
// from the last (backward), each as a few small matrix products on tiles in the task's scratch plus row-wise
// math on the chunk's L x L log weights. The forward keeps nothing; the backward recomputes the memory
// entering every chunk, then walks the chunks backwards, computing each chunk's outputs again, their
// gradients and those through the memory. The last chunk is shorter where L does not divide T: the identity
// steps that pad it in the reference change none of its values.
//   q, k [B, H, T, Dqk], v [B, H, T, Dv] (any strides, the last dimension contiguous); i, f [B, H, T] gate
//   pre-activations; mask [B, T] (False: padded) or none; the state C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H].
// Float32 or float64 arithmetic (half precision inputs are computed in float32).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "vec_math.h"
#include "pointwise.h"  // after vec_math.h, whose overloads it uses

namespace xlstm_hf {
namespace {

// ---- small matrix products on tiles ------------------------------------------------------------------------
// out[M, N] (+)= A B with A (M x K) read at a[r * a_r + p * a_p] (row-major, or transposed with a_r = 1) and
// B [K, N] row-major, rows ldb apart. Blocks of kRows rows x kVectors SIMD vectors of columns are summed in
// registers over p; `width` < kVectors * W only in the last, partial vector of a row.

template <typename Real, int kRows, int kVectors, bool kFull>
inline void product_block(const Real* a, int64_t a_r, int64_t a_p, const Real* b, int64_t ldb, int64_t K, Real* out,
                          int64_t ldo, int64_t width, bool accumulate) {
  using V = Vec<Real>;
  constexpr int W = V::size();
  const auto load = [&](const Real* p, int v) { return kFull ? V::loadu(p) : V::loadu(p, width - v * W); };
  V sums[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) sums[r][v] = accumulate ? load(out + r * ldo + v * W, v) : V(Real(0));
  }
  for (int64_t p = 0; p < K; ++p) {
    V columns[kVectors];
    for (int v = 0; v < kVectors; ++v) columns[v] = load(b + p * ldb + v * W, v);
    for (int r = 0; r < kRows; ++r) {
      const V a_rp(a[r * a_r + p * a_p]);
      for (int v = 0; v < kVectors; ++v) sums[r][v] = at::vec::fmadd(a_rp, columns[v], sums[r][v]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) {
      if (kFull) {
        sums[r][v].store(out + r * ldo + v * W);
      } else {
        sums[r][v].store(out + r * ldo + v * W, width - v * W);
      }
    }
  }
}

// one panel of columns for all M rows, four rows at a time
template <typename Real, int kVectors, bool kFull>
inline void product_panel(const Real* a, int64_t a_r, int64_t a_p, const Real* b, int64_t ldb, Real* out, int64_t ldo,
                          int64_t M, int64_t K, int64_t width, bool accumulate) {
  int64_t r = 0;
  for (; r + 4 <= M; r += 4) {
    product_block<Real, 4, kVectors, kFull>(a + r * a_r, a_r, a_p, b, ldb, K, out + r * ldo, ldo, width, accumulate);
  }
  for (; r < M; ++r) {
    product_block<Real, 1, kVectors, kFull>(a + r * a_r, a_r, a_p, b, ldb, K, out + r * ldo, ldo, width, accumulate);
  }
}

template <typename Real>
void product(const Real* a, int64_t a_r, int64_t a_p, const Real* b, int64_t ldb, Real* out, int64_t ldo, int64_t M,
             int64_t N, int64_t K, bool accumulate) {
  constexpr int W = Vec<Real>::size();
  int64_t j = 0;
  for (; j + 2 * W <= N; j += 2 * W) {
    product_panel<Real, 2, true>(a, a_r, a_p, b + j, ldb, out + j, ldo, M, K, 2 * W, accumulate);
  }
  for (; j + W <= N; j += W) product_panel<Real, 1, true>(a, a_r, a_p, b + j, ldb, out + j, ldo, M, K, W, accumulate);
  if (j < N) product_panel<Real, 1, false>(a, a_r, a_p, b + j, ldb, out + j, ldo, M, K, N - j, accumulate);
}

// out[cols, rows] = x[rows, cols]^T for x with rows `stride` apart
template <typename Real>
void transpose(const Real* x, int64_t stride, int64_t rows, int64_t cols, Real* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = x[r * stride + c];
  }
}

// out[j] = exp(x[j] - shift) for j < n, 0 for n <= j < width
template <typename Real>
void exp_shifted(const Real* x, Real shift, int64_t n, int64_t width, Real* out) {
  using V = Vec<Real>;
  const V by(shift);
  int64_t j = 0;
  for (; j + V::size() <= n; j += V::size()) (V::loadu(x + j) - by).exp().store(out + j);
  if (j < n) (V::loadu(x + j, n - j) - by).exp().store(out + j, n - j);
  std::fill(out + n, out + width, Real(0));
}

template <typename Real>
Real dot(const Real* a, const Real* b, int64_t n) {
  return vec_dot(a, b, n);
}

// ---- the problem and one task's scratch -------------------------------------------------------------------

// The rows of a [B, H, T, D] tensor for one (batch row, head): step t at data + t * stride
template <typename Real>
struct Rows {
  Real* data;
  int64_t stride;
  Real* row(int64_t t) const { return data + t * stride; }
};

template <typename Real>
Rows<Real> rows_of(const at::Tensor& x, int64_t b, int64_t h) {
  return {x.data_ptr<Real>() + b * x.stride(0) + h * x.stride(1), x.stride(2)};
}

struct Dims {
  int64_t B, H, T, Dqk, Dv, L;
};

// One chunk of a task: Lc steps from t0 of the rows q, k, v and of the gates ii, lf
template <typename Real>
struct Chunk {
  const Real *q, *k, *v;  // the chunk's first rows
  int64_t q_stride, k_stride, v_stride;
  const Real *ii, *lf;  // [Lc]
  int64_t t0, Lc;
};

template <typename Real>
struct Scratch {
  int64_t L, Dqk, Dv;
  std::vector<Real> ii, lf;                            // [T] the gates of the row (padded steps: identity steps)
  std::vector<Real> qs, kT, span, log_D, P, A, S;      // [L, Dqk], [Dqk, L], [L], [L, L] x 4
  std::vector<Real> rho, largest, m_t, R, den, floor;  // [L] each
  std::vector<Real> normaliser, a, w;                  // [L] each
  std::vector<Real> h, wk;                             // [L, Dv], [L, Dqk]

  Scratch(const Dims& d)
      : L(d.L), Dqk(d.Dqk), Dv(d.Dv), ii(d.T), lf(d.T), qs(d.L * d.Dqk), kT(d.Dqk * d.L), span(d.L),
        log_D(d.L * d.L), P(d.L * d.L), A(d.L * d.L), S(d.L * d.L), rho(d.L), largest(d.L), m_t(d.L), R(d.L),
        den(d.L), floor(d.L), normaliser(d.L), a(d.L), w(d.L), h(d.L * d.Dv), wk(d.L * d.Dqk) {}
};

// ii = i and lf = logsigmoid(f) over a row of T steps; a padded step is an identity step (ii = -1e30, lf = 0)
template <typename Real>
void load_gates(const Real* i, const Real* f, const bool* mask_row, int64_t T, Real* ii, Real* lf) {
  using V = Vec<Real>;
  int64_t t = 0;
  for (; t + V::size() <= T; t += V::size()) {
    V::loadu(i + t).store(ii + t);
    log_sigmoid(V::loadu(f + t)).store(lf + t);
  }
  for (; t < T; ++t) {
    ii[t] = i[t];
    lf[t] = log_sigmoid(f[t]);
  }
  if (mask_row == nullptr) return;
  for (t = 0; t < T; ++t) {
    if (!mask_row[t]) {
      ii[t] = Real(kMaskedLogGate);
      lf[t] = Real(0);
    }
  }
}

// The chunk's scaled queries qs [Lc, Dqk] and transposed keys kT [Dqk, Lc]
template <typename Real>
void load_chunk(const Chunk<Real>& x, Real scale, Scratch<Real>& s) {
  for (int64_t t = 0; t < x.Lc; ++t) {
    const Real* q = x.q + t * x.q_stride;
    for (int64_t d = 0; d < s.Dqk; ++d) s.qs[t * s.Dqk + d] = q[d] * scale;
  }
  transpose(x.k, x.k_stride, x.Lc, s.Dqk, s.kT.data());
}

// ---- the forward of one chunk ------------------------------------------------------------------------------

// The chunk's log weights under the memory's stabiliser m: log_D[t][j] = (sum of lf over j+1..t) + ii[j] for
// key j <= query t (the sums over spans, never differences of running sums), rho[t] = (sum of lf over 0..t) + m
// for the entering memory, the stabiliser m_t = max(max_j log_D[t][j], rho[t]) and the weights
// P = exp(log_D - m_t) (0 above the diagonal), R = exp(rho - m_t)
template <typename Real>
void chunk_weights(const Chunk<Real>& x, Real m, Scratch<Real>& s) {
  const int64_t L = s.L;
  Real* span = s.span.data();
  Real b = 0;
  for (int64_t t = 0; t < x.Lc; ++t) {
    const Real lf = x.lf[t];
    b += lf;
    for (int64_t j = 0; j < t; ++j) span[j] += lf;
    span[t] = 0;
    Real* row = s.log_D.data() + t * L;
    Real largest = -std::numeric_limits<Real>::infinity();
    for (int64_t j = 0; j <= t; ++j) {
      row[j] = span[j] + x.ii[j];
      largest = std::max(largest, row[j]);
    }
    s.rho[t] = b + m;
    s.largest[t] = largest;
    s.m_t[t] = std::max(largest, s.rho[t]);
    exp_shifted(row, s.m_t[t], t + 1, x.Lc, s.P.data() + t * L);
  }
  exp_shifted(s.rho.data(), Real(0), x.Lc, x.Lc, s.R.data());
  for (int64_t t = 0; t < x.Lc; ++t) s.R[t] = std::exp(s.rho[t] - s.m_t[t]);
}

// The chunk's outputs h [Lc, Dv] (in scratch): S = (qs k^T) * P within the chunk plus the entering memory
// (C, n) read with weight R, over the normaliser max(|S 1 + R qs n|, exp(-m_t)) + eps
template <typename Real>
void chunk_outputs(const Chunk<Real>& x, const Real* C, const Real* n, Real eps, Scratch<Real>& s) {
  const int64_t L = s.L, Lc = x.Lc, Dqk = s.Dqk, Dv = s.Dv;
  product(s.qs.data(), Dqk, 1, s.kT.data(), Lc, s.A.data(), L, Lc, Lc, Dqk, false);  // A = qs k^T
  for (int64_t t = 0; t < Lc; ++t) {
    for (int64_t j = 0; j < Lc; ++j) s.S[t * L + j] = s.A[t * L + j] * s.P[t * L + j];
  }
  Real* h = s.h.data();
  product(s.qs.data(), Dqk, 1, C, Dv, h, Dv, Lc, Dv, Dqk, false);  // qs C, then times R, plus S v
  for (int64_t t = 0; t < Lc; ++t) {
    for (int64_t e = 0; e < Dv; ++e) h[t * Dv + e] *= s.R[t];
  }
  product(s.S.data(), L, 1, x.v, x.v_stride, h, Dv, Lc, Dv, Lc, true);
  for (int64_t t = 0; t < Lc; ++t) {
    Real row_sum = 0;
    for (int64_t j = 0; j <= t; ++j) row_sum += s.S[t * L + j];
    s.den[t] = row_sum + s.R[t] * dot(s.qs.data() + t * Dqk, n, Dqk);
    s.floor[t] = std::exp(std::min(-s.m_t[t], Real(kLogFloorCap)));
    s.normaliser[t] = std::max(std::abs(s.den[t]), s.floor[t]) + eps;
    for (int64_t e = 0; e < Dv; ++e) h[t * Dv + e] /= s.normaliser[t];
  }
}

// The gates of the chunk's write into the memory: a[j] = (sum of lf over j+1..Lc-1) + ii[j], g the sum of lf
// over the chunk, m' = max(g + m, max_j a[j]); w[j] = exp(a[j] - m') and decay = exp(g + m - m')
template <typename Real>
struct ChunkDecay {
  Real g, a_max, m_next, decay;
};

template <typename Real>
ChunkDecay<Real> chunk_decay(const Chunk<Real>& x, Real m, Scratch<Real>& s) {
  Real suffix = 0, a_max = -std::numeric_limits<Real>::infinity();
  for (int64_t j = x.Lc - 1; j >= 0; --j) {
    s.a[j] = suffix + x.ii[j];
    a_max = std::max(a_max, s.a[j]);
    suffix += x.lf[j];
  }
  const Real g = suffix, m_next = std::max(g + m, a_max);
  exp_shifted(s.a.data(), m_next, x.Lc, x.Lc, s.w.data());
  return {g, a_max, m_next, std::exp(g + m - m_next)};
}

// The memory leaving the chunk, in place: C = decay C + (w k)^T v, n = decay n + sum_j w_j k_j; -> its m'
template <typename Real>
Real chunk_update(const Chunk<Real>& x, Real* C, Real* n, Real m, Scratch<Real>& s) {
  const int64_t Dqk = s.Dqk, Dv = s.Dv;
  const ChunkDecay<Real> gates = chunk_decay(x, m, s);
  for (int64_t index = 0; index < Dqk * Dv; ++index) C[index] *= gates.decay;
  for (int64_t d = 0; d < Dqk; ++d) n[d] *= gates.decay;
  for (int64_t j = 0; j < x.Lc; ++j) {
    const Real* k = x.k + j * x.k_stride;
    for (int64_t d = 0; d < Dqk; ++d) {
      s.wk[j * Dqk + d] = s.w[j] * k[d];
      n[d] += s.wk[j * Dqk + d];
    }
  }
  product(s.wk.data(), 1, Dqk, x.v, x.v_stride, C, Dv, Dqk, Dv, x.Lc, true);
  return gates.m_next;
}

// ---- a task: the rows of one (batch row, head) -------------------------------------------------------------

template <typename Real>
struct Task {
  Rows<Real> q, k, v;
  const Real *i, *f;  // [T]
  const bool* mask;   // [T] or null
  Dims d;

  Chunk<Real> chunk(int64_t c, const Scratch<Real>& s) const {
    const int64_t t0 = c * d.L, Lc = std::min(d.L, d.T - t0);
    return {q.row(t0), k.row(t0), v.row(t0), q.stride, k.stride, v.stride, s.ii.data() + t0, s.lf.data() + t0,
            t0, Lc};
  }
  int64_t chunks() const { return (d.T + d.L - 1) / d.L; }
  bool real(int64_t t) const { return mask == nullptr || mask[t]; }
};

template <typename Real>
Task<Real> task_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i,
                   const at::Tensor& f, const at::Tensor& mask, const Dims& d, int64_t bh) {
  const int64_t b = bh / d.H, h = bh % d.H;
  const bool* mask_row = mask.defined() ? mask.data_ptr<bool>() + b * d.T : nullptr;
  return {rows_of<Real>(q, b, h), rows_of<Real>(k, b, h), rows_of<Real>(v, b, h), i.data_ptr<Real>() + bh * d.T,
          f.data_ptr<Real>() + bh * d.T, mask_row, d};
}

// The forward of one task: h rows (zero at padded steps) and the final state, written in place of C, n, *m
template <typename Real>
void forward_task(const Task<Real>& x, Real eps, Rows<Real> h, Real* C, Real* n, Real* m, Scratch<Real>& s) {
  const Real scale = Real(1) / std::sqrt(Real(x.d.Dqk));
  load_gates(x.i, x.f, x.mask, x.d.T, s.ii.data(), s.lf.data());
  for (int64_t c = 0; c < x.chunks(); ++c) {
    const Chunk<Real> chunk = x.chunk(c, s);
    load_chunk(chunk, scale, s);
    chunk_weights(chunk, *m, s);
    chunk_outputs(chunk, C, n, eps, s);
    for (int64_t t = 0; t < chunk.Lc; ++t) {
      Real* out = h.row(chunk.t0 + t);
      if (x.real(chunk.t0 + t)) {
        std::copy_n(s.h.data() + t * x.d.Dv, x.d.Dv, out);
      } else {
        std::fill_n(out, x.d.Dv, Real(0));
      }
    }
    *m = chunk_update(chunk, C, n, *m, s);
  }
}

// ---- the backward of one chunk (chunkwise_backward.py: _output_grads, _memory_grads) ------------------------

// The backward's scratch on top of the forward's
template <typename Real>
struct GradScratch {
  std::vector<Real> C_all, n_all, m_all;                 // [N, Dqk, Dv], [N, Dqk], [N]: the memory entering chunks
  std::vector<Real> gh, d_num, vT, CT, read, q_read;     // [L, Dv] x 2, [Dv, L], [Dv, Dqk], [L, Dqk] x 2
  std::vector<Real> dq, dk, dv, dS, d_log_D;             // [L, Dqk] x 2, [L, Dv], [L, L] x 2
  std::vector<Real> d_den, d_m_t, d_rho, db, dii, da;    // [L] each
  std::vector<Real> dC, dn, dC_out, dn_out, k_dC, dCT;   // [Dqk, Dv], [Dqk] x 2, [L, Dv], [Dv, Dqk]
  Real dm = 0, dm_out = 0;

  GradScratch(const Dims& d, int64_t N)
      : C_all(N * d.Dqk * d.Dv), n_all(N * d.Dqk), m_all(N), gh(d.L * d.Dv), d_num(d.L * d.Dv), vT(d.Dv * d.L),
        CT(d.Dv * d.Dqk), read(d.L * d.Dqk), q_read(d.L * d.Dqk), dq(d.L * d.Dqk), dk(d.L * d.Dqk),
        dv(d.L * d.Dv), dS(d.L * d.L), d_log_D(d.L * d.L), d_den(d.L), d_m_t(d.L), d_rho(d.L), db(d.L), dii(d.L),
        da(d.L), dC(d.Dqk * d.Dv), dn(d.Dqk), dC_out(d.Dqk * d.Dv), dn_out(d.Dqk), k_dC(d.L * d.Dv),
        dCT(d.Dv * d.Dqk) {}
};

// The gradient of a maximum shared evenly by the entries equal to it: x[j] += grad / count for x[j] == largest
template <typename Real>
void route_to_maxima(const Real* x, int64_t n, Real largest, Real grad, Real* grad_x) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) count += x[j] == largest;
  const Real share = grad / Real(std::max<int64_t>(count, 1));
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] == largest) grad_x[j] += share;
  }
}

// The normaliser backwards: from grad_h to d_num = grad_h / normaliser, d_den and the floor's part of d_m_t
template <typename Real>
void normaliser_grads(int64_t Lc, const Scratch<Real>& s, GradScratch<Real>& g) {
  const int64_t Dv = s.Dv;
  for (int64_t t = 0; t < Lc; ++t) {
    const Real normaliser = s.normaliser[t];
    const Real* gh = g.gh.data() + t * Dv;
    for (int64_t e = 0; e < Dv; ++e) g.d_num[t * Dv + e] = gh[e] / normaliser;
    const Real d_normaliser = -dot(gh, s.h.data() + t * Dv, Dv) / normaliser;
    Real d_abs = 0, d_floor = 0;
    route_max_grad(std::abs(s.den[t]), s.floor[t], d_normaliser, d_abs, d_floor);
    g.d_den[t] = d_abs * Real((s.den[t] > 0) - (s.den[t] < 0));
    g.d_m_t[t] = -s.m_t[t] <= Real(kLogFloorCap) ? -s.floor[t] * d_floor : Real(0);
  }
}

// The outputs' gradients within the chunk: dq, dk, dv of the chunk (written to g), db, dii, and what the
// outputs send to the entering memory (dC_out, dn_out, dm_out)
template <typename Real>
void output_grads(const Chunk<Real>& x, const Real* C, const Real* n, const Scratch<Real>& s, GradScratch<Real>& g) {
  const int64_t L = s.L, Lc = x.Lc, Dqk = s.Dqk, Dv = s.Dv;
  normaliser_grads(Lc, s, g);
  // numerator = S v + R qs C; denominator = rowsum(S) + R qs n
  transpose(x.v, x.v_stride, Lc, Dv, g.vT.data());
  product(g.d_num.data(), Dv, 1, g.vT.data(), Lc, g.dS.data(), L, Lc, Lc, Dv, false);  // dS = d_num v^T + d_den
  product(s.S.data(), 1, L, g.d_num.data(), Dv, g.dv.data(), Dv, Lc, Dv, Lc, false);   // dv = S^T d_num
  transpose(C, Dv, Dqk, Dv, g.CT.data());
  product(g.d_num.data(), Dv, 1, g.CT.data(), Dqk, g.read.data(), Dqk, Lc, Dqk, Dv, false);  // d_num C^T
  for (int64_t t = 0; t < Lc; ++t) {
    Real* read = g.read.data() + t * Dqk;
    const Real* qs = s.qs.data() + t * Dqk;
    for (int64_t d = 0; d < Dqk; ++d) {
      read[d] += g.d_den[t] * n[d];
      g.dq[t * Dqk + d] = read[d] * s.R[t];
      g.q_read[t * Dqk + d] = qs[d] * s.R[t];
    }
    g.d_rho[t] = dot(read, qs, Dqk) * s.R[t];  // dR * R
  }
  product(g.q_read.data(), 1, Dqk, g.d_num.data(), Dv, g.dC_out.data(), Dv, Dqk, Dv, Lc, false);  // q_read^T d_num
  std::fill(g.dn_out.begin(), g.dn_out.end(), Real(0));
  for (int64_t t = 0; t < Lc; ++t) {
    for (int64_t d = 0; d < Dqk; ++d) g.dn_out[d] += g.q_read[t * Dqk + d] * g.d_den[t];
  }
  // S = A * P with A = qs k^T: dA = dS * P, dqs += dA k, dk = dA^T qs; d_log_D = dA * A (j <= t)
  for (int64_t t = 0; t < Lc; ++t) {
    for (int64_t j = 0; j < Lc; ++j) {
      const int64_t tj = t * L + j;
      const Real dA = (g.dS[tj] + g.d_den[t]) * s.P[tj];
      g.dS[tj] = dA;
      g.d_log_D[tj] = j <= t ? dA * s.A[tj] : Real(0);
    }
  }
  product(g.dS.data(), L, 1, x.k, x.k_stride, g.dq.data(), Dqk, Lc, Dqk, Lc, true);
  product(g.dS.data(), 1, L, s.qs.data(), Dqk, g.dk.data(), Dqk, Lc, Dqk, Lc, false);
  log_weight_grads(x, s, g);
}

// The chunk's log weights backwards: through m_t = max(max_j log_D, rho) and log_D = b_t - b_j + ii_j,
// rho = b_t + m, to db (of b, the running sums of lf within the chunk), dii and dm_out
template <typename Real>
void log_weight_grads(const Chunk<Real>& x, const Scratch<Real>& s, GradScratch<Real>& g) {
  const int64_t L = s.L, Lc = x.Lc;
  std::fill_n(g.dii.begin(), Lc, Real(0));
  g.dm_out = 0;
  for (int64_t t = 0; t < Lc; ++t) {
    Real* d_log_D = g.d_log_D.data() + t * L;
    Real row_sum = 0;
    for (int64_t j = 0; j <= t; ++j) row_sum += d_log_D[j];
    const Real d_m_t = g.d_m_t[t] - row_sum - g.d_rho[t];
    Real d_largest = 0, d_rho = g.d_rho[t];
    route_max_grad(s.largest[t], s.rho[t], d_m_t, d_largest, d_rho);
    route_to_maxima(s.log_D.data() + t * L, t + 1, s.largest[t], d_largest, d_log_D);
    row_sum = 0;
    for (int64_t j = 0; j <= t; ++j) {
      row_sum += d_log_D[j];
      g.dii[j] += d_log_D[j];  // the column sums
    }
    g.db[t] = row_sum + d_rho;
    g.dm_out += d_rho;
  }
  for (int64_t j = 0; j < Lc; ++j) g.db[j] -= g.dii[j];
}

// The chunk's write into the memory backwards, from the gradients (dC, dn, dm) of the memory leaving it: adds
// to the chunk's dk, dv, db, dii, then turns (dC, dn, dm) into those of the memory entering it
template <typename Real>
void memory_grads(const Chunk<Real>& x, const Real* C, const Real* n, Real m, Scratch<Real>& s,
                  GradScratch<Real>& g) {
  const int64_t Lc = x.Lc, Dqk = s.Dqk, Dv = s.Dv;
  const ChunkDecay<Real> gates = chunk_decay(x, m, s);
  // C' = decay C + sum_j w_j k_j v_j^T;  n' = decay n + sum_j w_j k_j
  const Real d_decay = dot(g.dC.data(), C, Dqk * Dv) + dot(g.dn.data(), n, Dqk);
  product(x.k, x.k_stride, 1, g.dC.data(), Dv, g.k_dC.data(), Dv, Lc, Dv, Dqk, false);  // k dC
  transpose(g.dC.data(), Dv, Dqk, Dv, g.dCT.data());
  product(x.v, x.v_stride, 1, g.dCT.data(), Dqk, g.read.data(), Dqk, Lc, Dqk, Dv, false);  // v dC^T
  Real da_sum = 0;
  for (int64_t j = 0; j < Lc; ++j) {
    const Real* k = x.k + j * x.k_stride;
    const Real* v = x.v + j * x.v_stride;
    const Real* k_dC = g.k_dC.data() + j * Dv;
    const Real dw = dot(k_dC, v, Dv) + dot(k, g.dn.data(), Dqk);
    for (int64_t d = 0; d < Dqk; ++d) g.dk[j * Dqk + d] += s.w[j] * (g.read[j * Dqk + d] + g.dn[d]);
    for (int64_t e = 0; e < Dv; ++e) g.dv[j * Dv + e] += s.w[j] * k_dC[e];
    g.da[j] = dw * s.w[j];
    da_sum += g.da[j];
  }
  // decay = exp(g + m - m'), w = exp(a - m'), m' = max(g + m, max_j a_j)
  Real d_gm = d_decay * gates.decay, d_a_max = 0;
  const Real d_m_next = g.dm - d_gm - da_sum;
  route_max_grad(gates.g + m, gates.a_max, d_m_next, d_gm, d_a_max);
  route_to_maxima(s.a.data(), Lc, gates.a_max, d_a_max, g.da.data());
  // a = g - b + ii, g = b at the chunk's end
  da_sum = 0;
  for (int64_t j = 0; j < Lc; ++j) {
    g.db[j] -= g.da[j];
    g.dii[j] += g.da[j];
    da_sum += g.da[j];
  }
  g.db[Lc - 1] += d_gm + da_sum;
  for (int64_t index = 0; index < Dqk * Dv; ++index) g.dC[index] = gates.decay * g.dC[index] + g.dC_out[index];
  for (int64_t d = 0; d < Dqk; ++d) g.dn[d] = gates.decay * g.dn[d] + g.dn_out[d];
  g.dm = d_gm + g.dm_out;
}

// The gradients of a task's inputs, written to its rows and [T] gate rows
template <typename Real>
struct TaskGrads {
  Rows<Real> dq, dk, dv;
  Real *di, *df;  // [T]
};

// The chunk's gradients out: dq (times the query scale), dk, dv, and di, df from dii and db (b = the running
// sums of lf: d lf[t] = sum of db over t..Lc-1; d f = d lf * sigmoid(-f)), zero at padded steps
template <typename Real>
void write_chunk_grads(const Task<Real>& x, const Chunk<Real>& chunk, Real scale, const GradScratch<Real>& g,
                       const TaskGrads<Real>& out) {
  const int64_t Dqk = x.d.Dqk, Dv = x.d.Dv;
  Real d_lf = 0;
  for (int64_t t = chunk.Lc - 1; t >= 0; --t) {
    const int64_t step = chunk.t0 + t;
    d_lf += g.db[t];
    out.di[step] = x.real(step) ? g.dii[t] : Real(0);
    out.df[step] = x.real(step) ? d_lf * sigmoid(-x.f[step]) : Real(0);
    Real* dq = out.dq.row(step);
    for (int64_t d = 0; d < Dqk; ++d) dq[d] = g.dq[t * Dqk + d] * scale;
    std::copy_n(g.dk.data() + t * Dqk, Dqk, out.dk.row(step));
    std::copy_n(g.dv.data() + t * Dv, Dv, out.dv.row(step));
  }
}

// The backward of one task: the memory entering every chunk again, then the chunks from the last. (dC, dn, dm)
// start as the final state's gradients and end as the initial state's, written in place.
template <typename Real>
void backward_task(const Task<Real>& x, Rows<Real> grad_h, Real eps, const Real* C0, const Real* n0, Real m0,
                   const TaskGrads<Real>& out, Real* dC, Real* dn, Real* dm, Scratch<Real>& s) {
  const int64_t N = x.chunks(), Dqk = x.d.Dqk, Dv = x.d.Dv;
  const Real scale = Real(1) / std::sqrt(Real(Dqk));
  GradScratch<Real> g(x.d, N);
  load_gates(x.i, x.f, x.mask, x.d.T, s.ii.data(), s.lf.data());
  std::copy_n(C0, Dqk * Dv, g.C_all.data());
  std::copy_n(n0, Dqk, g.n_all.data());
  g.m_all[0] = m0;
  for (int64_t c = 0; c + 1 < N; ++c) {
    Real* C = g.C_all.data() + (c + 1) * Dqk * Dv;
    Real* n = g.n_all.data() + (c + 1) * Dqk;
    std::copy_n(C - Dqk * Dv, Dqk * Dv, C);
    std::copy_n(n - Dqk, Dqk, n);
    g.m_all[c + 1] = chunk_update(x.chunk(c, s), C, n, g.m_all[c], s);
  }
  std::copy_n(dC, Dqk * Dv, g.dC.data());
  std::copy_n(dn, Dqk, g.dn.data());
  g.dm = *dm;
  for (int64_t c = N - 1; c >= 0; --c) {
    const Chunk<Real> chunk = x.chunk(c, s);
    const Real* C = g.C_all.data() + c * Dqk * Dv;
    const Real* n = g.n_all.data() + c * Dqk;
    for (int64_t t = 0; t < chunk.Lc; ++t) {  // no gradient reaches h at a padded step (the reference zeroes it)
      const Real* row = grad_h.row(chunk.t0 + t);
      Real* gh = g.gh.data() + t * Dv;
      if (x.real(chunk.t0 + t)) {
        std::copy_n(row, Dv, gh);
      } else {
        std::fill_n(gh, Dv, Real(0));
      }
    }
    load_chunk(chunk, scale, s);
    chunk_weights(chunk, g.m_all[c], s);
    chunk_outputs(chunk, C, n, eps, s);
    output_grads(chunk, C, n, s, g);
    memory_grads(chunk, C, n, g.m_all[c], s, g);
    write_chunk_grads(x, chunk, scale, g, out);
  }
  std::copy_n(g.dC.data(), Dqk * Dv, dC);
  std::copy_n(g.dn.data(), Dqk, dn);
  *dm = g.dm;
}

// ---- the operators ------------------------------------------------------------------------------------------

// The inputs in the dtype of the arithmetic (float64 for float64 inputs, else float32), checked
struct Inputs {
  at::Tensor q, k, v, i, f, mask, C, n, m;
  Dims d;
  double eps;
};

at::Tensor with_contiguous_rows(const at::Tensor& x, at::ScalarType dtype) {
  const at::Tensor converted = x.to(dtype);
  return converted.stride(-1) == 1 ? converted : converted.contiguous();
}

Inputs prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
               const c10::optional<at::Tensor>& mask, const at::Tensor& C, const at::Tensor& n, const at::Tensor& m,
               int64_t chunk_size, double eps) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.sizes().slice(0, 3) == q.sizes().slice(0, 3),
              "q, k must be [B, H, T, Dqk] and v [B, H, T, Dv]");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dqk = q.size(3), Dv = v.size(3);
  TORCH_CHECK(i.sizes() == at::IntArrayRef({B, H, T}) && f.sizes() == i.sizes(), "i and f must be [B, H, T]");
  TORCH_CHECK(C.sizes() == at::IntArrayRef({B, H, Dqk, Dv}) && n.sizes() == at::IntArrayRef({B, H, Dqk}) &&
                  m.sizes() == at::IntArrayRef({B, H}),
              "the state must be C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H]");
  TORCH_CHECK(chunk_size >= 1, "chunk_size must be at least 1, got ", chunk_size);
  for (const at::Tensor* t : {&q, &k, &v, &i, &f, &C, &n, &m}) {
    TORCH_CHECK(at::isFloatingType(t->scalar_type()), "the chunkwise mLSTM takes floating-point inputs");
  }
  if (mask.has_value()) {
    TORCH_CHECK(mask->sizes() == at::IntArrayRef({B, T}) && mask->scalar_type() == at::kBool,
                "mask must be bool [B, T]");
  }
  const at::ScalarType dtype = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto dense = [dtype](const at::Tensor& t) { return t.to(dtype).contiguous(); };
  return {with_contiguous_rows(q, dtype), with_contiguous_rows(k, dtype), with_contiguous_rows(v, dtype),
          dense(i), dense(f), mask.has_value() ? mask->contiguous() : at::Tensor(), dense(C), dense(n), dense(m),
          {B, H, T, Dqk, Dv, std::min(chunk_size, std::max<int64_t>(T, 1))}, eps};
}

// An output for the gradient of `like` (its shape and strides, as the fake kernel's empty_like gives them) in
// the dtype of the arithmetic, with contiguous rows
at::Tensor grad_like(const at::Tensor& like, at::ScalarType dtype) {
  at::Tensor grad = at::empty_like(like, like.options().dtype(dtype));
  return grad.stride(-1) == 1 ? grad : at::empty(like.sizes(), like.options().dtype(dtype));
}

at::Tensor as_grad_of(const at::Tensor& grad, const at::Tensor& like) {
  if (grad.scalar_type() == like.scalar_type() && grad.strides() == at::empty_like(like).strides()) return grad;
  return at::empty_like(like).copy_(grad);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_chunkwise_forward_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
    const c10::optional<at::Tensor>& mask, const at::Tensor& C, const at::Tensor& n, const at::Tensor& m,
    int64_t chunk_size, double eps) {
  const Inputs x = prepare(q, k, v, i, f, mask, C, n, m, chunk_size, eps);
  const Dims d = x.d;
  at::Tensor h = at::empty({d.B, d.H, d.T, d.Dv}, x.v.options());
  at::Tensor C_out = x.C.clone(), n_out = x.n.clone(), m_out = x.m.clone();
  AT_DISPATCH_FLOATING_TYPES(x.q.scalar_type(), "mlstm_chunkwise_forward_cpu", [&] {
    at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
      Scratch<scalar_t> scratch(d);
      for (int64_t bh = begin; bh < end; ++bh) {
        const Task<scalar_t> task = task_of<scalar_t>(x.q, x.k, x.v, x.i, x.f, x.mask, d, bh);
        forward_task(task, scalar_t(x.eps), rows_of<scalar_t>(h, bh / d.H, bh % d.H),
                     C_out.data_ptr<scalar_t>() + bh * d.Dqk * d.Dv, n_out.data_ptr<scalar_t>() + bh * d.Dqk,
                     m_out.data_ptr<scalar_t>() + bh, scratch);
      }
    });
  });
  return {h.to(v.scalar_type()), C_out, n_out, m_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
mlstm_chunkwise_backward_cpu(const at::Tensor& grad_h, const at::Tensor& grad_C, const at::Tensor& grad_n,
                             const at::Tensor& grad_m, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& i, const at::Tensor& f, const c10::optional<at::Tensor>& mask,
                             const at::Tensor& C, const at::Tensor& n, const at::Tensor& m, int64_t chunk_size,
                             double eps) {
  const Inputs x = prepare(q, k, v, i, f, mask, C, n, m, chunk_size, eps);
  const Dims d = x.d;
  TORCH_CHECK(grad_h.sizes() == v.sizes() && grad_C.sizes() == C.sizes() && grad_n.sizes() == n.sizes() &&
                  grad_m.sizes() == m.sizes(),
              "the gradients must have the shapes of h and of the final state");
  const at::ScalarType dtype = x.q.scalar_type();
  const at::Tensor gh = with_contiguous_rows(grad_h, dtype);
  at::Tensor dC = grad_C.to(dtype).contiguous().clone(), dn = grad_n.to(dtype).contiguous().clone();
  at::Tensor dm = grad_m.to(dtype).contiguous().clone();
  at::Tensor dq = grad_like(q, dtype), dk = grad_like(k, dtype), dv = grad_like(v, dtype);
  at::Tensor di = at::empty({d.B, d.H, d.T}, x.i.options()), df = at::empty({d.B, d.H, d.T}, x.f.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "mlstm_chunkwise_backward_cpu", [&] {
    at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
      Scratch<scalar_t> scratch(d);
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / d.H, h = bh % d.H;
        const Task<scalar_t> task = task_of<scalar_t>(x.q, x.k, x.v, x.i, x.f, x.mask, d, bh);
        const TaskGrads<scalar_t> out{rows_of<scalar_t>(dq, b, h), rows_of<scalar_t>(dk, b, h),
                                      rows_of<scalar_t>(dv, b, h), di.data_ptr<scalar_t>() + bh * d.T,
                                      df.data_ptr<scalar_t>() + bh * d.T};
        backward_task(task, rows_of<scalar_t>(gh, b, h), scalar_t(x.eps),
                      x.C.data_ptr<scalar_t>() + bh * d.Dqk * d.Dv, x.n.data_ptr<scalar_t>() + bh * d.Dqk,
                      x.m.data_ptr<scalar_t>()[bh], out, dC.data_ptr<scalar_t>() + bh * d.Dqk * d.Dv,
                      dn.data_ptr<scalar_t>() + bh * d.Dqk, dm.data_ptr<scalar_t>() + bh, scratch);
      }
    });
  });
  return {as_grad_of(dq, q), as_grad_of(dk, k), as_grad_of(dv, v), as_grad_of(di, i), as_grad_of(df, f),
          as_grad_of(dC, C), as_grad_of(dn, n), as_grad_of(dm, m)};
}

}  // namespace

TORCH_LIBRARY_IMPL(xlstm_hf, CPU, m) {
  m.impl("mlstm_chunkwise_forward", &mlstm_chunkwise_forward_cpu);
  m.impl("mlstm_chunkwise_backward", &mlstm_chunkwise_backward_cpu);
}

}  // namespace xlstm_hf
