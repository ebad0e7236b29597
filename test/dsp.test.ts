// DSP module: FFT, DCT-II/III (dense, FFT, native) and the FreqKV operator, checked against
// the definition-level reference DCT and the reference values of shared/spec/FREQKV.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fft } from '../src/dsp/fft.js';
import { dct2, dct3, dctFFT, dctMatrix, type DctMethod } from '../src/dsp/dct.js';
import { freqCompress, freqCompressTranspose, freqOperatorMatrix, type FreqMethod } from '../src/dsp/freqkv-op.js';
import { dct as referenceDct, referenceBackend } from '../src/kernels/reference.js';
import { loadNativeBackend } from '../src/kernels/native.js';
import type { Backend } from '../src/kernels/backend.js';
import { randomArray, rng } from '../src/model/random.js';

const native = loadNativeBackend();
const ref = referenceBackend;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Relative error at float32 accuracy: max |a - b| against max |b|. */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  const err = maxAbsDiff(a, b) / Math.max(maxAbs(b), 1e-30);
  assert.ok(err <= tol, `${what}: relative error ${err} > ${tol}`);
}

function refDct(x: Float32Array, n: number, C: number, inverse: boolean): Float32Array {
  const out = new Float32Array(n * C);
  referenceDct(out, x, n, C, inverse);
  return out;
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 64, 100, 128, 255, 1000];

test('fft matches a naive DFT in float64 for every length 1..40 and some larger ones', () => {
  const next = rng(1);
  for (const n of [...Array.from({ length: 40 }, (_, i) => i + 1), 97, 128, 300]) {
    const B = 3;
    const re = Float64Array.from({ length: n * B }, () => next() - 0.5);
    const im = Float64Array.from({ length: n * B }, () => next() - 0.5);
    for (const inverse of [false, true]) {
      const r = re.slice();
      const i2 = im.slice();
      fft(r, i2, n, B, inverse);
      const sign = inverse ? 1 : -1;
      let err = 0;
      for (let k = 0; k < n; k++) {
        for (let c = 0; c < B; c++) {
          let sr = 0, si = 0;
          for (let t = 0; t < n; t++) {
            const a = (sign * 2 * Math.PI * ((k * t) % n)) / n;
            sr += re[t * B + c] * Math.cos(a) - im[t * B + c] * Math.sin(a);
            si += re[t * B + c] * Math.sin(a) + im[t * B + c] * Math.cos(a);
          }
          err = Math.max(err, Math.abs(sr - r[k * B + c]), Math.abs(si - i2[k * B + c]));
        }
      }
      assert.ok(err < 1e-11 * n, `n=${n} inverse=${inverse}: error ${err}`);
    }
  }
});

test('dct2/dct3 (dense and FFT) match the reference definition for any n, odd sizes included', () => {
  const next = rng(2);
  for (const n of SIZES) {
    for (const C of [1, 3, 8]) {
      const x = randomArray(n * C, 1, next);
      const want2 = refDct(x, n, C, false);
      const want3 = refDct(x, n, C, true);
      for (const method of ['dense', 'fft'] as DctMethod[]) {
        assertClose(dct2(x, n, C, method, ref), want2, 1e-5, `dct2 ${method} n=${n} C=${C}`);
        assertClose(dct3(x, n, C, method, ref), want3, 1e-5, `dct3 ${method} n=${n} C=${C}`);
      }
    }
  }
});

test('the FFT DCT is float64-accurate (not only at float32 rounding)', () => {
  const next = rng(3);
  for (const n of [5, 64, 100, 1000]) {
    const C = 2;
    const x = Float64Array.from({ length: n * C }, () => next() - 0.5);
    const got = new Float64Array(n * C);
    dctFFT(got, x, n, C, false);
    let err = 0;
    for (let k = 0; k < n; k++) {
      const s = k === 0 ? Math.sqrt(1 / n) : Math.sqrt(2 / n);
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let t = 0; t < n; t++) acc += x[t * C + c] * Math.cos((Math.PI * k * (2 * t + 1)) / (2 * n));
        err = Math.max(err, Math.abs(s * acc - got[k * C + c]));
      }
    }
    assert.ok(err < 1e-12, `n=${n}: float64 error ${err}`);
  }
});

test('orthonormality: DCT-III(DCT-II(x)) = x and the dense matrix is orthogonal', () => {
  const next = rng(4);
  for (const n of [1, 3, 6, 17, 100, 511]) {
    const C = 5;
    const x = randomArray(n * C, 1, next);
    for (const method of ['dense', 'fft'] as DctMethod[]) {
      assertClose(dct3(dct2(x, n, C, method, ref), n, C, method, ref), x, 2e-6, `roundtrip ${method} n=${n}`);
    }
    // Parseval: the DCT keeps the energy of every channel.
    const X = dct2(x, n, C, 'fft');
    let ex = 0, eX = 0;
    for (let i = 0; i < n * C; i++) { ex += x[i] * x[i]; eX += X[i] * X[i]; }
    assert.ok(Math.abs(ex - eX) <= 1e-5 * ex, `energy n=${n}`);
  }
  const n = 9;
  const D = dctMatrix(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += D[i * n + t] * D[j * n + t];
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-6, `D D^T [${i},${j}] = ${s}`);
    }
  }
});

const SPEC: [number[], number, number[]][] = [
  [[0, 1, 2, 3, 4, 5, 6, 7], 4, [0.395175, 2.578410, 4.421590, 6.604825]],
  [[1, -2, 3, 0.5, 4, -1], 3, [-0.068796, 1.927030, 0.891766]],
  [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5, [0.407401, 2.538821, 4.5, 6.461179, 8.592599]],
];

function backendsUnderTest(): Backend[] {
  return native ? [ref, native] : [ref];
}

test('freqCompress reproduces the spec reference values to 1e-6 with every method', () => {
  for (const backend of backendsUnderTest()) {
    for (const method of ['auto', 'dense', 'fft', 'backend'] as FreqMethod[]) {
      for (const [x, L, want] of SPEC) {
        const y = freqCompress(new Float32Array(x), x.length, 1, L, { method, backend });
        assert.equal(y.length, L);
        // The spec values are rounded to 6 decimals (+-5e-7); float32 adds at most ~5e-7 here.
        for (let i = 0; i < L; i++) assert.ok(Math.abs(y[i] - want[i]) <= 1e-6, `${backend.name}/${method} x=[${x}] L=${L}: y[${i}] = ${y[i]}, want ${want[i]}`);
      }
    }
  }
});

test('freqCompress works channel by channel on [n, channels] rows', () => {
  // Two channels: the first spec vector, and its negation times 3.
  const [x, L, want] = SPEC[0];
  const n = x.length;
  const both = new Float32Array(2 * n);
  for (let t = 0; t < n; t++) { both[2 * t] = x[t]; both[2 * t + 1] = -3 * x[t]; }
  for (const method of ['dense', 'fft'] as FreqMethod[]) {
    const y = freqCompress(both, n, 2, L, { method, backend: ref });
    for (let m = 0; m < L; m++) {
      assert.ok(Math.abs(y[2 * m] - want[m]) <= 1e-6);
      assert.ok(Math.abs(y[2 * m + 1] + 3 * want[m]) <= 3e-6);
    }
  }
});

test('a constant stays constant (odd and large sizes, every method)', () => {
  for (const [n, L] of [[7, 3], [9, 4], [33, 16], [600, 300], [4092, 2046]]) {
    const C = 3;
    const x = new Float32Array(n * C);
    for (let t = 0; t < n; t++) { x[t * C] = 2.5; x[t * C + 1] = -1; x[t * C + 2] = 0; }
    const methods: FreqMethod[] = n <= 600 ? ['dense', 'fft', 'backend'] : ['fft'];
    for (const method of methods) {
      const y = freqCompress(x, n, C, L, { method, backend: ref });
      for (let m = 0; m < L; m++) {
        assert.ok(Math.abs(y[m * C] - 2.5) < 1e-5 && Math.abs(y[m * C + 1] + 1) < 1e-5 && Math.abs(y[m * C + 2]) < 1e-6, `${method} n=${n} row ${m}: ${y.subarray(m * C, m * C + C)}`);
      }
    }
  }
});

test('dense and FFT paths agree on random data around the crossover', () => {
  const next = rng(5);
  for (const [n, L] of [[2, 1], [5, 2], [64, 32], [129, 64], [500, 250], [513, 256], [700, 123]]) {
    const C = 4;
    const x = randomArray(n * C, 1, next);
    const d = freqCompress(x, n, C, L, { method: 'dense', backend: ref });
    assertClose(freqCompress(x, n, C, L, { method: 'fft' }), d, 1e-5, `fft n=${n} L=${L}`);
    assertClose(freqCompress(x, n, C, L, { method: 'backend', backend: ref }), d, 1e-5, `backend n=${n} L=${L}`);
  }
});

test('transpose: <M x, y> = <x, M^T y> and M^T matches the explicit matrix, every method and option', () => {
  const next = rng(6);
  for (const [n, L] of [[8, 4], [11, 5], [40, 17], [100, 50]]) {
    const C = 3;
    for (const keep of ['low', 'high'] as const) {
      for (const scaling of ['amplitude', 'none'] as const) {
        const M = freqOperatorMatrix(n, L, { keep, scaling });
        const x = randomArray(n * C, 1, next);
        const y = randomArray(L * C, 1, next);
        for (const method of ['dense', 'fft', 'backend'] as FreqMethod[]) {
          const opts = { keep, scaling, method, backend: ref };
          const Mx = freqCompress(x, n, C, L, opts);
          const Mty = freqCompressTranspose(y, n, C, L, opts);
          let lhs = 0, rhs = 0;
          for (let i = 0; i < L * C; i++) lhs += Mx[i] * y[i];
          for (let i = 0; i < n * C; i++) rhs += x[i] * Mty[i];
          assert.ok(Math.abs(lhs - rhs) <= 1e-5 * (Math.abs(lhs) + 1), `${keep}/${scaling}/${method} n=${n} L=${L}: ${lhs} vs ${rhs}`);
          // M^T y from the explicit matrix, column by column.
          const want = new Float64Array(n * C);
          for (let m = 0; m < L; m++) for (let t = 0; t < n; t++) for (let c = 0; c < C; c++) want[t * C + c] += M[m * n + t] * y[m * C + c];
          assertClose(Mty, want, 1e-5, `M^T ${keep}/${scaling}/${method} n=${n}`);
        }
      }
    }
  }
});

test('the explicit operator matrix equals the DCT route applied to the identity', () => {
  for (const [n, L] of [[6, 3], [17, 8], [96, 40], [300, 150]]) {
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    for (const keep of ['low', 'high'] as const) {
      // freqCompress(I) has M[m, t] at row m, column t.
      const viaFFT = freqCompress(eye, n, n, L, { keep, method: 'fft' });
      assertClose(freqOperatorMatrix(n, L, { keep }), viaFFT, 1e-6, `${keep} n=${n} L=${L}`);
    }
  }
  // A large closed-form matrix still has unit row sums (constants map to constants).
  const n = 4092, L = 2046;
  const M = freqOperatorMatrix(n, L);
  for (const m of [0, 1, 1023, 2045]) {
    let s = 0;
    for (let t = 0; t < n; t++) s += M[m * n + t];
    assert.ok(Math.abs(s - 1) < 1e-5, `row ${m} sums to ${s}`);
  }
});

test('keep "high" compresses the top L coefficients; scaling "none" and "energy" behave as documented', () => {
  const next = rng(7);
  const n = 12, L = 5, C = 2;
  const x = randomArray(n * C, 1, next);
  const X = refDct(x, n, C, false);
  const top = refDct(X.slice((n - L) * C), L, C, true);
  const want = top.map((v) => v * Math.sqrt(L / n));
  assertClose(freqCompress(x, n, C, L, { keep: 'high', method: 'fft' }), want, 1e-5, 'keep high');
  const plain = freqCompress(x, n, C, L, { scaling: 'none', method: 'fft' });
  assertClose(plain, freqCompress(x, n, C, L, { method: 'fft' }).map((v) => v / Math.sqrt(L / n)), 1e-5, 'scaling none');
  // energy: the mean square of each channel is kept, and constants still stay constant.
  const e = freqCompress(x, n, C, L, { scaling: 'energy', method: 'fft' });
  for (let c = 0; c < C; c++) {
    let ex = 0, ey = 0;
    for (let t = 0; t < n; t++) ex += x[t * C + c] ** 2 / n;
    for (let m = 0; m < L; m++) ey += e[m * C + c] ** 2 / L;
    assert.ok(Math.abs(ex - ey) < 1e-5 * ex, `energy channel ${c}: ${ex} vs ${ey}`);
  }
  const k = freqCompress(new Float32Array(9).fill(-4), 9, 1, 4, { scaling: 'energy' });
  for (const v of k) assert.ok(Math.abs(v + 4) < 1e-5);
  assert.throws(() => freqCompressTranspose(new Float32Array(L * C), n, C, L, { scaling: 'energy' }), /scaling: "energy" is data dependent/);
});

test('edge sizes: L >= n copies, L = 0 is empty, bad arguments throw naming the argument', () => {
  const x = new Float32Array([1, 2, 3, 4, 5, 6]);
  for (const L of [3, 4, 100]) {
    const y = freqCompress(x, 3, 2, L);
    assert.deepEqual(y, x);
    assert.notEqual(y, x, 'must be a copy');
  }
  assert.equal(freqCompress(x, 3, 2, 0).length, 0);
  assert.deepEqual(freqCompressTranspose(new Float32Array(0), 3, 2, 0), new Float32Array(6));
  assert.deepEqual(freqCompressTranspose(x, 3, 2, 7), x);
  assert.equal(freqCompress(new Float32Array(0), 0, 4, 2).length, 0);
  assert.throws(() => freqCompress(x, 4, 2, 2), /freqCompress x: expected 4 rows of 2 channels = 8 values, got 6/);
  assert.throws(() => freqCompress(x, 2.5, 2, 1), /freqCompress n: expected a non-negative integer, got 2.5/);
  assert.throws(() => freqCompress(x, 3, -2, 1), /freqCompress channels/);
  assert.throws(() => freqCompress(x, 3, 2, -1), /freqCompress L: expected a non-negative integer, got -1/);
  assert.throws(() => freqCompress(x, 3, 2, NaN), /freqCompress L/);
  assert.throws(() => freqCompress(x, 3, 2, 1, { keep: 'mid' as 'low' }), /freqCompress keep/);
  assert.throws(() => freqCompress(x, 3, 2, 1, { method: 'magic' as 'fft' }), /freqCompress method/);
  assert.throws(() => freqCompressTranspose(x, 3, 2, 1), /freqCompressTranspose y: expected 1 rows of 2 channels = 2 values, got 6/);
  assert.throws(() => dct2(x, 4, 2), /dct2 x: expected n\*channels = 8 values/);
  assert.throws(() => dct3(x, 3, 1.5), /dct3 channels/);
  assert.throws(() => fft(new Float64Array(4), new Float64Array(4), 0, 1, false), /fft n/);
});

test('native Backend.dct matches the reference (odd sizes included, AVX2 and portable paths)', { skip: native ? false : 'native addon not built' }, () => {
  const nb = native as NonNullable<typeof native>;
  assert.ok(nb.nativeDct, 'the addon was built without dct.cc');
  const next = rng(8);
  const before = nb.simd();
  try {
    for (const mode of ['avx2', 'scalar'] as const) {
      if (!nb.setSimd(mode)) continue; // no AVX2 on this CPU
      for (const n of [1, 2, 3, 17, 64, 100, 1000, 1024]) {
        for (const C of [1, 3, 8, 17]) {
          const x = randomArray(n * C, 1, next);
          for (const inverse of [false, true]) {
            const out = new Float32Array(n * C);
            nb.dct(out, x, n, C, inverse);
            assertClose(out, refDct(x, n, C, inverse), 1e-5, `${mode} native dct n=${n} C=${C} inverse=${inverse}`);
          }
        }
      }
      // The reference configuration's spans (Bluestein lengths), against the float64 TypeScript FFT.
      for (const [n, C] of [[4092, 20], [2046, 64]]) {
        const x = randomArray(n * C, 1, next);
        for (const inverse of [false, true]) {
          const out = new Float32Array(n * C);
          nb.dct(out, x, n, C, inverse);
          assertClose(out, inverse ? dct3(x, n, C, 'fft') : dct2(x, n, C, 'fft'), 1e-5, `${mode} native dct n=${n} inverse=${inverse}`);
        }
      }
    }
  } finally {
    nb.setSimd(before as 'avx2' | 'scalar');
  }
  assert.throws(() => nb.dct(new Float32Array(5), new Float32Array(8), 4, 2, false), /dct out: expected at least 8 elements/);
});

test('freqCompress on the native backend: every route agrees with the TypeScript FFT', { skip: native ? false : 'native addon not built' }, () => {
  const nb = native as Backend;
  const next = rng(9);
  for (const [n, L] of [[7, 3], [300, 150], [1000, 500], [4092, 2046]]) {
    const C = 12;
    const x = randomArray(n * C, 1, next);
    const want = freqCompress(x, n, C, L, { method: 'fft' });
    for (const method of ['auto', 'dense', 'backend'] as FreqMethod[]) {
      assertClose(freqCompress(x, n, C, L, { method, backend: nb }), want, 1e-5, `native ${method} n=${n}`);
    }
    const y = randomArray(L * C, 1, next);
    assertClose(freqCompressTranspose(y, n, C, L, { method: 'backend', backend: nb }), freqCompressTranspose(y, n, C, L, { method: 'fft' }), 1e-5, `native transpose n=${n}`);
  }
});
