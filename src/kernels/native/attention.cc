// Attention of a block of queries over cached keys/values, grouped-query heads, causal mask
// aligned to the end (see Backend.attention in backend.ts).
//
// Work is split into tasks of (KV head, block of queries); a task handles every query head of
// its group, so each key and value row is read once per task. Per task, exactly (two-pass):
//   1. S[rows, keys] = Q K^T        rows = heads of the group x queries of the block
//   2. row softmax of scale * S, masked keys set to 0; the probabilities are added to the
//      scores accumulator when one was passed (per-thread partial sums, added up at the end)
//   3. O = P V
// Steps 1 and 3 use the packed matrix-product kernels (gemm.cc); with fewer than kMR rows
// (decoding a token) packing does not pay and plain dot/axpy loops stream K and V instead.
// The S block is sized to stay near L2 (kScoreBudget floats).
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "simd.h"

namespace fk {

constexpr int64_t kScoreBudget = 1 << 18;  // floats of S per task (1 MiB)
constexpr int kKeyPanel = 512;             // keys per packed K panel in step 1

namespace {

struct Task {
  float* out;
  const float *q, *k, *v;
  const AttentionShape* s;
  int group, hd;
  ptrdiff_t qdim, kvdim;
};

// Last key index query i may see.
inline int last_key(const AttentionShape& s, int i) { return s.causal ? s.nKV - s.nQ + i : s.nKV - 1; }

// Step 1, plain loops: S[(g*nb + ii)*ldS + j] = q(i0+ii, head g) . k(j).
void scores_direct(const Task& t, int kh, int i0, int nb, int kEnd, float* S, ptrdiff_t ldS) {
  for (int j = 0; j < kEnd; j++) {
    const float* kj = t.k + j * t.kvdim + kh * t.hd;
    for (int g = 0; g < t.group; g++) {
      for (int ii = 0; ii < nb; ii++) {
        const float* qi = t.q + (i0 + ii) * t.qdim + (kh * t.group + g) * t.hd;
        S[(g * nb + ii) * ldS + j] = dot(qi, kj, t.hd);
      }
    }
  }
}

// Step 1, packed: K panel packed once, reused by every head of the group.
void scores_packed(const Task& t, int kh, int i0, int nb, int kEnd, float* S, ptrdiff_t ldS) {
  for (int j0 = 0; j0 < kEnd; j0 += kKeyPanel) {
    const int nj = std::min(kKeyPanel, kEnd - j0);
    const int panels = (nj + kNR - 1) / kNR;
    for (int d0 = 0; d0 < t.hd; d0 += kKC) {
      const int dk = std::min(kKC, t.hd - d0);
      float* Bp = scratch(kSlotPackB, packed_b_floats(dk, nj));
      pack_b(Bp, Strided{t.k + j0 * t.kvdim + kh * t.hd + d0, 1, t.kvdim}, dk, nj, 0, panels);
      for (int g = 0; g < t.group; g++) {
        float* Ap = scratch(kSlotPackA, packed_a_floats(nb, dk));
        pack_a(Ap, Strided{t.q + i0 * t.qdim + (kh * t.group + g) * t.hd + d0, t.qdim, 1}, nb, dk);
        macro_kernel(nb, nj, dk, Ap, Bp, S + g * nb * ldS + j0, ldS, d0 > 0, 0, panels);
      }
    }
  }
}

// Step 3, plain loops: out rows = sum_j P[row, j] v(j); v(j) read once for all rows.
void values_direct(const Task& t, int kh, int i0, int nb, int kEnd, const float* S, ptrdiff_t ldS) {
  for (int g = 0; g < t.group; g++) {
    for (int ii = 0; ii < nb; ii++) std::memset(t.out + (i0 + ii) * t.qdim + (kh * t.group + g) * t.hd, 0, sizeof(float) * t.hd);
  }
  for (int j = 0; j < kEnd; j++) {
    const float* vj = t.v + j * t.kvdim + kh * t.hd;
    for (int g = 0; g < t.group; g++) {
      for (int ii = 0; ii < nb; ii++) {
        const float p = S[(g * nb + ii) * ldS + j];
        if (p != 0.0f) axpy(t.out + (i0 + ii) * t.qdim + (kh * t.group + g) * t.hd, vj, p, t.hd);
      }
    }
  }
}

// Step 3, packed: a V panel of kKC keys packed once, reused by every head of the group.
void values_packed(const Task& t, int kh, int i0, int nb, int kEnd, const float* S, ptrdiff_t ldS) {
  const int panels = (t.hd + kNR - 1) / kNR;
  for (int j0 = 0; j0 < kEnd; j0 += kKC) {
    const int kc = std::min(kKC, kEnd - j0);
    float* Bp = scratch(kSlotPackB, packed_b_floats(kc, t.hd));
    pack_b(Bp, Strided{t.v + j0 * t.kvdim + kh * t.hd, t.kvdim, 1}, kc, t.hd, 0, panels);
    for (int g = 0; g < t.group; g++) {
      float* Ap = scratch(kSlotPackA, packed_a_floats(nb, kc));
      pack_a(Ap, Strided{S + g * nb * ldS + j0, ldS, 1}, nb, kc);
      macro_kernel(nb, t.hd, kc, Ap, Bp, t.out + i0 * t.qdim + (kh * t.group + g) * t.hd, t.qdim, j0 > 0, 0, panels);
    }
  }
}

}  // namespace

void attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s, float* scores) {
  if (s.nQ == 0 || s.nHeads == 0) return;
  const Task t{out, q, k, v, &s, s.nHeads / s.nKVHeads, s.headDim, static_cast<ptrdiff_t>(s.nHeads) * s.headDim,
               static_cast<ptrdiff_t>(s.nKVHeads) * s.headDim};
  const double flops = 4.0 * s.nQ * s.nKV * s.headDim * s.nHeads;
  const int threads = flops < kParallelFlops ? 1 : pool_threads();

  // Queries per task: S within budget, a whole number of micro-panels, and enough tasks to
  // keep every thread busy.
  int bq = static_cast<int>(std::min<int64_t>(96, kScoreBudget / (static_cast<int64_t>(t.group) * std::max(1, s.nKV))));
  const int split = (2 * threads + s.nKVHeads - 1) / s.nKVHeads;  // query blocks wanted per KV head
  bq = std::min(bq, (s.nQ + split - 1) / split);
  if (bq >= kMR) bq = bq / kMR * kMR;
  bq = std::max(1, bq);
  const int qblocks = (s.nQ + bq - 1) / bq;

  // Per-thread partial score sums [threads, nKVHeads, nKV].
  const size_t score_floats = static_cast<size_t>(s.nKVHeads) * s.nKV;
  std::vector<float> partial(scores ? threads * score_floats : 0, 0.0f);

  auto task = [&](int id, int thread) {
    const int kh = id / qblocks, i0 = (id % qblocks) * bq, nb = std::min(bq, s.nQ - i0);
    const int kEnd = std::max(0, last_key(s, i0 + nb - 1) + 1);  // keys any query of the block sees
    const ptrdiff_t ldS = (kEnd + 15) / 16 * 16;
    const int rows = t.group * nb;
    float* S = scratch(kSlotScores, std::max<size_t>(1, rows * ldS));
    // Direct loops also cover the degenerate cases (no visible key: zero output, as the reference).
    const bool direct = rows < kMR || t.hd == 0 || kEnd == 0;
    if (direct) scores_direct(t, kh, i0, nb, kEnd, S, ldS);
    else scores_packed(t, kh, i0, nb, kEnd, S, ldS);

    float* part = scores ? partial.data() + thread * score_floats + static_cast<size_t>(kh) * s.nKV : nullptr;
    for (int g = 0; g < t.group; g++) {
      for (int ii = 0; ii < nb; ii++) {
        const int i = i0 + ii;
        const int n = std::max(0, last_key(s, i) + 1);
        float* row = S + (g * nb + ii) * ldS;
        scale_inplace(row, n, s.scale);
        const float sum = exp_inplace_sum(row, n, max_of(row, n), 1.0f);
        scale_inplace(row, n, 1.0f / sum);
        std::fill(row + n, row + ldS, 0.0f);
        if (part && i >= s.scoresFromQuery) axpy(part, row, 1.0f, n);
      }
    }

    if (direct) values_direct(t, kh, i0, nb, kEnd, S, ldS);
    else values_packed(t, kh, i0, nb, kEnd, S, ldS);
  };
  const int ntasks = s.nKVHeads * qblocks;
  if (threads == 1) {
    for (int id = 0; id < ntasks; id++) task(id, 0);
  } else {
    parallel_for(ntasks, task);
  }

  if (scores) {
    for (int th = 0; th < threads; th++) axpy(scores, partial.data() + th * score_floats, 1.0f, static_cast<int>(score_floats));
  }
}

}  // namespace fk
