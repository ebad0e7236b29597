// The eviction policies (window, H2O, SnapKV, TOVA): invariants over long random streams,
// the tokens each one keeps, chunked prefill = token-by-token decode, bytes held, sessions,
// and bad options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { referenceBackend } from '../src/kernels/reference.js';
import { setBackend } from '../src/kernels/index.js';
import type { CacheShape, KVCache } from '../src/cache/types.js';
import { EvictionCache, type PositionMode, dropRows, dropRowsPerHead, lowestRows, ropeTable, rotateRows } from '../src/cache/evict.js';
import { WindowCache } from '../src/cache/window.js';
import { H2OCache } from '../src/cache/h2o.js';
import { SnapKVCache, maxPool1d } from '../src/cache/snapkv.js';
import { TOVACache } from '../src/cache/tova.js';
import { cacheShape, createCache } from '../src/cache/factory.js';
import { decodeState, encodeState, loadSession, restoreCache, saveSession } from '../src/cache/session.js';
import { forward } from '../src/model/forward.js';
import { randomArray, randomModel, rng, tinyConfig } from '../src/model/random.js';
import { parseArgs } from '../src/cli/args.js';
import { flags as generateFlags } from '../src/cli/generate.js';

setBackend(referenceBackend);

const H = 2;
const HD = 4;
const D = H * HD;
const N_HEADS = 4;
const shape: CacheShape = { nLayers: 2, nKVHeads: H, headDim: HD, invFreq: Float32Array.from([1, 0.1]) };

type Policy = 'window' | 'h2o' | 'snapkv' | 'tova';
const POLICIES: Policy[] = ['window', 'h2o', 'snapkv', 'tova'];

function make(policy: Policy, budget: number, positions: PositionMode, sinks = 2): EvictionCache {
  const opts = { budget, sinks, positions };
  switch (policy) {
    case 'window': return new WindowCache(shape, opts);
    case 'h2o': return new H2OCache(shape, { ...opts, recent: 3 });
    case 'snapkv': return new SnapKVCache(shape, { ...opts, window: 3, kernel: 3 });
    case 'tova': return new TOVACache(shape, opts);
  }
}

/**
 * Plays the forward pass against a cache with random K/V/Q: real attention (reference kernel)
 * fills the scores. history[l] keeps every pre-RoPE key row ever appended, per layer.
 */
class Driver {
  history: Float32Array[][] = [[], []];
  next: () => number;
  constructor(readonly cache: KVCache, seed: number) {
    this.next = rng(seed);
  }
  /** One step of T tokens (T <= room()); returns the query positions and the views' sizes. */
  step(T: number, onView?: (layer: number, n: number, k: Float32Array) => void): Int32Array {
    const pos = this.cache.begin(T);
    for (let l = 0; l < shape.nLayers; l++) {
      const k = randomArray(T * D, 1, this.next);
      const v = randomArray(T * D, 1, this.next);
      const q = randomArray(T * N_HEADS * HD, 2, this.next);
      for (let i = 0; i < T; i++) this.history[l].push(k.slice(i * D, (i + 1) * D));
      const view = this.cache.append(l, k, v);
      const out = new Float32Array(T * N_HEADS * HD);
      referenceBackend.rope(q, T, N_HEADS, HD, pos, shape.invFreq, false);
      referenceBackend.attention(out, q, view.k, view.v, {
        nQ: T, nKV: view.n, nHeads: N_HEADS, nKVHeads: H, headDim: HD, scale: 1 / Math.sqrt(HD), causal: true,
        scores: view.scores ?? undefined, scoresFromQuery: view.scoresFromQuery,
      });
      onView?.(l, view.n, view.k);
      this.cache.attended(l, view);
    }
    this.cache.end();
    return pos;
  }
  /** Steps of random sizes (1..maxChunk, capped by room) until `tokens` more have gone in. */
  run(tokens: number, maxChunk: number, check?: () => void): void {
    for (let done = 0; done < tokens; ) {
      const T = Math.min(tokens - done, this.cache.room(), 1 + Math.floor(this.next() * maxChunk));
      this.step(T);
      done += T;
      check?.();
    }
  }
}

function rotate(rows: Float32Array, positions: Int32Array): Float32Array {
  const out = rows.slice();
  referenceBackend.rope(out, positions.length, H, HD, positions, shape.invFreq, false);
  return out;
}

/** Every held row of every head is the very token it claims to hold, rotated to its position. */
function checkRows(c: EvictionCache, d: Driver): void {
  for (let l = 0; l < shape.nLayers; l++) {
    const rot = c.rotatedKeys(l);
    for (let h = 0; h < H; h++) {
      const tok = c.heldTokens(l, h);
      const pos = c.heldPositions(l, h);
      for (let j = 0; j < c.length; j++) {
        const k = d.history[l][tok[j]].subarray(h * HD, (h + 1) * HD);
        const want = new Float32Array(D);
        want.set(k, h * HD);
        const r = rotate(want, Int32Array.of(pos[j]));
        assert.deepEqual(rot.subarray(j * D + h * HD, j * D + (h + 1) * HD), r.subarray(h * HD, (h + 1) * HD), `layer ${l} head ${h} row ${j}`);
      }
    }
  }
}

for (const policy of POLICIES) {
  for (const positions of ['slot', 'original'] as const) {
    test(`${policy} (${positions} positions) keeps its invariants over a long random stream`, () => {
      const budget = 12;
      const S = 2;
      const c = make(policy, budget, positions, S);
      const d = new Driver(c, 7);
      let steps = 0;
      let overflowed = false;
      for (let done = 0; done < 200; ) {
        const room = c.room();
        assert.ok(room >= 1);
        const T = Math.min(200 - done, room, 1 + Math.floor(d.next() * 9));
        const lengthBefore = c.length;
        const pos = d.step(T, (_l, n) => {
          if (policy !== 'snapkv' || lengthBefore >= budget) assert.ok(n <= budget, `attends over ${n} > budget rows`);
        });
        done += T;
        steps++;
        if (lengthBefore + T > budget) overflowed = true;
        // positions: slot policies stay in [0, budget-1]; original ones are the stream indices
        for (let i = 0; i < T; i++) {
          if (positions === 'original') assert.equal(pos[i], c.seen - T + i);
          else if (policy !== 'snapkv' || lengthBefore >= budget) assert.ok(pos[i] >= 0 && pos[i] <= budget - 1, `position ${pos[i]}`);
        }
        assert.equal(c.seen, done);
        assert.equal(c.length, Math.min(done, budget));
        for (let l = 0; l < shape.nLayers; l++) {
          for (let h = 0; h < H; h++) {
            const tok = c.heldTokens(l, h);
            // sinks never evicted, order kept, nothing from the future
            for (let j = 0; j < Math.min(S, done); j++) assert.equal(tok[j], j, 'sink evicted');
            for (let j = 1; j < tok.length; j++) assert.ok(tok[j] > tok[j - 1], 'rows out of order');
            assert.ok(tok[tok.length - 1] < c.seen);
            // the newest token is always held except by TOVA, which may drop it
            if (policy !== 'tova') assert.equal(tok[tok.length - 1], c.seen - 1);
            if (policy === 'window') {
              const want = [...Array(Math.min(S, done)).keys()];
              for (let t = Math.max(S, done - (budget - S)); t < done; t++) want.push(t);
              assert.deepEqual(Array.from(tok), want);
            }
            if (policy === 'h2o' || policy === 'snapkv') {
              // the protected newest rows (recent = window = 3)
              const newest = Math.min(3, tok.length - S);
              for (let j = 0; j < newest; j++) assert.equal(tok[tok.length - 1 - j], c.seen - 1 - j);
            }
          }
        }
        checkRows(c, d);
      }
      assert.ok(overflowed && steps > 100);
    });
  }
}

test('bytes held stay flat over long streams once a fixed-size policy is full', () => {
  for (const policy of POLICIES) {
    for (const positions of ['slot', 'original'] as const) {
      const c = make(policy, 16, positions);
      const d = new Driver(c, 3);
      d.run(40, 5);
      const a = c.bytes();
      d.run(300, 5);
      const b = c.bytes();
      assert.deepEqual(b, a, `${policy}/${positions}`);
      assert.equal(b.perLayer.length, shape.nLayers);
      // kRot + v [+ kRaw in slot mode] of 16 rows, and origin [+ score] of 16 x H int32/float32
      const rows = 16 * D * 4 * (positions === 'slot' ? 3 : 2) + 16 * H * 4 * (policy === 'window' ? 1 : 2);
      assert.deepEqual(b.perLayer, [rows, rows], `${policy}/${positions}`);
      assert.ok(b.total >= rows * 2 && b.total < rows * 3);
    }
  }
});

test('lowestRows, dropRows, dropRowsPerHead, rotateRows: the pieces of eviction', () => {
  const score = Float32Array.from([5, 1, 3, 1, 0, 9, 2]);
  const out = new Int32Array(3);
  lowestRows(score, 1, 0, 1, 7, 3, out);
  assert.deepEqual(Array.from(out), [1, 3, 4]);
  lowestRows(score, 1, 0, 1, 4, 1, out);
  assert.equal(out[0], 1);
  // two heads interleaved [rows, 2]: drop rows 1 and 3 of head 1 only
  const buf = Int32Array.from([0, 10, 1, 11, 2, 12, 3, 13, 4, 14]);
  dropRows(buf, 2, 1, 1, 5, Int32Array.from([1, 3]), 2);
  assert.deepEqual(Array.from(buf.subarray(0, 10)), [0, 10, 1, 12, 2, 14, 3, 13, 4, 14]);
  // all heads at once (runs with the same shift move as blocks) = head by head
  const next = rng(5);
  for (const drops of [[2, 5, 1, 7, 3, 4], [3, 8, 3, 8, 3, 8], [0, 1, 6, 9, 2, 3]]) {
    const a = randomArray(10 * 6, 1, next);
    const b = a.slice();
    const drop = Int32Array.from(drops); // 3 heads x 2 victims
    dropRowsPerHead(a, 10, 3, 2, drop, 2);
    for (let h = 0; h < 3; h++) dropRows(b, 6, h * 2, 2, 10, drop.subarray(h * 2, h * 2 + 2), 2);
    assert.deepEqual(a.subarray(0, 8 * 6), b.subarray(0, 8 * 6), `victims ${drops}`);
  }
  // table rotation = the reference kernel, bit for bit; a head range leaves the others alone
  const x = randomArray(5 * 8, 1, next);
  const want = x.slice();
  referenceBackend.rope(want, 5, 2, 4, Int32Array.from([7, 8, 9, 10, 11]), shape.invFreq, false);
  const got = new Float32Array(40);
  rotateRows(got, x, 5, 2, 4, 7, ropeTable(shape.invFreq, 12));
  assert.deepEqual(got, want);
  const one = new Float32Array(40);
  rotateRows(one, x, 5, 2, 4, 7, ropeTable(shape.invFreq, 12), 1, 2);
  for (let r = 0; r < 5; r++) {
    assert.deepEqual(one.subarray(r * 8, r * 8 + 4), new Float32Array(4));
    assert.deepEqual(one.subarray(r * 8 + 4, r * 8 + 8), want.subarray(r * 8 + 4, r * 8 + 8));
  }
  assert.throws(() => rotateRows(got, x, 5, 2, 4, 8, ropeTable(shape.invFreq, 12)), /outside the table/);
  const pooled = new Float32Array(5);
  maxPool1d(pooled, Float32Array.from([0, 4, 0, 0, 1]), 1, 0, 5, 1);
  assert.deepEqual(Array.from(pooled), [4, 4, 4, 1, 1]);
});

/**
 * A driver that hands the policy chosen scores instead of real attention: score(token) gives the
 * attention the step's queries give each held token (per head the same).
 */
function stepWithScores(c: EvictionCache, T: number, score: (token: number) => number): void {
  c.begin(T);
  for (let l = 0; l < shape.nLayers; l++) {
    const view = c.append(l, new Float32Array(T * D), new Float32Array(T * D));
    if (view.scores) {
      for (let h = 0; h < H; h++) {
        const tok = [...c.heldTokens(l, h), ...Array.from({ length: T }, (_, i) => c.seen + i)];
        for (let j = 0; j < view.n; j++) view.scores[h * view.n + j] = score(tok[j]);
      }
    }
    c.attended(l, view);
  }
  c.end();
}

test('h2o keeps the heavy hitters and the recent window', () => {
  const c = new H2OCache(shape, { budget: 10, sinks: 1, recent: 3 });
  const heavy = new Set([4, 7, 9, 15]);
  for (let t = 0; t < 40; t++) stepWithScores(c, 1, (tok) => (heavy.has(tok) ? 1 : 0.01));
  // 1 sink + 6 heavy-hitter rows + 3 recent: the 4 heavy ones, then the rows with the most
  // accumulated attention (the oldest non-heavy survivors, having been attended longest)
  const tok = Array.from(c.heldTokens(0, 0));
  for (const t of heavy) assert.ok(tok.includes(t), `heavy hitter ${t} evicted: ${tok}`);
  assert.deepEqual(tok.slice(-3), [37, 38, 39]);
  assert.equal(tok[0], 0);
  assert.equal(tok.length, 10);
});

test('tova evicts the token with the lowest current attention, summed over all heads', () => {
  const c = new TOVACache(shape, { budget: 6, sinks: 1 });
  for (let t = 0; t < 5; t++) stepWithScores(c, 1, () => 1);
  // query 5 gives token 3 the least attention: it goes when token 6 arrives
  stepWithScores(c, 1, (tok) => (tok === 3 ? 0.1 : 1));
  stepWithScores(c, 1, (tok) => (tok === 4 ? 0 : 1));
  assert.deepEqual(Array.from(c.heldTokens(0, 0)), [0, 1, 2, 4, 5, 6]);
  // query 7 ignores itself: TOVA may drop the newest token
  stepWithScores(c, 1, (tok) => (tok === 7 ? 0 : 1));
  assert.deepEqual(Array.from(c.heldTokens(1, 1)), [0, 1, 2, 5, 6, 7]);
  // the sink is never a candidate, even with the lowest score
  stepWithScores(c, 1, (tok) => (tok === 0 ? 0 : tok === 2 ? 0.2 : 1));
  assert.deepEqual(Array.from(c.heldTokens(1, 0)), [0, 1, 2, 5, 6, 8]);
  stepWithScores(c, 1, () => 1);
  assert.deepEqual(Array.from(c.heldTokens(0, 1)), [0, 1, 5, 6, 8, 9]);
  // scores of all heads are summed: head 0 dislikes token 5, head 1 token 6 more strongly
  c.begin(1);
  for (let l = 0; l < shape.nLayers; l++) {
    const view = c.append(l, new Float32Array(D), new Float32Array(D));
    const tok = [...c.heldTokens(l, 0), 10];
    tok.forEach((t, j) => {
      view.scores![j] = t === 5 ? 0.2 : 1;
      view.scores![view.n + j] = t === 6 ? 0 : 1;
    });
    c.attended(l, view);
  }
  c.end();
  stepWithScores(c, 1, () => 1);
  // token 1 went first (all tied); then the lowest sum (token 6: 1 against 1.2 for token 5) in every head
  for (let h = 0; h < H; h++) assert.deepEqual(Array.from(c.heldTokens(1, h)), [0, 5, 8, 9, 10, 11]);
});

test('snapkv compresses an overflowing prompt by pooled window votes and gives the memory back', () => {
  const c = new SnapKVCache(shape, { budget: 10, sinks: 2, window: 3, kernel: 1 });
  assert.equal(c.room(), Infinity);
  const votes = new Map([[5, 0.9], [11, 0.8], [12, 0.7], [20, 0.6], [21, 0.5]]);
  stepWithScores(c, 30, (tok) => votes.get(tok) ?? 0.01);
  // kept: 2 sinks, the 5 best-voted of tokens 2..26, the window 27..29
  assert.deepEqual(Array.from(c.heldTokens(0, 1)), [0, 1, 5, 11, 12, 20, 21, 27, 28, 29]);
  assert.equal(c.length, 10);
  assert.equal(c.bytes().perLayer[0], 10 * D * 4 * 3 + 10 * H * 4 * 2);
  assert.equal(c.room(), 1);
  // pooling (kernel 3): a voted token brings its neighbours
  const p = new SnapKVCache(shape, { budget: 10, sinks: 2, window: 3, kernel: 3 });
  stepWithScores(p, 30, (tok) => (tok === 10 ? 1 : tok === 20 ? 0.5 : 0.01));
  // 19, 20, 21 tie at 0.5: the older goes first
  assert.deepEqual(Array.from(p.heldTokens(0, 0)), [0, 1, 9, 10, 11, 20, 21, 27, 28, 29]);
});

test('the scores requested: h2o all queries, tova the last query, snapkv the last window queries, window none', () => {
  const want: Record<Policy, (T: number) => number | null> = { window: () => null, h2o: () => 0, tova: (T) => T - 1, snapkv: (T) => Math.max(0, T - 3) };
  for (const policy of POLICIES) {
    const c = make(policy, 12, 'slot');
    for (const T of [1, 5]) {
      c.begin(T);
      for (let l = 0; l < shape.nLayers; l++) {
        const view = c.append(l, new Float32Array(T * D), new Float32Array(T * D));
        const from = want[policy](T);
        assert.equal(view.scores === null, from === null, policy);
        if (view.scores) {
          assert.equal(view.scores.length, H * view.n);
          assert.ok(view.scores.every((x) => x === 0));
          assert.equal(view.scoresFromQuery, from);
        }
        c.attended(l, view);
      }
      c.end();
    }
  }
});

test('chunked prefill gives the same logits as token-by-token decode (window, h2o, tova, snapkv under budget)', () => {
  const config = tinyConfig({ vocabSize: 32 });
  const model = randomModel(config, 5);
  const next = rng(11);
  const tokens = Array.from({ length: 60 }, () => Math.floor(next() * config.vocabSize));
  for (const policy of POLICIES) {
    const budget = policy === 'snapkv' ? 64 : 20;
    const opts = { policy, budget, sinks: 2 };
    const grouped = forward(model, tokens, createCache(config, opts), { logits: 'all' });
    const single = createCache(config, opts);
    let worst = 0;
    let scale = 0;
    tokens.forEach((t, i) => {
      const logits = forward(model, [t], single);
      for (let j = 0; j < logits.length; j++) {
        worst = Math.max(worst, Math.abs(logits[j] - grouped[i * config.vocabSize + j]));
        scale = Math.max(scale, Math.abs(logits[j]));
      }
    });
    assert.ok(worst / scale <= 1e-5, `${policy}: relative error ${worst / scale}`);
  }
});

test('sessions: save and restore bit-exact, decoding continues identically', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-cache-'));
  try {
    for (const policy of POLICIES) {
      for (const positions of ['slot', 'original'] as const) {
        const a = make(policy, 12, positions);
        const da = new Driver(a, 21);
        da.run(37, 6);
        const file = path.join(dir, `${policy}-${positions}.kv`);
        await saveSession(file, a);
        const b = (await loadSession(file, shape)) as EvictionCache;
        assert.equal(b.policy, policy);
        assert.deepEqual(b.save(), a.save());
        assert.deepEqual(b.bytes().perLayer, a.bytes().perLayer);
        // the same future for both: same random inputs, compare every view
        const db = new Driver(b, 0);
        db.history = da.history.map((h) => h.slice());
        db.next = rng(99);
        da.next = rng(99);
        const views: Float32Array[] = [];
        for (let i = 0; i < 20; i++) da.step(1, (_l, _n, k) => views.push(k.slice()));
        let at = 0;
        for (let i = 0; i < 20; i++) db.step(1, (_l, _n, k) => assert.deepEqual(k, views[at++]));
        assert.deepEqual(b.save(), a.save());
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('sessions: damaged or mismatched files are rejected with the file and field named', async () => {
  const c = make('h2o', 12, 'slot');
  new Driver(c, 4).run(20, 4);
  const bytes = c.save();
  const src = 'x.kv';
  await assert.rejects(restoreCache(bytes.slice(0, 10), shape, src), /x\.kv: not a valid freqkv session: file too short/);
  const bad = bytes.slice();
  bad[0] = 0x41;
  await assert.rejects(restoreCache(bad, shape, src), /expected magic/);
  await assert.rejects(restoreCache(bytes.slice(0, bytes.length - 8), shape, src), /runs past the end|expected \d+ bytes/);
  const longer = new Uint8Array(bytes.length + 8);
  longer.set(bytes);
  await assert.rejects(restoreCache(longer, shape, src), /expected \d+ bytes, the file has/);
  await assert.rejects(restoreCache(bytes, { ...shape, nLayers: 3 }, src), /saved for nLayers = 2, this model has 3/);
  await assert.rejects(restoreCache(bytes, { ...shape, invFreq: Float32Array.from([1, 0.2]) }, src), /different RoPE frequencies/);
  const edit = (f: (s: ReturnType<typeof decodeState>) => void) => {
    const s = decodeState(bytes, src);
    f(s);
    return encodeState(s);
  };
  await assert.rejects(restoreCache(edit((s) => (s.policy = 'lru')), shape, src), /unknown policy "lru"/);
  await assert.rejects(restoreCache(edit((s) => (s.params.recent = -1)), shape, src), /field "params.recent" must be an integer/);
  await assert.rejects(restoreCache(edit((s) => (s.params.budget = 5)), shape, src), /x\.kv: h2o: budget must be an integer/);
  await assert.rejects(restoreCache(edit((s) => (s.counters.length = 13)), shape, src), /field "counters.length"/);
  await assert.rejects(restoreCache(edit((s) => delete s.arrays['1.v']), shape, src), /array "1.v" is missing/);
  await assert.rejects(restoreCache(edit((s) => (s.arrays['0.kRot'] = new Float32Array(3))), shape, src), /array "0.kRot" must hold/);
  await assert.rejects(restoreCache(edit((s) => ((s.arrays['0.origin'] as Int32Array)[5] = 99)), shape, src), /"0.origin" holds 99/);
  await assert.rejects(loadSession('/nonexistent/x.kv', shape), /cannot read session file/);
});

test('bad options are rejected with a message naming the option', () => {
  assert.throws(() => new WindowCache(shape, { budget: 2, sinks: 2 }), /window: budget must be an integer in \[3,/);
  assert.throws(() => new WindowCache(shape, { budget: 10.5 }), /window: budget must be an integer/);
  assert.throws(() => new TOVACache(shape, { budget: 10, sinks: -1 }), /tova: sinks must be an integer/);
  assert.throws(() => new TOVACache(shape, { budget: 10, positions: 'absolute' as PositionMode }), /tova: positions must be slot or original/);
  assert.throws(() => new H2OCache(shape, { budget: 10, sinks: 4, recent: 6 }), /h2o: budget must be an integer in \[11,/);
  assert.throws(() => new H2OCache(shape, { budget: 10, recent: -2 }), /h2o: recent must be a non-negative integer/);
  assert.throws(() => new SnapKVCache(shape, { budget: 10, kernel: 4 }), /snapkv: kernel must be an odd positive integer/);
  assert.throws(() => new SnapKVCache(shape, { budget: 10, sinks: 4, window: 8 }), /snapkv: budget must be an integer in \[13,/);
  const config = tinyConfig();
  assert.throws(() => createCache(config, { policy: 'lru' }), /expected one of full, window, freqkv, h2o, snapkv, tova/);
  assert.throws(() => createCache(config, { policy: 'h2o', retain: 0.5 }), /"h2o" does not take the option retain/);
  assert.throws(() => createCache(config, { policy: 'tova', budget: 10, cacheSize: 12 }), /budget \(10\) and cacheSize \(12\) disagree/);
  assert.throws(() => createCache(config, { policy: 'full', positions: 'slot' }), /"full" does not take the option positions/);
  assert.equal((createCache(config, { policy: 'window', cacheSize: 12 }) as WindowCache).budget, 12);
  assert.equal((createCache(config, { policy: 'snapkv' }) as SnapKVCache).budget, config.maxPositionEmbeddings);
  // CLI flags
  assert.throws(() => parseArgs(['--positions', 'absolute'], generateFlags, 'generate'), /--positions expects one of slot, original/);
  assert.throws(() => parseArgs(['--policy', 'lru'], generateFlags, 'generate'), /--policy expects one of full, window, freqkv, h2o, snapkv, tova/);
  assert.throws(() => parseArgs(['--budget', '0'], generateFlags, 'generate'), /--budget expects a whole number/);
  // protocol misuse
  const c = new WindowCache(shape, { budget: 8 });
  assert.throws(() => c.begin(9), /window: begin T must be an integer in \[1, room\(\) = 8\]/);
  assert.throws(() => c.append(0, new Float32Array(D), new Float32Array(D)), /append\(\) outside a step/);
  c.begin(2);
  assert.throws(() => c.append(0, new Float32Array(D), new Float32Array(2 * D)), /append k: expected \[2, 8\]/);
  assert.equal(cacheShape(config).nKVHeads, config.nKVHeads);
});
