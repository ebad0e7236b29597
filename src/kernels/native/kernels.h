// The native kernels as plain C++ functions on raw float arrays (no Node-API here; addon.cc
// checks the arguments and calls these). Shapes follow src/kernels/backend.ts: row-major,
// [rows, cols]. Every function trusts its caller on lengths.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fk {

// Scratch slots (see scratch() in simd.h): each names one thread-local buffer.
enum ScratchSlot { kSlotPackB = 0, kSlotPackA = 1, kSlotScores = 2, kSlotCount = 3 };

// ---- matrix products (gemm.cc) ----

// A view of a matrix whose element (i, j) is p[i*rs + j*cs]; one of rs, cs is 1.
struct Strided {
  const float* p;
  ptrdiff_t rs, cs;
};

// Micro-tile of the packed product: MR rows of op(A) by NR columns of op(B).
constexpr int kMR = 6;
constexpr int kNR = 16;
// Blocking: a packed [kKC, kNR] sliver of B stays in L1, a packed [kMC, kKC] block of A in L2,
// a packed [kKC, kNC] panel of B in L3.
constexpr int kKC = 256;
constexpr int kMC = 192;
constexpr int kNC = 3072;

// Floats needed to pack m rows (or n columns) of depth k, rounded up to whole micro-panels.
inline size_t packed_a_floats(int m, int k) { return static_cast<size_t>((m + kMR - 1) / kMR) * kMR * k; }
inline size_t packed_b_floats(int k, int n) { return static_cast<size_t>((n + kNR - 1) / kNR) * kNR * k; }

// dst <- rows [0, m) x cols [0, k) of A, as micro-panels of kMR rows, zero-padded.
void pack_a(float* dst, Strided A, int m, int k);
// dst <- rows [0, k) x cols [0, n) of B, as micro-panels of kNR columns, zero-padded.
// Only the panels [panel0, panel1) are written (lets threads share the work).
void pack_b(float* dst, Strided B, int k, int n, int panel0, int panel1);
// C[m, n] (row stride ldc) = (accumulate ? C : 0) + Ap[m, k] * Bp[k, n], from packed operands;
// only the column micro-panels [panel0, panel1) of Bp are used.
void macro_kernel(int m, int n, int k, const float* Ap, const float* Bp, float* C, ptrdiff_t ldc,
                  bool accumulate, int panel0, int panel1);

// C[M, N] (+)= op(A)[M, K] * op(B)[K, N]; A is [K, M] when transA, B is [N, K] when transB.
// Multi-threaded on the pool above a size threshold.
void matmul(float* c, const float* a, const float* b, int M, int N, int K, bool transA, bool transB,
            bool accumulate);

// ---- vector kernels (ops.cc) ----

// y[rows] = W[rows, cols] * x[cols], or, with accumulate, y += W x.
void matvec(float* y, const float* w, const float* x, int rows, int cols, bool accumulate);
// y[n] (+)= x[k] * B[k, n]: the product with one row on the left, streaming B once.
void vecmat(float* y, const float* x, const float* b, int k, int n, bool accumulate);
void rmsnorm(float* out, const float* x, const float* weight, int rows, int dim, float eps);
void rope(float* x, int rows, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
          bool inverse);
void softmax(float* x, int rows, int cols);
void silu(float* x, int64_t n);
void swiglu(float* out, const float* gate, const float* up, int64_t n);

// exp of n floats in place (the AVX2 polynomial or std::exp); returns their sum.
float exp_inplace_sum(float* x, int n, float shift, float scale);
// max of x[0..n), -infinity when n == 0.
float max_of(const float* x, int n);
// x[i] *= s.
void scale_inplace(float* x, int n, float s);
// Dot product of two float vectors of length n.
float dot(const float* a, const float* b, int n);
// y[n] += s * x[n].
void axpy(float* y, const float* x, float s, int n);

// ---- attention (attention.cc) ----

struct AttentionShape {
  int nQ, nKV, nHeads, nKVHeads, headDim;
  float scale;
  bool causal;
  int scoresFromQuery;
};
// See Backend.attention in backend.ts; scores may be null.
void attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s,
               float* scores);

// ---- thresholds (measured; see bench/kernels.ts) ----
// Below these sizes a kernel runs on the calling thread only: waking the pool costs more than
// it saves.
constexpr double kParallelFlops = 2.0e5;  // matmul / attention multiply-adds x2
constexpr int64_t kParallelFloats = 1 << 15;  // matvec / elementwise floats touched

}  // namespace fk
