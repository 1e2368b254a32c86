// The fused ARMIN loop on CPU: forward and hand-written backward over a whole sequence.
//
// A line-by-line twin of `py_forward` / `py_backward` in armin/model/fused.py (read that first:
// it has the equations, the buffer layout and the column layout of zx). What this file adds is
// speed: no autograd graph, no per-step allocation, BLAS called directly on raw pointers for the
// small per-step matmuls, plain loops for the cheap elementwise work, and ATen only for the
// vectorised sigmoid / tanh of whole gate blocks. Recurrent weight gradients are formed after the
// backward loop, one matmul over all T*B rows each.
#include <torch/extension.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

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

bool have_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

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

// Strided 2-D view (rows x cols, row stride ld) of a buffer, for ATen's vectorised activations.
template <typename T>
Tensor view2(T* p, int rows, int cols, int ld) {
  return at::from_blob(p, {rows, cols}, {ld, 1}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// out (rows x cols, row stride ldo) = sigmoid / tanh of in (row stride ldi), vectorised by ATen.
template <typename T>
void sigmoid_to(T* out, int ldo, const T* in, int ldi, int rows, int cols) {
  Tensor o = view2(out, rows, cols, ldo);
  at::sigmoid_out(o, view2(const_cast<T*>(in), rows, cols, ldi));
}
template <typename T>
void tanh_to(T* out, int ldo, const T* in, int ldi, int rows, int cols) {
  Tensor o = view2(out, rows, cols, ldo);
  at::tanh_out(o, view2(const_cast<T*>(in), rows, cols, ldi));
}

struct Spec {
  int H, N, W, K1, K2;
  bool reference, armin_cell, soft, address_h;
  int n_written;
  double temperature, forget_bias;
  int o1() const { return N; }
  int o2() const { return N + K1; }
  int ov() const { return N + K1 + K2; }
  int K() const { return ov() + (reference ? W : 0); }
  int hard_steps(int T) const {  // steps whose write is an index write (all of them unless soft)
    if (!soft) return T;
    return std::max(0, std::min(T, N - n_written));
  }
};

template <typename T>
inline T sig_grad(T g) { return g * (T(1) - g); }

// ---- forward -------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> forward_impl(const Spec& s, const Tensor& zx, const std::optional<Tensor>& noise_,
                                 const std::optional<Tensor>& w_a_, const Tensor& w1_, const std::optional<Tensor>& w2_,
                                 const std::optional<Tensor>& w_v_, const Tensor& h0, const std::optional<Tensor>& c0,
                                 const Tensor& memory0, bool save) {
  const int T_ = zx.size(0), B = zx.size(1), H = s.H, N = s.N, W = s.W, K1 = s.K1, K2 = s.K2, K = s.K();
  const int HW = H + W, o1 = s.o1(), o2 = s.o2(), ov = s.ov();
  const int hard = s.hard_steps(T_), nsnap = T_ - hard;
  auto opt = zx.options();
  Tensor w1 = w1_.contiguous();
  // h's projections into [a | p1] in one matmul: rows [w_a; w1[:, :H]]
  Tensor wh = s.address_h ? at::cat({w_a_->contiguous(), w1.narrow(1, 0, H)}, 0).contiguous()
                          : w1.narrow(1, 0, H).contiguous();
  const int wh_rows = wh.size(0), wh_col = s.address_h ? 0 : o1;
  Tensor w2 = s.armin_cell ? w2_->contiguous() : Tensor();
  Tensor w_v = s.reference ? w_v_->contiguous() : Tensor();
  const int ST = save ? T_ : 1;  // per-step buffers only the backward needs: one step when not saving
  Tensor out = at::empty({T_, B, HW}, opt), y = at::empty({T_, B, N}, opt);
  Tensor hs = at::empty({T_ + 1, B, H}, opt), r = at::empty({T_, B, W}, opt);
  Tensor cs = s.armin_cell ? at::empty({0}, opt) : at::empty({T_ + 1, B, H}, opt);
  Tensor g1 = at::empty({ST, B, K1}, opt), g2 = at::empty({s.armin_cell ? ST : 0, B, K2}, opt);
  bool paper_armin = s.armin_cell && !s.reference;
  Tensor th = at::empty({(paper_armin || !s.armin_cell) ? ST : 0, B, H}, opt);
  Tensor tr = at::empty({paper_armin ? ST : 0, B, W}, opt);
  Tensor idx = at::empty({s.soft ? 0 : T_, B}, opt.dtype(at::kLong));
  Tensor old = at::empty({save ? hard : std::min(hard, 1), B, W}, opt);
  Tensor snap = at::empty({save ? nsnap : 0, B, N, W}, opt);
  Tensor mem = memory0.clone(at::MemoryFormat::Contiguous);
  hs[0].copy_(h0);
  if (!s.armin_cell) cs[0].copy_(*c0);
  Tensor z = at::empty({B, K}, opt), hr2 = at::empty({B, HW}, opt), value = at::empty({B, W}, opt);

  const T* zxp = zx.data_ptr<T>();
  const T* noise = noise_.has_value() && noise_->defined() ? noise_->data_ptr<T>() : nullptr;
  const T *whp = wh.data_ptr<T>(), *w1p = w1.data_ptr<T>();
  const T* w2p = s.armin_cell ? w2.data_ptr<T>() : nullptr;
  const T* wvp = s.reference ? w_v.data_ptr<T>() : nullptr;
  T *zp = z.data_ptr<T>(), *hr2p = hr2.data_ptr<T>(), *memp = mem.data_ptr<T>();
  T *outp = out.data_ptr<T>(), *yp = y.data_ptr<T>(), *hsp = hs.data_ptr<T>(), *rp = r.data_ptr<T>();
  T* csp = s.armin_cell ? nullptr : cs.data_ptr<T>();
  int64_t* idxp = s.soft ? nullptr : idx.data_ptr<int64_t>();
  const T temp = T(s.temperature), fb = T(s.forget_bias);

  for (int t = 0; t < T_; ++t) {
    const int st = save ? t : 0;
    const T* h = hsp + (int64_t)t * B * H;
    T* hn = hsp + (int64_t)(t + 1) * B * H;
    T* rt = rp + (int64_t)t * B * W;
    T* yt = yp + (int64_t)t * B * N;
    T* g1t = g1.data_ptr<T>() + (int64_t)st * B * K1;
    std::memcpy(zp, zxp + (int64_t)t * B * K, sizeof(T) * B * K);
    // read logits and the first layer's h part: z[:, a | p1] += h @ [w_a; w1_h]^T
    mm<T>(false, true, B, wh_rows, H, h, H, whp, H, T(1), zp + wh_col, K);
    // address: y = softmax((a + noise) / temperature), hard slot = first argmax of y
    for (int b = 0; b < B; ++b) {
      const T* a = zp + (int64_t)b * K;
      T* yb = yt + (int64_t)b * N;
      T mx = -INFINITY;
      for (int i = 0; i < N; ++i) {
        const T v = (a[i] + (noise ? noise[((int64_t)t * B + b) * N + i] : T(0))) / temp;
        yb[i] = v;
        mx = v > mx ? v : mx;
      }
      T sum = 0;
      for (int i = 0; i < N; ++i) sum += (yb[i] = std::exp(yb[i] - mx));
      int best = 0;
      for (int i = 0; i < N; ++i) {
        yb[i] /= sum;
        if (yb[i] > yb[best]) best = i;
      }
      const T* mb = memp + (int64_t)b * N * W;
      T* rb = rt + (int64_t)b * W;
      if (!s.soft) {  // a gather
        idxp[(int64_t)t * B + b] = best;
        std::memcpy(rb, mb + (int64_t)best * W, sizeof(T) * W);
      } else {
        for (int k = 0; k < W; ++k) rb[k] = 0;
        for (int i = 0; i < N; ++i) {
          const T w = yb[i];
          const T* mi = mb + (int64_t)i * W;
          for (int k = 0; k < W; ++k) rb[k] += w * mi[k];
        }
      }
    }
    // first layer's r part
    mm<T>(false, true, B, K1, W, rt, W, w1p + H, HW, T(1), zp + o1, K);
    T* vp;  // the value written at this step
    if (s.armin_cell) {
      sigmoid_to<T>(g1t, K1, zp + o1, K, B, K1);  // eq. (1): g^h, g^r
      for (int b = 0; b < B; ++b) {  // [g^h * h, g^r * r]
        const T* g = g1t + (int64_t)b * K1;
        T* q = hr2p + (int64_t)b * HW;
        for (int k = 0; k < H; ++k) q[k] = g[k] * h[(int64_t)b * H + k];
        for (int k = 0; k < W; ++k) q[H + k] = g[H + k] * rt[(int64_t)b * W + k];
      }
      mm<T>(false, true, B, K2, HW, hr2p, HW, w2p, HW, T(1), zp + o2, K);  // eq. (4)
      T* g2t = g2.data_ptr<T>() + (int64_t)st * B * K2;
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < H; ++k) zp[(int64_t)b * K + o2 + 2 * H + k] += fb;
      sigmoid_to<T>(g2t, K2, zp + o2, K, B, K2);
      tanh_to<T>(g2t + H, K2, zp + o2 + H, K, B, H);
      T* hw = s.reference ? zp : hn;  // reference: c~ into scratch (z's p1 block is spent), tanh below
      const int hw_ld = s.reference ? K : H, hw_off = s.reference ? o1 : 0;
      for (int b = 0; b < B; ++b) {  // eq. (5)
        const T* g = g2t + (int64_t)b * K2;
        const T* hb = h + (int64_t)b * H;
        T* c = hw + (int64_t)b * hw_ld + hw_off;
        for (int k = 0; k < H; ++k) c[k] = g[2 * H + k] * hb[k] + g[k] * g[H + k];
      }
      if (s.reference) {
        tanh_to<T>(hn, H, zp + o1, K, B, H);
        for (int b = 0; b < B; ++b) {  // o_t = [s_t * sig(o^h), r * sig(o^r)]
          const T* g = g2t + (int64_t)b * K2;
          T* o = outp + ((int64_t)t * B + b) * HW;
          for (int k = 0; k < H; ++k) o[k] = hn[(int64_t)b * H + k] * g[3 * H + k];
          for (int k = 0; k < W; ++k) o[H + k] = rt[(int64_t)b * W + k] * g[4 * H + k];
        }
      } else {
        T* tht = th.data_ptr<T>() + (int64_t)st * B * H;
        T* trt = tr.data_ptr<T>() + (int64_t)st * B * W;
        tanh_to<T>(tht, H, hn, H, B, H);
        tanh_to<T>(trt, W, rt, W, B, W);
        for (int b = 0; b < B; ++b) {  // eq. (6)
          const T* g = g2t + (int64_t)b * K2;
          T* o = outp + ((int64_t)t * B + b) * HW;
          for (int k = 0; k < H; ++k) o[k] = g[3 * H + k] * tht[(int64_t)b * H + k];
          for (int k = 0; k < W; ++k) o[H + k] = g[4 * H + k] * trt[(int64_t)b * W + k];
        }
      }
    } else {  // LSTM cell over [x, h, r]
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < H; ++k) zp[(int64_t)b * K + o1 + 2 * H + k] += fb;
      sigmoid_to<T>(g1t, K1, zp + o1, K, B, K1);
      tanh_to<T>(g1t + H, K1, zp + o1 + H, K, B, H);
      T* cp = csp + (int64_t)t * B * H;
      T* cn = csp + (int64_t)(t + 1) * B * H;
      T* tht = th.data_ptr<T>() + (int64_t)st * B * H;
      for (int b = 0; b < B; ++b) {
        const T* g = g1t + (int64_t)b * K1;
        for (int k = 0; k < H; ++k) {
          const int64_t e = (int64_t)b * H + k;
          cn[e] = g[2 * H + k] * cp[e] + g[k] * g[H + k];
        }
      }
      tanh_to<T>(tht, H, cn, H, B, H);
      for (int b = 0; b < B; ++b) {
        const T* g = g1t + (int64_t)b * K1;
        T* o = outp + ((int64_t)t * B + b) * HW;
        for (int k = 0; k < H; ++k) o[k] = hn[(int64_t)b * H + k] = tht[(int64_t)b * H + k] * g[3 * H + k];
        std::memcpy(o + H, rt + (int64_t)b * W, sizeof(T) * W);
      }
    }
    if (s.reference) {  // value = write_proj([x, s_t]): x part and bias are in zx
      mm<T>(false, true, B, W, H, hn, H, wvp, H, T(1), zp + ov, K);
      vp = value.data_ptr<T>();
      for (int b = 0; b < B; ++b) std::memcpy(vp + (int64_t)b * W, zp + (int64_t)b * K + ov, sizeof(T) * W);
    } else {
      vp = hn;  // the paper writes h_t itself
    }
    // write: slot n while filling, then the slot read (detached); soft: blend by y
    const int n = s.n_written + t;
    if (t < hard) {
      T* o = old.data_ptr<T>() + (int64_t)(save ? t : 0) * B * W;
      for (int b = 0; b < B; ++b) {
        const int64_t slot = n < N ? n : idxp[(int64_t)t * B + b];
        T* m = memp + ((int64_t)b * N + slot) * W;
        std::memcpy(o + (int64_t)b * W, m, sizeof(T) * W);
        std::memcpy(m, vp + (int64_t)b * W, sizeof(T) * W);
      }
    } else {
      if (save) std::memcpy(snap.data_ptr<T>() + (int64_t)(t - hard) * B * N * W, memp, sizeof(T) * B * N * W);
      for (int b = 0; b < B; ++b)
        for (int i = 0; i < N; ++i) {
          const T e = yt[(int64_t)b * N + i];
          T* m = memp + ((int64_t)b * N + i) * W;
          const T* v = vp + (int64_t)b * W;
          for (int k = 0; k < W; ++k) m[k] = e * v[k] + (T(1) - e) * m[k];
        }
    }
  }
  Tensor hT = hs[T_].clone();
  Tensor cT = s.armin_cell ? Tensor() : cs[T_].clone();
  return {out, hT, cT, hs, cs, r, tr, th, y, idx, g1, g2, old, snap, mem};
}

// ---- backward ------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> backward_impl(const Spec& s, const std::vector<Tensor>& sv, const std::optional<Tensor>& w_a_,
                                  const Tensor& w1_, const std::optional<Tensor>& w2_,
                                  const std::optional<Tensor>& w_v_, const Tensor& d_out,
                                  const Tensor& d_h0, const std::optional<Tensor>& d_c0, const Tensor& d_mem0) {
  const Tensor &hs = sv[0], &cs = sv[1], &r = sv[2], &tr = sv[3], &th = sv[4], &y = sv[5], &idx = sv[6],
               &g1 = sv[7], &g2 = sv[8], &old = sv[9], &snap = sv[10], &mem_T = sv[11];
  const int T_ = d_out.size(0), B = d_out.size(1), H = s.H, N = s.N, W = s.W, K1 = s.K1, K2 = s.K2, K = s.K();
  const int HW = H + W, o1 = s.o1(), o2 = s.o2(), ov = s.ov(), hard = s.hard_steps(T_);
  auto opt = d_out.options();
  Tensor w1 = w1_.contiguous();
  Tensor w_a = s.address_h ? w_a_->contiguous() : Tensor();
  Tensor w2 = s.armin_cell ? w2_->contiguous() : Tensor();
  Tensor w_v = s.reference ? w_v_->contiguous() : Tensor();
  Tensor d_zx = at::empty({T_, B, K}, opt);
  Tensor d_mem = d_mem0.contiguous().clone(), mem = mem_T.contiguous().clone();
  Tensor d_h = d_h0.contiguous().clone(), d_hp = at::empty({B, H}, opt), d_new = at::empty({B, H}, opt);
  Tensor d_c = s.armin_cell ? Tensor() : d_c0->contiguous().clone();
  Tensor d_cp = s.armin_cell ? Tensor() : at::empty({B, H}, opt);
  Tensor d_r = at::empty({B, W}, opt), d_hr = at::empty({B, HW}, opt), d_hr2 = at::empty({B, HW}, opt);
  Tensor d_val = at::empty({B, W}, opt);
  const T temp = T(s.temperature);
  T *dzx = d_zx.data_ptr<T>(), *dmem = d_mem.data_ptr<T>(), *memp = mem.data_ptr<T>();
  T *dr = d_r.data_ptr<T>(), *dhr = d_hr.data_ptr<T>(), *dhr2 = d_hr2.data_ptr<T>(), *dval = d_val.data_ptr<T>();
  const T *hsp = hs.data_ptr<T>(), *rp = r.data_ptr<T>(), *yp = y.data_ptr<T>(), *g1p = g1.data_ptr<T>();
  const T* dout = d_out.data_ptr<T>();
  const int64_t* idxp = s.soft ? nullptr : idx.data_ptr<int64_t>();
  const T *w1p = w1.data_ptr<T>(), *wap = s.address_h ? w_a.data_ptr<T>() : nullptr;
  const T* w2p = s.armin_cell ? w2.data_ptr<T>() : nullptr;
  const T* wvp = s.reference ? w_v.data_ptr<T>() : nullptr;

  for (int t = T_ - 1; t >= 0; --t) {
    const T* hp = hsp + (int64_t)t * B * H;
    const T* hn = hsp + (int64_t)(t + 1) * B * H;
    const T* rt = rp + (int64_t)t * B * W;
    const T* yt = yp + (int64_t)t * B * N;
    const T* g1t = g1p + (int64_t)t * B * K1;
    const T* dot = dout + (int64_t)t * B * HW;
    T* dz = dzx + (int64_t)t * B * K;
    T *dh = d_h.data_ptr<T>(), *dhp = d_hp.data_ptr<T>(), *dnew = d_new.data_ptr<T>();
    // undo the write at t: d(value), and memory as it was before it
    const int n = s.n_written + t;
    if (t < hard) {
      const T* o = old.data_ptr<T>() + (int64_t)t * B * W;
      for (int b = 0; b < B; ++b) {
        const int64_t slot = n < N ? n : idxp[(int64_t)t * B + b];
        T* dm = dmem + ((int64_t)b * N + slot) * W;
        std::memcpy(dval + (int64_t)b * W, dm, sizeof(T) * W);
        std::memset(dm, 0, sizeof(T) * W);
        std::memcpy(memp + ((int64_t)b * N + slot) * W, o + (int64_t)b * W, sizeof(T) * W);
      }
    } else {
      for (int b = 0; b < B; ++b) {
        T* dv = dval + (int64_t)b * W;
        for (int k = 0; k < W; ++k) dv[k] = 0;
        for (int i = 0; i < N; ++i) {
          const T e = yt[(int64_t)b * N + i];
          T* dm = dmem + ((int64_t)b * N + i) * W;
          for (int k = 0; k < W; ++k) {
            dv[k] += e * dm[k];
            dm[k] *= T(1) - e;
          }
        }
      }
      std::memcpy(memp, snap.data_ptr<T>() + (int64_t)(t - hard) * B * N * W, sizeof(T) * B * N * W);
    }
    std::memcpy(dnew, dh, sizeof(T) * B * H);
    if (s.reference) {
      for (int b = 0; b < B; ++b) std::memcpy(dz + (int64_t)b * K + ov, dval + (int64_t)b * W, sizeof(T) * W);
      mm<T>(false, false, B, H, W, dval, W, wvp, H, T(1), dnew, H);
    } else {
      for (int64_t e = 0; e < (int64_t)B * H; ++e) dnew[e] += dval[e];
    }
    if (s.armin_cell) {
      const T* g2t = g2.data_ptr<T>() + (int64_t)t * B * K2;
      for (int b = 0; b < B; ++b) {
        const T* g = g2t + (int64_t)b * K2;  // sig(i), tanh(j), sig(f+fb), sig(o^h), sig(o^r)
        const T* doh = dot + (int64_t)b * HW;
        const T* dor = doh + H;
        const T* hb = hp + (int64_t)b * H;
        const T* nb = hn + (int64_t)b * H;
        const T* rb = rt + (int64_t)b * W;
        T* dnb = dnew + (int64_t)b * H;
        T* dhpb = dhp + (int64_t)b * H;
        T* drb = dr + (int64_t)b * W;
        T* dp2 = dz + (int64_t)b * K + o2;
        const T* thb = s.reference ? nullptr : th.data_ptr<T>() + ((int64_t)t * B + b) * H;
        const T* trb = s.reference ? nullptr : tr.data_ptr<T>() + ((int64_t)t * B + b) * W;
        for (int k = 0; k < H; ++k) {
          const T si = g[k], tj = g[H + k], sf = g[2 * H + k], soh = g[3 * H + k];
          T dc, dsoh;
          if (s.reference) {
            const T dn = dnb[k] + doh[k] * soh;
            dsoh = doh[k] * nb[k];
            dc = dn * (T(1) - nb[k] * nb[k]);
          } else {
            const T tn = thb[k];
            dc = dnb[k] + doh[k] * soh * (T(1) - tn * tn);
            dsoh = doh[k] * tn;
          }
          dhpb[k] = dc * sf;
          dp2[k] = dc * tj * sig_grad(si);
          dp2[H + k] = dc * si * (T(1) - tj * tj);
          dp2[2 * H + k] = dc * hb[k] * sig_grad(sf);
          dp2[3 * H + k] = dsoh * sig_grad(soh);
        }
        for (int k = 0; k < W; ++k) {
          const T sor = g[4 * H + k];
          if (s.reference) {
            drb[k] = dor[k] * sor;
            dp2[4 * H + k] = dor[k] * rb[k] * sig_grad(sor);
          } else {
            const T trk = trb[k];
            drb[k] = dor[k] * sor * (T(1) - trk * trk);
            dp2[4 * H + k] = dor[k] * trk * sig_grad(sor);
          }
        }
      }
      mm<T>(false, false, B, HW, K2, dz + o2, K, w2p, HW, T(0), dhr2, HW);  // d[g^h*h, g^r*r]
      for (int b = 0; b < B; ++b) {
        const T* g = g1t + (int64_t)b * K1;
        const T* q = dhr2 + (int64_t)b * HW;
        T* dp1 = dz + (int64_t)b * K + o1;
        for (int k = 0; k < H; ++k) {
          dhp[(int64_t)b * H + k] += q[k] * g[k];
          dp1[k] = q[k] * hp[(int64_t)b * H + k] * sig_grad(g[k]);
        }
        for (int k = 0; k < W; ++k) {
          dr[(int64_t)b * W + k] += q[H + k] * g[H + k];
          dp1[H + k] = q[H + k] * rt[(int64_t)b * W + k] * sig_grad(g[H + k]);
        }
      }
    } else {  // LSTM cell
      const T* cp = cs.data_ptr<T>() + (int64_t)t * B * H;
      const T* tht = th.data_ptr<T>() + (int64_t)t * B * H;
      T *dc = d_c.data_ptr<T>(), *dcp = d_cp.data_ptr<T>();
      for (int b = 0; b < B; ++b) {
        const T* g = g1t + (int64_t)b * K1;  // sig(i), tanh(j), sig(f+fb), sig(o)
        const T* doh = dot + (int64_t)b * HW;
        T* dp1 = dz + (int64_t)b * K + o1;
        for (int k = 0; k < H; ++k) {
          const int64_t e = (int64_t)b * H + k;
          const T si = g[k], tj = g[H + k], sf = g[2 * H + k], so = g[3 * H + k], tc = tht[e];
          const T dn = dnew[e] + doh[k];
          const T dcn = dc[e] + dn * so * (T(1) - tc * tc);
          dcp[e] = dcn * sf;
          dp1[k] = dcn * tj * sig_grad(si);
          dp1[H + k] = dcn * si * (T(1) - tj * tj);
          dp1[2 * H + k] = dcn * cp[e] * sig_grad(sf);
          dp1[3 * H + k] = dn * tc * sig_grad(so);
          dhp[e] = 0;
        }
        std::memcpy(dr + (int64_t)b * W, doh + H, sizeof(T) * W);
      }
      std::swap(d_c, d_cp);
    }
    mm<T>(false, false, B, HW, K1, dz + o1, K, w1p, HW, T(0), dhr, HW);  // d[h, r] through layer 1
    for (int b = 0; b < B; ++b) {
      const T* q = dhr + (int64_t)b * HW;
      for (int k = 0; k < H; ++k) dhp[(int64_t)b * H + k] += q[k];
      for (int k = 0; k < W; ++k) dr[(int64_t)b * W + k] += q[H + k];
    }
    // read: dM gets dr at the slot read (soft: y_i dr), the address gets <dr, M_i> through softmax
    for (int b = 0; b < B; ++b) {
      const T* drb = dr + (int64_t)b * W;
      const T* yb = yt + (int64_t)b * N;
      T* da = dz + (int64_t)b * K;
      T dot_y = 0;
      for (int i = 0; i < N; ++i) {
        const T* m = memp + ((int64_t)b * N + i) * W;
        T acc = 0;
        for (int k = 0; k < W; ++k) acc += m[k] * drb[k];
        da[i] = acc;
        dot_y += acc * yb[i];
      }
      for (int i = 0; i < N; ++i) da[i] = yb[i] * (da[i] - dot_y) / temp;
      if (s.soft) {
        for (int i = 0; i < N; ++i) {
          const T e = yb[i];
          T* dm = dmem + ((int64_t)b * N + i) * W;
          for (int k = 0; k < W; ++k) dm[k] += e * drb[k];
        }
      } else {
        T* dm = dmem + ((int64_t)b * N + idxp[(int64_t)t * B + b]) * W;
        for (int k = 0; k < W; ++k) dm[k] += drb[k];
      }
    }
    if (s.address_h) mm<T>(false, false, B, H, N, dz, K, wap, H, T(1), dhp, H);
    std::swap(d_h, d_hp);
  }
  // recurrent weight gradients: one matmul over all T*B rows each
  const int R = T_ * B;
  Tensor d_w_a = s.address_h ? at::empty({N, H}, opt) : Tensor();
  Tensor d_w1 = at::empty({K1, HW}, opt);
  if (s.address_h) mm<T>(true, false, N, H, R, dzx, K, hsp, H, T(0), d_w_a.data_ptr<T>(), H);
  mm<T>(true, false, K1, H, R, dzx + o1, K, hsp, H, T(0), d_w1.data_ptr<T>(), HW);
  mm<T>(true, false, K1, W, R, dzx + o1, K, rp, W, T(0), d_w1.data_ptr<T>() + H, HW);
  Tensor d_w2;
  if (s.armin_cell) {
    Tensor hr2 = at::empty({R, HW}, opt);
    T* q = hr2.data_ptr<T>();
    for (int64_t e = 0; e < R; ++e) {
      const T* g = g1p + e * K1;
      for (int k = 0; k < H; ++k) q[e * HW + k] = g[k] * hsp[e * H + k];
      for (int k = 0; k < W; ++k) q[e * HW + H + k] = g[H + k] * rp[e * W + k];
    }
    d_w2 = at::empty({K2, HW}, opt);
    mm<T>(true, false, K2, HW, R, dzx + o2, K, q, HW, T(0), d_w2.data_ptr<T>(), HW);
  }
  Tensor d_w_v;
  if (s.reference) {
    d_w_v = at::empty({W, H}, opt);
    mm<T>(true, false, W, H, R, dzx + ov, K, hsp + (int64_t)B * H, H, T(0), d_w_v.data_ptr<T>(), H);
  }
  return {d_zx, d_w_a, d_w1, d_w2, d_w_v, d_h, d_c, d_mem};
}

Spec make_spec(int64_t H, int64_t N, int64_t W, int64_t K1, int64_t K2, bool reference, bool armin_cell, bool soft,
               bool address_h, int64_t n_written, double temperature, double forget_bias) {
  return Spec{(int)H, (int)N, (int)W, (int)K1, (int)K2, reference, armin_cell, soft, address_h, (int)n_written,
              temperature, forget_bias};
}

std::vector<Tensor> forward(const Tensor& zx, const std::optional<Tensor>& noise, const std::optional<Tensor>& w_a,
                            const Tensor& w1, const std::optional<Tensor>& w2, const std::optional<Tensor>& w_v,
                            const Tensor& h0, const std::optional<Tensor>& c0, const Tensor& memory0, int64_t H,
                            int64_t N, int64_t W, int64_t K1, int64_t K2, bool reference, bool armin_cell, bool soft,
                            bool address_h, int64_t n_written, double temperature, double forget_bias, bool save) {
  TORCH_CHECK(zx.device().is_cpu() && zx.is_contiguous(), "fused_armin: zx must be a contiguous CPU tensor");
  at::NoGradGuard no_grad;
  Spec s = make_spec(H, N, W, K1, K2, reference, armin_cell, soft, address_h, n_written, temperature, forget_bias);
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(zx.scalar_type(), "fused_armin_forward", [&] {
    res = forward_impl<scalar_t>(s, zx, noise, w_a, w1, w2, w_v, h0, c0, memory0, save);
  });
  return res;
}

std::vector<Tensor> backward(const std::vector<Tensor>& saved, const std::optional<Tensor>& w_a, const Tensor& w1,
                             const std::optional<Tensor>& w2, const std::optional<Tensor>& w_v, const Tensor& d_out,
                             const Tensor& d_h, const std::optional<Tensor>& d_c, const Tensor& d_mem, int64_t H,
                             int64_t N, int64_t W, int64_t K1, int64_t K2, bool reference, bool armin_cell, bool soft,
                             bool address_h, int64_t n_written, double temperature, double forget_bias) {
  at::NoGradGuard no_grad;
  Spec s = make_spec(H, N, W, K1, K2, reference, armin_cell, soft, address_h, n_written, temperature, forget_bias);
  Tensor dout = d_out.contiguous();
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(dout.scalar_type(), "fused_armin_backward", [&] {
    res = backward_impl<scalar_t>(s, saved, w_a, w1, w2, w_v, dout, d_h, d_c, d_mem);
  });
  return res;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused ARMIN sequence forward (CPU)");
  m.def("backward", &backward, "fused ARMIN sequence backward (CPU)");
  m.def("have_blas", &have_blas, "whether BLAS is called directly (else ATen addmm)");
}
