// The one small interface every hot loop goes through. Callers (model, cache, dsp, train)
// only ever see `Backend`; `native` (C++ addon, AVX2/FMA) and `reference` (plain TypeScript)
// implement it, and a WebAssembly backend for the browser can be added without touching them.
//
// Conventions: every tensor is a row-major Float32Array; shapes are given as explicit integer
// arguments and documented as [rows, cols]; kernels are synchronous, write into the output the
// caller passes, and throw a RangeError naming the argument when a length is wrong.

export interface MatmulOptions {
  /** A is stored [K, M] and used transposed. */
  transA?: boolean;
  /** B is stored [N, K] and used transposed (the layout of a Hugging Face Linear weight). */
  transB?: boolean;
  /** C += op(A)·op(B) instead of C = op(A)·op(B). */
  accumulate?: boolean;
}

export interface AttentionArgs {
  /** Query rows in this call; they are the LAST nQ positions of the nKV keys when causal. */
  nQ: number;
  /** Key/value rows to attend over. */
  nKV: number;
  nHeads: number;
  /** nHeads must be a multiple of nKVHeads (grouped-query attention). */
  nKVHeads: number;
  headDim: number;
  /** Logit scale, usually 1/sqrt(headDim). */
  scale: number;
  /** Query i may attend key j only when j <= nKV - nQ + i (mask aligned to the end). */
  causal: boolean;
  /**
   * Optional [nKVHeads, nKV] accumulator: the softmax probability each key receives is ADDED
   * here, summed over the query heads of its group and over queries i >= scoresFromQuery.
   * Eviction policies (H2O, TOVA, SnapKV) read their scores from it.
   */
  scores?: Float32Array;
  scoresFromQuery?: number;
}

export interface Backend {
  readonly name: string;
  /** Worker threads used by this backend (1 for reference). */
  threads(): number;
  setThreads(n: number): void;

  /** C[M,N] = op(A)[M,K] · op(B)[K,N] (see MatmulOptions). */
  matmul(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number, opts?: MatmulOptions): void;
  /** y[rows] = W[rows, cols] · x[cols]; the memory-bound decode path. */
  matvec(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void;
  /** out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * weight. out may alias x. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void;
  /**
   * In-place rotary embedding, Hugging Face "rotate_half" convention (element i pairs with
   * i + headDim/2). x is [rows, heads*headDim]; row r is rotated by angle positions[r]*invFreq[i]
   * (invFreq has headDim/2 entries); inverse = true rotates by the negative angle (un-rotates).
   */
  rope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, invFreq: Float32Array, inverse: boolean): void;
  /** In-place softmax over each row of x[rows, cols]. */
  softmax(x: Float32Array, rows: number, cols: number): void;
  /** out[i] = silu(gate[i]) * up[i], i < n. out may alias gate or up. */
  swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  /** In-place x[i] = x[i] * sigmoid(x[i]). */
  silu(x: Float32Array, n: number): void;
  /**
   * out[nQ, nHeads*headDim] = softmax(scale · q kᵀ + mask) v, per head; query head h reads KV
   * head floor(h / (nHeads/nKVHeads)). q is [nQ, nHeads*headDim]; k and v are [nKV, nKVHeads*headDim].
   */
  attention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, args: AttentionArgs): void;
  /**
   * Orthonormal DCT along the token axis of x[n, channels], each channel independently:
   * DCT-II when inverse is false, its inverse DCT-III when true. out is [n, channels].
   */
  dct(out: Float32Array, x: Float32Array, n: number, channels: number, inverse: boolean): void;
}

/** Throws a RangeError that names the argument when a buffer is shorter than its shape needs. */
export function checkLength(name: string, a: ArrayLike<number>, expected: number, shape: string): void {
  if (!Number.isInteger(expected) || expected < 0) {
    throw new RangeError(`${name}: invalid shape ${shape} (size ${expected})`);
  }
  if (a.length < expected) {
    throw new RangeError(`${name}: expected at least ${expected} elements for shape ${shape}, got ${a.length}`);
  }
}

/** Throws a RangeError unless every dimension is a non-negative integer. */
export function checkDims(dims: Record<string, number>): void {
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${k}: expected a non-negative integer, got ${v}`);
  }
}
