// Complex FFT along the first axis of a batch laid out [n, B]: every one of the B columns is
// an independent length-n sequence, and the innermost loops run over the B contiguous values
// of a row (cache friendly, and it is how the DCT feeds many channels at once).
// Any n: iterative radix-2 when n is a power of two, Bluestein's chirp-z (three power-of-two
// FFTs of length >= 2n-1) otherwise. Twiddles and chirps are float64 and cached per length.
// No normalisation: forward then inverse multiplies by n.

interface Radix2Plan {
  n: number;
  /** rev[i]: i with its log2(n) bits reversed. */
  rev: Int32Array;
  /** exp(-2 pi i j / n) for j < n/2. */
  cos: Float64Array;
  sin: Float64Array;
}

interface BluesteinPlan {
  n: number;
  /** Power-of-two convolution length, >= 2n - 1. */
  m: number;
  /** w[k] = exp(-i pi k^2 / n), k < n. */
  wRe: Float64Array;
  wIm: Float64Array;
  /** FFT of the chirp kernel conj(w[|j|]) wrapped to length m. */
  kRe: Float64Array;
  kIm: Float64Array;
}

const radix2Plans = new Map<number, Radix2Plan>();
const bluesteinPlans = new Map<number, BluesteinPlan>();
const MAX_PLANS = 16;

/** Keeps a small plan cache: the oldest entry goes when it is full. */
function remember<T>(cache: Map<number, T>, key: number, make: () => T): T {
  let p = cache.get(key);
  if (p) return p;
  p = make();
  if (cache.size >= MAX_PLANS) cache.delete(cache.keys().next().value as number);
  cache.set(key, p);
  return p;
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export function nextPowerOfTwo(n: number): number {
  let m = 1;
  while (m < n) m *= 2;
  return m;
}

function radix2Plan(n: number): Radix2Plan {
  return remember(radix2Plans, n, () => {
    const bits = Math.round(Math.log2(n));
    const rev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev[i] = r;
    }
    const half = n >> 1;
    const cos = new Float64Array(half);
    const sin = new Float64Array(half);
    for (let j = 0; j < half; j++) {
      cos[j] = Math.cos((2 * Math.PI * j) / n);
      sin[j] = -Math.sin((2 * Math.PI * j) / n);
    }
    return { n, rev, cos, sin };
  });
}

/** In-place forward radix-2 FFT of re/im [n, B], n a power of two. */
function fftRadix2(re: Float64Array, im: Float64Array, n: number, B: number): void {
  const { rev, cos, sin } = radix2Plan(n);
  // Bit-reversal permutation of whole rows.
  for (let i = 0; i < n; i++) {
    const j = rev[i];
    if (j <= i) continue;
    for (let c = 0; c < B; c++) {
      const a = i * B + c;
      const b = j * B + c;
      let t = re[a]; re[a] = re[b]; re[b] = t;
      t = im[a]; im[a] = im[b]; im[b] = t;
    }
  }
  for (let size = 2; size <= n; size *= 2) {
    const half = size >> 1;
    const step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let j = 0; j < half; j++) {
        const wr = cos[j * step];
        const wi = sin[j * step];
        const p = (start + j) * B;
        const q = (start + j + half) * B;
        for (let c = 0; c < B; c++) {
          const xr = re[q + c] * wr - im[q + c] * wi;
          const xi = re[q + c] * wi + im[q + c] * wr;
          re[q + c] = re[p + c] - xr;
          im[q + c] = im[p + c] - xi;
          re[p + c] += xr;
          im[p + c] += xi;
        }
      }
    }
  }
}

function bluesteinPlan(n: number): BluesteinPlan {
  return remember(bluesteinPlans, n, () => {
    const m = nextPowerOfTwo(2 * n - 1);
    const wRe = new Float64Array(n);
    const wIm = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      // k^2 mod 2n keeps the angle small and exact (k^2 itself would lose bits for large k).
      const a = (Math.PI * ((k * k) % (2 * n))) / n;
      wRe[k] = Math.cos(a);
      wIm[k] = -Math.sin(a);
    }
    const kRe = new Float64Array(m);
    const kIm = new Float64Array(m);
    kRe[0] = wRe[0];
    kIm[0] = -wIm[0];
    for (let j = 1; j < n; j++) {
      kRe[j] = kRe[m - j] = wRe[j];
      kIm[j] = kIm[m - j] = -wIm[j];
    }
    fftRadix2(kRe, kIm, m, 1);
    return { n, m, wRe, wIm, kRe, kIm };
  });
}

let scratchRe = new Float64Array(0);
let scratchIm = new Float64Array(0);

/** Two reusable work arrays of at least `size` values (JavaScript is single threaded; no call nests). */
function scratch(size: number): [Float64Array, Float64Array] {
  if (scratchRe.length < size) {
    scratchRe = new Float64Array(size);
    scratchIm = new Float64Array(size);
  }
  return [scratchRe.subarray(0, size), scratchIm.subarray(0, size)];
}

/** In-place forward DFT of re/im [n, B] for any n, as a convolution with a chirp. */
function fftBluestein(re: Float64Array, im: Float64Array, n: number, B: number): void {
  const { m, wRe, wIm, kRe, kIm } = bluesteinPlan(n);
  const [aRe, aIm] = scratch(m * B);
  aRe.fill(0, n * B, m * B);
  aIm.fill(0, n * B, m * B);
  for (let t = 0; t < n; t++) {
    for (let c = 0; c < B; c++) {
      const i = t * B + c;
      aRe[i] = re[i] * wRe[t] - im[i] * wIm[t];
      aIm[i] = re[i] * wIm[t] + im[i] * wRe[t];
    }
  }
  fftRadix2(aRe, aIm, m, B);
  // Multiply by the kernel's spectrum, conjugated so that the same forward FFT inverts it.
  for (let k = 0; k < m; k++) {
    for (let c = 0; c < B; c++) {
      const i = k * B + c;
      const r = aRe[i] * kRe[k] - aIm[i] * kIm[k];
      const s = aRe[i] * kIm[k] + aIm[i] * kRe[k];
      aRe[i] = r;
      aIm[i] = -s;
    }
  }
  fftRadix2(aRe, aIm, m, B);
  // conj again and 1/m finish the inverse FFT; then the output chirp.
  for (let k = 0; k < n; k++) {
    for (let c = 0; c < B; c++) {
      const i = k * B + c;
      const r = aRe[i] / m;
      const s = -aIm[i] / m;
      re[i] = r * wRe[k] - s * wIm[k];
      im[i] = r * wIm[k] + s * wRe[k];
    }
  }
}

/**
 * In-place DFT along axis 0 of re/im [n, B]: forward X[k] = sum_t x[t] exp(-2 pi i k t / n),
 * inverse with exp(+...), both unnormalised. Any n >= 1.
 */
export function fft(re: Float64Array, im: Float64Array, n: number, B: number, inverse: boolean): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`fft n: expected a positive integer, got ${n}`);
  if (!Number.isInteger(B) || B < 0) throw new RangeError(`fft B: expected a non-negative integer, got ${B}`);
  if (re.length < n * B || im.length < n * B) {
    throw new RangeError(`fft re/im: expected at least ${n * B} elements for shape [${n}, ${B}], got ${re.length}/${im.length}`);
  }
  if (n === 1 || B === 0) return;
  // The inverse DFT is conj(DFT(conj(x))).
  if (inverse) for (let i = 0; i < n * B; i++) im[i] = -im[i];
  if (isPowerOfTwo(n)) fftRadix2(re, im, n, B);
  else fftBluestein(re, im, n, B);
  if (inverse) for (let i = 0; i < n * B; i++) im[i] = -im[i];
}
