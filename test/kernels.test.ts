// Native kernels against the TypeScript reference on random inputs, odd sizes included, for
// both native variants (AVX2/FMA and the portable scalar path) and one and two threads.
// Error measure, per output array: rel = max|native - reference| / max|reference|; must be <= 1e-5.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as ref from '../src/kernels/reference.js';
import { loadNativeBackend, nativeAddonPath, type NativeBackend } from '../src/kernels/native.js';
import type { AttentionArgs } from '../src/kernels/backend.js';
import { randomArray, rng } from '../src/model/random.js';

const TOL = 1e-5;
const native = loadNativeBackend();
const SKIP = 'native addon not built (run `node scripts/build-native.mjs`)';
const next = rng(1234);

function rand(n: number, scale = 1): Float32Array {
  return randomArray(n, scale, next);
}

/** max|a - b| / max|b| over the first n entries (0 when both are all zero). */
function relErr(a: Float32Array, b: Float32Array, n = b.length): number {
  let diff = 0;
  let mag = 0;
  for (let i = 0; i < n; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return mag === 0 ? diff : diff / mag;
}

function close(a: Float32Array, b: Float32Array, what: string): void {
  const e = relErr(a, b);
  assert.ok(e <= TOL, `${what}: relative error ${e.toExponential(2)} > ${TOL}`);
}

/** Runs body once per native variant (avx2 when the CPU has it, scalar) and thread count (1, 2). */
function eachVariant(t: TestContext, body: (nb: NativeBackend, label: string) => void): void {
  if (!native) {
    t.skip(SKIP);
    return;
  }
  const simd0 = native.simd();
  const threads0 = native.threads();
  try {
    for (const simd of ['avx2', 'scalar'] as const) {
      if (!native.setSimd(simd)) continue;
      for (const threads of [1, 2]) {
        native.setThreads(threads);
        body(native, `${simd}/${threads}t`);
      }
    }
  } finally {
    native.setSimd(simd0 as 'avx2' | 'scalar');
    native.setThreads(threads0);
  }
}

test('matmul matches the reference: odd sizes, all transposes, accumulate', (t) => {
  // [M, N, K]: edges of the 6x16 tile, K across the 256 depth block, N across the 3072 panel,
  // one-row / one-column shapes (routed to matvec), sizes big enough to go multi-threaded.
  const shapes = [[1, 1, 1], [3, 17, 5], [17, 3, 1000], [1, 1000, 17], [1000, 1, 3], [1, 33, 300], [7, 1, 40],
    [37, 53, 300], [130, 70, 520], [5, 3100, 9], [64, 64, 64]];
  const cases = shapes.flatMap(([M, N, K]) => [false, true].flatMap((transA) => [false, true].map((transB) => ({ M, N, K, transA, transB }))));
  const inputs = cases.map((c) => ({ ...c, a: rand(c.M * c.K), b: rand(c.K * c.N), c0: rand(c.M * c.N) }));
  const expected = inputs.map(({ M, N, K, transA, transB, a, b, c0 }) => {
    const plain = new Float32Array(M * N);
    ref.matmul(plain, a, b, M, N, K, { transA, transB });
    const acc = c0.slice();
    ref.matmul(acc, a, b, M, N, K, { transA, transB, accumulate: true });
    return { plain, acc };
  });
  eachVariant(t, (nb, label) => {
    inputs.forEach(({ M, N, K, transA, transB, a, b, c0 }, i) => {
      const what = `${label} matmul [${M},${N},${K}] transA=${transA} transB=${transB}`;
      const c = new Float32Array(M * N).fill(NaN);
      nb.matmul(c, a, b, M, N, K, { transA, transB });
      close(c, expected[i].plain, what);
      const acc = c0.slice();
      nb.matmul(acc, a, b, M, N, K, { transA, transB, accumulate: true });
      close(acc, expected[i].acc, `${what} accumulate`);
    });
  });
});

test('matmul with K = 0 writes zeros, or leaves C alone when accumulating', (t) => {
  eachVariant(t, (nb) => {
    const c = rand(6);
    nb.matmul(c, new Float32Array(0), new Float32Array(0), 2, 3, 0, { accumulate: true });
    assert.ok(c.every((v) => v !== 0));
    nb.matmul(c, new Float32Array(0), new Float32Array(0), 2, 3, 0);
    assert.deepEqual([...c], [0, 0, 0, 0, 0, 0]);
  });
});

test('matvec matches the reference', (t) => {
  const cases = [[1, 1], [3, 17], [1000, 3], [17, 1000], [300, 257], [5, 8], [7, 9]].map(([rows, cols]) => {
    const w = rand(rows * cols);
    const x = rand(cols);
    const y = new Float32Array(rows);
    ref.matvec(y, w, x, rows, cols);
    return { rows, cols, w, x, y };
  });
  eachVariant(t, (nb, label) => {
    for (const { rows, cols, w, x, y } of cases) {
      const out = new Float32Array(rows).fill(NaN);
      nb.matvec(out, w, x, rows, cols);
      close(out, y, `${label} matvec [${rows},${cols}]`);
    }
  });
});

test('rmsnorm matches the reference, in place too', (t) => {
  const cases = [[1, 1], [3, 17], [17, 1000], [64, 1024]].map(([rows, dim]) => {
    const x = rand(rows * dim, 3);
    const w = rand(dim);
    const y = new Float32Array(rows * dim);
    ref.rmsnorm(y, x, w, rows, dim, 1e-5);
    return { rows, dim, x, w, y };
  });
  eachVariant(t, (nb, label) => {
    for (const { rows, dim, x, w, y } of cases) {
      const out = new Float32Array(rows * dim);
      nb.rmsnorm(out, x, w, rows, dim, 1e-5);
      close(out, y, `${label} rmsnorm [${rows},${dim}]`);
      const inPlace = x.slice();
      nb.rmsnorm(inPlace, inPlace, w, rows, dim, 1e-5);
      close(inPlace, y, `${label} rmsnorm in place [${rows},${dim}]`);
    }
  });
});

test('rope matches the reference at large positions, and inverse undoes it', (t) => {
  const cases = [[1, 1, 2], [3, 2, 16], [17, 3, 18], [40, 8, 64]].map(([rows, heads, headDim]) => {
    const half = headDim / 2;
    const theta = headDim === 64 ? 500000 : 10000;
    const invFreq = new Float32Array(half).map((_, i) => 1 / Math.pow(theta, (2 * i) / headDim));
    const positions = new Int32Array(rows).map(() => Math.floor(next() * 100000));
    const x = rand(rows * heads * headDim);
    const fwd = x.slice();
    ref.rope(fwd, rows, heads, headDim, positions, invFreq, false);
    const inv = x.slice();
    ref.rope(inv, rows, heads, headDim, positions, invFreq, true);
    return { rows, heads, headDim, invFreq, positions, x, fwd, inv };
  });
  eachVariant(t, (nb, label) => {
    for (const { rows, heads, headDim, invFreq, positions, x, fwd, inv } of cases) {
      const what = `${label} rope [${rows},${heads}x${headDim}]`;
      const y = x.slice();
      nb.rope(y, rows, heads, headDim, positions, invFreq, false);
      close(y, fwd, what);
      nb.rope(y, rows, heads, headDim, positions, invFreq, true);
      close(y, x, `${what} round trip`);
      const z = x.slice();
      nb.rope(z, rows, heads, headDim, positions, invFreq, true);
      close(z, inv, `${what} inverse`);
    }
  });
});

test('softmax matches the reference, wide ranges and -Infinity included', (t) => {
  const cases = [[1, 1], [3, 17], [17, 1000], [200, 300]].map(([rows, cols]) => {
    const x = rand(rows * cols, 40);
    if (cols > 3) x[1] = -Infinity;
    const y = x.slice();
    ref.softmax(y, rows, cols);
    return { rows, cols, x, y };
  });
  eachVariant(t, (nb, label) => {
    for (const { rows, cols, x, y } of cases) {
      const out = x.slice();
      nb.softmax(out, rows, cols);
      close(out, y, `${label} softmax [${rows},${cols}]`);
    }
  });
});

test('silu and swiglu match the reference, in place too', (t) => {
  const cases = [1, 3, 17, 1000, 100003].map((n) => {
    const g = rand(n, 20);
    const u = rand(n, 2);
    const s = g.slice();
    ref.silu(s, n);
    const w = new Float32Array(n);
    ref.swiglu(w, g, u, n);
    return { n, g, u, s, w };
  });
  eachVariant(t, (nb, label) => {
    for (const { n, g, u, s, w } of cases) {
      const x = g.slice();
      nb.silu(x, n);
      close(x, s, `${label} silu [${n}]`);
      const out = new Float32Array(n);
      nb.swiglu(out, g, u, n);
      close(out, w, `${label} swiglu [${n}]`);
      const alias = g.slice();
      nb.swiglu(alias, alias, u, n);
      close(alias, w, `${label} swiglu in place [${n}]`);
    }
  });
});

test('attention matches the reference: GQA, causal and not, scores', (t) => {
  type Case = Omit<AttentionArgs, 'scale' | 'scores'> & { withScores: boolean };
  const shapes: Case[] = [
    { nQ: 1, nKV: 17, nHeads: 4, nKVHeads: 2, headDim: 8, causal: true, withScores: true }, // decode
    { nQ: 1, nKV: 1, nHeads: 1, nKVHeads: 1, headDim: 1, causal: true, withScores: false },
    { nQ: 37, nKV: 37, nHeads: 6, nKVHeads: 2, headDim: 16, causal: true, withScores: true, scoresFromQuery: 5 },
    { nQ: 13, nKV: 5, nHeads: 3, nKVHeads: 3, headDim: 3, causal: false, withScores: true },
    { nQ: 20, nKV: 300, nHeads: 4, nKVHeads: 1, headDim: 64, causal: true, withScores: true, scoresFromQuery: 19 },
    { nQ: 64, nKV: 600, nHeads: 8, nKVHeads: 2, headDim: 32, causal: true, withScores: true, scoresFromQuery: 10 },
    { nQ: 30, nKV: 550, nHeads: 2, nKVHeads: 2, headDim: 24, causal: false, withScores: false },
    { nQ: 2, nKV: 1000, nHeads: 8, nKVHeads: 1, headDim: 17, causal: true, withScores: true },
    { nQ: 3, nKV: 0, nHeads: 2, nKVHeads: 1, headDim: 4, causal: false, withScores: true },
  ];
  const cases = shapes.map((c) => {
    const args: AttentionArgs = { ...c, scale: 1 / Math.sqrt(c.headDim) };
    const q = rand(c.nQ * c.nHeads * c.headDim, 2);
    const k = rand(c.nKV * c.nKVHeads * c.headDim, 2);
    const v = rand(c.nKV * c.nKVHeads * c.headDim);
    const scores0 = c.withScores ? rand(c.nKVHeads * c.nKV) : undefined;
    const out = new Float32Array(c.nQ * c.nHeads * c.headDim);
    const scores = scores0?.slice();
    ref.attention(out, q, k, v, { ...args, scores });
    return { args, q, k, v, scores0, out, scores };
  });
  eachVariant(t, (nb, label) => {
    for (const { args, q, k, v, scores0, out, scores } of cases) {
      const what = `${label} attention nQ=${args.nQ} nKV=${args.nKV} heads=${args.nHeads}/${args.nKVHeads}x${args.headDim} causal=${args.causal}`;
      const o = new Float32Array(out.length).fill(NaN);
      const s = scores0?.slice();
      nb.attention(o, q, k, v, { ...args, scores: s });
      close(o, out, what);
      if (s && scores) close(s, scores, `${what} scores`);
    }
  });
});

test('threads can be set and default to the core count', (t) => {
  if (!native) return t.skip(SKIP);
  const n0 = native.threads();
  assert.ok(n0 >= 1);
  native.setThreads(3);
  assert.equal(native.threads(), 3);
  native.setThreads(n0);
  assert.equal(native.threads(), n0);
  assert.throws(() => native.setThreads(0), RangeError);
});

test('bad lengths and shapes throw RangeErrors naming the argument', (t) => {
  if (!native) return t.skip(SKIP);
  const f = (n: number) => new Float32Array(n);
  const nb = native;
  assert.throws(() => nb.matmul(f(6), f(5), f(6), 2, 3, 3), (e: Error) => e instanceof RangeError && /matmul a/.test(e.message));
  assert.throws(() => nb.matmul(f(6), f(6), f(8), 2, 3, 3, { transB: true }), /matmul b: expected at least 9 elements for shape \[3, 3\]/);
  assert.throws(() => nb.matmul(f(5), f(6), f(9), 2, 3, 3), /matmul c/);
  assert.throws(() => nb.matmul(f(6), f(6), f(9), 2.5, 3, 3), /M: expected a non-negative integer/);
  assert.throws(() => nb.matvec(f(3), f(8), f(3), 3, 3), /matvec w/);
  assert.throws(() => nb.matvec(f(3), f(9), f(2), 3, 3), /matvec x/);
  assert.throws(() => nb.rmsnorm(f(4), f(4), f(1), 2, 2, 1e-5), /rmsnorm weight/);
  assert.throws(() => nb.rope(f(8), 2, 1, 4, new Int32Array(1), f(2), false), /rope positions/);
  assert.throws(() => nb.rope(f(6), 2, 1, 3, new Int32Array(2), f(2), false), /rope headDim: expected an even number/);
  assert.throws(() => nb.softmax(f(5), 2, 3), /softmax x/);
  assert.throws(() => nb.silu(f(2), 3), /silu x/);
  assert.throws(() => nb.swiglu(f(3), f(3), f(2), 3), /swiglu up/);
  const args: AttentionArgs = { nQ: 2, nKV: 3, nHeads: 2, nKVHeads: 1, headDim: 4, scale: 0.5, causal: true };
  assert.throws(() => nb.attention(f(16), f(16), f(11), f(12), args), /attention k/);
  assert.throws(() => nb.attention(f(16), f(16), f(12), f(12), { ...args, scores: f(2) }), /attention scores/);
  assert.throws(() => nb.attention(f(16), f(16), f(12), f(12), { ...args, nKVHeads: 3 }), /attention nHeads/);
  assert.throws(() => nb.attention(f(32), f(32), f(12), f(12), { ...args, nQ: 4 }), /attention nQ/);
});

test('the addon itself rejects bad lengths and types (no out-of-bounds access)', (t) => {
  if (!native) return t.skip(SKIP);
  const raw = createRequire(import.meta.url)(nativeAddonPath());
  const f = (n: number) => new Float32Array(n);
  assert.throws(() => raw.matmul(f(6), f(5), f(6), 2, 3, 3, false, false, false), (e: Error) => e instanceof RangeError && /matmul a: expected at least 6 elements, got 5/.test(e.message));
  assert.throws(() => raw.matvec(f(3), f(9), f(2), 3, 3), /matvec x/);
  assert.throws(() => raw.matvec(f(3), new Float64Array(9), f(3), 3, 3), (e: Error) => e instanceof TypeError && /matvec w: expected a Float32Array/.test(e.message));
  assert.throws(() => raw.rmsnorm(f(4), f(4), f(1), 2, 2, 1e-5), /rmsnorm weight/);
  assert.throws(() => raw.rope(f(8), 2, 1, 4, new Int32Array(1), f(2), false), /rope positions/);
  assert.throws(() => raw.rope(f(8), 2, 1, 4, f(2), f(2), false), /rope positions: expected a Int32Array/);
  assert.throws(() => raw.softmax(f(5), 2, -3), /cols: expected a non-negative integer/);
  assert.throws(() => raw.silu(f(2), 3), /silu x/);
  assert.throws(() => raw.swiglu(f(3), f(3), f(2), 3), /swiglu up/);
  assert.throws(() => raw.attention(f(16), f(16), f(11), f(12), 2, 3, 2, 1, 4, 0.5, true, null, 0), /attention k/);
  assert.throws(() => raw.attention(f(16), f(16), f(12), f(12), 2, 3, 2, 1, 4, 0.5, true, f(2), 0), /attention scores/);
  assert.throws(() => raw.attention(f(16), f(16), f(12), f(12), 2, 3, 2, 0, 4, 0.5, true, null, 0), /attention nHeads/);
  assert.throws(() => raw.copy(f(3), f(2), 3), /copy src/);
  // A view into a larger buffer: the length that counts is the view's.
  const big = f(100);
  assert.throws(() => raw.silu(big.subarray(90), 11), /silu x: expected at least 11 elements, got 10/);
});
