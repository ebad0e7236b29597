// Memory-bound kernels: matrix-vector products, RMSNorm, rotary embedding, softmax, SiLU,
// SwiGLU, plus the small vector helpers attention uses. Each has an AVX2 body and a plain
// loop the compiler vectorises for the baseline target; large calls split rows over the pool.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "simd.h"

namespace fk {

// ---- dispatch state and scratch ----

static bool cpu_has_avx2() {
#if FK_HAVE_AVX2
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

static bool initial_avx2() {
  const char* env = std::getenv("FREQKV_SIMD");
  return cpu_has_avx2() && !(env && std::strcmp(env, "scalar") == 0);
}

static bool g_avx2 = initial_avx2();

bool use_avx2() { return g_avx2; }

bool set_use_avx2(bool on) {
  if (on && !cpu_has_avx2()) return false;
  g_avx2 = on;
  return true;
}

namespace {
struct Scratch {
  float* p[kSlotCount] = {};
  size_t n[kSlotCount] = {};
  ~Scratch() {
    for (float* q : p) std::free(q);
  }
};
thread_local Scratch t_scratch;
}  // namespace

float* scratch(int slot, size_t floats) {
  Scratch& s = t_scratch;
  if (floats > s.n[slot]) {
    std::free(s.p[slot]);
    const size_t bytes = (std::max<size_t>(floats, 16) * sizeof(float) + 63) / 64 * 64;
    s.p[slot] = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!s.p[slot]) std::abort();
    s.n[slot] = bytes / sizeof(float);
  }
  return s.p[slot];
}

// Splits [0, n) into chunks of at least `grain` items and runs fn(begin, end) on the pool, or
// inline when the whole job is small (`work` < kParallelFloats floats touched).
static void split_rows(int n, int64_t work, int grain, const std::function<void(int, int)>& fn) {
  const int threads = work < kParallelFloats ? 1 : pool_threads();
  int chunks = std::min(threads * 4, (n + grain - 1) / std::max(grain, 1));
  if (threads == 1 || chunks <= 1) return fn(0, n);
  parallel_for(chunks, [&](int t, int) { fn(static_cast<int64_t>(n) * t / chunks, static_cast<int64_t>(n) * (t + 1) / chunks); });
}

// ---- dot / axpy ----

#if FK_HAVE_AVX2
FK_AVX2 static float dot_avx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s0);
  }
  return hsum8(_mm256_add_ps(s0, s1));
}

FK_AVX2 static void axpy_avx2(float* y, const float* x, float s, int n) {
  const __m256 sv = _mm256_set1_ps(s);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += s * x[i];
}
#endif

float dot(const float* a, const float* b, int n) {
#if FK_HAVE_AVX2
  if (use_avx2()) return dot_avx2(a, b, n);
#endif
  float s = 0.0f;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

void axpy(float* y, const float* x, float s, int n) {
#if FK_HAVE_AVX2
  if (use_avx2()) return axpy_avx2(y, x, s, n);
#endif
  for (int i = 0; i < n; i++) y[i] += s * x[i];
}

// ---- matvec: y = W x, W streamed once, four rows per pass so each load of x serves four ----

#if FK_HAVE_AVX2
FK_AVX2 static void matvec_rows_avx2(float* y, const float* w, const float* x, int r0, int r1, int cols, bool acc) {
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const float* w0 = w + static_cast<size_t>(r) * cols;
    const float* w1 = w0 + cols;
    const float* w2 = w1 + cols;
    const float* w3 = w2 + cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j), x0, a0);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j + 8), x1, b0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j), x0, a1);
      b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j + 8), x1, b1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j), x0, a2);
      b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j + 8), x1, b2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j), x0, a3);
      b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j + 8), x1, b3);
    }
    for (; j < cols; j += 8) {
      const __m256i m = tail_mask(cols - j);
      const __m256 x0 = _mm256_maskload_ps(x + j, m);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + j, m), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w1 + j, m), x0, a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(w2 + j, m), x0, a2);
      a3 = _mm256_fmadd_ps(_mm256_maskload_ps(w3 + j, m), x0, a3);
    }
    const float s0 = hsum8(_mm256_add_ps(a0, b0)), s1 = hsum8(_mm256_add_ps(a1, b1));
    const float s2 = hsum8(_mm256_add_ps(a2, b2)), s3 = hsum8(_mm256_add_ps(a3, b3));
    y[r] = acc ? y[r] + s0 : s0;
    y[r + 1] = acc ? y[r + 1] + s1 : s1;
    y[r + 2] = acc ? y[r + 2] + s2 : s2;
    y[r + 3] = acc ? y[r + 3] + s3 : s3;
  }
  for (; r < r1; r++) {
    const float s = dot_avx2(w + static_cast<size_t>(r) * cols, x, cols);
    y[r] = acc ? y[r] + s : s;
  }
}
#endif

static void matvec_rows(float* y, const float* w, const float* x, int r0, int r1, int cols, bool acc) {
#if FK_HAVE_AVX2
  if (use_avx2()) return matvec_rows_avx2(y, w, x, r0, r1, cols, acc);
#endif
  for (int r = r0; r < r1; r++) {
    const float* wr = w + static_cast<size_t>(r) * cols;
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += wr[j] * x[j];
    y[r] = acc ? y[r] + s : s;
  }
}

void matvec(float* y, const float* w, const float* x, int rows, int cols, bool accumulate) {
  split_rows(rows, static_cast<int64_t>(rows) * cols, 16,
             [&](int r0, int r1) { matvec_rows(y, w, x, r0, r1, cols, accumulate); });
}

// y[j0:j1] (+)= sum_p x[p] B[p, j0:j1]; columns split over threads, rows of B streamed.
void vecmat(float* y, const float* x, const float* b, int k, int n, bool accumulate) {
  split_rows(n, static_cast<int64_t>(k) * n, 64, [&](int j0, int j1) {
    if (!accumulate) std::memset(y + j0, 0, sizeof(float) * (j1 - j0));
    for (int p = 0; p < k; p++) axpy(y + j0, b + static_cast<size_t>(p) * n + j0, x[p], j1 - j0);
  });
}

// ---- rmsnorm ----

static void rmsnorm_rows(float* out, const float* x, const float* weight, int r0, int r1, int dim, float eps) {
  for (int r = r0; r < r1; r++) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* o = out + static_cast<size_t>(r) * dim;
    const float ss = dot(xr, xr, dim);
    const float inv = static_cast<float>(1.0 / std::sqrt(static_cast<double>(ss) / dim + eps));
    for (int i = 0; i < dim; i++) o[i] = xr[i] * inv * weight[i];
  }
}

void rmsnorm(float* out, const float* x, const float* weight, int rows, int dim, float eps) {
  split_rows(rows, static_cast<int64_t>(rows) * dim, 1,
             [&](int r0, int r1) { rmsnorm_rows(out, x, weight, r0, r1, dim, eps); });
}

// ---- rope: angles in double (positions reach 1e5; a float angle would be off by ~1e-2) ----

static void rope_rows(float* x, int r0, int r1, int heads, int hd, const int32_t* pos, const float* inv_freq,
                      bool inverse) {
  const int half = hd / 2;
  std::vector<float> cs(hd);  // [cos(0..half), sin(0..half)] of one row's angles
  for (int r = r0; r < r1; r++) {
    for (int i = 0; i < half; i++) {
      const double angle = static_cast<double>(pos[r]) * inv_freq[i];
      cs[i] = static_cast<float>(std::cos(angle));
      cs[half + i] = static_cast<float>(inverse ? -std::sin(angle) : std::sin(angle));
    }
    for (int h = 0; h < heads; h++) {
      float* v = x + (static_cast<size_t>(r) * heads + h) * hd;
      for (int i = 0; i < half; i++) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cs[i] - x1 * cs[half + i];
        v[i + half] = x1 * cs[i] + x0 * cs[half + i];
      }
    }
  }
}

void rope(float* x, int rows, int heads, int head_dim, const int32_t* positions, const float* inv_freq, bool inverse) {
  split_rows(rows, static_cast<int64_t>(rows) * heads * head_dim * 4, 1,
             [&](int r0, int r1) { rope_rows(x, r0, r1, heads, head_dim, positions, inv_freq, inverse); });
}

// ---- exp, softmax ----

#if FK_HAVE_AVX2
FK_AVX2 static float exp_sum_avx2(float* x, int n, float shift, float scale) {
  const __m256 sh = _mm256_set1_ps(shift), sc = _mm256_set1_ps(scale);
  __m256 sum = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), sc, sh));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    const __m256 e = exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, m), sc, sh));
    _mm256_maskstore_ps(x + i, m, e);
    sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
  }
  return hsum8(sum);
}

FK_AVX2 static float max_avx2(const float* x, int n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  float r = hmax8(m);
  for (; i < n; i++) r = std::max(r, x[i]);
  return r;
}
#endif

float exp_inplace_sum(float* x, int n, float shift, float scale) {
#if FK_HAVE_AVX2
  if (use_avx2()) return exp_sum_avx2(x, n, shift, scale);
#endif
  float s = 0.0f;
  for (int i = 0; i < n; i++) s += (x[i] = std::exp(x[i] * scale - shift));
  return s;
}

float max_of(const float* x, int n) {
#if FK_HAVE_AVX2
  if (use_avx2()) return max_avx2(x, n);
#endif
  float m = -INFINITY;
  for (int i = 0; i < n; i++) m = std::max(m, x[i]);
  return m;
}

void scale_inplace(float* x, int n, float s) {
  for (int i = 0; i < n; i++) x[i] *= s;
}

void softmax(float* x, int rows, int cols) {
  split_rows(rows, static_cast<int64_t>(rows) * cols * 8, 1, [&](int r0, int r1) {
    for (int r = r0; r < r1; r++) {
      float* xr = x + static_cast<size_t>(r) * cols;
      const float m = max_of(xr, cols);
      const float sum = exp_inplace_sum(xr, cols, m, 1.0f);
      scale_inplace(xr, cols, 1.0f / sum);
    }
  });
}

// ---- silu, swiglu ----

#if FK_HAVE_AVX2
FK_AVX2 static inline __m256 silu8(__m256 g) {
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

// out[i] = g / (1 + exp(-g)) * (up ? up[i] : 1)
FK_AVX2 static void swiglu_avx2(float* out, const float* gate, const float* up, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    __m256 y = silu8(_mm256_loadu_ps(gate + i));
    if (up) y = _mm256_mul_ps(y, _mm256_loadu_ps(up + i));
    _mm256_storeu_ps(out + i, y);
  }
  if (i < i1) {
    const __m256i m = tail_mask(static_cast<int>(i1 - i));
    __m256 y = silu8(_mm256_maskload_ps(gate + i, m));
    if (up) y = _mm256_mul_ps(y, _mm256_maskload_ps(up + i, m));
    _mm256_maskstore_ps(out + i, m, y);
  }
}
#endif

static void swiglu_range(float* out, const float* gate, const float* up, int64_t i0, int64_t i1) {
#if FK_HAVE_AVX2
  if (use_avx2()) return swiglu_avx2(out, gate, up, i0, i1);
#endif
  for (int64_t i = i0; i < i1; i++) {
    const float g = gate[i];
    const float y = g / (1.0f + std::exp(-g));
    out[i] = up ? y * up[i] : y;
  }
}

// Elementwise jobs split into fixed 4096-float chunks on the pool. An exp costs about four
// loads' worth, hence the lower threshold (measured: 2 threads pay from ~8K floats).
static void elementwise(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (n * 4 < kParallelFloats || pool_threads() == 1) return fn(0, n);
  parallel_for(static_cast<int>(chunks), [&](int t, int) { fn(t * kChunk, std::min(n, (t + 1) * kChunk)); });
}

void silu(float* x, int64_t n) {
  elementwise(n, [&](int64_t i0, int64_t i1) { swiglu_range(x, x, nullptr, i0, i1); });
}

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
  elementwise(n, [&](int64_t i0, int64_t i1) { swiglu_range(out, gate, up, i0, i1); });
}

}  // namespace fk
