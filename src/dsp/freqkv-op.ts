// The FreqKV compression operator (shared/spec/FREQKV.md section 1) and its transpose.
// For a span x[n, C] (n tokens, C independent channels) and a target length L < n:
//   1. X = DCT-II_n(x)                      orthonormal, along the token axis
//   2. keep the first L coefficients        (option: the last L, the "keep high" ablation)
//   3. y = DCT-III_L(X[:L])                 orthonormal inverse of length L
//   4. y *= sqrt(L / n)                     amplitude correction: a constant stays constant
// It is one fixed linear map y = M x with M [L, n] (low-pass filter + resample n -> L), so the
// backward pass is x_grad = M^T y_grad. Small spans use the explicit M through the Backend's
// matmul; long ones go through DCTs (FFT-based), which is O(n log n) instead of O(L n).
// Everything is computed in float64 and rounded to float32 once.
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { type RealArray, dctFFT, hasFastDct } from './dct.js';

/** Which coefficients survive: the first L (the method) or the last L (an ablation). */
export type FreqKeep = 'low' | 'high';
/**
 * amplitude: multiply by sqrt(L/n) (the method; constants stay constant).
 * none: no correction; the orthonormal transforms keep the energy of the kept coefficients, so
 *   a constant grows by sqrt(n/L) per compression.
 * energy: per channel, rescale the output so that its mean square over the L rows equals the
 *   input's mean square over the n rows (the dropped energy is put back). Data dependent, so not
 *   a fixed linear map: it has no operator matrix and no transpose.
 */
export type FreqScaling = 'amplitude' | 'none' | 'energy';
/** dense: explicit M via Backend.matmul; fft: DCTs in TypeScript; backend: Backend.dct (native when built); auto: by size. */
export type FreqMethod = 'auto' | 'dense' | 'fft' | 'backend';

export interface FreqOptions {
  keep?: FreqKeep;
  scaling?: FreqScaling;
  method?: FreqMethod;
  /** Defaults to getBackend(). */
  backend?: Backend;
}

/**
 * With the native backend, `auto` uses the dense product for n up to this many tokens and the
 * native DCT above. Measured with `npm run bench -- dsp` (64 channels, L = n/2, AVX2, one thread,
 * shared 2-core machine): n = 256 dense 0.06 ms / DCT 0.09 ms; 512: 0.20 / 0.18; 1024: 0.78 / 0.35;
 * 4096: 16 / 1.5; 8192: 79 / 3.5.
 */
export const FREQ_DENSE_MAX = 512;

/** The output scale factor of the linear variants. */
export function freqScale(n: number, L: number, scaling: FreqScaling = 'amplitude'): number {
  return scaling === 'amplitude' ? Math.sqrt(L / n) : 1;
}

interface Resolved {
  keep: FreqKeep;
  scaling: FreqScaling;
  method: FreqMethod;
  backend: Backend;
}

function resolve(fn: string, opts: FreqOptions): Resolved {
  const keep = opts.keep ?? 'low';
  const scaling = opts.scaling ?? 'amplitude';
  const method = opts.method ?? 'auto';
  if (keep !== 'low' && keep !== 'high') throw new RangeError(`${fn} keep: expected "low" or "high", got "${keep}"`);
  if (scaling !== 'amplitude' && scaling !== 'none' && scaling !== 'energy') {
    throw new RangeError(`${fn} scaling: expected "amplitude", "none" or "energy", got "${scaling}"`);
  }
  if (!['auto', 'dense', 'fft', 'backend'].includes(method)) {
    throw new RangeError(`${fn} method: expected auto, dense, fft or backend, got "${method}"`);
  }
  return { keep, scaling, method, backend: opts.backend ?? getBackend() };
}

function checkSizes(fn: string, sizes: Record<string, number>): void {
  for (const [name, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${fn} ${name}: expected a non-negative integer, got ${v}`);
  }
}

function checkRows(fn: string, arg: string, a: Float32Array, rows: number, channels: number): void {
  if (!(a instanceof Float32Array)) throw new TypeError(`${fn} ${arg}: expected a Float32Array`);
  if (a.length !== rows * channels) {
    throw new RangeError(`${fn} ${arg}: expected ${rows} rows of ${channels} channels = ${rows * channels} values, got ${a.length}`);
  }
}

/** The route `auto` takes for a span of n rows on this backend. */
export function chooseFreqMethod(n: number, backend: Backend): Exclude<FreqMethod, 'auto'> {
  // Without the addon the dense product runs on the reference matmul, slower than the
  // TypeScript FFT at every size (bench/dsp.ts: 4.5 ms against 0.3 ms already at n = 256).
  if (backend.name !== 'native') return 'fft';
  if (n <= FREQ_DENSE_MAX) return 'dense';
  return hasFastDct(backend) ? 'backend' : 'fft';
}

function pickMethod(m: FreqMethod, n: number, backend: Backend): Exclude<FreqMethod, 'auto'> {
  return m === 'auto' ? chooseFreqMethod(n, backend) : m;
}

/**
 * Compresses x (n rows of `channels` values, row after row) to L rows. L >= n returns a copy
 * of x; L = 0 returns an empty array. Throws RangeError naming the argument on bad sizes.
 */
export function freqCompress(x: Float32Array, n: number, channels: number, L: number, opts: FreqOptions = {}): Float32Array {
  const fn = 'freqCompress';
  checkSizes(fn, { n, channels, L });
  checkRows(fn, 'x', x, n, channels);
  const o = resolve(fn, opts);
  if (L >= n) return x.slice();
  const y = new Float32Array(L * channels);
  if (L === 0 || channels === 0) return y;
  const method = pickMethod(o.method, n, o.backend);
  const linear: FreqScaling = o.scaling === 'energy' ? 'none' : o.scaling;
  if (method === 'dense') {
    o.backend.matmul(y, freqOperatorMatrix(n, L, { keep: o.keep, scaling: linear }), x, L, channels, n);
  } else {
    const a = freqScale(n, L, linear);
    // X[n, C] = DCT-II(x); Y[L, C] = the kept rows; y = a DCT-III_L(Y).
    const first = o.keep === 'low' ? 0 : n - L;
    if (method === 'fft') {
      const X = new Float64Array(n * channels);
      dctFFT(X, x, n, channels, false);
      const Y = X.subarray(first * channels, (first + L) * channels);
      dctFFT(Y, Y, L, channels, true);
      for (let i = 0; i < L * channels; i++) y[i] = a * Y[i];
    } else {
      const X = new Float32Array(n * channels);
      o.backend.dct(X, x, n, channels, false);
      const Y = X.slice(first * channels, (first + L) * channels);
      o.backend.dct(y, Y, L, channels, true);
      for (let i = 0; i < L * channels; i++) y[i] *= a;
    }
  }
  if (o.scaling === 'energy') matchMeanSquare(y, L, x, n, channels);
  return y;
}

/**
 * The backward pass: x_grad[n, C] = M^T y[L', C] with L' = min(L, n) rows in y (for L >= n the
 * operator is the identity). Only for the linear scalings ("amplitude", "none").
 */
export function freqCompressTranspose(y: Float32Array, n: number, channels: number, L: number, opts: FreqOptions = {}): Float32Array {
  const fn = 'freqCompressTranspose';
  checkSizes(fn, { n, channels, L });
  const rows = Math.min(L, n);
  checkRows(fn, 'y', y, rows, channels);
  const o = resolve(fn, opts);
  if (o.scaling === 'energy') throw new RangeError(`${fn} scaling: "energy" is data dependent and has no transpose; use "amplitude" or "none"`);
  if (L >= n) return y.slice();
  const x = new Float32Array(n * channels);
  if (L === 0 || channels === 0) return x;
  const method = pickMethod(o.method, n, o.backend);
  if (method === 'dense') {
    o.backend.matmul(x, freqOperatorMatrix(n, L, o), y, n, channels, L, { transA: true });
    return x;
  }
  // M^T = a DCT-III_n . (zero-padded placement of L coefficients) . DCT-II_L
  const a = freqScale(n, L, o.scaling);
  const first = o.keep === 'low' ? 0 : n - L;
  if (method === 'fft') {
    const X = new Float64Array(n * channels);
    dctFFT(X.subarray(first * channels, (first + L) * channels), y, L, channels, false);
    dctFFT(X, X, n, channels, true);
    for (let i = 0; i < n * channels; i++) x[i] = a * X[i];
  } else {
    const X = new Float32Array(n * channels);
    o.backend.dct(X.subarray(first * channels, (first + L) * channels), y, L, channels, false);
    o.backend.dct(x, X, n, channels, true);
    for (let i = 0; i < n * channels; i++) x[i] *= a;
  }
  return x;
}

/** Per channel: scale y[L, C] so that mean_m y^2 = mean_t x^2 (a zero channel stays zero). */
function matchMeanSquare(y: Float32Array, L: number, x: Float32Array, n: number, C: number): void {
  const ex = new Float64Array(C);
  const ey = new Float64Array(C);
  for (let t = 0; t < n; t++) for (let c = 0; c < C; c++) ex[c] += x[t * C + c] * x[t * C + c];
  for (let m = 0; m < L; m++) for (let c = 0; c < C; c++) ey[c] += y[m * C + c] * y[m * C + c];
  for (let c = 0; c < C; c++) {
    const g = ey[c] > 0 ? Math.sqrt(ex[c] / n / (ey[c] / L)) : 1;
    for (let m = 0; m < L; m++) y[m * C + c] *= g;
  }
}

const operators = new Map<string, Float32Array>();

/**
 * The explicit operator M [min(L, n), n] (row m = output token m), cached per (n, L, keep,
 * scaling); the identity when L >= n. "low" uses a closed form (O(L n)); "high" sums the
 * cosine series (O(L^2 n)), which is only meant for small ablation sizes.
 */
export function freqOperatorMatrix(n: number, L: number, opts: Pick<FreqOptions, 'keep' | 'scaling'> = {}): Float32Array {
  const fn = 'freqOperatorMatrix';
  checkSizes(fn, { n, L });
  const { keep, scaling } = resolve(fn, { ...opts, backend: undefined, method: 'auto' });
  if (scaling === 'energy') throw new RangeError(`${fn} scaling: "energy" is data dependent and has no fixed matrix; use "amplitude" or "none"`);
  const key = `${n},${L},${keep},${scaling}`;
  let m = operators.get(key);
  if (m) return m;
  if (L >= n) {
    m = new Float32Array(n * n);
    for (let i = 0; i < n; i++) m[i * n + i] = 1;
  } else {
    m = keep === 'low' ? lowPassMatrix(n, L) : cosineSeriesMatrix(n, L, n - L);
    const a = freqScale(n, L, scaling);
    for (let i = 0; i < m.length; i++) m[i] *= a;
  }
  if (operators.size >= 8) operators.delete(operators.keys().next().value as string);
  operators.set(key, m);
  return m;
}

/**
 * Unscaled low-pass M[m, t] = sum_{k<L} s(k,L) s(k,n) cos(k a_m) cos(k b_t) with
 * a_m = pi (2m+1) / 2L and b_t = pi (2t+1) / 2n. With the Dirichlet kernel
 * D(th) = 1/2 + sum_{k=1}^{L-1} cos(k th) = sin((L - 1/2) th) / (2 sin(th / 2)) this is
 * (D(a_m - b_t) + D(a_m + b_t)) / sqrt(n L). Angles are kept as exact integer multiples of
 * pi / 4nL, reduced before the sine, so the result is accurate to float64 for large n.
 */
function lowPassMatrix(n: number, L: number): Float32Array {
  const P = 4 * n * L; // th / 2 = pi p / P; D has period P in p
  if ((2 * L) * 2 * P > Number.MAX_SAFE_INTEGER) throw new RangeError(`freqOperatorMatrix n: ${n} with L = ${L} is too large for an explicit matrix`);
  const dirichlet = (p: number): number => {
    const r = ((p % P) + P) % P;
    if (r === 0) return L - 0.5;
    const num = Math.sin((Math.PI * (((2 * L - 1) * r) % (2 * P))) / P);
    return num / (2 * Math.sin((Math.PI * r) / P));
  };
  const m = new Float32Array(L * n);
  const norm = 1 / Math.sqrt(n * L);
  for (let i = 0; i < L; i++) {
    const pa = (2 * i + 1) * n; // a_m = pi pa / 2nL and b_t = pi pb / 2nL, so (a_m -+ b_t) / 2 = pi (pa -+ pb) / P
    for (let t = 0; t < n; t++) {
      const pb = (2 * t + 1) * L;
      m[i * n + t] = norm * (dirichlet(pa - pb) + dirichlet(pa + pb));
    }
  }
  return m;
}

/** Unscaled M[m, t] = sum_{k<L} s(k,L) s(k+first,n) cos(k a_m) cos((k+first) b_t), by summing the series in float64. */
function cosineSeriesMatrix(n: number, L: number, first: number): Float32Array {
  const m = new Float32Array(L * n);
  const row = new Float64Array(n);
  for (let i = 0; i < L; i++) {
    row.fill(0);
    for (let k = 0; k < L; k++) {
      const ck = (k === 0 ? Math.sqrt(1 / L) : Math.sqrt(2 / L)) * Math.cos((Math.PI * k * (2 * i + 1)) / (2 * L));
      const kk = k + first;
      const sk = kk === 0 ? Math.sqrt(1 / n) : Math.sqrt(2 / n);
      for (let t = 0; t < n; t++) row[t] += ck * sk * Math.cos((Math.PI * kk * (2 * t + 1)) / (2 * n));
    }
    for (let t = 0; t < n; t++) m[i * n + t] = row[t];
  }
  return m;
}
