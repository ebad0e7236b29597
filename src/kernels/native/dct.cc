// Orthonormal DCT-II / DCT-III along the token axis of x[n, channels], any n (Backend.dct).
//
// Same algorithm as src/dsp/dct.ts: Makhoul's n-point DCT from one n-point complex FFT, two
// real channels packed into one complex column (real part, imaginary part). The FFT is radix-2
// when n is a power of two and Bluestein's chirp-z (two radix-2 FFTs of length m >= 2n - 1)
// otherwise. Everything between the float32 input and the float32 output is float64, twiddles
// included (the FreqKV reference code builds its twiddles in bf16; we do not copy that).
//
// Channels are processed in blocks of kCols complex columns (2 * kCols real channels); a block's
// working set ([m, kCols] complex doubles) stays in L2 for n up to ~16K, and blocks are spread
// over the process-wide pool.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "napi_util.h"
#include "pool.h"
#include "simd.h"

// V4 values only ever live inside AVX2 functions (everything is inlined); the ABI note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace fk {
namespace {

constexpr int kCols = 4;
// Largest n accepted (m <= 2^27 rows of kCols columns stays inside 32-bit indices).
constexpr int kMaxN = 1 << 25;

#define DCT_INLINE inline __attribute__((always_inline))
constexpr double kPi = 3.14159265358979323846;

struct DctPlan {
  int n = 0;
  // Radix-2 length that is actually transformed: n itself, or Bluestein's m.
  int m = 0;
  std::vector<int32_t> rev;         // bit reversal of [0, m)
  std::vector<double> twr, twi;     // exp(-2 pi i j / m), j < m/2
  bool bluestein = false;
  std::vector<double> wr, wi;       // chirp exp(-i pi k^2 / n), k < n
  std::vector<double> kr, ki;       // FFT_m of the kernel conj(w[|j|]) wrapped to length m
  std::vector<double> cs, sn, sc;   // cos(pi k / 2n), sin(pi k / 2n), s(k, n)
};

bool is_pow2(int n) { return n > 0 && (n & (n - 1)) == 0; }

// SIMD values as GCC/Clang vector extensions: two doubles (SSE2, the portable path) or four
// (AVX2, used after the run-time CPU check). Plain double works too (one lane).
typedef double V2 __attribute__((vector_size(16)));
typedef double V4 __attribute__((vector_size(32)));

template <typename V>
DCT_INLINE V load(const double* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
DCT_INLINE void store(double* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// (a, b) <- (a + w b, a - w b) on B columns, sizeof(V) / 8 at a time.
template <typename V, int B>
DCT_INLINE void butterfly(double* ar, double* ai, double* br, double* bi, double wr, double wi) {
  constexpr int kLanes = sizeof(V) / sizeof(double);
  for (int c = 0; c < B; c += kLanes) {
    const V pr = load<V>(br + c), pi = load<V>(bi + c);
    const V xr = pr * wr - pi * wi;
    const V xi = pr * wi + pi * wr;
    const V r = load<V>(ar + c), i = load<V>(ai + c);
    store<V>(br + c, r - xr);
    store<V>(bi + c, i - xi);
    store<V>(ar + c, r + xr);
    store<V>(ai + c, i + xi);
  }
}

template <typename V, int B>
DCT_INLINE void swap_rows(double* a, double* b) {
  for (int c = 0; c < B; c += sizeof(V) / sizeof(double)) {
    const V t = load<V>(a + c);
    store<V>(a + c, load<V>(b + c));
    store<V>(b + c, t);
  }
}

// a[B] <- a * (wr + i wi), as complex numbers split in real and imaginary rows.
template <typename V, int B>
DCT_INLINE void cmul_rows(double* ar, double* ai, const double* xr, const double* xi, double wr, double wi) {
  for (int c = 0; c < B; c += sizeof(V) / sizeof(double)) {
    const V r = load<V>(xr + c), i = load<V>(xi + c);
    store<V>(ar + c, r * wr - i * wi);
    store<V>(ai + c, r * wi + i * wr);
  }
}

// Radix-2 butterflies of every size in [size0, size1] (powers of two) over rows [r0, r1).
template <typename V, int B>
DCT_INLINE void butterflies(double* re, double* im, const DctPlan& p, int r0, int r1, int size0, int size1) {
  for (int size = size0; size <= size1; size *= 2) {
    const int half = size / 2;
    const int step = p.m / size;
    for (int start = r0; start < r1; start += size) {
      for (int j = 0; j < half; j++) {
        const int a = (start + j) * B, b = (start + j + half) * B;
        butterfly<V, B>(re + a, im + a, re + b, im + b, p.twr[j * step], p.twi[j * step]);
      }
    }
  }
}

// Rows per chunk whose first butterfly stages run together while the chunk sits in L1.
constexpr int kChunkRows = 256;

// In-place forward radix-2 FFT along axis 0 of re/im [m, B].
template <typename V, int B>
DCT_INLINE void fft_pow2(double* re, double* im, const DctPlan& p) {
  const int m = p.m;
  for (int i = 0; i < m; i++) {
    const int j = p.rev[i];
    if (j <= i) continue;
    swap_rows<V, B>(re + i * B, re + j * B);
    swap_rows<V, B>(im + i * B, im + j * B);
  }
  // Small sizes chunk by chunk (cache resident), then the large sizes over the whole array.
  const int chunk = m < kChunkRows ? m : kChunkRows;
  for (int r0 = 0; r0 < m; r0 += chunk) butterflies<V, B>(re, im, p, r0, r0 + chunk, 2, chunk);
  butterflies<V, B>(re, im, p, 0, m, 2 * chunk, m);
}

// In-place forward DFT of re/im [n, B] for any n; ar/ai are [m, B] scratch (Bluestein only).
template <typename V, int B>
DCT_INLINE void dft(double* re, double* im, double* ar, double* ai, const DctPlan& p) {
  if (!p.bluestein) {
    fft_pow2<V, B>(re, im, p);
    return;
  }
  const int n = p.n, m = p.m;
  // a = x * chirp, zero-padded to m rows.
  for (int t = 0; t < n; t++) cmul_rows<V, B>(ar + t * B, ai + t * B, re + t * B, im + t * B, p.wr[t], p.wi[t]);
  std::memset(ar + n * B, 0, sizeof(double) * (m - n) * B);
  std::memset(ai + n * B, 0, sizeof(double) * (m - n) * B);
  fft_pow2<V, B>(ar, ai, p);
  // Times the kernel's spectrum; then the inverse FFT as conj(FFT(conj(.))) / m.
  for (int k = 0; k < m; k++) cmul_rows<V, B>(ar + k * B, ai + k * B, ar + k * B, ai + k * B, p.kr[k], p.ki[k]);
  for (int i = 0; i < m * B; i++) ai[i] = -ai[i];
  fft_pow2<V, B>(ar, ai, p);
  // x = w conj(a) / m, computed as conj(a conj(w) / m).
  const double inv_m = 1.0 / m;
  for (int k = 0; k < n; k++) {
    cmul_rows<V, B>(re + k * B, im + k * B, ar + k * B, ai + k * B, p.wr[k] * inv_m, -p.wi[k] * inv_m);
    for (int c = 0; c < B; c++) im[k * B + c] = -im[k * B + c];
  }
}

std::shared_ptr<const DctPlan> make_plan(int n) {
  auto p = std::make_shared<DctPlan>();
  p->n = n;
  p->bluestein = !is_pow2(n);
  int m = 1;
  while (m < (p->bluestein ? 2 * n - 1 : n)) m *= 2;
  p->m = m;
  int bits = 0;
  while ((1 << bits) < m) bits++;
  p->rev.resize(m);
  for (int i = 0; i < m; i++) {
    int r = 0;
    for (int b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
    p->rev[i] = r;
  }
  p->twr.resize(m / 2);
  p->twi.resize(m / 2);
  for (int j = 0; j < m / 2; j++) {
    p->twr[j] = std::cos(2 * kPi * j / m);
    p->twi[j] = -std::sin(2 * kPi * j / m);
  }
  if (p->bluestein) {
    p->wr.resize(n);
    p->wi.resize(n);
    for (int k = 0; k < n; k++) {
      // k^2 mod 2n keeps the angle exact and small.
      const int64_t q = (static_cast<int64_t>(k) * k) % (2 * static_cast<int64_t>(n));
      p->wr[k] = std::cos(kPi * q / n);
      p->wi[k] = -std::sin(kPi * q / n);
    }
    p->kr.assign(m, 0.0);
    p->ki.assign(m, 0.0);
    p->kr[0] = p->wr[0];
    p->ki[0] = -p->wi[0];
    for (int j = 1; j < n; j++) {
      p->kr[j] = p->kr[m - j] = p->wr[j];
      p->ki[j] = p->ki[m - j] = -p->wi[j];
    }
    fft_pow2<double, 1>(p->kr.data(), p->ki.data(), *p);
  }
  p->cs.resize(n);
  p->sn.resize(n);
  p->sc.resize(n);
  for (int k = 0; k < n; k++) {
    p->cs[k] = std::cos(kPi * k / (2.0 * n));
    p->sn[k] = std::sin(kPi * k / (2.0 * n));
    p->sc[k] = k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n);
  }
  return p;
}

// A few plans stay cached (a FreqKV cache calls with the same two lengths over and over).
std::shared_ptr<const DctPlan> get_plan(int n) {
  static std::mutex mu;
  static std::map<int, std::shared_ptr<const DctPlan>> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(n);
  if (it != plans.end()) return it->second;
  if (plans.size() >= 16) plans.erase(plans.begin());
  auto p = make_plan(n);
  plans[n] = p;
  return p;
}

// Row r of x goes to row v(r) of the FFT input: even rows first, odd rows reversed at the end.
inline int makhoul_row(int r, int n) { return r % 2 == 0 ? r / 2 : n - 1 - (r - 1) / 2; }

// Per-thread working arrays, grow-only.
struct Work {
  std::vector<double> re, im, ar, ai;
};
thread_local Work t_work;

// One block: complex column j carries channel c0 + j (real part) and c0 + kCols + j (imaginary).
template <typename V>
DCT_INLINE void dct_block(const DctPlan& p, float* out, const float* x, int C, int c0, bool inverse) {
  const int n = p.n;
  Work& w = t_work;
  if (w.re.size() < static_cast<size_t>(n) * kCols) {
    w.re.resize(static_cast<size_t>(n) * kCols);
    w.im.resize(static_cast<size_t>(n) * kCols);
  }
  if (p.bluestein && w.ar.size() < static_cast<size_t>(p.m) * kCols) {
    w.ar.resize(static_cast<size_t>(p.m) * kCols);
    w.ai.resize(static_cast<size_t>(p.m) * kCols);
  }
  double* re = w.re.data();
  double* im = w.im.data();
  // Channel of each half of column j, or -1 past the last channel.
  int cha[kCols], chb[kCols];
  for (int j = 0; j < kCols; j++) {
    cha[j] = c0 + j < C ? c0 + j : -1;
    chb[j] = c0 + kCols + j < C ? c0 + kCols + j : -1;
  }
  const auto at = [C](const float* a, int row, int ch) -> double {
    return ch < 0 ? 0.0 : static_cast<double>(a[static_cast<size_t>(row) * C + ch]);
  };

  if (!inverse) {
    for (int r = 0; r < n; r++) {
      const int d = makhoul_row(r, n) * kCols;
      for (int j = 0; j < kCols; j++) {
        re[d + j] = at(x, r, cha[j]);
        im[d + j] = at(x, r, chb[j]);
      }
    }
    dft<V, kCols>(re, im, w.ar.data(), w.ai.data(), p);
    // Z = Va + i Vb, Z[n-k] = conj(Va) + i conj(Vb); X[k] = s(k) Re(exp(-i pi k / 2n) V[k]).
    for (int k = 0; k < n; k++) {
      const int k2 = (n - k) % n;
      const double cs = p.cs[k] * p.sc[k] * 0.5, sn = p.sn[k] * p.sc[k] * 0.5;
      float* o = out + static_cast<size_t>(k) * C;
      for (int j = 0; j < kCols; j++) {
        const double zr = re[k * kCols + j], zi = im[k * kCols + j];
        const double wr = re[k2 * kCols + j], wi = im[k2 * kCols + j];
        if (cha[j] >= 0) o[cha[j]] = static_cast<float>(cs * (zr + wr) + sn * (zi - wi));
        if (chb[j] >= 0) o[chb[j]] = static_cast<float>(cs * (zi + wi) + sn * (wr - zr));
      }
    }
    return;
  }

  // Inverse: U[k] = X[k] / s(k); V[k] = exp(i pi k / 2n) (U[k] - i U[n-k]), U[n] = 0.
  for (int k = 0; k < n; k++) {
    const double cs = p.cs[k], sn = p.sn[k];
    const double u = 1.0 / p.sc[k], u2 = k == 0 ? 0.0 : 1.0 / p.sc[n - k];
    const int k2 = k == 0 ? 0 : n - k;
    for (int j = 0; j < kCols; j++) {
      const double ua = at(x, k, cha[j]) * u, ua2 = at(x, k2, cha[j]) * u2;
      const double ub = at(x, k, chb[j]) * u, ub2 = at(x, k2, chb[j]) * u2;
      const double var = cs * ua + sn * ua2, vai = sn * ua - cs * ua2;
      const double vbr = cs * ub + sn * ub2, vbi = sn * ub - cs * ub2;
      re[k * kCols + j] = var - vbi;
      im[k * kCols + j] = vai + vbr;
    }
  }
  // Inverse DFT = conj(DFT(conj(z))).
  for (int i = 0; i < n * kCols; i++) im[i] = -im[i];
  dft<V, kCols>(re, im, w.ar.data(), w.ai.data(), p);
  const double inv_n = 1.0 / n;
  for (int r = 0; r < n; r++) {
    const int s = makhoul_row(r, n) * kCols;
    float* o = out + static_cast<size_t>(r) * C;
    for (int j = 0; j < kCols; j++) {
      if (cha[j] >= 0) o[cha[j]] = static_cast<float>(re[s + j] * inv_n);
      if (chb[j] >= 0) o[chb[j]] = static_cast<float>(-im[s + j] * inv_n);
    }
  }
}

// The same block in two builds: AVX2/FMA (four lanes) and the portable baseline (two lanes).
FK_AVX2 void dct_block_avx2(const DctPlan& p, float* out, const float* x, int C, int c0, bool inverse) {
#if FK_HAVE_AVX2
  dct_block<V4>(p, out, x, C, c0, inverse);
#else
  dct_block<V2>(p, out, x, C, c0, inverse);
#endif
}

void dct_block_portable(const DctPlan& p, float* out, const float* x, int C, int c0, bool inverse) {
  dct_block<V2>(p, out, x, C, c0, inverse);
}

}  // namespace

// out[n, channels] = DCT-II (inverse = false) or DCT-III (inverse = true) of x[n, channels],
// orthonormal, along axis 0. out must not alias x. The caller has checked the lengths and n <= kMaxN.
void dct(float* out, const float* x, int n, int channels, bool inverse) {
  if (n <= 0 || channels <= 0) return;
  const auto plan = get_plan(n);
  const auto block = use_avx2() ? dct_block_avx2 : dct_block_portable;
  const int blocks = (channels + 2 * kCols - 1) / (2 * kCols);
  // Small transforms stay on the calling thread: waking the pool would cost more.
  if (static_cast<int64_t>(n) * channels < (1 << 14)) {
    for (int b = 0; b < blocks; b++) block(*plan, out, x, channels, b * 2 * kCols, inverse);
    return;
  }
  parallel_for(blocks, [&](int b, int) { block(*plan, out, x, channels, b * 2 * kCols, inverse); });
}

// dct(out, x, n, channels, inverse): Backend.dct (src/kernels/backend.ts).
FK_BINDING(Dct) {
  napi_value a[5];
  float *out, *x;
  size_t no, nx;
  int n, channels;
  bool inverse;
  if (!get_args(env, info, 5, a) || !get_f32(env, a[0], "dct out", &out, &no) || !get_f32(env, a[1], "dct x", &x, &nx) ||
      !get_dim(env, a[2], "n", &n) || !get_dim(env, a[3], "channels", &channels) || !get_bool(env, a[4], "inverse", &inverse) ||
      !need(env, "dct out", no, int64_t{n} * channels) || !need(env, "dct x", nx, int64_t{n} * channels)) {
    return nullptr;
  }
  // Index arithmetic is 32-bit and Bluestein pads to 2n: keep n well inside int.
  if (n > kMaxN) {
    throw_range(env, "dct n: expected at most " + std::to_string(kMaxN) + ", got " + std::to_string(n));
    return nullptr;
  }
  // Overlap would let one channel block overwrite another's input.
  if (int64_t{n} * channels > 0 && out < x + int64_t{n} * channels && x < out + int64_t{n} * channels) {
    throw_range(env, "dct out: must not overlap x");
    return nullptr;
  }
  dct(out, x, n, channels, inverse);
  return nullptr;
}

}  // namespace fk
