// Loads the C++ addon (build/Release/freqkv_native.node, built by scripts/build-native.mjs at
// `npm ci`) and wraps it as a Backend. Lengths and shapes are checked here, with the same
// messages as the reference kernels, before any native code runs; the addon checks them again.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type AttentionArgs, type Backend, type MatmulOptions, checkDims, checkLength } from './backend.js';
import { dct as referenceDct } from './reference.js';

/** The functions the addon exports (src/kernels/native/addon.cc); dct appears once dct.cc is built in. */
interface Addon {
  matmul(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number, transA: boolean, transB: boolean, accumulate: boolean): void;
  matvec(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void;
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void;
  rope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, invFreq: Float32Array, inverse: boolean): void;
  softmax(x: Float32Array, rows: number, cols: number): void;
  silu(x: Float32Array, n: number): void;
  swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  attention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, nQ: number, nKV: number, nHeads: number,
    nKVHeads: number, headDim: number, scale: number, causal: boolean, scores: Float32Array | null, scoresFromQuery: number): void;
  copy(dst: Float32Array, src: Float32Array, n: number): void;
  threads(): number;
  setThreads(n: number): void;
  simd(): string;
  setSimd(name: string): boolean;
  dct?(out: Float32Array, x: Float32Array, n: number, channels: number, inverse: boolean): void;
}

/** The native backend plus a few extras for tests and benchmarks. */
export interface NativeBackend extends Backend {
  /** "avx2" or "scalar": the kernel variant in use. */
  simd(): string;
  /** Switch kernel variant ("avx2" | "scalar"); false when the CPU lacks AVX2/FMA. */
  setSimd(name: 'avx2' | 'scalar'): boolean;
  /** dst[0..n) = src[0..n), split over the pool: the memory-bandwidth yardstick. */
  copy(dst: Float32Array, src: Float32Array, n: number): void;
  /** True when dct runs natively (dct.cc built in), false when it falls back to the reference. */
  readonly nativeDct: boolean;
}

/** Where the addon lives: <package root>/build/Release; this file is dist/src/kernels/native.js. */
export function nativeAddonPath(): string {
  return process.env.FREQKV_NATIVE_ADDON ?? fileURLToPath(new URL('../../../build/Release/freqkv_native.node', import.meta.url));
}

let loaded: NativeBackend | null | undefined;

/** The native backend, or null when the addon is not built (or fails to load: reason on stderr). */
export function loadNativeBackend(): NativeBackend | null {
  if (loaded !== undefined) return loaded;
  const path = nativeAddonPath();
  if (!existsSync(path)) return (loaded = null);
  try {
    const addon = createRequire(import.meta.url)(path) as Addon;
    return (loaded = wrap(addon));
  } catch (err) {
    process.stderr.write(`freqkv: cannot load ${path}: ${(err as Error).message}\n`);
    return (loaded = null);
  }
}

/** A valid dimension: a non-negative integer. Each method first tests its arguments with this
 * and plain length comparisons (cheap: tiny calls are frequent) and only on failure runs the
 * full checks, which build the messages (same as the reference kernels). */
const isDim = (n: number): boolean => Number.isInteger(n) && n >= 0;

function wrap(addon: Addon): NativeBackend {
  const nativeDct = addon.dct?.bind(addon);
  return {
    name: 'native',
    nativeDct: nativeDct !== undefined,
    threads: () => addon.threads(),
    setThreads(n: number): void {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`setThreads n: expected an integer >= 1, got ${n}`);
      addon.setThreads(n);
    },
    simd: () => addon.simd(),
    setSimd: (name) => addon.setSimd(name),
    copy(dst, src, n) {
      if (isDim(n) && dst.length >= n && src.length >= n) return addon.copy(dst, src, n);
      checkDims({ n });
      checkLength('copy dst', dst, n, `[${n}]`);
      checkLength('copy src', src, n, `[${n}]`);
      addon.copy(dst, src, n);
    },

    matmul(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number, opts: MatmulOptions = {}): void {
      if (isDim(M) && isDim(N) && isDim(K) && c.length >= M * N && a.length >= M * K && b.length >= K * N) {
        return addon.matmul(c, a, b, M, N, K, !!opts.transA, !!opts.transB, !!opts.accumulate);
      }
      checkDims({ M, N, K });
      checkLength('matmul c', c, M * N, `[${M}, ${N}]`);
      checkLength('matmul a', a, M * K, opts.transA ? `[${K}, ${M}]` : `[${M}, ${K}]`);
      checkLength('matmul b', b, K * N, opts.transB ? `[${N}, ${K}]` : `[${K}, ${N}]`);
      addon.matmul(c, a, b, M, N, K, !!opts.transA, !!opts.transB, !!opts.accumulate);
    },

    matvec(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void {
      if (isDim(rows) && isDim(cols) && y.length >= rows && w.length >= rows * cols && x.length >= cols) return addon.matvec(y, w, x, rows, cols);
      checkDims({ rows, cols });
      checkLength('matvec y', y, rows, `[${rows}]`);
      checkLength('matvec w', w, rows * cols, `[${rows}, ${cols}]`);
      checkLength('matvec x', x, cols, `[${cols}]`);
      addon.matvec(y, w, x, rows, cols);
    },

    rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void {
      if (isDim(rows) && isDim(dim) && out.length >= rows * dim && x.length >= rows * dim && weight.length >= dim) {
        return addon.rmsnorm(out, x, weight, rows, dim, eps);
      }
      checkDims({ rows, dim });
      checkLength('rmsnorm out', out, rows * dim, `[${rows}, ${dim}]`);
      checkLength('rmsnorm x', x, rows * dim, `[${rows}, ${dim}]`);
      checkLength('rmsnorm weight', weight, dim, `[${dim}]`);
      addon.rmsnorm(out, x, weight, rows, dim, eps);
    },

    rope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, invFreq: Float32Array, inverse: boolean): void {
      if (isDim(rows) && isDim(heads) && isDim(headDim) && headDim % 2 === 0 && x.length >= rows * heads * headDim && positions.length >= rows && invFreq.length >= headDim / 2) {
        return addon.rope(x, rows, heads, headDim, positions, invFreq, inverse);
      }
      checkDims({ rows, heads, headDim });
      if (headDim % 2 !== 0) throw new RangeError(`rope headDim: expected an even number, got ${headDim}`);
      checkLength('rope x', x, rows * heads * headDim, `[${rows}, ${heads * headDim}]`);
      checkLength('rope positions', positions, rows, `[${rows}]`);
      checkLength('rope invFreq', invFreq, headDim / 2, `[${headDim / 2}]`);
      addon.rope(x, rows, heads, headDim, positions, invFreq, inverse);
    },

    softmax(x: Float32Array, rows: number, cols: number): void {
      if (isDim(rows) && isDim(cols) && x.length >= rows * cols) return addon.softmax(x, rows, cols);
      checkDims({ rows, cols });
      checkLength('softmax x', x, rows * cols, `[${rows}, ${cols}]`);
      addon.softmax(x, rows, cols);
    },

    silu(x: Float32Array, n: number): void {
      if (isDim(n) && x.length >= n) return addon.silu(x, n);
      checkDims({ n });
      checkLength('silu x', x, n, `[${n}]`);
      addon.silu(x, n);
    },

    swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
      if (isDim(n) && out.length >= n && gate.length >= n && up.length >= n) return addon.swiglu(out, gate, up, n);
      checkDims({ n });
      checkLength('swiglu out', out, n, `[${n}]`);
      checkLength('swiglu gate', gate, n, `[${n}]`);
      checkLength('swiglu up', up, n, `[${n}]`);
      addon.swiglu(out, gate, up, n);
    },

    attention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, args: AttentionArgs): void {
      const { nQ, nKV, nHeads, nKVHeads, headDim, scale, causal } = args;
      checkDims({ nQ, nKV, nHeads, nKVHeads, headDim });
      if (nKVHeads === 0 || nHeads % nKVHeads !== 0) {
        throw new RangeError(`attention nHeads: expected a multiple of nKVHeads (${nKVHeads}), got ${nHeads}`);
      }
      if (causal && nQ > nKV) throw new RangeError(`attention nQ: causal attention needs nQ <= nKV (${nKV}), got ${nQ}`);
      const qDim = nHeads * headDim;
      const kvDim = nKVHeads * headDim;
      checkLength('attention out', out, nQ * qDim, `[${nQ}, ${qDim}]`);
      checkLength('attention q', q, nQ * qDim, `[${nQ}, ${qDim}]`);
      checkLength('attention k', k, nKV * kvDim, `[${nKV}, ${kvDim}]`);
      checkLength('attention v', v, nKV * kvDim, `[${nKV}, ${kvDim}]`);
      if (args.scores) checkLength('attention scores', args.scores, nKVHeads * nKV, `[${nKVHeads}, ${nKV}]`);
      addon.attention(out, q, k, v, nQ, nKV, nHeads, nKVHeads, headDim, scale, causal, args.scores ?? null, args.scoresFromQuery ?? 0);
    },

    dct(out: Float32Array, x: Float32Array, n: number, channels: number, inverse: boolean): void {
      if (!nativeDct) return referenceDct(out, x, n, channels, inverse);
      checkDims({ n, channels });
      checkLength('dct out', out, n * channels, `[${n}, ${channels}]`);
      checkLength('dct x', x, n * channels, `[${n}, ${channels}]`);
      if (out === x) throw new RangeError('dct out: must not alias x');
      nativeDct(out, x, n, channels, inverse);
    },
  };
}
