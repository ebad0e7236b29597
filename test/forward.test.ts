// forward() against an independent float64 reference written straight from the Hugging Face
// Llama definition (modeling_llama.py): no cache interface, no backend, full causal attention,
// rotate_half RoPE, repeat_kv for GQA. Plus the step protocol: prefill = decode, chunked steps,
// per-token NLL, and the full cache's growth and save/restore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forward, forwardNll } from '../src/model/forward.js';
import { ropeInvFreq } from '../src/model/rope.js';
import { FullCache } from '../src/cache/full.js';
import { cacheShape, createCache } from '../src/cache/factory.js';
import { restoreCache } from '../src/cache/session.js';
import { randomModel, tinyConfig, rng } from '../src/model/random.js';
import { referenceBackend } from '../src/kernels/reference.js';
import { getBackend } from '../src/kernels/index.js';
import type { Backend } from '../src/kernels/backend.js';
import type { LlamaConfig, Model } from '../src/model/types.js';

// ---------- the reference: HF LlamaForCausalLM, float64, one sequence ----------

/** HF _compute_default/linear/llama3 rope parameters, written as its vectorised where() chain. */
function hfInvFreq(c: LlamaConfig): number[] {
  const base: number[] = [];
  for (let j = 0; j < c.headDim; j += 2) base.push(1 / c.ropeTheta ** (j / c.headDim));
  const s = c.ropeScaling;
  if (!s) return base;
  if (s.type === 'linear') return base.map((f) => f / s.factor);
  const lowWl = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWl = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return base.map((f) => {
    const wl = (2 * Math.PI) / f;
    const llama = wl > lowWl ? f / s.factor : f;
    const smooth = (s.originalMaxPositionEmbeddings / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    const smoothed = ((1 - smooth) * llama) / s.factor + smooth * llama;
    const medium = !(wl < highWl) && !(wl > lowWl);
    return medium ? smoothed : llama;
  });
}

type Mat = number[][]; // [rows][cols]

const linearRef = (x: Mat, w: Float32Array, outDim: number, bias: Float32Array | null): Mat =>
  x.map((row) => {
    const y: number[] = [];
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < row.length; i++) s += row[i] * w[o * row.length + i];
      y.push(s);
    }
    return y;
  });

const rmsRef = (x: Mat, w: Float32Array, eps: number): Mat =>
  x.map((row) => {
    const ms = row.reduce((a, v) => a + v * v, 0) / row.length;
    return row.map((v, i) => (v / Math.sqrt(ms + eps)) * w[i]);
  });

/** q_embed = q*cos + rotate_half(q)*sin per head, emb = cat(freqs, freqs). */
function applyRotary(x: number[], pos: number, headDim: number, invFreq: number[]): number[] {
  const half = headDim / 2;
  const out = x.slice();
  for (let h = 0; h < x.length / headDim; h++) {
    const o = h * headDim;
    for (let j = 0; j < headDim; j++) {
      const angle = pos * invFreq[j % half];
      const rot = j < half ? -x[o + j + half] : x[o + j - half]; // rotate_half = cat(-x2, x1)
      out[o + j] = x[o + j] * Math.cos(angle) + rot * Math.sin(angle);
    }
  }
  return out;
}

/** Logits [T][vocab] of every position. */
function referenceForward(model: Model, tokens: number[]): Mat {
  const c = model.config;
  const w = model.weights;
  const d = c.hiddenSize;
  const hd = c.headDim;
  const invFreq = hfInvFreq(c);
  let h: Mat = tokens.map((t) => Array.from(w.embed.subarray(t * d, (t + 1) * d)));
  for (const L of w.layers) {
    const xn = rmsRef(h, L.attnNorm, c.rmsNormEps);
    const q = linearRef(xn, L.wq, c.nHeads * hd, L.bq).map((r, p) => applyRotary(r, p, hd, invFreq));
    const k = linearRef(xn, L.wk, c.nKVHeads * hd, L.bk).map((r, p) => applyRotary(r, p, hd, invFreq));
    const v = linearRef(xn, L.wv, c.nKVHeads * hd, L.bv);
    const nRep = c.nHeads / c.nKVHeads; // repeat_kv: query head h uses KV head floor(h / nRep)
    const attn: Mat = tokens.map(() => new Array(c.nHeads * hd).fill(0));
    for (let i = 0; i < tokens.length; i++) {
      for (let head = 0; head < c.nHeads; head++) {
        const kh = Math.floor(head / nRep);
        const logits: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i][head * hd + e] * k[j][kh * hd + e];
          logits.push(s / Math.sqrt(hd));
        }
        const m = Math.max(...logits);
        const p = logits.map((z) => Math.exp(z - m));
        const sum = p.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < hd; e++) attn[i][head * hd + e] += (p[j] / sum) * v[j][kh * hd + e];
        }
      }
    }
    const o = linearRef(attn, L.wo, d, null);
    h = h.map((row, i) => row.map((x, e) => x + o[i][e]));
    const xn2 = rmsRef(h, L.mlpNorm, c.rmsNormEps);
    const gate = linearRef(xn2, L.wGate, c.intermediateSize, null);
    const up = linearRef(xn2, L.wUp, c.intermediateSize, null);
    const act = gate.map((row, i) => row.map((g, e) => (g / (1 + Math.exp(-g))) * up[i][e]));
    const down = linearRef(act, L.wDown, d, null);
    h = h.map((row, i) => row.map((x, e) => x + down[i][e]));
  }
  return linearRef(rmsRef(h, w.norm, c.rmsNormEps), w.lmHead, c.vocabSize, null);
}

// ---------- helpers ----------

/** max |a - b| / max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const next = rng(seed);
  return Array.from({ length: n }, () => Math.floor(next() * vocab));
}

// the reference kernels always, and the default backend too when it is another one (native)
const backends: Backend[] = [referenceBackend, getBackend()].filter((b, i, all) => all.indexOf(b) === i);

const configs: Record<string, LlamaConfig> = {
  'Llama, multi-head': tinyConfig({ nKVHeads: 4 }),
  'GQA (4 query heads over 2 KV heads)': tinyConfig(),
  'multi-query (1 KV head)': tinyConfig({ nKVHeads: 1 }),
  'Qwen2 q/k/v biases': tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, ropeTheta: 1000000 }),
  'tied embeddings': tinyConfig({ tieWordEmbeddings: true }),
  'rope_scaling linear': tinyConfig({ ropeScaling: { type: 'linear', factor: 4 } }),
  // headDim 8: wavelengths 2π·{1, 10, 100, 1000} fall in the high, medium and low bands of [16, 64]
  'rope_scaling llama3': tinyConfig({
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
  }),
  'headDim != hidden/heads': tinyConfig({ hiddenSize: 24, nHeads: 4, nKVHeads: 2, headDim: 10 }),
};

// ---------- tests ----------

for (const be of backends) {
  for (const [name, config] of Object.entries(configs)) {
    test(`forward matches the HF reference [${be.name}]: ${name}`, () => {
      const model = randomModel(config, 7);
      const tokens = randomTokens(11, config.vocabSize, 3);
      const ref = referenceForward(model, tokens).flat();
      const all = forward(model, tokens, createCache(config, { backend: be }), { logits: 'all', backend: be });
      assert.ok(relErr(all, ref) <= 1e-4, `all logits rel err ${relErr(all, ref)}`);
      const last = forward(model, tokens, createCache(config, { backend: be }), { backend: be });
      assert.equal(last.length, config.vocabSize);
      assert.ok(relErr(last, ref.slice(-config.vocabSize)) <= 1e-4);
    });
  }

  test(`prefill logits equal token-by-token decode logits [${be.name}]`, () => {
    for (const config of [configs['GQA (4 query heads over 2 KV heads)'], configs['Qwen2 q/k/v biases']]) {
      const model = randomModel(config, 11);
      const tokens = randomTokens(20, config.vocabSize, 5);
      const prefill = forward(model, tokens, createCache(config, { backend: be }), { logits: 'all', backend: be });
      const cache = createCache(config, { backend: be });
      const out = new Float32Array(config.vocabSize);
      for (let t = 0; t < tokens.length; t++) {
        const logits = forward(model, [tokens[t]], cache, { backend: be, out });
        assert.equal(logits, out, 'writes into opts.out');
        const row = prefill.subarray(t * config.vocabSize, (t + 1) * config.vocabSize);
        assert.ok(relErr(logits, row) <= 1e-4, `token ${t}: rel err ${relErr(logits, row)}`);
      }
      assert.equal(cache.seen, tokens.length);
    }
  });
}

test('a step longer than the MLP row block (256) matches the reference', () => {
  const config = tinyConfig({ hiddenSize: 16, nHeads: 2, nKVHeads: 1, intermediateSize: 24, nLayers: 1, vocabSize: 32 });
  const model = randomModel(config, 13);
  const tokens = randomTokens(300, config.vocabSize, 2);
  const ref = referenceForward(model, tokens).flat();
  const all = forward(model, tokens, createCache(config, { backend: referenceBackend }), { logits: 'all', backend: referenceBackend });
  assert.ok(relErr(all, ref) <= 1e-4, `rel err ${relErr(all, ref)}`);
});

test('ropeInvFreq: plain, linear and llama3 bands', () => {
  const plain = ropeInvFreq(tinyConfig());
  assert.deepEqual(Array.from(plain), [1, 0.1, 0.01, 0.001].map(Math.fround));
  const linear = ropeInvFreq(tinyConfig({ ropeScaling: { type: 'linear', factor: 4 } }));
  assert.deepEqual(Array.from(linear), [0.25, 0.025, 0.0025, 0.00025].map(Math.fround));
  const l3 = ropeInvFreq(configs['rope_scaling llama3']);
  // high band kept, low band divided by 8, the medium one (wavelength 20π) interpolated
  const smooth = (64 / (20 * Math.PI) - 1) / 3;
  const expected = [1, (1 - smooth) * (0.1 / 8) + smooth * 0.1, 0.01 / 8, 0.001 / 8];
  assert.deepEqual(Array.from(l3), expected.map(Math.fround));
  assert.throws(() => ropeInvFreq(tinyConfig({ headDim: 7 })), /headDim/);
});

test('forward splits tokens into steps of at most cache.room() and opts.maxStep', () => {
  const config = tinyConfig();
  const model = randomModel(config, 2);
  const tokens = randomTokens(13, config.vocabSize, 9);
  const whole = forward(model, tokens, createCache(config), { logits: 'all' });
  // a full cache that pretends to be bounded: at most 4 tokens per step
  class RoomyCache extends FullCache {
    steps: number[] = [];
    override room(): number {
      return 4;
    }
    override begin(T: number): Int32Array {
      assert.ok(T <= this.room(), `step of ${T} exceeds room`);
      this.steps.push(T);
      return super.begin(T);
    }
  }
  const capped = new RoomyCache(cacheShape(config));
  const stepped = forward(model, tokens, capped, { logits: 'all' });
  assert.deepEqual(capped.steps, [4, 4, 4, 1]);
  assert.ok(relErr(stepped, whole) <= 1e-5);
  const chunked = new RoomyCache(cacheShape(config));
  forward(model, tokens, chunked, { logits: 'all', maxStep: 3 });
  assert.deepEqual(chunked.steps, [3, 3, 3, 3, 1]);
  // 'last' on a many-step call is the last row of 'all'
  const last = forward(model, tokens, new RoomyCache(cacheShape(config)));
  assert.ok(relErr(last, whole.subarray(12 * config.vocabSize)) <= 1e-5);
});

test('forwardNll equals -log softmax of the next token from the all-logits', () => {
  const config = tinyConfig({ vocabSize: 50 });
  const model = randomModel(config, 4);
  const tokens = randomTokens(37, config.vocabSize, 1);
  const all = forward(model, tokens, createCache(config), { logits: 'all' });
  const nll = forwardNll(model, tokens, createCache(config), { maxStep: 20 });
  assert.equal(nll.length, tokens.length - 1);
  const V = config.vocabSize;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = Array.from(all.subarray(t * V, (t + 1) * V));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0));
    assert.ok(Math.abs(nll[t] - (lse - row[tokens[t + 1]])) < 1e-5, `token ${t}`);
  }
});

test('FullCache grows by doubling, counts real bytes, and save/restore continues identically', async () => {
  const config = tinyConfig();
  const model = randomModel(config, 5);
  const kvDim = config.nKVHeads * config.headDim;
  const cache = new FullCache(cacheShape(config), { initialRows: 4 });
  assert.equal(cache.bytes().total, config.nLayers * 2 * 4 * kvDim * 4);
  assert.equal(cache.room(), Infinity);
  const tokens = randomTokens(10, config.vocabSize, 8);
  forward(model, tokens.slice(0, 9), cache);
  assert.equal(cache.length, 9);
  assert.deepEqual(cache.bytes().perLayer, [2 * 16 * kvDim * 4, 2 * 16 * kvDim * 4]); // 4 -> 8 -> 16 rows
  const saved = cache.save();
  const restored = await restoreCache(saved, cacheShape(config), 'test session');
  assert.ok(restored instanceof FullCache);
  assert.equal(restored.length, 9);
  assert.deepEqual(Array.from(restored.save()), Array.from(saved));
  const a = forward(model, [tokens[9]], cache);
  const b = forward(model, [tokens[9]], restored);
  assert.deepEqual(Array.from(a), Array.from(b));
  await assert.rejects(restoreCache(saved.subarray(0, saved.length - 8), cacheShape(config), 'short'), /short: .*runs past the end|short: expected/);
  await assert.rejects(restoreCache(saved, cacheShape(tinyConfig({ nLayers: 3 })), 'other'), /other: .*nLayers/);
  await assert.rejects(restoreCache(saved, cacheShape(tinyConfig({ ropeTheta: 500000 })), 'theta'), /theta: .*RoPE frequencies/);
});

test('bad input is a clear error', () => {
  const config = tinyConfig();
  const model = randomModel(config, 1);
  assert.throws(() => forward(model, [1, 64], createCache(config)), /tokens\[1\].*\[0, 63\].*64/);
  assert.throws(() => forward(model, [], createCache(config)), /at least one token/);
  assert.throws(() => forward(model, [1], createCache(tinyConfig({ nLayers: 3 }))), /does not match the model/);
  assert.throws(() => forward(model, [1, 2], createCache(config), { logits: 'all', out: new Float32Array(10) }), /opts\.out/);
  assert.throws(() => createCache(config, { policy: 'nope' }), /expected one of full/);
  assert.throws(() => createCache(config, { cacheSize: 16 }), /does not take the option cacheSize/);
  const cache = createCache(config);
  cache.begin(2);
  assert.throws(() => cache.end(), /layer 0 was not appended/);
});
