// The fused ARMIN loop on CPU: forward and hand-written backward over a whole sequence.
//
// A line-by-line twin of `py_forward` / `py_backward` in armin/model/fused.py (read that first:
// it has the equations, the saved buffers and the column layout of z). What this file adds is
// speed: no autograd graph and no per-step allocation or dispatch; BLAS called directly on raw
// pointers for the small per-step matmuls; plain row loops for the elementwise work, with exp and
// tanh vectorised when built with ARMIN_AVX2 (inline polynomials for float32, the SLEEF functions
// libtorch exports for float64; std::exp / std::tanh otherwise); batch rows split across torch's
// intra-op threads for the whole recurrence; every weight gradient formed after the backward loop
// with one matmul over all T*B rows.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#if defined(ARMIN_AVX2)
#include <immintrin.h>
extern "C" {  // exported by libtorch_cpu (its vectorised exp / tanh), 1.0-ULP variants
__m256d Sleef_expd4_u10(__m256d);
__m256d Sleef_tanhd4_u10(__m256d);
}
#endif

// BLAS as linked into libtorch (MKL or OpenBLAS, Fortran LP64 interface). Weak: when this torch
// exposes no such symbol, `mm` falls back to ATen's addmm on the same memory.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

namespace {

using at::Tensor;
using std::optional;

bool have_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }
bool have_simd() {
#if defined(ARMIN_AVX2)
  return true;
#else
  return false;
#endif
}

void blas(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
          float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
void blas(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
          double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Row-major C (M x N, ldc) = beta * C + op(A) @ op(B); op(A) is M x K, op(B) is K x N.
// ta: A is stored K x M (use its transpose); tb: B is stored N x K. beta = 0 ignores C's contents.
template <typename T>
void mm(bool ta, bool tb, int M, int N, int K, const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (have_blas()) {  // column-major BLAS sees C^T = op(B)^T op(A)^T
    blas(tb ? 'T' : 'N', ta ? 'T' : 'N', N, M, K, T(1), B, ldb, A, lda, beta, C, ldc);
    return;
  }
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto view = [&](const T* p, int rows, int cols, int ld, bool t) {
    Tensor v = at::from_blob(const_cast<T*>(p), {t ? cols : rows, t ? rows : cols}, {ld, 1}, opt);
    return t ? v.t() : v;
  };
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  c.addmm_(view(A, M, K, lda, ta), view(B, K, N, ldb, tb), beta, 1);
}

// ---- vectorised activations over one contiguous row ---------------------------------------------
#if defined(ARMIN_AVX2)
// float32: inline exp (Cephes polynomial, <= 2 ulp) and tanh (Eigen's 13/6 rational, <= 5 ulp), both
// NaN-propagating; inlined so that consecutive vectors pipeline. float64 (the equivalence tests' dtype)
// goes through SLEEF's 1-ulp functions.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));  // (const, x): NaN stays
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);  // x - fx ln 2, in two parts
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));  // y * 2^fx
}

inline __m256 tanh_ps(__m256 x) {
  const __m256 c = _mm256_set1_ps(7.90531110763549805f);  // tanh rounds to +-1 beyond
  const __m256 xc = _mm256_min_ps(c, _mm256_max_ps(_mm256_set1_ps(-7.90531110763549805f), x));
  const __m256 x2 = _mm256_mul_ps(xc, xc);
  __m256 p = _mm256_set1_ps(-2.76076847742355e-16f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.00018790482477e-13f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-8.60467152213735e-11f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(5.12229709037114e-08f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(1.48572235717979e-05f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(6.37261928875436e-04f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(4.89352455891786e-03f));
  __m256 q = _mm256_set1_ps(1.19825839466702e-06f);
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.18534705686654e-04f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(2.26843463243900e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(4.89352518554385e-03f));
  const __m256 r = _mm256_div_ps(_mm256_mul_ps(p, xc), q);
  const __m256 tiny = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(4e-4f), _CMP_LT_OQ);
  return _mm256_blendv_ps(r, x, tiny);  // tanh(x) = x to float precision near 0
}

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using V = __m256;
  static constexpr int n = 8;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set(float x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V exp(V a) { return exp_ps(a); }
  static V tanh(V a) { return tanh_ps(a); }
};
template <>
struct Vec<double> {
  using V = __m256d;
  static constexpr int n = 4;
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V set(double x) { return _mm256_set1_pd(x); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V exp(V a) { return Sleef_expd4_u10(a); }
  static V tanh(V a) { return Sleef_tanhd4_u10(a); }
};
#endif

// out[i] = f(in[i]) over one contiguous row, f vectorised; the tail goes through a zero-padded vector.
#if defined(ARMIN_AVX2)
template <typename T, typename F>
inline void map_row(T* out, const T* in, int n, F f) {
  using V = Vec<T>;
  int i = 0;
  for (; i + V::n <= n; i += V::n) V::store(out + i, f(V::load(in + i)));
  if (i < n) {
    T buf[V::n] = {};
    std::memcpy(buf, in + i, sizeof(T) * (n - i));
    V::store(buf, f(V::load(buf)));
    std::memcpy(out + i, buf, sizeof(T) * (n - i));
  }
}
#endif

// out[i] = sigmoid(in[i] + bias)
template <typename T>
void sigmoid_row(T* out, const T* in, int n, T bias) {
#if defined(ARMIN_AVX2)
  using V = Vec<T>;
  const auto one = V::set(1), zero = V::set(0), b = V::set(bias);
  map_row(out, in, n, [&](typename V::V x) { return V::div(one, V::add(one, V::exp(V::sub(zero, V::add(x, b))))); });
#else
  for (int i = 0; i < n; ++i) out[i] = T(1) / (T(1) + std::exp(-(in[i] + bias)));
#endif
}

template <typename T>
void tanh_row(T* out, const T* in, int n) {
#if defined(ARMIN_AVX2)
  map_row(out, in, n, [](typename Vec<T>::V x) { return Vec<T>::tanh(x); });
#else
  for (int i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
#endif
}

// v[i] = exp(v[i] - shift), returns the sum
template <typename T>
T exp_row(T* v, int n, T shift) {
#if defined(ARMIN_AVX2)
  const auto s = Vec<T>::set(shift);
  map_row(v, v, n, [&](typename Vec<T>::V x) { return Vec<T>::exp(Vec<T>::sub(x, s)); });
#else
  for (int i = 0; i < n; ++i) v[i] = std::exp(v[i] - shift);
#endif
  T sum = 0;
  for (int i = 0; i < n; ++i) sum += v[i];
  return sum;
}

template <typename T>
T dot(const T* __restrict__ a, const T* __restrict__ b, int n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int k = 0; k < n; ++k) acc += a[k] * b[k];
  return acc;
}

template <typename T>
inline T dsig(T g) { return g * (T(1) - g); }

constexpr double NORM_EPS = 1e-12;        // F.normalize's eps (usage, TARDIS scores)
constexpr double REPEAT_PENALTY = 100.0;  // TARDIS: subtracted from the score of the slot read at t-1
constexpr double GATE_SHARPNESS = 10.0 / 3.0;  // TARDIS cell: gumbel_sigmoid multiplier on alpha, beta

struct Spec {
  int H, N, W, K1, K2;
  bool reference, armin_cell, soft, address_h;
  int n_written;
  double temperature, forget_bias;
  bool tardis_cell;  // the TARDIS cell (armin_cell false)
  int U;             // TARDIS addressing: scorer units (0: linear read logits)
  bool address_c;    // TARDIS addressing reads the cell state c (else h)
  int A() const { return U ? U : N; }  // width of z's address block
  int NW() const { return N + (tardis_cell ? 2 : 0); }  // Gumbel samples per row and step
  bool has_l2() const { return armin_cell || tardis_cell; }  // a second gate layer
  int o1() const { return A(); }
  int o2() const { return A() + K1; }
  int ov() const { return A() + K1 + K2; }
  int K() const { return ov() + (reference ? W : 0); }
  int hard_steps(int T) const {  // steps whose write is an index write (all of them unless soft)
    if (!soft) return T;
    return std::max(0, std::min(T, N - n_written));
  }
};

// ---- one batch row of each forward stage (plain loops over restrict pointers: vectorised) ----------
// y = softmax((a + noise) / temperature); returns the first argmax of y (the hard read slot)
template <typename T>
int address_row(const T* a, const T* noise, int N, T temp, T* y) {
  T mx = -INFINITY;
  for (int i = 0; i < N; ++i) {
    y[i] = (noise ? a[i] + noise[i] : a[i]) / temp;
    mx = std::max(mx, y[i]);
  }
  const T sum = exp_row(y, N, mx);
  int best = 0;
  for (int i = 0; i < N; ++i) {
    y[i] /= sum;
    if (y[i] > y[best]) best = i;
  }
  return best;
}

// r = sum_i y_i M_i
template <typename T>
void soft_read_row(const T* __restrict__ y, const T* __restrict__ mem, int N, int W, T* __restrict__ r) {
  std::fill(r, r + W, T(0));
  for (int i = 0; i < N; ++i)
    for (int k = 0; k < W; ++k) r[k] += y[i] * mem[(int64_t)i * W + k];
}

// eq. (1): g = [g^h, g^r] = sigmoid(p1); q = [g^h * h, g^r * r], the second layer's recurrent input
template <typename T>
void input_gates_row(const T* p1, const T* __restrict__ h, const T* __restrict__ r, int H, int W,
                     T* __restrict__ g, T* __restrict__ q) {
  sigmoid_row(g, p1, H + W, T(0));
  for (int k = 0; k < H; ++k) q[k] = g[k] * h[k];
  for (int k = 0; k < W; ++k) q[H + k] = g[H + k] * r[k];
}

// gate block activations: g = [sig(i), tanh(j), sig(f + fb), sig(rest...)] of widths H, H, H, n_rest
template <typename T>
void gates_row(const T* p, int H, int n_rest, T fb, T* g) {
  sigmoid_row(g, p, H, T(0));
  tanh_row(g + H, p + H, H);
  sigmoid_row(g + 2 * H, p + 2 * H, H, fb);
  sigmoid_row(g + 3 * H, p + 3 * H, n_rest, T(0));
}

// eq. (5) c~ = sig(f) h + sig(i) tanh(j); reference: s = tanh(c~), o = [s sig(o^h), r sig(o^r)];
// paper (eq. (6)): h = c~, o = [sig(o^h) tanh(h), sig(o^r) tanh(r)]; `scratch` holds c~ (reference)
template <typename T>
void armin_cell_row(const T* __restrict__ g, const T* __restrict__ h, const T* __restrict__ r, int H, int W,
                    bool reference, T* __restrict__ scratch, T* __restrict__ hn, T* __restrict__ th,
                    T* __restrict__ tr, T* __restrict__ o) {
  T* c = reference ? scratch : hn;
  for (int k = 0; k < H; ++k) c[k] = g[2 * H + k] * h[k] + g[k] * g[H + k];
  if (reference) {
    tanh_row(hn, c, H);
    for (int k = 0; k < H; ++k) o[k] = hn[k] * g[3 * H + k];
    for (int k = 0; k < W; ++k) o[H + k] = r[k] * g[4 * H + k];
  } else {
    tanh_row(th, hn, H);
    tanh_row(tr, r, W);
    for (int k = 0; k < H; ++k) o[k] = g[3 * H + k] * th[k];
    for (int k = 0; k < W; ++k) o[H + k] = g[4 * H + k] * tr[k];
  }
}

// LSTM cell over [x, h, r]: c = sig(f) c + sig(i) tanh(j), h = tanh(c) sig(o), o_t = [h, r]
template <typename T>
void lstm_cell_row(const T* __restrict__ g, const T* __restrict__ cp, const T* __restrict__ r, int H, int W,
                   T* __restrict__ cn, T* __restrict__ th, T* __restrict__ hn, T* __restrict__ o) {
  for (int k = 0; k < H; ++k) cn[k] = g[2 * H + k] * cp[k] + g[k] * g[H + k];
  tanh_row(th, cn, H);
  for (int k = 0; k < H; ++k) o[k] = hn[k] = th[k] * g[3 * H + k];
  std::memcpy(o + H, r, sizeof(T) * W);
}

// TARDIS cell: g = [sig(i), sig(f + fb), sig(o), alpha, beta] with alpha, beta = sig((p + noise) * 10/3);
// q = [alpha h, beta r], the candidate layer's recurrent input
template <typename T>
void tardis_gates_row(const T* p1, const T* gnoise, const T* __restrict__ h, const T* __restrict__ r, int H, int W,
                      T fb, T* __restrict__ g, T* __restrict__ q) {
  sigmoid_row(g, p1, H, T(0));
  sigmoid_row(g + H, p1 + H, H, fb);
  sigmoid_row(g + 2 * H, p1 + 2 * H, H, T(0));
  for (int k = 0; k < 2; ++k) {
    const T zk = (p1[3 * H + k] + (gnoise ? gnoise[k] : T(0))) * T(GATE_SHARPNESS);
    g[3 * H + k] = T(1) / (T(1) + std::exp(-zk));
  }
  const T al = g[3 * H], be = g[3 * H + 1];
  for (int k = 0; k < H; ++k) q[k] = al * h[k];
  for (int k = 0; k < W; ++k) q[H + k] = be * r[k];
}

// TARDIS cell: cand = tanh(p2) (in place: g2), c = sig(f) c + sig(i) cand, h = tanh(c) sig(o), o_t = [h, r]
template <typename T>
void tardis_cell_row(const T* __restrict__ g, T* __restrict__ cand, const T* __restrict__ cp, const T* __restrict__ r,
                     int H, int W, T* __restrict__ cn, T* __restrict__ th, T* __restrict__ hn, T* __restrict__ o) {
  tanh_row(cand, cand, H);
  for (int k = 0; k < H; ++k) cn[k] = g[H + k] * cp[k] + g[k] * cand[k];
  tanh_row(th, cn, H);
  for (int k = 0; k < H; ++k) o[k] = hn[k] = th[k] * g[2 * H + k];
  std::memcpy(o + H, r, sizeof(T) * W);
}

// u = v / max(||v||, eps) over n values; returns max(||v||, eps)
template <typename T>
T normalize_row(const T* v, int n, T* u) {
  T ss = 0;
  for (int i = 0; i < n; ++i) ss += v[i] * v[i];
  const T nrm = std::max(std::sqrt(ss), T(NORM_EPS));
  for (int i = 0; i < n; ++i) u[i] = v[i] / nrm;
  return nrm;
}

// TARDIS scores of one row: tp_i = tanh(prow + kq_i + mq_i) (N x U), a_i = v . tp_i - 100 prev_i,
// sc = a / max(||a||, eps); returns max(||a||, eps)
template <typename T>
T tardis_score_row(const T* __restrict__ prow, const T* __restrict__ kq, const T* __restrict__ mq,
                   const T* __restrict__ v, const T* __restrict__ prev, int N, int U, T* __restrict__ tp,
                   T* __restrict__ sc) {
  for (int i = 0; i < N; ++i)
    for (int u = 0; u < U; ++u) tp[i * U + u] = prow[u] + kq[i * U + u] + mq[i * U + u];
  tanh_row(tp, tp, N * U);
  for (int i = 0; i < N; ++i) sc[i] = dot(tp + (int64_t)i * U, v, U) - T(REPEAT_PENALTY) * prev[i];
  return normalize_row(sc, N, sc);
}

// out (U) = w_m (U x W) @ value (W)
template <typename T>
void matvec(const T* __restrict__ w, const T* __restrict__ v, int rows, int cols, T* __restrict__ out) {
  for (int u = 0; u < rows; ++u) out[u] = dot(w + (int64_t)u * cols, v, cols);
}

// ---- forward -------------------------------------------------------------------------------------
// Batch rows are independent through the whole recurrence, so the loop runs over chunks of rows in
// parallel (at::parallel_for; BLAS is sequential inside a parallel region): no synchronisation per step.
constexpr int64_t ROWS_PER_TASK = 8;  // smallest chunk of batch rows worth a thread

template <typename T>
std::vector<Tensor> forward_impl(const Spec& s, const Tensor& x_, const Tensor& w_x_, const Tensor& b_x_,
                                 const optional<Tensor>& noise_, const optional<Tensor>& w_a_, const Tensor& w1_,
                                 const optional<Tensor>& w2_, const optional<Tensor>& w_v_,
                                 const optional<Tensor>& w_u_, const optional<Tensor>& w_m_,
                                 const optional<Tensor>& kq_, const optional<Tensor>& v_, const Tensor& h0,
                                 const optional<Tensor>& c0, const Tensor& memory0, const optional<Tensor>& prev0,
                                 const optional<Tensor>& usage0, bool save) {
  const int T_ = x_.size(0), B = x_.size(1), X = x_.size(2), H = s.H, N = s.N, W = s.W, K1 = s.K1, K2 = s.K2;
  const int K = s.K(), HW = H + W, o1 = s.o1(), o2 = s.o2(), ov = s.ov(), U = s.U, NW = s.NW();
  const int hard = s.hard_steps(T_), nsnap = T_ - hard;
  const bool paper_armin = s.armin_cell && !s.reference;
  auto opt = x_.options();
  Tensor x = x_.contiguous(), w_x = w_x_.contiguous(), b_x = b_x_.contiguous(), w1 = w1_.contiguous();
  // h's projections into [a | p1] in one matmul: rows [w_a; w1[:, :H]] (w_a apart when it reads c)
  const bool a_from_h = s.address_h && !s.address_c;
  Tensor wh = a_from_h ? at::cat({w_a_->contiguous(), w1.narrow(1, 0, H)}, 0).contiguous()
                       : w1.narrow(1, 0, H).contiguous();
  const int wh_rows = wh.size(0), wh_col = a_from_h ? 0 : o1;
  Tensor w_a = s.address_c ? w_a_->contiguous() : Tensor();
  Tensor w2 = s.has_l2() ? w2_->contiguous() : Tensor();
  Tensor w_v = s.reference ? w_v_->contiguous() : Tensor();
  const int ST = save ? T_ : 1;  // per-step buffers only the backward needs: one step when not saving
  Tensor out = at::empty({T_, B, HW}, opt), y = at::empty({T_, B, N}, opt);
  Tensor hs = at::empty({T_ + 1, B, H}, opt), r = at::empty({T_, B, W}, opt);
  Tensor cs = at::empty({s.armin_cell ? 0 : T_ + 1, B, H}, opt);
  Tensor g1 = at::empty({ST, B, K1}, opt), g2 = at::empty({s.has_l2() ? ST : 0, B, K2}, opt);
  Tensor th = at::empty({(paper_armin || !s.armin_cell) ? ST : 0, B, H}, opt);
  Tensor tr = at::empty({paper_armin ? ST : 0, B, W}, opt);
  Tensor idx = at::empty({s.soft ? 0 : T_, B}, opt.dtype(at::kLong));
  Tensor old = at::empty({save ? hard : std::min(hard, 1), B, W}, opt);
  Tensor snap = at::empty({save ? nsnap : 0, B, N, W}, opt);
  Tensor mem = memory0.clone(at::MemoryFormat::Contiguous);
  // TARDIS addressing: the scorer's saved activations, its weights, mq = A_m M and the carried prev, usage
  const int TT = U ? ST : 0;
  Tensor tpre = at::empty({TT, B, N, U}, opt), un = at::empty({TT, B, N}, opt), unn = at::empty({TT, B}, opt);
  Tensor sc = at::empty({TT, B, N}, opt), scn = at::empty({TT, B}, opt);
  Tensor val = at::empty({U && save ? T_ : 0, B, W}, opt);
  Tensor w_u, w_m, kq, vv, mq = at::empty({0}, opt), prev = at::empty({0}, opt), usage = at::empty({0}, opt);
  if (U) {
    w_u = w_u_->contiguous(), w_m = w_m_->contiguous(), kq = kq_->contiguous(), vv = v_->contiguous();
    mq = at::matmul(mem, w_m.t()).contiguous();  // (B, N, U)
    prev = prev0->clone(at::MemoryFormat::Contiguous), usage = usage0->clone(at::MemoryFormat::Contiguous);
  }
  hs[0].copy_(h0);
  if (!s.armin_cell) cs[0].copy_(*c0);

  const T *xp = x.data_ptr<T>(), *wxp = w_x.data_ptr<T>(), *bxp = b_x.data_ptr<T>();
  const T* noise = noise_.has_value() && noise_->defined() ? noise_->data_ptr<T>() : nullptr;
  const T *whp = wh.data_ptr<T>(), *w1p = w1.data_ptr<T>();
  const T* w2p = s.has_l2() ? w2.data_ptr<T>() : nullptr;
  const T* wvp = s.reference ? w_v.data_ptr<T>() : nullptr;
  T *memp = mem.data_ptr<T>(), *outp = out.data_ptr<T>(), *yp = y.data_ptr<T>(), *hsp = hs.data_ptr<T>();
  T *rp = r.data_ptr<T>(), *csp = cs.data_ptr<T>(), *g1p = g1.data_ptr<T>(), *g2p = g2.data_ptr<T>();
  T *thp = th.data_ptr<T>(), *trp = tr.data_ptr<T>(), *oldp = old.data_ptr<T>(), *snapp = snap.data_ptr<T>();
  int64_t* idxp = s.soft ? nullptr : idx.data_ptr<int64_t>();
  const T temp = T(s.temperature), fb = T(s.forget_bias);
  const T *wap = s.address_c ? w_a.data_ptr<T>() : nullptr, *wup = U ? w_u.data_ptr<T>() : nullptr;
  const T *wmp = U ? w_m.data_ptr<T>() : nullptr, *kqp = U ? kq.data_ptr<T>() : nullptr;
  const T* vp = U ? vv.data_ptr<T>() : nullptr;
  T *mqp = U ? mq.data_ptr<T>() : nullptr, *prevp = U ? prev.data_ptr<T>() : nullptr;
  T *usp = U ? usage.data_ptr<T>() : nullptr, *tprep = tpre.data_ptr<T>(), *unp = un.data_ptr<T>();
  T *unnp = unn.data_ptr<T>(), *scp = sc.data_ptr<T>(), *scnp = scn.data_ptr<T>(), *valp = val.data_ptr<T>();

  at::parallel_for(0, B, ROWS_PER_TASK, [&](int64_t b0, int64_t b1) {
    const int nb = b1 - b0;
    std::vector<T> z_(nb * K), hr2_(nb * HW), vq_(U);  // this chunk's pre-activations and second-layer input
    T *z = z_.data(), *hr2 = hr2_.data(), *vq = vq_.data();
    for (int t = 0; t < T_; ++t) {
      const int64_t row = (int64_t)t * B + b0;  // this chunk's first row at step t in (T, B, .) buffers
      const int64_t srow = (save ? (int64_t)t : 0) * B + b0;  // same in the per-step buffers
      const T* h = hsp + row * H;
      T* hn = hsp + (row + B) * H;
      T *rt = rp + row * W, *yt = yp + row * N, *g1t = g1p + srow * K1, *g2t = g2p + srow * K2;
      T *tht = thp + srow * H, *trt = trp + srow * W;
      // z = biases + x_t @ w_x^T (every block) + h @ [w_a; w1_h]^T (a and p1 blocks)
      for (int b = 0; b < nb; ++b) std::memcpy(z + (int64_t)b * K, bxp, sizeof(T) * K);
      mm<T>(false, true, nb, K, X, xp + row * X, X, wxp, X, T(1), z, K);
      mm<T>(false, true, nb, wh_rows, H, h, H, whp, H, T(1), z + wh_col, K);
      if (s.address_c) mm<T>(false, true, nb, U, H, csp + row * H, H, wap, H, T(1), z, K);
      if (U) {  // TARDIS: row part += normalize(usage) @ w_u^T, then the per-slot scores into sc
        T *unt = unp + srow * N, *unnt = unnp + srow;
        for (int b = 0; b < nb; ++b) unnt[b] = normalize_row(usp + (b0 + b) * N, N, unt + (int64_t)b * N);
        mm<T>(false, true, nb, U, N, unt, N, wup, N, T(1), z, K);
        for (int b = 0; b < nb; ++b)
          scnp[srow + b] = tardis_score_row(z + (int64_t)b * K, kqp, mqp + (b0 + b) * N * U, vp, prevp + (b0 + b) * N,
                                            N, U, tprep + (srow + b) * N * U, scp + (srow + b) * N);
      }
      // read: address, then a gather (hard) or a weighted sum (soft)
      for (int b = 0; b < nb; ++b) {
        const T* logits = U ? scp + (srow + b) * N : z + (int64_t)b * K;
        const int best = address_row(logits, noise ? noise + (row + b) * NW : nullptr, N, temp, yt + (int64_t)b * N);
        const T* mb = memp + (b0 + b) * N * W;
        if (s.soft) {
          soft_read_row(yt + (int64_t)b * N, mb, N, W, rt + (int64_t)b * W);
        } else {
          idxp[row + b] = best;
          std::memcpy(rt + (int64_t)b * W, mb + (int64_t)best * W, sizeof(T) * W);
        }
      }
      // first layer's r part
      mm<T>(false, true, nb, K1, W, rt, W, w1p + H, HW, T(1), z + o1, K);
      if (s.armin_cell) {
        for (int b = 0; b < nb; ++b)
          input_gates_row(z + (int64_t)b * K + o1, h + (int64_t)b * H, rt + (int64_t)b * W, H, W,
                          g1t + (int64_t)b * K1, hr2 + (int64_t)b * HW);
        mm<T>(false, true, nb, K2, HW, hr2, HW, w2p, HW, T(1), z + o2, K);  // eq. (4)
        for (int b = 0; b < nb; ++b) {
          T* g = g2t + (int64_t)b * K2;  // sig(i), tanh(j), sig(f + fb), sig(o^h), sig(o^r)
          gates_row(z + (int64_t)b * K + o2, H, H + W, fb, g);
          armin_cell_row(g, h + (int64_t)b * H, rt + (int64_t)b * W, H, W, s.reference, z + (int64_t)b * K + o1,
                         hn + (int64_t)b * H, tht + (int64_t)b * H, trt + (int64_t)b * W, outp + (row + b) * HW);
        }
      } else if (s.tardis_cell) {
        const T* cp = csp + row * H;
        T* cn = csp + (row + B) * H;
        for (int b = 0; b < nb; ++b)
          tardis_gates_row(z + (int64_t)b * K + o1, noise ? noise + (row + b) * NW + N : nullptr, h + (int64_t)b * H,
                           rt + (int64_t)b * W, H, W, fb, g1t + (int64_t)b * K1, hr2 + (int64_t)b * HW);
        mm<T>(false, true, nb, K2, HW, hr2, HW, w2p, HW, T(1), z + o2, K);  // candidate pre-activation
        for (int b = 0; b < nb; ++b) {
          T* g = g2t + (int64_t)b * K2;
          std::memcpy(g, z + (int64_t)b * K + o2, sizeof(T) * K2);
          tardis_cell_row(g1t + (int64_t)b * K1, g, cp + (int64_t)b * H, rt + (int64_t)b * W, H, W, cn + (int64_t)b * H,
                          tht + (int64_t)b * H, hn + (int64_t)b * H, outp + (row + b) * HW);
        }
      } else {
        const T* cp = csp + row * H;
        T* cn = csp + (row + B) * H;
        for (int b = 0; b < nb; ++b) {
          T* g = g1t + (int64_t)b * K1;  // sig(i), tanh(j), sig(f + fb), sig(o)
          gates_row(z + (int64_t)b * K + o1, H, H, fb, g);
          lstm_cell_row(g, cp + (int64_t)b * H, rt + (int64_t)b * W, H, W, cn + (int64_t)b * H,
                        tht + (int64_t)b * H, hn + (int64_t)b * H, outp + (row + b) * HW);
        }
      }
      // the value written: reference: write_proj([x, s_t]) (x part and bias are already in z); paper: h_t
      const T* value = hn;
      int ldv = H;
      if (s.reference) {
        mm<T>(false, true, nb, W, H, hn, H, wvp, H, T(1), z + ov, K);
        value = z + ov;
        ldv = K;
      }
      // write: slot n while filling, then the slot read (detached); soft: blend by y
      const int n = s.n_written + t;
      if (t < hard) {
        T* o = oldp + ((save ? (int64_t)t : 0) * B + b0) * W;
        for (int b = 0; b < nb; ++b) {
          const int64_t slot = n < N ? n : idxp[row + b];
          T* m = memp + ((b0 + b) * N + slot) * W;
          std::memcpy(o + (int64_t)b * W, m, sizeof(T) * W);
          std::memcpy(m, value + (int64_t)b * ldv, sizeof(T) * W);
          if (U) matvec(wmp, m, U, W, mqp + ((b0 + b) * N + slot) * U);  // mq_slot = A_m value
        }
      } else {
        if (save)
          std::memcpy(snapp + ((int64_t)(t - hard) * B + b0) * N * W, memp + b0 * N * W, sizeof(T) * nb * N * W);
        for (int b = 0; b < nb; ++b) {
          const T* __restrict__ v = value + (int64_t)b * ldv;
          if (U) matvec(wmp, v, U, W, vq);
          for (int i = 0; i < N; ++i) {
            const T e = yt[(int64_t)b * N + i];
            T* __restrict__ m = memp + ((b0 + b) * N + i) * W;
            for (int k = 0; k < W; ++k) m[k] = e * v[k] + (T(1) - e) * m[k];
            if (U) {
              T* __restrict__ q = mqp + ((b0 + b) * N + i) * U;
              for (int u = 0; u < U; ++u) q[u] = e * vq[u] + (T(1) - e) * q[u];
            }
          }
        }
      }
      if (U) {  // prev = w_t (its forward value: one-hot, or y when soft), usage += w_t; keep the value written
        for (int b = 0; b < nb; ++b) {
          T *pv = prevp + (b0 + b) * N, *us = usp + (b0 + b) * N;
          const T* yb = yt + (int64_t)b * N;
          if (s.soft) {
            for (int i = 0; i < N; ++i) us[i] += pv[i] = yb[i];
          } else {
            std::fill(pv, pv + N, T(0));
            pv[idxp[row + b]] = T(1);
            us[idxp[row + b]] += T(1);
          }
          if (save) std::memcpy(valp + (row + b) * W, value + (int64_t)b * ldv, sizeof(T) * W);
        }
      }
    }
  });
  Tensor hT = hs[T_].clone();
  Tensor cT = s.armin_cell ? Tensor() : cs[T_].clone();
  return {out, hT, cT, hs, cs, r, tr, th, y, idx, g1, g2, old, snap, mem, tpre, un, unn, sc, scn, val, mq, prev, usage};
}

// ---- one batch row of each backward stage ----------------------------------------------------------
// armin cell, reference formulation: from d(s_t) (dn) and d(o_t) (dout) to d(p2), d(h_{t-1}) (partial), d(r)
template <typename T>
void armin_cell_back_row_ref(const T* __restrict__ g, const T* __restrict__ dn, const T* __restrict__ dout,
                             const T* __restrict__ h, const T* __restrict__ hn, const T* __restrict__ r, int H, int W,
                             T* __restrict__ dp2, T* __restrict__ dh, T* __restrict__ dr) {
  for (int k = 0; k < H; ++k) {
    const T si = g[k], tj = g[H + k], sf = g[2 * H + k], soh = g[3 * H + k];
    const T dc = (dn[k] + dout[k] * soh) * (T(1) - hn[k] * hn[k]);
    dh[k] = dc * sf;
    dp2[k] = dc * tj * dsig(si);
    dp2[H + k] = dc * si * (T(1) - tj * tj);
    dp2[2 * H + k] = dc * h[k] * dsig(sf);
    dp2[3 * H + k] = dout[k] * hn[k] * dsig(soh);
  }
  for (int k = 0; k < W; ++k) {
    const T sor = g[4 * H + k];
    dr[k] = dout[H + k] * sor;
    dp2[4 * H + k] = dout[H + k] * r[k] * dsig(sor);
  }
}

// armin cell, paper formulation (eq. (6) has tanh(h_t) and tanh(r))
template <typename T>
void armin_cell_back_row_paper(const T* __restrict__ g, const T* __restrict__ dn, const T* __restrict__ dout,
                               const T* __restrict__ h, const T* __restrict__ th, const T* __restrict__ tr, int H,
                               int W, T* __restrict__ dp2, T* __restrict__ dh, T* __restrict__ dr) {
  for (int k = 0; k < H; ++k) {
    const T si = g[k], tj = g[H + k], sf = g[2 * H + k], soh = g[3 * H + k], tn = th[k];
    const T dc = dn[k] + dout[k] * soh * (T(1) - tn * tn);
    dh[k] = dc * sf;
    dp2[k] = dc * tj * dsig(si);
    dp2[H + k] = dc * si * (T(1) - tj * tj);
    dp2[2 * H + k] = dc * h[k] * dsig(sf);
    dp2[3 * H + k] = dout[k] * tn * dsig(soh);
  }
  for (int k = 0; k < W; ++k) {
    const T sor = g[4 * H + k], trk = tr[k];
    dr[k] = dout[H + k] * sor * (T(1) - trk * trk);
    dp2[4 * H + k] = dout[H + k] * trk * dsig(sor);
  }
}

// input gates: from q = d[g^h h, g^r r] to d(p1), and into d(h_{t-1}), d(r)
template <typename T>
void input_gates_back_row(const T* __restrict__ g, const T* __restrict__ q, const T* __restrict__ h,
                          const T* __restrict__ r, int H, int W, T* __restrict__ dp1, T* __restrict__ dh,
                          T* __restrict__ dr) {
  for (int k = 0; k < H; ++k) {
    dh[k] += q[k] * g[k];
    dp1[k] = q[k] * h[k] * dsig(g[k]);
  }
  for (int k = 0; k < W; ++k) {
    dr[k] += q[H + k] * g[H + k];
    dp1[H + k] = q[H + k] * r[k] * dsig(g[H + k]);
  }
}

// LSTM cell: from d(h_t) (dn, plus d(o_t)'s h part) and d(c_t) (dc) to d(p1), d(c_{t-1}), d(r)
template <typename T>
void lstm_cell_back_row(const T* __restrict__ g, const T* __restrict__ dn, const T* __restrict__ dout,
                        const T* __restrict__ dc, const T* __restrict__ cp, const T* __restrict__ th, int H, int W,
                        T* __restrict__ dp1, T* __restrict__ dcp, T* __restrict__ dr) {
  for (int k = 0; k < H; ++k) {
    const T si = g[k], tj = g[H + k], sf = g[2 * H + k], so = g[3 * H + k], tc = th[k];
    const T dh = dn[k] + dout[k];
    const T dcn = dc[k] + dh * so * (T(1) - tc * tc);
    dcp[k] = dcn * sf;
    dp1[k] = dcn * tj * dsig(si);
    dp1[H + k] = dcn * si * (T(1) - tj * tj);
    dp1[2 * H + k] = dcn * cp[k] * dsig(sf);
    dp1[3 * H + k] = dh * tc * dsig(so);
  }
  std::memcpy(dr, dout + H, sizeof(T) * W);
}

// TARDIS cell, before the candidate layer's matmul: from d(h_t) (dn, plus d(o_t)'s h part) and d(c_t) (dc)
// to d(p1)'s i, f, o part, d(p2) (the candidate) and d(c_{t-1})
template <typename T>
void tardis_cell_back_row(const T* __restrict__ g, const T* __restrict__ cand, const T* __restrict__ dn,
                          const T* __restrict__ dout, const T* __restrict__ dc, const T* __restrict__ cp,
                          const T* __restrict__ th, int H, T* __restrict__ dp1, T* __restrict__ dp2, T* __restrict__ dcp) {
  for (int k = 0; k < H; ++k) {
    const T si = g[k], sf = g[H + k], so = g[2 * H + k], tc = th[k], ca = cand[k];
    const T dh = dn[k] + dout[k];
    const T dcn = dc[k] + dh * so * (T(1) - tc * tc);
    dcp[k] = dcn * sf;
    dp1[k] = dcn * ca * dsig(si);
    dp1[H + k] = dcn * cp[k] * dsig(sf);
    dp1[2 * H + k] = dh * tc * dsig(so);
    dp2[k] = dcn * si * (T(1) - ca * ca);
  }
}

// TARDIS cell, after it: q = d[alpha h, beta r] to d(alpha), d(beta) (into d(p1)), d(h_{t-1}) and d(r)
template <typename T>
void tardis_gates_back_row(const T* __restrict__ g, const T* __restrict__ q, const T* __restrict__ dout,
                           const T* __restrict__ h, const T* __restrict__ r, int H, int W, T* __restrict__ dp1,
                           T* __restrict__ dh, T* __restrict__ dr) {
  const T al = g[3 * H], be = g[3 * H + 1];
  T dal = 0, dbe = 0;
  for (int k = 0; k < H; ++k) {
    dal += q[k] * h[k];
    dh[k] = q[k] * al;
  }
  for (int k = 0; k < W; ++k) {
    dbe += q[H + k] * r[k];
    dr[k] = dout[H + k] + q[H + k] * be;
  }
  dp1[3 * H] = dal * dsig(al) * T(GATE_SHARPNESS);
  dp1[3 * H + 1] = dbe * dsig(be) * T(GATE_SHARPNESS);
}

// soft write M_i <- e_i v + (1 - e_i) M_i, backward over one row of slot gradients d (N x width):
// d(v) += sum_i e_i d_i, then d_i *= 1 - e_i (e is detached)
template <typename T>
void soft_write_back_row(const T* __restrict__ e, T* __restrict__ d, int N, int width, T* __restrict__ dv) {
  for (int i = 0; i < N; ++i) {
    T* __restrict__ di = d + (int64_t)i * width;
    for (int k = 0; k < width; ++k) {
      dv[k] += e[i] * di[k];
      di[k] *= T(1) - e[i];
    }
  }
}

// gradient through u = v / max(||v||, eps), in place over d; n = max(||v||, eps)
template <typename T>
void normalize_back_row(T* d, const T* u, T n, int len) {
  T proj = 0;
  if (n > T(NORM_EPS))
    for (int i = 0; i < len; ++i) proj += u[i] * d[i];
  for (int i = 0; i < len; ++i) d[i] = (d[i] - u[i] * proj) / n;
}

// TARDIS scorer: d(score) (da, in place to d(a)) back through the L2 norm, the repeat penalty (into dprev)
// and v . tanh(pre_i): d(pre_i) summed into the row part (dprow), the key part (dkq) and mq (dmq); dv += da_i tp_i
template <typename T>
void tardis_score_back_row(T* __restrict__ da, const T* __restrict__ sc, T scn, const T* __restrict__ tp,
                           const T* __restrict__ v, int N, int U, T* __restrict__ dprev, T* __restrict__ dprow,
                           T* __restrict__ dmq, T* __restrict__ dkq, T* __restrict__ dv) {
  normalize_back_row(da, sc, scn, N);
  std::fill(dprow, dprow + U, T(0));
  for (int i = 0; i < N; ++i) {
    const T a = da[i];
    dprev[i] = -T(REPEAT_PENALTY) * a;
    const T* __restrict__ t = tp + (int64_t)i * U;
    T *__restrict__ mq = dmq + (int64_t)i * U, *__restrict__ kq = dkq + (int64_t)i * U;
    for (int u = 0; u < U; ++u) {
      dv[u] += a * t[u];
      const T dp = a * v[u] * (T(1) - t[u] * t[u]);
      kq[u] += dp;
      mq[u] += dp;
      dprow[u] += dp;
    }
  }
}

// read: d(a) = softmax'(y) (<dr, M_i> + extra_i) / temperature (straight-through for hard reads); dM += w dr.
// extra (or null): TARDIS's gradient reaching w_t through the next step's prev and usage
template <typename T>
void read_back_row(const T* __restrict__ y, const T* __restrict__ mem, const T* __restrict__ dr, int64_t slot,
                   int N, int W, T temp, const T* __restrict__ extra, T* __restrict__ da, T* __restrict__ dmem) {
  T dot_y = 0;
  for (int i = 0; i < N; ++i) {
    da[i] = dot(mem + (int64_t)i * W, dr, W) + (extra ? extra[i] : T(0));
    dot_y += da[i] * y[i];
  }
  for (int i = 0; i < N; ++i) da[i] = y[i] * (da[i] - dot_y) / temp;
  if (slot < 0) {  // soft
    for (int i = 0; i < N; ++i)
      for (int k = 0; k < W; ++k) dmem[(int64_t)i * W + k] += y[i] * dr[k];
  } else {
    for (int k = 0; k < W; ++k) dmem[slot * W + k] += dr[k];
  }
}

// q = [g^h h, g^r r] again (the second layer's input, for its weight gradient)
template <typename T>
void input_gates_recompute(const T* __restrict__ g, const T* __restrict__ h, const T* __restrict__ r, int H, int W,
                           T* __restrict__ q) {
  for (int k = 0; k < H; ++k) q[k] = g[k] * h[k];
  for (int k = 0; k < W; ++k) q[H + k] = g[H + k] * r[k];
}

// ---- backward ------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> backward_impl(const Spec& s, const std::vector<Tensor>& sv, const Tensor& x_, const Tensor& w_x_,
                                  const optional<Tensor>& w_a_, const Tensor& w1_, const optional<Tensor>& w2_,
                                  const optional<Tensor>& w_v_, const optional<Tensor>& w_u_,
                                  const optional<Tensor>& w_m_, const optional<Tensor>& v_, const Tensor& d_out,
                                  const Tensor& d_h0, const optional<Tensor>& d_c0, const Tensor& d_mem0,
                                  const optional<Tensor>& d_prev0, const optional<Tensor>& d_usage0, bool need_dx) {
  const Tensor &hs = sv[0], &cs = sv[1], &r = sv[2], &tr = sv[3], &th = sv[4], &y = sv[5], &idx = sv[6],
               &g1 = sv[7], &g2 = sv[8], &old = sv[9], &snap = sv[10], &mem_T = sv[11], &tpre = sv[12],
               &un = sv[13], &unn = sv[14], &sc = sv[15], &scn = sv[16], &val = sv[17];
  const int T_ = d_out.size(0), B = d_out.size(1), X = x_.size(2), H = s.H, N = s.N, W = s.W, K1 = s.K1;
  const int K2 = s.K2, K = s.K(), HW = H + W, o1 = s.o1(), o2 = s.o2(), ov = s.ov(), hard = s.hard_steps(T_);
  const int U = s.U, A = s.A();
  auto opt = d_out.options();
  Tensor x = x_.contiguous(), w1 = w1_.contiguous();
  Tensor w_a = s.address_h ? w_a_->contiguous() : Tensor();
  Tensor w2 = s.has_l2() ? w2_->contiguous() : Tensor();
  // TARDIS addressing: d_mq (gradient w.r.t. A_m M) beside d_mem, the carried d(prev), d(usage), and
  // the gradients summed over rows (each chunk adds its share under a lock)
  Tensor w_u, w_m, vv, d_mq, d_prev, d_usage, d_w_m, d_kq, d_v;
  if (U) {
    w_u = w_u_->contiguous(), w_m = w_m_->contiguous(), vv = v_->contiguous();
    d_mq = at::zeros({B, N, U}, opt), d_w_m = at::zeros({U, W}, opt), d_kq = at::zeros({N, U}, opt);
    d_v = at::zeros({U}, opt);
    d_prev = d_prev0->clone(at::MemoryFormat::Contiguous), d_usage = d_usage0->clone(at::MemoryFormat::Contiguous);
  }
  std::mutex sum_lock;
  Tensor w_v = s.reference ? w_v_->contiguous() : Tensor();
  Tensor d_zx = at::empty({T_, B, K}, opt);  // d(z) of every step: the weight gradients are formed from it
  Tensor d_mem = d_mem0.clone(at::MemoryFormat::Contiguous), mem = mem_T.clone(at::MemoryFormat::Contiguous);
  // d(h) of the current step and of the one before, swapped each step (same for the LSTM cell's c)
  Tensor d_h_a = d_h0.clone(at::MemoryFormat::Contiguous), d_h_b = at::empty({B, H}, opt);
  Tensor d_c_a = s.armin_cell ? at::empty({0}, opt) : d_c0->clone(at::MemoryFormat::Contiguous);
  Tensor d_c_b = at::empty({s.armin_cell ? 0 : B, H}, opt);
  const T temp = T(s.temperature);
  T *dzx = d_zx.data_ptr<T>(), *dmem = d_mem.data_ptr<T>(), *memp = mem.data_ptr<T>();
  T *dha = d_h_a.data_ptr<T>(), *dhb = d_h_b.data_ptr<T>(), *dca = d_c_a.data_ptr<T>(), *dcb = d_c_b.data_ptr<T>();
  const T *hsp = hs.data_ptr<T>(), *csp = cs.data_ptr<T>(), *rp = r.data_ptr<T>(), *yp = y.data_ptr<T>();
  const T *g1p = g1.data_ptr<T>(), *g2p = g2.data_ptr<T>(), *thp = th.data_ptr<T>(), *trp = tr.data_ptr<T>();
  const T *oldp = old.data_ptr<T>(), *snapp = snap.data_ptr<T>(), *dout = d_out.data_ptr<T>();
  const int64_t* idxp = s.soft ? nullptr : idx.data_ptr<int64_t>();
  const T *w1p = w1.data_ptr<T>(), *wap = s.address_h ? w_a.data_ptr<T>() : nullptr;
  const T* w2p = s.has_l2() ? w2.data_ptr<T>() : nullptr;
  const T* wvp = s.reference ? w_v.data_ptr<T>() : nullptr;
  const T *wup = U ? w_u.data_ptr<T>() : nullptr, *wmp = U ? w_m.data_ptr<T>() : nullptr;
  const T *vp = U ? vv.data_ptr<T>() : nullptr, *tprep = tpre.data_ptr<T>(), *unp = un.data_ptr<T>();
  const T *unnp = unn.data_ptr<T>(), *scp = sc.data_ptr<T>(), *scnp = scn.data_ptr<T>(), *valp = val.data_ptr<T>();
  T *dmqp = U ? d_mq.data_ptr<T>() : nullptr, *dprevp = U ? d_prev.data_ptr<T>() : nullptr;
  T* dusp = U ? d_usage.data_ptr<T>() : nullptr;

  at::parallel_for(0, B, ROWS_PER_TASK, [&](int64_t b0, int64_t b1) {
    const int nb = b1 - b0;
    std::vector<T> d_new_(nb * H), d_r_(nb * W), d_hr_(nb * HW);
    T *d_new = d_new_.data(), *d_r = d_r_.data(), *d_hr = d_hr_.data();
    // TARDIS: this chunk's d(a) and d(normalize(usage)) rows, d(w_t) from later steps, and its partial sums
    std::vector<T> da_(U ? nb * N : 0), dun_(U ? nb * N : 0), ext_(U ? N : 0), dq_(U), wm_(U * W), kq_(N * U), v_(U);
    T *da = da_.data(), *dun = dun_.data(), *ext = ext_.data(), *dqs = dq_.data();
    T *lw_m = wm_.data(), *lkq = kq_.data(), *lv = v_.data();
    // d(value) += dq @ w_m and d(w_m) += dq (x) value: the scorer's share of the written value's gradient
    auto value_back = [&](const T* dq, const T* value, T* dv) {
      for (int u = 0; u < U; ++u) {
        const T q = dq[u];
        const T* __restrict__ wm = wmp + (int64_t)u * W;
        T* __restrict__ gw = lw_m + (int64_t)u * W;
        for (int k = 0; k < W; ++k) {
          dv[k] += q * wm[k];
          gw[k] += q * value[k];
        }
      }
    };
    T *d_h = dha + b0 * H, *d_hp = dhb + b0 * H;  // rows b0.. of d(h_t) and d(h_{t-1})
    T *d_c = s.armin_cell ? nullptr : dca + b0 * H, *d_cp = s.armin_cell ? nullptr : dcb + b0 * H;
    for (int t = T_ - 1; t >= 0; --t) {
      const int64_t row = (int64_t)t * B + b0;  // this chunk's first row at step t
      const T *hp = hsp + row * H, *hn = hsp + (row + B) * H, *rt = rp + row * W, *yt = yp + row * N;
      const T *g1t = g1p + row * K1, *dot_t = dout + row * HW;
      T* dz = dzx + row * K;
      // undo the write at t: d(value) into dz's v block (reference) or d_new (paper), memory as before
      T* dval = s.reference ? dz + ov : d_new;
      const int ldv = s.reference ? K : H;
      if (!s.reference) std::memcpy(d_new, d_h, sizeof(T) * nb * H);
      const int n = s.n_written + t;
      if (t < hard) {
        const T* o = oldp + row * W;
        for (int b = 0; b < nb; ++b) {
          const int64_t slot = n < N ? n : idxp[row + b];
          T* dm = dmem + ((b0 + b) * N + slot) * W;
          T* dv = dval + (int64_t)b * ldv;
          if (s.reference) std::memcpy(dv, dm, sizeof(T) * W);
          else for (int k = 0; k < W; ++k) dv[k] += dm[k];
          std::memset(dm, 0, sizeof(T) * W);
          std::memcpy(memp + ((b0 + b) * N + slot) * W, o + (int64_t)b * W, sizeof(T) * W);
          if (U) {
            T* dq = dmqp + ((b0 + b) * N + slot) * U;
            value_back(dq, valp + (row + b) * W, dv);
            std::memset(dq, 0, sizeof(T) * U);
          }
        }
      } else {
        for (int b = 0; b < nb; ++b) {
          T* __restrict__ dv = dval + (int64_t)b * ldv;
          if (s.reference) std::fill(dv, dv + W, T(0));
          soft_write_back_row(yt + (int64_t)b * N, dmem + (b0 + b) * N * W, N, W, dv);
          if (U) {
            std::fill(dqs, dqs + U, T(0));
            soft_write_back_row(yt + (int64_t)b * N, dmqp + (b0 + b) * N * U, N, U, dqs);
            value_back(dqs, valp + (row + b) * W, dv);
          }
        }
        std::memcpy(memp + b0 * N * W, snapp + ((int64_t)(t - hard) * B + b0) * N * W, sizeof(T) * nb * N * W);
      }
      if (s.reference) {  // d_new = d_h + d(value) @ w_v
        std::memcpy(d_new, d_h, sizeof(T) * nb * H);
        mm<T>(false, false, nb, H, W, dz + ov, K, wvp, H, T(1), d_new, H);
      }
      if (s.armin_cell) {
        const T* g2t = g2p + row * K2;
        for (int b = 0; b < nb; ++b) {
          const int64_t bh = (int64_t)b * H, bw = (int64_t)b * W;
          if (s.reference)
            armin_cell_back_row_ref(g2t + (int64_t)b * K2, d_new + bh, dot_t + (int64_t)b * HW, hp + bh, hn + bh,
                                    rt + bw, H, W, dz + (int64_t)b * K + o2, d_hp + bh, d_r + bw);
          else
            armin_cell_back_row_paper(g2t + (int64_t)b * K2, d_new + bh, dot_t + (int64_t)b * HW, hp + bh,
                                      thp + row * H + bh, trp + row * W + bw, H, W, dz + (int64_t)b * K + o2,
                                      d_hp + bh, d_r + bw);
        }
        mm<T>(false, false, nb, HW, K2, dz + o2, K, w2p, HW, T(0), d_hr, HW);  // d[g^h*h, g^r*r]
        for (int b = 0; b < nb; ++b)
          input_gates_back_row(g1t + (int64_t)b * K1, d_hr + (int64_t)b * HW, hp + (int64_t)b * H,
                               rt + (int64_t)b * W, H, W, dz + (int64_t)b * K + o1, d_hp + (int64_t)b * H,
                               d_r + (int64_t)b * W);
      } else if (s.tardis_cell) {
        const T* g2t = g2p + row * K2;
        for (int b = 0; b < nb; ++b) {
          const int64_t bh = (int64_t)b * H;
          tardis_cell_back_row(g1t + (int64_t)b * K1, g2t + (int64_t)b * K2, d_new + bh, dot_t + (int64_t)b * HW,
                               d_c + bh, csp + row * H + bh, thp + row * H + bh, H, dz + (int64_t)b * K + o1,
                               dz + (int64_t)b * K + o2, d_cp + bh);
        }
        mm<T>(false, false, nb, HW, K2, dz + o2, K, w2p, HW, T(0), d_hr, HW);  // d[alpha h, beta r]
        for (int b = 0; b < nb; ++b)
          tardis_gates_back_row(g1t + (int64_t)b * K1, d_hr + (int64_t)b * HW, dot_t + (int64_t)b * HW,
                                hp + (int64_t)b * H, rt + (int64_t)b * W, H, W, dz + (int64_t)b * K + o1,
                                d_hp + (int64_t)b * H, d_r + (int64_t)b * W);
        std::swap(d_c, d_cp);
      } else {
        for (int b = 0; b < nb; ++b) {
          const int64_t bh = (int64_t)b * H;
          lstm_cell_back_row(g1t + (int64_t)b * K1, d_new + bh, dot_t + (int64_t)b * HW, d_c + bh, csp + row * H + bh,
                             thp + row * H + bh, H, W, dz + (int64_t)b * K + o1, d_cp + bh, d_r + (int64_t)b * W);
        }
        std::memset(d_hp, 0, sizeof(T) * nb * H);
        std::swap(d_c, d_cp);
      }
      mm<T>(false, false, nb, HW, K1, dz + o1, K, w1p, HW, T(0), d_hr, HW);  // d[h, r] through layer 1
      for (int b = 0; b < nb; ++b) {
        const T* __restrict__ q = d_hr + (int64_t)b * HW;
        T* __restrict__ dhpb = d_hp + (int64_t)b * H;
        T* __restrict__ drb = d_r + (int64_t)b * W;
        for (int k = 0; k < H; ++k) dhpb[k] += q[k];
        for (int k = 0; k < W; ++k) drb[k] += q[H + k];
        const int64_t slot = s.soft ? -1 : idxp[row + b];
        if (!U) {
          read_back_row(yt + (int64_t)b * N, memp + (b0 + b) * N * W, drb, slot, N, W, temp, (const T*)nullptr,
                        dz + (int64_t)b * K, dmem + (b0 + b) * N * W);
          continue;
        }
        T *dpv = dprevp + (b0 + b) * N, *dus = dusp + (b0 + b) * N, *dab = da + (int64_t)b * N;
        for (int i = 0; i < N; ++i) ext[i] = dpv[i] + dus[i];  // w_t is prev_{t+1} and part of usage_{t+1}
        read_back_row(yt + (int64_t)b * N, memp + (b0 + b) * N * W, drb, slot, N, W, temp, (const T*)ext, dab,
                      dmem + (b0 + b) * N * W);
        tardis_score_back_row(dab, scp + (row + b) * N, scnp[row + b], tprep + (row + b) * N * U, vp, N, U, dpv,
                              dz + (int64_t)b * K, dmqp + (b0 + b) * N * U, lkq, lv);
      }
      if (U) {  // d(usage_t) += d(normalize(usage_t)), from the row part's d(normalize(u)) = d(prow) @ w_u
        mm<T>(false, false, nb, N, U, dz, K, wup, N, T(0), dun, N);
        for (int b = 0; b < nb; ++b) {
          T* d = dun + (int64_t)b * N;
          normalize_back_row(d, unp + (row + b) * N, unnp[row + b], N);
          T* dus = dusp + (b0 + b) * N;
          for (int i = 0; i < N; ++i) dus[i] += d[i];
        }
      }
      // the address block's state: h, or (TARDIS reading c) c_{t-1}, whose gradient d_c is after the swap
      if (s.address_h) mm<T>(false, false, nb, H, A, dz, K, wap, H, T(1), s.address_c ? d_c : d_hp, H);
      std::swap(d_h, d_hp);
    }
    if (U) {
      std::lock_guard<std::mutex> lock(sum_lock);
      T *gw = d_w_m.data_ptr<T>(), *gk = d_kq.data_ptr<T>(), *gv = d_v.data_ptr<T>();
      for (int e = 0; e < U * W; ++e) gw[e] += lw_m[e];
      for (int e = 0; e < N * U; ++e) gk[e] += lkq[e];
      for (int e = 0; e < U; ++e) gv[e] += lv[e];
    }
  });
  // weight gradients: one matmul over all T*B rows each (BLAS threads are free again here)
  const int R = T_ * B;
  Tensor d_w_a = s.address_h ? at::empty({A, H}, opt) : Tensor();
  Tensor d_w1 = at::empty({K1, HW}, opt);
  if (s.address_h) mm<T>(true, false, A, H, R, dzx, K, s.address_c ? csp : hsp, H, T(0), d_w_a.data_ptr<T>(), H);
  mm<T>(true, false, K1, H, R, dzx + o1, K, hsp, H, T(0), d_w1.data_ptr<T>(), HW);
  mm<T>(true, false, K1, W, R, dzx + o1, K, rp, W, T(0), d_w1.data_ptr<T>() + H, HW);
  Tensor d_w2;
  if (s.armin_cell) {  // input of the second layer, [g^h*h, g^r*r], recomputed for all steps
    Tensor hr2 = at::empty({R, HW}, opt);
    T* q = hr2.data_ptr<T>();
    at::parallel_for(0, R, 256, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) input_gates_recompute(g1p + e * K1, hsp + e * H, rp + e * W, H, W, q + e * HW);
    });
    d_w2 = at::empty({K2, HW}, opt);
    mm<T>(true, false, K2, HW, R, dzx + o2, K, q, HW, T(0), d_w2.data_ptr<T>(), HW);
  } else if (s.tardis_cell) {  // the candidate's input [alpha h, beta r], recomputed
    Tensor q_ = at::empty({R, HW}, opt);
    T* q = q_.data_ptr<T>();
    at::parallel_for(0, R, 256, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        const T al = g1p[e * K1 + 3 * H], be = g1p[e * K1 + 3 * H + 1];
        for (int k = 0; k < H; ++k) q[e * HW + k] = al * hsp[e * H + k];
        for (int k = 0; k < W; ++k) q[e * HW + H + k] = be * rp[e * W + k];
      }
    });
    d_w2 = at::empty({K2, HW}, opt);
    mm<T>(true, false, K2, HW, R, dzx + o2, K, q, HW, T(0), d_w2.data_ptr<T>(), HW);
  }
  Tensor d_w_u;
  if (U) {  // d(w_u) over all rows; the scorer's memory part at the initial memory (mem is memory0 again)
    d_w_u = at::empty({U, N}, opt);
    mm<T>(true, false, U, N, R, dzx, K, unp, N, T(0), d_w_u.data_ptr<T>(), N);
    mm<T>(true, false, U, W, B * N, dmqp, U, memp, W, T(1), d_w_m.data_ptr<T>(), W);
    mm<T>(false, false, B * N, W, U, dmqp, U, wmp, W, T(1), dmem, W);
  }
  Tensor d_w_v;
  if (s.reference) {
    d_w_v = at::empty({W, H}, opt);
    mm<T>(true, false, W, H, R, dzx + ov, K, hsp + (int64_t)B * H, H, T(0), d_w_v.data_ptr<T>(), H);
  }
  // input projection: d(w_x) = (x^T d_z)^T (the fast orientation for a skinny X), d(b_x), d(x)
  Tensor d_w_x_t = at::empty({X, K}, opt);
  mm<T>(true, false, X, K, R, x.data_ptr<T>(), X, dzx, K, T(0), d_w_x_t.data_ptr<T>(), K);
  Tensor d_b_x = at::zeros({K}, opt);
  T* db = d_b_x.data_ptr<T>();
  at::parallel_for(0, K, 64, [&](int64_t k0, int64_t k1) {  // column sums, each thread its own columns
    for (int64_t e = 0; e < R; ++e) {
      const T* __restrict__ dze = dzx + e * K;
      for (int64_t k = k0; k < k1; ++k) db[k] += dze[k];
    }
  });
  Tensor d_x;
  if (need_dx) {
    Tensor w_x = w_x_.contiguous();
    d_x = at::empty({T_, B, X}, opt);
    mm<T>(false, false, R, X, K, dzx, K, w_x.data_ptr<T>(), X, T(0), d_x.data_ptr<T>(), X);
  }
  // after T swaps the gradient w.r.t. the initial state is in the first buffer iff T is even
  Tensor dh0 = T_ % 2 == 0 ? d_h_a : d_h_b;
  Tensor dc0 = s.armin_cell ? Tensor() : (T_ % 2 == 0 ? d_c_a : d_c_b);
  return {d_x, d_w_x_t.t().contiguous(), d_b_x, d_w_a, d_w1, d_w2, d_w_v, d_w_u, d_w_m, d_kq, d_v,
          dh0, dc0, d_mem, d_prev, d_usage};
}

Spec make_spec(int64_t H, int64_t N, int64_t W, int64_t K1, int64_t K2, bool reference, bool armin_cell, bool soft,
               bool address_h, int64_t n_written, double temperature, double forget_bias, bool tardis_cell, int64_t U,
               bool address_c) {
  return Spec{(int)H, (int)N, (int)W, (int)K1, (int)K2, reference, armin_cell, soft, address_h, (int)n_written,
              temperature, forget_bias, tardis_cell, (int)U, address_c};
}

std::vector<Tensor> forward(const Tensor& x, const Tensor& w_x, const Tensor& b_x, const optional<Tensor>& noise,
                            const optional<Tensor>& w_a, const Tensor& w1, const optional<Tensor>& w2,
                            const optional<Tensor>& w_v, const optional<Tensor>& w_u, const optional<Tensor>& w_m,
                            const optional<Tensor>& kq, const optional<Tensor>& v, const Tensor& h0,
                            const optional<Tensor>& c0, const Tensor& memory0, const optional<Tensor>& prev0,
                            const optional<Tensor>& usage0, int64_t H, int64_t N, int64_t W, int64_t K1, int64_t K2,
                            bool reference, bool armin_cell, bool soft, bool address_h, int64_t n_written,
                            double temperature, double forget_bias, bool tardis_cell, int64_t U, bool address_c,
                            bool save) {
  TORCH_CHECK(x.device().is_cpu(), "fused_armin: CPU tensors only");
  at::NoGradGuard no_grad;
  Spec s = make_spec(H, N, W, K1, K2, reference, armin_cell, soft, address_h, n_written, temperature, forget_bias,
                     tardis_cell, U, address_c);
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_armin_forward", [&] {
    res = forward_impl<scalar_t>(s, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0,
                                 usage0, save);
  });
  return res;
}

std::vector<Tensor> backward(const std::vector<Tensor>& saved, const Tensor& x, const Tensor& w_x,
                             const optional<Tensor>& w_a, const Tensor& w1, const optional<Tensor>& w2,
                             const optional<Tensor>& w_v, const optional<Tensor>& w_u, const optional<Tensor>& w_m,
                             const optional<Tensor>& v, const Tensor& d_out, const Tensor& d_h,
                             const optional<Tensor>& d_c, const Tensor& d_mem, const optional<Tensor>& d_prev,
                             const optional<Tensor>& d_usage, bool need_dx, int64_t H, int64_t N, int64_t W,
                             int64_t K1, int64_t K2, bool reference, bool armin_cell, bool soft, bool address_h,
                             int64_t n_written, double temperature, double forget_bias, bool tardis_cell, int64_t U,
                             bool address_c) {
  at::NoGradGuard no_grad;
  Spec s = make_spec(H, N, W, K1, K2, reference, armin_cell, soft, address_h, n_written, temperature, forget_bias,
                     tardis_cell, U, address_c);
  Tensor dout = d_out.contiguous();
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(dout.scalar_type(), "fused_armin_backward", [&] {
    res = backward_impl<scalar_t>(s, saved, x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, dout, d_h, d_c, d_mem, d_prev,
                                  d_usage, need_dx);
  });
  return res;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused ARMIN sequence forward (CPU)");
  m.def("backward", &backward, "fused ARMIN sequence backward (CPU)");
  m.def("have_blas", &have_blas, "whether BLAS is called directly (else through ATen's addmm)");
  m.def("have_simd", &have_simd, "whether exp / tanh are vectorised (built with ARMIN_AVX2)");
}
