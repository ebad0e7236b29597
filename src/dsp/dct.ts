// Orthonormal DCT-II and its inverse DCT-III along the token axis of x[n, channels], for any n.
//   DCT-II:  X[k] = s(k,n) sum_{t<n} x[t] cos(pi k (2t+1) / 2n),  s(0,n) = sqrt(1/n), s(k>0,n) = sqrt(2/n)
//   DCT-III: x[t] = sum_{k<n} s(k,n) X[k] cos(pi k (2t+1) / 2n)
// Two ways to compute them:
//   dense: a cached [n, n] cosine table times x through the Backend's matmul, O(n^2 C);
//   fft:   Makhoul's n-point DCT from one n-point complex FFT (src/dsp/fft.ts), O(n log n C),
//          two real channels packed into one complex column to halve the work.
// All twiddles and tables are computed in float64 (the FreqKV reference code builds its
// forward twiddles in bf16, an error of about 3e-4 that we do not copy); the FFT path also
// works in float64 throughout and rounds to float32 only at the end.
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { fft } from './fft.js';

/** A real [rows, cols] array in either precision (the FFT path keeps float64 between steps). */
export type RealArray = Float32Array | Float64Array;

/** dense: cosine table times x; fft: Makhoul + FFT in TypeScript; backend: Backend.dct (native when built); auto: picks. */
export type DctMethod = 'auto' | 'dense' | 'fft' | 'backend';

/** Largest n for which `auto` uses the dense product on the native backend (an n x n product costs twice the FreqKV operator's n/2 x n; see FREQ_DENSE_MAX). */
export const DCT_DENSE_MAX = 256;

/** s(k, n): the orthonormal scale of coefficient k. */
export function dctScale(k: number, n: number): number {
  return k === 0 ? Math.sqrt(1 / n) : Math.sqrt(2 / n);
}

const matrices = new Map<number, Float32Array>();

/**
 * The orthonormal DCT-II matrix D[n, n], D[k, t] = s(k,n) cos(pi k (2t+1) / 2n), computed in
 * float64 and rounded once. DCT-III is its transpose. Cached for a few sizes.
 */
export function dctMatrix(n: number): Float32Array {
  checkSize('dctMatrix n', n);
  let d = matrices.get(n);
  if (d) return d;
  d = new Float32Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = dctScale(k, n);
    // k (2t+1) mod 4n keeps the cosine's argument in [0, 2 pi) and exact.
    for (let t = 0; t < n; t++) d[k * n + t] = s * Math.cos((Math.PI * ((k * (2 * t + 1)) % (4 * n))) / (2 * n));
  }
  if (matrices.size >= 8) matrices.delete(matrices.keys().next().value as number);
  matrices.set(n, d);
  return d;
}

/** Real channels per FFT block: small enough that a block's working set stays in cache. */
const BLOCK_CHANNELS = 16;

/**
 * FFT-path DCT-II (inverse = false) or DCT-III (inverse = true) of x[n, channels] into
 * out[n, channels]. Either array may be float32 or float64; out may alias x.
 */
export function dctFFT(out: RealArray, x: RealArray, n: number, channels: number, inverse: boolean): void {
  checkShape('dctFFT', out, x, n, channels);
  if (n === 0 || channels === 0) return;
  const tw = makhoulTwiddles(n);
  // Channels go in blocks; inside a block, channel c0 + j goes to the real part of complex
  // column j and channel c0 + H + j to its imaginary part (two real transforms for one complex).
  const H = Math.ceil(Math.min(BLOCK_CHANNELS, channels) / 2);
  const re = new Float64Array(n * H);
  const im = new Float64Array(n * H);
  for (let c0 = 0; c0 < channels; c0 += 2 * H) {
    const block = { c0, w: Math.min(2 * H, channels - c0), C: channels, H };
    if (inverse) dct3Block(out, x, re, im, n, block, tw);
    else dct2Block(out, x, re, im, n, block, tw);
  }
}

/** Channels [c0, c0 + w) of rows of C values, packed into H complex columns. */
interface Block {
  c0: number;
  w: number;
  C: number;
  H: number;
}

interface Twiddles {
  /** cos(pi k / 2n), sin(pi k / 2n) and s(k, n), k < n. */
  cs: Float64Array;
  sn: Float64Array;
  sc: Float64Array;
}

const twiddles = new Map<number, Twiddles>();

function makhoulTwiddles(n: number): Twiddles {
  let t = twiddles.get(n);
  if (t) return t;
  t = { cs: new Float64Array(n), sn: new Float64Array(n), sc: new Float64Array(n) };
  for (let k = 0; k < n; k++) {
    t.cs[k] = Math.cos((Math.PI * k) / (2 * n));
    t.sn[k] = Math.sin((Math.PI * k) / (2 * n));
    t.sc[k] = dctScale(k, n);
  }
  if (twiddles.size >= 16) twiddles.delete(twiddles.keys().next().value as number);
  twiddles.set(n, t);
  return t;
}

/** Row r of x lands at row v(r) of the FFT input: even rows first, odd rows reversed at the end. */
function makhoulRow(r: number, n: number): number {
  return r % 2 === 0 ? r / 2 : n - 1 - (r - 1) / 2;
}

function dct2Block(out: RealArray, x: RealArray, re: Float64Array, im: Float64Array, n: number, b: Block, tw: Twiddles): void {
  const { c0, w, C, H } = b;
  re.fill(0);
  im.fill(0);
  for (let r = 0; r < n; r++) {
    const src = r * C + c0;
    const dst = makhoulRow(r, n) * H;
    for (let c = 0; c < Math.min(H, w); c++) re[dst + c] = x[src + c];
    for (let c = H; c < w; c++) im[dst + c - H] = x[src + c];
  }
  fft(re, im, n, H, false);
  // Unpack the two real spectra from Z = Va + i Vb using Z[n-k] = conj(Va[k]) + i conj(Vb[k]),
  // then X[k] = s(k) Re(exp(-i pi k / 2n) V[k]).
  for (let k = 0; k < n; k++) {
    const k2 = (n - k) % n;
    const cs = (tw.cs[k] * tw.sc[k]) / 2;
    const sn = (tw.sn[k] * tw.sc[k]) / 2;
    const o = k * C + c0;
    for (let c = 0; c < H; c++) {
      const zr = re[k * H + c], zi = im[k * H + c];
      const wr = re[k2 * H + c], wi = im[k2 * H + c];
      // Va = ((zr + wr) + i (zi - wi)) / 2,  Vb = ((zi + wi) + i (wr - zr)) / 2
      if (c < w) out[o + c] = cs * (zr + wr) + sn * (zi - wi);
      if (c + H < w) out[o + c + H] = cs * (zi + wi) + sn * (wr - zr);
    }
  }
}

function dct3Block(out: RealArray, x: RealArray, re: Float64Array, im: Float64Array, n: number, b: Block, tw: Twiddles): void {
  const { c0, w, C, H } = b;
  // U[k] = X[k] / s(k) undoes the orthonormal scale; V[k] = exp(i pi k / 2n) (U[k] - i U[n-k])
  // (U[n] = 0) is the FFT of the permuted sequence; Z = Va + i Vb packs two channels.
  for (let k = 0; k < n; k++) {
    const cs = tw.cs[k], sn = tw.sn[k];
    const u = 1 / tw.sc[k];
    const u2 = k === 0 ? 0 : 1 / tw.sc[n - k];
    const o = k * C + c0;
    const o2 = (n - k) * C + c0;
    for (let c = 0; c < H; c++) {
      const hasA = c < w, hasB = c + H < w;
      const ua = hasA ? x[o + c] * u : 0, ua2 = hasA && k > 0 ? x[o2 + c] * u2 : 0;
      const ub = hasB ? x[o + c + H] * u : 0, ub2 = hasB && k > 0 ? x[o2 + c + H] * u2 : 0;
      const var_ = cs * ua + sn * ua2, vai = sn * ua - cs * ua2;
      const vbr = cs * ub + sn * ub2, vbi = sn * ub - cs * ub2;
      re[k * H + c] = var_ - vbi;
      im[k * H + c] = vai + vbr;
    }
  }
  fft(re, im, n, H, true);
  for (let r = 0; r < n; r++) {
    const src = makhoulRow(r, n) * H;
    const dst = r * C + c0;
    for (let c = 0; c < Math.min(H, w); c++) out[dst + c] = re[src + c] / n;
    for (let c = H; c < w; c++) out[dst + c] = im[src + c - H] / n;
  }
}

/** Dense DCT through the backend: out = D x (DCT-II) or out = D^T x (DCT-III). out must not alias x. */
export function dctDense(out: Float32Array, x: Float32Array, n: number, channels: number, inverse: boolean, backend: Backend = getBackend()): void {
  checkShape('dctDense', out, x, n, channels);
  if (out === x) throw new RangeError('dctDense out: must not alias x');
  if (n === 0 || channels === 0) return;
  backend.matmul(out, dctMatrix(n), x, n, channels, n, { transA: inverse });
}

/** True when backend.dct is a fast transform (the native addon's), not the O(n^2) reference loop. */
export function hasFastDct(backend: Backend): boolean {
  return backend.name === 'native' && (backend as { nativeDct?: boolean }).nativeDct === true;
}

/** Picks the method `auto` means for this n and backend (the reference matmul never pays off). */
export function chooseDctMethod(n: number, backend: Backend): Exclude<DctMethod, 'auto'> {
  if (backend.name !== 'native') return 'fft';
  if (n <= DCT_DENSE_MAX) return 'dense';
  return hasFastDct(backend) ? 'backend' : 'fft';
}

function run(x: Float32Array, n: number, channels: number, inverse: boolean, method: DctMethod, backend: Backend): Float32Array {
  const name = inverse ? 'dct3' : 'dct2';
  checkSize(`${name} n`, n);
  checkSize(`${name} channels`, channels);
  if (x.length !== n * channels) throw new RangeError(`${name} x: expected n*channels = ${n * channels} values ([${n}, ${channels}]), got ${x.length}`);
  const out = new Float32Array(n * channels);
  const m = method === 'auto' ? chooseDctMethod(n, backend) : method;
  if (m === 'dense') dctDense(out, x, n, channels, inverse, backend);
  else if (m === 'fft') dctFFT(out, x, n, channels, inverse);
  else if (m === 'backend') backend.dct(out, x, n, channels, inverse);
  else throw new RangeError(`${name} method: expected auto, dense, fft or backend, got "${m}"`);
  return out;
}

/** Orthonormal DCT-II of x[n, channels] along the token axis; returns [n, channels]. */
export function dct2(x: Float32Array, n: number, channels: number, method: DctMethod = 'auto', backend: Backend = getBackend()): Float32Array {
  return run(x, n, channels, false, method, backend);
}

/** Orthonormal DCT-III (the inverse of dct2) of X[n, channels]; returns [n, channels]. */
export function dct3(x: Float32Array, n: number, channels: number, method: DctMethod = 'auto', backend: Backend = getBackend()): Float32Array {
  return run(x, n, channels, true, method, backend);
}

function checkSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name}: expected a non-negative integer, got ${v}`);
}

function checkShape(fn: string, out: RealArray, x: RealArray, n: number, channels: number): void {
  checkSize(`${fn} n`, n);
  checkSize(`${fn} channels`, channels);
  const need = n * channels;
  if (x.length < need) throw new RangeError(`${fn} x: expected at least ${need} values ([${n}, ${channels}]), got ${x.length}`);
  if (out.length < need) throw new RangeError(`${fn} out: expected at least ${need} values ([${n}, ${channels}]), got ${out.length}`);
}
