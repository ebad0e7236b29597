// Instruction-set dispatch and small AVX2 helpers shared by the kernel files.
//
// The addon is compiled for the baseline x86-64 (or any other) target; only functions marked
// FK_AVX2 use AVX2/FMA instructions, and they are called only after a run-time CPU check, so the
// addon loads and runs (on the portable scalar path) on CPUs without AVX2.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FK_HAVE_AVX2 1
#include <immintrin.h>
#define FK_AVX2 __attribute__((target("avx2,fma")))
#else
#define FK_HAVE_AVX2 0
#define FK_AVX2
#endif

namespace fk {

// True when the AVX2/FMA kernels run: the CPU has them and they were not switched off
// (FREQKV_SIMD=scalar in the environment, or set_use_avx2(false) from the tests).
bool use_avx2();
// Returns false (and changes nothing) when asking for AVX2 on a CPU without it.
bool set_use_avx2(bool on);

// Grow-only, 64-byte aligned scratch buffer private to the calling thread; `slot` tells
// independent buffers of one thread apart (see the kSlot constants in kernels.h).
float* scratch(int slot, size_t floats);

#if FK_HAVE_AVX2
FK_AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

FK_AVX2 static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Mask with the first n (0..8) lanes set, for loads/stores of a row's tail.
FK_AVX2 static inline __m256i tail_mask(int n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

// exp(x) for 8 floats, about 2 ulp (Cephes expf: range reduction by ln 2, degree-5 polynomial).
// Inputs below -87 give 0, above 88 are clamped (exp(88) ~ 1.65e38); NaN is not preserved.
FK_AVX2 static inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n*ln2, with ln2 split in two so that the subtraction is exact.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // Scale by 2^n through the exponent bits.
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}
#endif

}  // namespace fk
