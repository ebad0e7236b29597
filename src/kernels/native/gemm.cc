// Matrix product, BLIS style: op(A) and op(B) are copied ("packed") into contiguous
// micro-panels, and a register-blocked micro-kernel computes one [kMR, kNR] tile of C at a
// time from them. Packing absorbs the transposes, so one micro-kernel serves all four cases.
//
// Loop nest (sizes in kernels.h):
//   jc: columns of C in panels of kNC        (packed B panel [kKC, kNC] lives in L3)
//     pc: depth in blocks of kKC             (B is packed once per (jc, pc), by all threads)
//       tasks in parallel: a block of rows [<= kMC] x a range of B micro-panels
//         pack that block of A                (lives in L2)
//         jr: B micro-panels                  (one [kKC, kNR] sliver lives in L1)
//           ir: A micro-panels -> micro-kernel -> C tile
#include <algorithm>
#include <cstring>
#include <functional>

#include "kernels.h"
#include "pool.h"
#include "simd.h"

namespace fk {

// ---- packing ----

void pack_a(float* dst, Strided A, int m, int k) {
  for (int i0 = 0; i0 < m; i0 += kMR, dst += kMR * k) {
    const int rows = std::min(kMR, m - i0);
    if (A.cs == 1) {
      // Rows contiguous: gather kMR row streams.
      for (int ii = 0; ii < kMR; ii++) {
        if (ii < rows) {
          const float* src = A.p + (i0 + ii) * A.rs;
          for (int p = 0; p < k; p++) dst[p * kMR + ii] = src[p];
        } else {
          for (int p = 0; p < k; p++) dst[p * kMR + ii] = 0.0f;
        }
      }
    } else {
      // Columns contiguous (A used transposed): copy kMR consecutive floats per step.
      for (int p = 0; p < k; p++) {
        const float* src = A.p + p * A.cs + i0 * A.rs;
        for (int ii = 0; ii < kMR; ii++) dst[p * kMR + ii] = ii < rows ? src[ii * A.rs] : 0.0f;
      }
    }
  }
}

#if FK_HAVE_AVX2
// 8x8 transpose of floats: rows src[r*ld .. +8] -> dst[c*dld + r].
FK_AVX2 static void transpose8x8(float* dst, ptrdiff_t dld, const float* src, ptrdiff_t ld) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * ld), r1 = _mm256_loadu_ps(src + 1 * ld);
  __m256 r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld);
  __m256 r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld);
  __m256 r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * dld, _mm256_permute2f128_ps(s0, s4, 0x20));
  _mm256_storeu_ps(dst + 1 * dld, _mm256_permute2f128_ps(s1, s5, 0x20));
  _mm256_storeu_ps(dst + 2 * dld, _mm256_permute2f128_ps(s2, s6, 0x20));
  _mm256_storeu_ps(dst + 3 * dld, _mm256_permute2f128_ps(s3, s7, 0x20));
  _mm256_storeu_ps(dst + 4 * dld, _mm256_permute2f128_ps(s0, s4, 0x31));
  _mm256_storeu_ps(dst + 5 * dld, _mm256_permute2f128_ps(s1, s5, 0x31));
  _mm256_storeu_ps(dst + 6 * dld, _mm256_permute2f128_ps(s2, s6, 0x31));
  _mm256_storeu_ps(dst + 7 * dld, _mm256_permute2f128_ps(s3, s7, 0x31));
}
#endif

// One B micro-panel: dst[p*kNR + jj] = B(p, j0 + jj), zero past column n.
static void pack_b_panel(float* dst, Strided B, int k, int n, int j0) {
  const int cols = std::min(kNR, n - j0);
  if (B.cs == 1) {
    // Rows of B contiguous: copy kNR floats per depth step.
    for (int p = 0; p < k; p++) {
      const float* src = B.p + p * B.rs + j0;
      float* d = dst + p * kNR;
      std::memcpy(d, src, cols * sizeof(float));
      for (int jj = cols; jj < kNR; jj++) d[jj] = 0.0f;
    }
    return;
  }
  // Columns of B contiguous (B used transposed): transpose 8x8 blocks where possible.
  int p = 0;
#if FK_HAVE_AVX2
  if (use_avx2() && cols == kNR) {
    for (; p + 8 <= k; p += 8) {
      transpose8x8(dst + p * kNR, kNR, B.p + j0 * B.cs + p, B.cs);
      transpose8x8(dst + p * kNR + 8, kNR, B.p + (j0 + 8) * B.cs + p, B.cs);
    }
  }
#endif
  for (int jj = 0; jj < kNR; jj++) {
    const float* src = B.p + (j0 + jj) * B.cs;
    for (int q = p; q < k; q++) dst[q * kNR + jj] = jj < cols ? src[q] : 0.0f;
  }
}

void pack_b(float* dst, Strided B, int k, int n, int panel0, int panel1) {
  for (int j = panel0; j < panel1; j++) pack_b_panel(dst + static_cast<size_t>(j) * kNR * k, B, k, n, j * kNR);
}

// ---- micro-kernels: C[kMR, kNR] (+)= Ap[k, kMR]^T-panel * Bp[k, kNR]-panel ----

static void kernel_scalar(int k, const float* a, const float* b, float* c, ptrdiff_t ldc, bool acc) {
  float t[kMR][kNR] = {};
  for (int p = 0; p < k; p++, a += kMR, b += kNR) {
    for (int i = 0; i < kMR; i++) {
      for (int j = 0; j < kNR; j++) t[i][j] += a[i] * b[j];
    }
  }
  for (int i = 0; i < kMR; i++) {
    for (int j = 0; j < kNR; j++) c[i * ldc + j] = acc ? c[i * ldc + j] + t[i][j] : t[i][j];
  }
}

#if FK_HAVE_AVX2
// 12 accumulators (6 rows x 2 vectors of 8), 2 B loads and 6 broadcasts per depth step:
// 12 FMAs against 8 loads keeps both FMA pipes busy.
FK_AVX2 static void kernel_avx2(int k, const float* a, const float* b, float* c, ptrdiff_t ldc, bool acc) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int i = 0; i < kMR; i++) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int p = 0; p < k; p++, a += kMR, b += kNR) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kNR), _MM_HINT_T0);
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
  }
  const __m256 rows[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < kMR; i++) {
    float* ci = c + i * ldc;
    __m256 r0 = rows[i][0], r1 = rows[i][1];
    if (acc) {
      r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ci));
      r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ci + 8));
    }
    _mm256_storeu_ps(ci, r0);
    _mm256_storeu_ps(ci + 8, r1);
  }
}
#endif

// One tile; edge tiles go through a full-size temporary so the kernel never writes outside C.
static void tile(int k, const float* a, const float* b, float* c, ptrdiff_t ldc, bool acc, int m, int n) {
  const bool full = m == kMR && n == kNR;
  alignas(32) float tmp[kMR * kNR];
  float* dst = full ? c : tmp;
  const ptrdiff_t ld = full ? ldc : kNR;
  const bool acc_here = full && acc;
#if FK_HAVE_AVX2
  if (use_avx2()) kernel_avx2(k, a, b, dst, ld, acc_here);
  else
#endif
    kernel_scalar(k, a, b, dst, ld, acc_here);
  if (full) return;
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) c[i * ldc + j] = acc ? c[i * ldc + j] + tmp[i * kNR + j] : tmp[i * kNR + j];
  }
}

void macro_kernel(int m, int n, int k, const float* Ap, const float* Bp, float* C, ptrdiff_t ldc,
                  bool accumulate, int panel0, int panel1) {
  for (int jr = panel0; jr < panel1; jr++) {
    const int j0 = jr * kNR;
    const float* b = Bp + static_cast<size_t>(jr) * kNR * k;
    for (int i0 = 0; i0 < m; i0 += kMR) {
      tile(k, Ap + static_cast<size_t>(i0) * k, b, C + i0 * ldc + j0, ldc, accumulate, std::min(kMR, m - i0),
           std::min(kNR, n - j0));
    }
  }
}

// ---- the threaded driver ----

// Row blocks: the fewest blocks of at most kMC rows whose count is a multiple of the thread
// count (so that every thread gets the same work), each a whole number of micro-panels.
static int row_block(int M, int threads) {
  const int per_round = threads * kMC;
  const int rounds = (M + per_round - 1) / per_round;
  int mc = (M + rounds * threads - 1) / (rounds * threads);
  mc = (mc + kMR - 1) / kMR * kMR;
  return std::max(kMR, std::min(mc, kMC));
}

void matmul(float* c, const float* a, const float* b, int M, int N, int K, bool transA, bool transB,
            bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) std::memset(c, 0, sizeof(float) * M * N);
    return;
  }
  // One row (or column) on one side: a matrix-vector product streams the matrix once, no packing.
  if (M == 1 && transB) return matvec(c, b, a, N, K, accumulate);
  if (M == 1) return vecmat(c, a, b, K, N, accumulate);
  if (N == 1 && !transA) return matvec(c, a, b, M, K, accumulate);

  const Strided A = transA ? Strided{a, 1, M} : Strided{a, K, 1};
  const Strided B = transB ? Strided{b, 1, K} : Strided{b, N, 1};
  const double flops = 2.0 * M * N * K;
  const int threads = flops < kParallelFlops ? 1 : pool_threads();
  const int mc = row_block(M, threads);
  const int mblocks = (M + mc - 1) / mc;

  for (int jc = 0; jc < N; jc += kNC) {
    const int nc = std::min(kNC, N - jc);
    const int panels = (nc + kNR - 1) / kNR;
    // Few row blocks (a short A): split the B micro-panels too, so every thread has work.
    const int nparts = std::min(panels, mblocks >= threads ? 1 : (2 * threads + mblocks - 1) / mblocks);
    for (int pc = 0; pc < K; pc += kKC) {
      const int kc = std::min(kKC, K - pc);
      const bool acc = accumulate || pc > 0;
      float* Bp = scratch(kSlotPackB, packed_b_floats(kc, nc));
      const Strided Bblk{B.p + pc * B.rs + jc * B.cs, B.rs, B.cs};
      auto pack = [&](int t, int) {
        pack_b(Bp, Bblk, kc, nc, panels * t / threads, panels * (t + 1) / threads);
      };
      if (threads == 1) pack(0, 0);
      else parallel_for(threads, pack);

      auto compute = [&](int task, int) {
        const int ib = task / nparts, part = task % nparts;
        const int i0 = ib * mc, m = std::min(mc, M - i0);
        float* Ap = scratch(kSlotPackA, packed_a_floats(m, kc));
        pack_a(Ap, Strided{A.p + i0 * A.rs + pc * A.cs, A.rs, A.cs}, m, kc);
        macro_kernel(m, nc, kc, Ap, Bp, c + static_cast<size_t>(i0) * N + jc, N, acc, panels * part / nparts,
                     panels * (part + 1) / nparts);
      };
      if (threads == 1) {
        for (int t = 0; t < mblocks * nparts; t++) compute(t, 0);
      } else {
        parallel_for(mblocks * nparts, compute);
      }
    }
  }
}

}  // namespace fk
