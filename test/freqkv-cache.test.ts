// The FreqKV cache policy (shared/spec/FREQKV.md section 2): the spec's reference values
// through the policy, the iterative schedule against a hand-written mirror, slot positions and
// rotated copies, grouped prefill = token-by-token decode on a tiny model, bytes held, sessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { referenceBackend } from '../src/kernels/reference.js';
import { setBackend } from '../src/kernels/index.js';
import type { CacheShape } from '../src/cache/types.js';
import { FreqKVCache } from '../src/cache/freqkv.js';
import { createCache } from '../src/cache/factory.js';
import { loadSession, saveSession } from '../src/cache/session.js';
import { freqCompress } from '../src/dsp/freqkv-op.js';
import { forward } from '../src/model/forward.js';
import { randomArray, randomModel, rng, tinyConfig } from '../src/model/random.js';
import { parseArgs } from '../src/cli/args.js';
import { flags as generateFlags } from '../src/cli/generate.js';
import { FRACTIONS, kvSpectrum, lowFrequencyShares, run as inspect, spectrumTable } from '../src/cli/inspect.js';
import { heatMap, lineChart, logTicks } from '../src/eval/svg.js';
import { saveModel } from '../src/model/writer.js';
import { byteLevelTokenizerJson, saveTokenizer } from '../src/model/tokenizer.js';

setBackend(referenceBackend);

/** One step of T rows per layer; keys and values given as [T, channels]. */
function step(c: FreqKVCache, T: number, k: (layer: number) => Float32Array, v: (layer: number) => Float32Array): Int32Array {
  const pos = c.begin(T);
  for (let l = 0; l < c.shape.nLayers; l++) c.attended(l, c.append(l, k(l), v(l)));
  c.end();
  return pos;
}

function close(actual: Float32Array, expected: number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  expected.forEach((e, i) => assert.ok(Math.abs(actual[i] - e) <= tol, `${what}[${i}]: ${actual[i]} vs ${e}`));
}

test('the spec reference values come out of the policy (K and V, sinks untouched)', () => {
  const one: CacheShape = { nLayers: 1, nKVHeads: 1, headDim: 2, invFreq: Float32Array.of(1) };
  const cases = [
    { x: [0, 1, 2, 3, 4, 5, 6, 7], N: 8, S: 0, want: [0.395175, 2.57841, 4.42159, 6.604825] },
    { x: [1, -2, 3, 0.5, 4, -1], N: 6, S: 0, want: [-0.068796, 1.92703, 0.891766] },
    { x: [100, 200, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], N: 12, S: 2, want: [100, 200, 0.407401, 2.538821, 4.5, 6.461179, 8.592599] },
  ];
  for (const { x, N, S, want } of cases) {
    const c = new FreqKVCache(one, { cacheSize: N, sinks: S, retain: 0.5 });
    // key channels (x, -2x); value channels (x + 1, 3): compression is linear and keeps constants
    for (const t of x) step(c, 1, () => Float32Array.of(t, -2 * t), () => Float32Array.of(t + 1, 3));
    assert.equal(c.compressions, 0);
    assert.equal(c.length, N);
    step(c, 1, () => Float32Array.of(42, 42), () => Float32Array.of(42, 42));
    assert.equal(c.compressions, 1);
    const L = want.length - S;
    assert.equal(c.length, S + L + 1);
    const k = c.rawKeys(0);
    const v = c.values(0);
    const col = (a: Float32Array, ch: number) => Float32Array.from({ length: S + L }, (_, j) => a[j * 2 + ch]);
    close(col(k, 0), want, 2e-5, 'K');
    close(col(k, 1), want.map((w) => -2 * w), 4e-5, 'K channel 2');
    close(col(v, 0), want.map((w) => w + 1), 2e-5, 'V');
    close(col(v, 1), want.map(() => 3), 1e-5, 'V constant');
    assert.deepEqual(Array.from(k.subarray((S + L) * 2)), [42, 42]);
  }
});

test('iterative schedule: compress(block + tail) to L whenever full, same as a hand-written mirror; slot positions; rotated copies', () => {
  const shape: CacheShape = { nLayers: 2, nKVHeads: 2, headDim: 4, invFreq: Float32Array.of(1, 0.05) };
  const D = 8;
  const N = 10;
  const S = 2;
  const c = new FreqKVCache(shape, { cacheSize: N, sinks: S, retain: 0.5 });
  assert.equal(c.blockSize, 4);
  const next = rng(3);
  // mirror[layer] = { k, v } rows held, as arrays of [D] rows
  const mirror = [0, 1].map(() => ({ k: [] as Float32Array[], v: [] as Float32Array[] }));
  const compressRows = (rows: Float32Array[]) => {
    const x = new Float32Array(rows.length * D);
    rows.forEach((r, i) => x.set(r, i * D));
    const y = freqCompress(x, rows.length, D, 4);
    return Array.from({ length: 4 }, (_, i) => y.slice(i * D, (i + 1) * D));
  };
  let sinkRot: Float32Array[] = [];
  let seen = 0;
  const rooms: number[] = [];
  while (seen < 60) {
    const room = c.room();
    rooms.push(room);
    const T = Math.min(room, 1 + Math.floor(next() * 5));
    const ks = [0, 1].map(() => randomArray(T * D, 1, next));
    const vs = [0, 1].map(() => randomArray(T * D, 1, next));
    const full = c.length === N;
    const pos = step(c, T, (l) => ks[l], (l) => vs[l]);
    for (const [l, m] of mirror.entries()) {
      if (full) {
        assert.equal(m.k.length, N);
        m.k = [...m.k.slice(0, S), ...compressRows(m.k.slice(S))];
        m.v = [...m.v.slice(0, S), ...compressRows(m.v.slice(S))];
      }
      for (let i = 0; i < T; i++) {
        m.k.push(ks[l].slice(i * D, (i + 1) * D));
        m.v.push(vs[l].slice(i * D, (i + 1) * D));
      }
      // the held rows are exactly the mirror's (same operator, same inputs)
      const k = c.rawKeys(l);
      const v = c.values(l);
      assert.equal(k.length, m.k.length * D);
      m.k.forEach((r, j) => assert.deepEqual(k.subarray(j * D, (j + 1) * D), r, `layer ${l} key row ${j} after ${seen + T}`));
      m.v.forEach((r, j) => assert.deepEqual(v.subarray(j * D, (j + 1) * D), r, `layer ${l} value row ${j}`));
      // rotated copy = every row rotated by its slot
      const want = k.slice();
      referenceBackend.rope(want, c.length, 2, 4, Int32Array.from({ length: c.length }, (_, j) => j), shape.invFreq, false);
      assert.deepEqual(c.rotatedKeys(l), want);
    }
    // query positions are the new rows' slots, never above N-1
    assert.deepEqual(Array.from(pos), Array.from({ length: T }, (_, i) => c.length - T + i));
    assert.ok(pos[T - 1] <= N - 1);
    seen += T;
    assert.equal(c.seen, seen);
    assert.ok(c.length <= N);
    // sinks: raw and rotated rows never change once written
    if (sinkRot.length === 0 && c.length >= S) sinkRot = [0, 1].map((l) => c.rotatedKeys(l).slice(0, S * D));
    if (sinkRot.length) for (const l of [0, 1]) assert.deepEqual(c.rotatedKeys(l).subarray(0, S * D), sinkRot[l]);
  }
  // room: N - length while filling, then N - S - L = 4 right after each compression
  assert.ok(c.compressions >= 10);
  assert.ok(rooms.every((r) => r >= 1 && r <= N));
  assert.ok(rooms.filter((r) => r === 4).length >= c.compressions);
});

test('grouped prefill gives the same logits as token-by-token decode over 5N tokens', () => {
  const config = tinyConfig({ vocabSize: 48, maxPositionEmbeddings: 16 });
  const model = randomModel(config, 9);
  const N = 16;
  const next = rng(17);
  const tokens = Array.from({ length: 5 * N }, () => Math.floor(next() * config.vocabSize));
  const opts = { policy: 'freqkv', cacheSize: N, sinks: 2, retain: 0.5 };
  const groupedCache = createCache(config, opts) as FreqKVCache;
  const grouped = forward(model, tokens, groupedCache, { logits: 'all' });
  const single = createCache(config, opts) as FreqKVCache;
  const full = createCache(config, { policy: 'full' });
  const V = config.vocabSize;
  let worst = 0;
  tokens.forEach((t, i) => {
    const logits = forward(model, [t], single);
    let err = 0;
    let scale = 0;
    for (let j = 0; j < V; j++) {
      err = Math.max(err, Math.abs(logits[j] - grouped[i * V + j]));
      scale = Math.max(scale, Math.abs(grouped[i * V + j]));
    }
    worst = Math.max(worst, err / scale);
    // before the first compression FreqKV is the full cache
    const ref = forward(model, [t], full);
    if (i < N) for (let j = 0; j < V; j++) assert.ok(Math.abs(ref[j] - logits[j]) <= 1e-5 * scale, `token ${i}`);
  });
  assert.ok(worst <= 1e-5, `relative error ${worst}`);
  console.log(`freqkv grouped prefill vs decode over ${5 * N} tokens: max relative error ${worst.toExponential(2)}`);
  // same compression points: (5N - N) / (N - S - L) = 64 / 7 -> 10 compressions in both
  assert.equal(groupedCache.compressions, single.compressions);
  assert.equal(single.compressions, Math.ceil((5 * N - N) / (N - 2 - 7)));
  assert.equal(single.length, groupedCache.length);
});

test('bytes held are counted from the buffers and stay flat over a long stream', () => {
  const shape: CacheShape = { nLayers: 3, nKVHeads: 2, headDim: 4, invFreq: Float32Array.of(1, 0.1) };
  const c = new FreqKVCache(shape, { cacheSize: 32, sinks: 4, retain: 0.5 });
  const next = rng(1);
  const rows = () => randomArray(8, 1, next);
  step(c, 1, rows, rows);
  const first = c.bytes();
  // pre-RoPE keys, values, rotated keys: 3 x [N, kvDim] float32 per layer
  assert.deepEqual(first.perLayer, [3 * 32 * 8 * 4, 3 * 32 * 8 * 4, 3 * 32 * 8 * 4]);
  for (let t = 0; t < 1000; t++) step(c, 1, rows, rows);
  assert.deepEqual(c.bytes(), first);
  assert.ok(c.compressions > 50);
});

test('sessions: save, restore bit-exact, and decoding continues identically', async () => {
  const config = tinyConfig({ vocabSize: 40, maxPositionEmbeddings: 12 });
  const model = randomModel(config, 4);
  const next = rng(8);
  const tokens = Array.from({ length: 50 }, () => Math.floor(next() * config.vocabSize));
  const a = createCache(config, { policy: 'freqkv', sinks: 1, retain: 0.4 }) as FreqKVCache;
  forward(model, tokens.slice(0, 31), a);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-session-'));
  try {
    const file = path.join(dir, 'chat.kv');
    await saveSession(file, a);
    assert.deepEqual(fs.readdirSync(dir), ['chat.kv']);
    const b = (await loadSession(file, a.shape)) as FreqKVCache;
    assert.ok(b instanceof FreqKVCache);
    assert.deepEqual(b.save(), a.save());
    assert.equal(b.compressions, a.compressions);
    assert.ok(a.compressions > 0);
    for (const t of tokens.slice(31)) assert.deepEqual(forward(model, [t], b), forward(model, [t], a));
    assert.deepEqual(b.save(), a.save());
    // a session of another model is refused
    await assert.rejects(loadSession(file, { ...a.shape, headDim: 4, invFreq: Float32Array.of(1, 0.1) }), /chat\.kv: session was saved for headDim = 8/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad options are rejected with a message naming the option', () => {
  const shape: CacheShape = { nLayers: 1, nKVHeads: 1, headDim: 2, invFreq: Float32Array.of(1) };
  assert.throws(() => new FreqKVCache(shape, { cacheSize: 1 }), /freqkv: cache size must be an integer >= 2, got 1/);
  assert.throws(() => new FreqKVCache(shape, { cacheSize: 16, sinks: 16 }), /freqkv: sinks must be an integer in \[0, cache size - 1 = 15\]/);
  assert.throws(() => new FreqKVCache(shape, { cacheSize: 16, retain: 1 }), /freqkv: retain must be a number in \(0, 1\), got 1/);
  assert.throws(() => new FreqKVCache(shape, { cacheSize: 16, retain: 0 }), /retain must be a number in \(0, 1\)/);
  assert.throws(() => new FreqKVCache(shape, { cacheSize: 6, sinks: 4, retain: 0.4 }), /gives a block of L = 0 rows/);
  const config = tinyConfig();
  assert.throws(() => createCache(config, { policy: 'freqkv', budget: 10 }), /"freqkv" does not take the option budget/);
  assert.throws(() => createCache(config, { policy: 'freqkv', positions: 'original' }), /"freqkv" does not take the option positions/);
  assert.equal((createCache(config, { policy: 'freqkv' }) as FreqKVCache).cacheSize, config.maxPositionEmbeddings);
  assert.throws(() => parseArgs(['--retain', '1.5'], generateFlags, 'generate'), /--retain expects a number in \[0, 1\]/);
  assert.throws(() => parseArgs(['--cache-size', 'x'], generateFlags, 'generate'), /--cache-size expects a whole number/);
  const c = new FreqKVCache(shape, { cacheSize: 8, sinks: 0 });
  for (let t = 0; t < 8; t++) step(c, 1, () => new Float32Array(2), () => new Float32Array(2));
  assert.equal(c.room(), 4);
  assert.throws(() => c.begin(5), /freqkv: begin T must be an integer in \[1, room\(\) = 4\], got 5/);
});

test('spectrum: energy shares in the lowest DCT frequencies', () => {
  const n = 40;
  // channels: constant (all energy at k = 0), highest DCT frequency (none low), a slow ramp
  const x = new Float32Array(n * 4);
  for (let t = 0; t < n; t++) {
    x[t * 4] = 99; // column 0 is not measured (col = 1)
    x[t * 4 + 1] = 3;
    x[t * 4 + 2] = Math.cos((Math.PI * (n - 1) * (2 * t + 1)) / (2 * n));
    x[t * 4 + 3] = t;
  }
  close(Float32Array.from(lowFrequencyShares(x, n, 4, 1, 1)), [1, 1, 1], 1e-12, 'constant');
  close(Float32Array.from(lowFrequencyShares(x, n, 4, 2, 1)), [0, 0, 0], 1e-9, 'highest frequency');
  const ramp = lowFrequencyShares(x, n, 4, 3, 1);
  assert.ok(ramp[0] > 0.99 && ramp[0] <= ramp[1] && ramp[1] <= ramp[2] && ramp[2] <= 1 + 1e-12);
  // pooled over channels: energies add
  const both = lowFrequencyShares(x, n, 4, 1, 2);
  close(Float32Array.from(both), [(9 * n) / (9 * n + n / 2), (9 * n) / (9 * n + n / 2), (9 * n) / (9 * n + n / 2)], 1e-6, 'pooled');
  assert.deepEqual(lowFrequencyShares(new Float32Array(n), n, 1, 0, 1), [0, 0, 0]);
});

test('inspect spectrum: table, JSON and SVG heat map for a model on disk; bad flags rejected', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-inspect-'));
  try {
    const config = tinyConfig({ vocabSize: 259, maxPositionEmbeddings: 64 });
    const model = randomModel(config, 2);
    const modelDir = path.join(dir, 'model');
    await saveModel(modelDir, model);
    await saveTokenizer(modelDir, byteLevelTokenizerJson(), { bos_token: '<s>', eos_token: '</s>' });
    const textFile = path.join(dir, 'text.txt');
    fs.writeFileSync(textFile, 'The quick brown fox jumps over the lazy dog. '.repeat(3));
    const svgFile = path.join(dir, 'spec.svg');
    let printed = '';
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => ((printed += chunk), true)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await inspect(['spectrum', '--model', modelDir, '--text', textFile, '--span', '48', '--svg', svgFile, '--json']);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(code, 0);
    const out = JSON.parse(printed);
    assert.equal(out.span, 48);
    assert.equal(out.heads.length, config.nLayers * config.nKVHeads);
    for (const h of out.heads) for (const s of [...h.k, ...h.v]) assert.ok(s >= 0 && s <= 1 + 1e-9);
    // the same numbers as the library call
    const tokens = Array.from({ length: 48 }, () => 0);
    assert.equal(kvSpectrum(model, tokens, 48).length, out.heads.length);
    const svg = fs.readFileSync(svgFile, 'utf8');
    assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
    assert.equal((svg.match(/<rect x="\d+" y="\d+" width="48"/g) ?? []).length, out.heads.length * 6);
    assert.ok(!/NaN|undefined/.test(svg));
    assert.match(spectrumTable(out.heads), /^ *layer +head +K 10% +K 25% +K 50% +V 10% +V 25% +V 50%\n/);
    assert.equal(spectrumTable(out.heads).trimEnd().split('\n').length, out.heads.length + 2);
    await assert.rejects(inspect(['spectrum', '--model', modelDir]), /--text FILE is required/);
    await assert.rejects(inspect(['spectrum', '--model', modelDir, '--text', textFile, '--span', '4']), /--span expects a whole number in \[8, inf\]/);
    await assert.rejects(inspect(['spectrum', '--model', modelDir, '--text', textFile, '--span', '5000']), /--span 5000 is longer than the text/);
    await assert.rejects(inspect(['spectrum', '--model', modelDir, '--text', path.join(dir, 'missing.txt')]), /--text .*missing\.txt: cannot read/);
    await assert.rejects(inspect(['spectra']), /unknown view "spectra"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(FRACTIONS, [0.1, 0.25, 0.5]);
});

test('svg helpers: line charts (log axes, gaps) and heat maps are complete documents; bad input rejected', () => {
  const svg = lineChart(
    [
      { name: 'full <ref>', points: [[1024, 1], [4096, 4], [16384, 16], [65536, 64]] },
      { name: 'freqkv', points: [[1024, 1], [4096, 1.05], [16384, NaN], [65536, 1.08]] },
    ],
    { title: 'ms per token', xLabel: 'context', yLabel: 'ms', logX: true, logY: true },
  );
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.ok(svg.includes('full &lt;ref&gt;') && svg.includes('>64K<') && !/NaN/.test(svg));
  // the NaN breaks the second line: one segment, then a lone marker
  assert.equal((svg.match(/<polyline/g) ?? []).length, 2);
  assert.equal((svg.match(/<circle/g) ?? []).length, 7);
  assert.deepEqual(logTicks(1024, 65536), [1024, 2048, 4096, 8192, 16384, 32768, 65536]);
  assert.deepEqual(logTicks(1, 4096), [1, 4, 16, 64, 256, 1024, 4096]);
  const hm = heatMap([[0, 0.5], [1, NaN]], { rowLabels: ['a', 'b'], colLabels: ['x', 'y'], title: 'T' });
  assert.equal((hm.match(/<rect x="\d+" y="\d+" width="48"/g) ?? []).length, 4);
  assert.throws(() => heatMap([[1, 2], [3]], { rowLabels: ['a', 'b'], colLabels: ['x', 'y'] }), /every row must have 2 columns/);
  assert.throws(() => heatMap([[1]], { rowLabels: [], colLabels: ['x'] }), /rowLabels: expected 1 labels/);
  assert.throws(() => lineChart([]), /at least one series/);
  assert.throws(() => lineChart([{ name: 'a', points: [[0, 1]] }], { logX: true }), /no finite positive values/);
});

test('ablations: rope "post" compresses the keys rotated at their arrival slots and never re-rotates; keep/scaling/rope reach the cache from policy variants', async () => {
  const shape: CacheShape = { nLayers: 1, nKVHeads: 1, headDim: 4, invFreq: Float32Array.of(1, 0.1) };
  const N = 10, S = 2, D = 4;
  const r = rng(7);
  const keys = Array.from({ length: N + 1 }, () => randomArray(D, 1, r));
  const post = new FreqKVCache(shape, { cacheSize: N, sinks: S, retain: 0.5, rope: 'post' });
  const pre = new FreqKVCache(shape, { cacheSize: N, sinks: S, retain: 0.5 });
  for (const k of keys) for (const c of [post, pre]) step(c, 1, () => k, () => k);
  assert.equal(post.compressions, 1);
  // what post holds: rows rotated at slots 0..N-1, then rows S..N-1 compressed to L, then the new key at slot S+L
  const rotated = new Float32Array(N * D);
  keys.slice(0, N).forEach((k, i) => rotated.set(k, i * D));
  referenceBackend.rope(rotated, N, 1, D, Int32Array.from({ length: N }, (_, i) => i), shape.invFreq, false);
  const L = post.blockSize;
  const block = freqCompress(rotated.subarray(S * D), N - S, D, L);
  const held = post.rotatedKeys(0);
  assert.deepEqual(Array.from(post.rawKeys(0)), Array.from(held), 'post: the buffer is what attention reads');
  for (let i = 0; i < S * D; i++) assert.equal(held[i], rotated[i], 'post: sinks as rotated on arrival');
  for (let i = 0; i < L * D; i++) assert.ok(Math.abs(held[S * D + i] - block[i]) < 1e-5, `post block[${i}]`);
  // pre-RoPE differs once anything is compressed (the block is rotated at its new slots)
  const preHeld = pre.rotatedKeys(0);
  assert.ok(preHeld.some((x, i) => Math.abs(x - held[i]) > 1e-4), 'pre and post differ after a compression');
  // values are the same under both
  assert.deepEqual(Array.from(post.values(0)), Array.from(pre.values(0)));
  // the session keeps the option
  const restored = (await (await import("../src/cache/session.js")).restoreCache(post.save(), shape, "mem")) as FreqKVCache;
  assert.equal(restored.rope, 'post');

  const { policySpecs } = await import('../src/eval/policies.js');
  const specs = policySpecs(['freqkv:keep=high:scaling=none', 'freqkv:rope=post', 'freqkv']);
  assert.deepEqual(specs.map((s) => s.options), [
    { policy: 'freqkv', keep: 'high', scaling: 'none' }, { policy: 'freqkv', rope: 'post' }, { policy: 'freqkv' },
  ]);
  const cfg = tinyConfig({ maxPositionEmbeddings: 16 });
  const c = createCache(cfg, specs[0].options) as FreqKVCache;
  assert.equal(c.keep, 'high');
  assert.equal(c.scaling, 'none');
  assert.throws(() => policySpecs(['freqkv:rope=sideways']), /rope must be pre or post/);
  assert.throws(() => policySpecs(['h2o:keep=high']), /h2o does not take keep/);
  assert.throws(() => createCache(cfg, { policy: 'window', rope: 'post' }), /does not take the option rope/);
  assert.throws(() => new FreqKVCache(shape, { cacheSize: N, rope: 'x' as never }), /rope must be pre or post/);
});
