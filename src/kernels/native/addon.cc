// Node-API bindings of the native kernels (plain C API, node_api.h). Each binding checks its
// arguments again (types, dims, buffer lengths; src/kernels/native.ts checks them first with
// friendlier messages) so that nothing reads or writes outside a typed array, then calls the
// kernel in kernels.h. Argument order follows Backend in backend.ts, options flattened.
#include <node_api.h>

#include <cstring>
#include <functional>

#include "kernels.h"
#include "napi_util.h"
#include "pool.h"
#include "simd.h"

namespace fk {

// matmul(c, a, b, M, N, K, transA, transB, accumulate)
static FK_BINDING(Matmul) {
  napi_value a[9];
  float *c, *x, *y;
  size_t nc, nx, ny;
  int M, N, K;
  bool ta, tb, acc;
  if (!get_args(env, info, 9, a) || !get_f32(env, a[0], "matmul c", &c, &nc) || !get_f32(env, a[1], "matmul a", &x, &nx) ||
      !get_f32(env, a[2], "matmul b", &y, &ny) || !get_dim(env, a[3], "M", &M) || !get_dim(env, a[4], "N", &N) ||
      !get_dim(env, a[5], "K", &K) || !get_bool(env, a[6], "transA", &ta) || !get_bool(env, a[7], "transB", &tb) ||
      !get_bool(env, a[8], "accumulate", &acc) || !need(env, "matmul c", nc, int64_t{M} * N) ||
      !need(env, "matmul a", nx, int64_t{M} * K) || !need(env, "matmul b", ny, int64_t{K} * N)) {
    return nullptr;
  }
  matmul(c, x, y, M, N, K, ta, tb, acc);
  return nullptr;
}

// matvec(y, w, x, rows, cols)
static FK_BINDING(Matvec) {
  napi_value a[5];
  float *y, *w, *x;
  size_t ny, nw, nx;
  int rows, cols;
  if (!get_args(env, info, 5, a) || !get_f32(env, a[0], "matvec y", &y, &ny) || !get_f32(env, a[1], "matvec w", &w, &nw) ||
      !get_f32(env, a[2], "matvec x", &x, &nx) || !get_dim(env, a[3], "rows", &rows) || !get_dim(env, a[4], "cols", &cols) ||
      !need(env, "matvec y", ny, rows) || !need(env, "matvec w", nw, int64_t{rows} * cols) || !need(env, "matvec x", nx, cols)) {
    return nullptr;
  }
  matvec(y, w, x, rows, cols, false);
  return nullptr;
}

// rmsnorm(out, x, weight, rows, dim, eps)
static FK_BINDING(Rmsnorm) {
  napi_value a[6];
  float *out, *x, *w;
  size_t no, nx, nw;
  int rows, dim;
  double eps;
  if (!get_args(env, info, 6, a) || !get_f32(env, a[0], "rmsnorm out", &out, &no) ||
      !get_f32(env, a[1], "rmsnorm x", &x, &nx) || !get_f32(env, a[2], "rmsnorm weight", &w, &nw) ||
      !get_dim(env, a[3], "rows", &rows) || !get_dim(env, a[4], "dim", &dim) || !get_number(env, a[5], "eps", &eps) ||
      !need(env, "rmsnorm out", no, int64_t{rows} * dim) || !need(env, "rmsnorm x", nx, int64_t{rows} * dim) ||
      !need(env, "rmsnorm weight", nw, dim)) {
    return nullptr;
  }
  rmsnorm(out, x, w, rows, dim, static_cast<float>(eps));
  return nullptr;
}

// rope(x, rows, heads, headDim, positions, invFreq, inverse)
static FK_BINDING(Rope) {
  napi_value a[7];
  float *x, *inv;
  int32_t* pos;
  size_t nx, np, ni;
  int rows, heads, hd;
  bool inverse;
  if (!get_args(env, info, 7, a) || !get_f32(env, a[0], "rope x", &x, &nx) || !get_dim(env, a[1], "rows", &rows) ||
      !get_dim(env, a[2], "heads", &heads) || !get_dim(env, a[3], "headDim", &hd) ||
      !get_i32(env, a[4], "rope positions", &pos, &np) || !get_f32(env, a[5], "rope invFreq", &inv, &ni) ||
      !get_bool(env, a[6], "inverse", &inverse)) {
    return nullptr;
  }
  if (hd % 2 != 0) {
    throw_range(env, "rope headDim: expected an even number, got " + std::to_string(hd));
    return nullptr;
  }
  if (!need(env, "rope x", nx, int64_t{rows} * heads * hd) || !need(env, "rope positions", np, rows) ||
      !need(env, "rope invFreq", ni, hd / 2)) {
    return nullptr;
  }
  rope(x, rows, heads, hd, pos, inv, inverse);
  return nullptr;
}

// softmax(x, rows, cols)
static FK_BINDING(Softmax) {
  napi_value a[3];
  float* x;
  size_t nx;
  int rows, cols;
  if (!get_args(env, info, 3, a) || !get_f32(env, a[0], "softmax x", &x, &nx) || !get_dim(env, a[1], "rows", &rows) ||
      !get_dim(env, a[2], "cols", &cols) || !need(env, "softmax x", nx, int64_t{rows} * cols)) {
    return nullptr;
  }
  softmax(x, rows, cols);
  return nullptr;
}

// silu(x, n)
static FK_BINDING(Silu) {
  napi_value a[2];
  float* x;
  size_t nx;
  int n;
  if (!get_args(env, info, 2, a) || !get_f32(env, a[0], "silu x", &x, &nx) || !get_dim(env, a[1], "n", &n) ||
      !need(env, "silu x", nx, n)) {
    return nullptr;
  }
  silu(x, n);
  return nullptr;
}

// swiglu(out, gate, up, n)
static FK_BINDING(Swiglu) {
  napi_value a[4];
  float *out, *gate, *up;
  size_t no, ng, nu;
  int n;
  if (!get_args(env, info, 4, a) || !get_f32(env, a[0], "swiglu out", &out, &no) ||
      !get_f32(env, a[1], "swiglu gate", &gate, &ng) || !get_f32(env, a[2], "swiglu up", &up, &nu) ||
      !get_dim(env, a[3], "n", &n) || !need(env, "swiglu out", no, n) || !need(env, "swiglu gate", ng, n) ||
      !need(env, "swiglu up", nu, n)) {
    return nullptr;
  }
  swiglu(out, gate, up, n);
  return nullptr;
}

// attention(out, q, k, v, nQ, nKV, nHeads, nKVHeads, headDim, scale, causal, scores?, scoresFromQuery)
static FK_BINDING(Attention) {
  napi_value a[13];
  float *out, *q, *k, *v, *scores = nullptr;
  size_t no, nq, nk, nv, ns = 0;
  AttentionShape s;
  double scale, from;
  if (!get_args(env, info, 13, a) || !get_f32(env, a[0], "attention out", &out, &no) ||
      !get_f32(env, a[1], "attention q", &q, &nq) || !get_f32(env, a[2], "attention k", &k, &nk) ||
      !get_f32(env, a[3], "attention v", &v, &nv) || !get_dim(env, a[4], "nQ", &s.nQ) ||
      !get_dim(env, a[5], "nKV", &s.nKV) || !get_dim(env, a[6], "nHeads", &s.nHeads) ||
      !get_dim(env, a[7], "nKVHeads", &s.nKVHeads) || !get_dim(env, a[8], "headDim", &s.headDim) ||
      !get_number(env, a[9], "scale", &scale) || !get_bool(env, a[10], "causal", &s.causal) ||
      !get_number(env, a[12], "scoresFromQuery", &from)) {
    return nullptr;
  }
  napi_valuetype st;
  napi_typeof(env, a[11], &st);
  if (st != napi_undefined && st != napi_null && !get_f32(env, a[11], "attention scores", &scores, &ns)) return nullptr;
  if (s.nKVHeads == 0 || s.nHeads % s.nKVHeads != 0) {
    throw_range(env, "attention nHeads: expected a multiple of nKVHeads (" + std::to_string(s.nKVHeads) + "), got " +
                         std::to_string(s.nHeads));
    return nullptr;
  }
  if (s.causal && s.nQ > s.nKV) {
    throw_range(env, "attention nQ: causal attention needs nQ <= nKV (" + std::to_string(s.nKV) + "), got " +
                         std::to_string(s.nQ));
    return nullptr;
  }
  const int64_t qdim = int64_t{s.nHeads} * s.headDim, kvdim = int64_t{s.nKVHeads} * s.headDim;
  if (!need(env, "attention out", no, s.nQ * qdim) || !need(env, "attention q", nq, s.nQ * qdim) ||
      !need(env, "attention k", nk, s.nKV * kvdim) || !need(env, "attention v", nv, s.nKV * kvdim) ||
      (scores && !need(env, "attention scores", ns, int64_t{s.nKVHeads} * s.nKV))) {
    return nullptr;
  }
  s.scale = static_cast<float>(scale);
  s.scoresFromQuery = from <= 0 ? 0 : from >= s.nQ ? s.nQ : static_cast<int>(std::ceil(from));
  attention(out, q, k, v, s, scores);
  return nullptr;
}

// copy(dst, src, n): a threaded memcpy, the bandwidth yardstick of the benchmark.
static FK_BINDING(Copy) {
  napi_value a[3];
  float *dst, *src;
  size_t nd, ns;
  int n;
  if (!get_args(env, info, 3, a) || !get_f32(env, a[0], "copy dst", &dst, &nd) || !get_f32(env, a[1], "copy src", &src, &ns) ||
      !get_dim(env, a[2], "n", &n) || !need(env, "copy dst", nd, n) || !need(env, "copy src", ns, n)) {
    return nullptr;
  }
  const int threads = n < kParallelFloats ? 1 : pool_threads();
  parallel_for(threads, [&](int t, int) {
    const int64_t i0 = int64_t{n} * t / threads, i1 = int64_t{n} * (t + 1) / threads;
    std::memmove(dst + i0, src + i0, sizeof(float) * (i1 - i0));
  });
  return nullptr;
}

// threads() -> number of pool threads, the caller included.
static FK_BINDING(Threads) {
  napi_value r;
  napi_create_int32(env, pool_threads(), &r);
  return r;
}

// setThreads(n): restart the pool with n threads (n >= 1).
static FK_BINDING(SetThreads) {
  napi_value a[1];
  int n;
  if (!get_args(env, info, 1, a) || !get_dim(env, a[0], "threads", &n)) return nullptr;
  if (n < 1 || n > 256) {
    throw_range(env, "threads: expected an integer in [1, 256], got " + std::to_string(n));
    return nullptr;
  }
  set_pool_threads(n);
  return nullptr;
}

// simd() -> "avx2" or "scalar": the kernels in use.
static FK_BINDING(Simd) {
  napi_value r;
  const char* name = use_avx2() ? "avx2" : "scalar";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &r);
  return r;
}

// setSimd(name) -> boolean: "avx2" or "scalar"; false when the CPU lacks AVX2/FMA.
static FK_BINDING(SetSimd) {
  napi_value a[1];
  char name[16] = {};
  size_t len = 0;
  if (!get_args(env, info, 1, a) || napi_get_value_string_utf8(env, a[0], name, sizeof name, &len) != napi_ok ||
      (std::strcmp(name, "avx2") != 0 && std::strcmp(name, "scalar") != 0)) {
    throw_type(env, "simd: expected \"avx2\" or \"scalar\"");
    return nullptr;
  }
  napi_value r;
  napi_get_boolean(env, set_use_avx2(std::strcmp(name, "avx2") == 0), &r);
  return r;
}

// Bindings defined in other files of this folder (one declaration each).
FK_BINDING(Dct);  // dct.cc: dct(out, x, n, channels, inverse)

struct Export {
  const char* name;
  napi_callback fn;
};

// Every exported function, one line each.
static const Export kExports[] = {
    {"matmul", Matmul},
    {"matvec", Matvec},
    {"rmsnorm", Rmsnorm},
    {"rope", Rope},
    {"softmax", Softmax},
    {"silu", Silu},
    {"swiglu", Swiglu},
    {"attention", Attention},
    {"copy", Copy},
    {"threads", Threads},
    {"setThreads", SetThreads},
    {"simd", Simd},
    {"setSimd", SetSimd},
    {"dct", Dct},
};

static napi_value Init(napi_env env, napi_value exports) {
  for (const Export& e : kExports) {
    napi_value fn;
    if (napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.fn, nullptr, &fn) != napi_ok ||
        napi_set_named_property(env, exports, e.name, fn) != napi_ok) {
      return nullptr;
    }
  }
  return exports;
}

}  // namespace fk

NAPI_MODULE(NODE_GYP_MODULE_NAME, fk::Init)
