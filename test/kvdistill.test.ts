// KV-Distill: selection, the mixed KL, the routed adaptor, the student against the teacher and
// against the inference forward over the compressed cache, the whole gradient (adapters of q,
// k, v, o with routing and the scorer) against finite differences, sessions and the adaptor file,
// training and its bit-exact resume (in process and through the CLI, Ctrl-C included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getBackend } from '../src/kernels/index.js';
import { randomArray, randomModel, rng, tinyConfig } from '../src/model/random.js';
import type { Model } from '../src/model/types.js';
import { forward } from '../src/model/forward.js';
import { cacheShape } from '../src/cache/factory.js';
import { restoreCache } from '../src/cache/session.js';
import { KVDistill, type DistillExample, greedyDecode, type ScorerGrad } from '../src/kvdistill/distill.js';
import { mixedKl } from '../src/kvdistill/loss.js';
import { createScorer, defaultScoreLayer, keptCount, scorerBackward, scorerForward, scorerParams, selectTokens } from '../src/kvdistill/scorer.js';
import { AdaptedLinear } from '../src/kvdistill/layers.js';
import { CountedRng, distillOptimizer, restoreDistillCheckpoint, saveDistillCheckpoint, trainKVDistill } from '../src/kvdistill/train.js';
import type { AdamW } from '../src/train/adamw.js';
import { readCheckpointMeta } from '../src/train/checkpoint.js';
import { distillExample } from '../src/kvdistill/data.js';
import { cli, writeModelAndBooks } from './kvdistill-fixture.js';
import type { LoraAdapter } from '../src/train/lora.js';

const be = getBackend();
const next = rng(777);
const rnd = (n: number, scale = 1) => randomArray(n, scale, next);

function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function tinyModel(seed: number, over: Parameters<typeof tinyConfig>[0] = {}): Model {
  return randomModel(tinyConfig({ vocabSize: 48, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2, maxPositionEmbeddings: 64, ...over }), seed);
}

function example(V: number, n: number, mq: number, ma: number, seed: number): DistillExample {
  const r = rng(seed);
  const tok = (k: number) => Int32Array.from({ length: k }, () => Math.floor(r() * V));
  return { context: tok(n), question: tok(mq), answer: tok(ma) };
}

test('selection: sinks always, top-k of the rest by score, ascending; k = min(ceil(r·n), n − sinks)', () => {
  const scores = Float32Array.from([9, 9, 9, 9, 0.1, 5, 0.3, 7, 0.2, 5]);
  assert.deepEqual([...selectTokens(scores, 10, 0.2, 4)], [0, 1, 2, 3, 5, 7]); // k = 2
  assert.deepEqual([...selectTokens(scores, 10, 0.3, 4)], [0, 1, 2, 3, 5, 7, 9]); // tie 5 = 5: the earlier first
  assert.deepEqual([...selectTokens(scores, 10, 1, 4)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([...selectTokens(scores, 3, 0.5, 4)], [0, 1, 2]); // fewer tokens than sinks
  assert.equal(keptCount(1000, 0.001, 4), 1);
  assert.equal(keptCount(10, 0.8, 4), 6);
  assert.throws(() => keptCount(10, 0, 4), /retention/);
  assert.equal(defaultScoreLayer(32), 6);
  assert.equal(defaultScoreLayer(2), 1);
});

test('mixed KL: zero for equal logits, gradient equals finite differences for lambda 0, 0.6, 1', () => {
  const rows = 3, V = 7;
  const zT = rnd(rows * V, 2);
  assert.ok(Math.abs(mixedKl(zT, zT, rows, V, 0.6).loss) < 1e-12);
  for (const lambda of [0, 0.6, 1]) {
    const zS = rnd(rows * V, 2);
    const dz = new Float32Array(rows * V);
    mixedKl(zS, zT, rows, V, lambda, dz);
    for (let i = 0; i < zS.length; i++) {
      const z0 = zS[i];
      const h = 1e-2;
      zS[i] = z0 + h; const fp = mixedKl(zS, zT, rows, V, lambda).loss;
      zS[i] = z0 - h; const fm = mixedKl(zS, zT, rows, V, lambda).loss;
      zS[i] = z0;
      const fd = (fp - fm) / (2 * h);
      assert.ok(Math.abs(fd - dz[i]) < 1e-4 * Math.max(1, Math.abs(dz[i])) + 2e-6, `lambda ${lambda} dz[${i}]: fd ${fd}, analytic ${dz[i]}`);
    }
  }
});

function param(name: string, data: Float32Array, shape: number[]) {
  return { name, shape, data, grad: new Float32Array(data.length), decay: true };
}

test('routed LoRA linear: unrouted rows equal the frozen weights; backward equals finite differences', () => {
  const rows = 4, inDim = 5, outDim = 3, r = 2;
  const W = rnd(outDim * inDim), x = rnd(rows * inDim), w = rnd(rows * outDim);
  const ad: LoraAdapter = { layer: 0, target: 'q', inDim, outDim, rank: r, scale: 1.3, a: param('a', rnd(r * inDim), [r, inDim]), b: param('b', rnd(outDim * r), [outDim, r]) };
  const mask = Float32Array.from([1, 0, 1, 0]);
  const lin = new AdaptedLinear(be, W, null, ad, inDim, outDim, rows, mask);
  const plain = new AdaptedLinear(be, W, null, null, inDim, outDim, rows, null);
  const y = new Float32Array(rows * outDim), y0 = new Float32Array(rows * outDim);
  lin.forward(y, x, false);
  plain.forward(y0, x, false);
  for (const row of [1, 3]) for (let i = 0; i < outDim; i++) assert.equal(y[row * outDim + i], y0[row * outDim + i]);
  assert.notEqual(y[0], y0[0]);
  const f = () => (lin.forward(y, x, false), dot64(y, w));
  f();
  const dx = new Float32Array(rows * inDim);
  lin.backward(dx, w, x, false);
  for (const [name, arr, g] of [['x', x, dx], ['A', ad.a.data, ad.a.grad!], ['B', ad.b.data, ad.b.grad!]] as const) {
    for (let j = 0; j < arr.length; j++) {
      const v0 = arr[j];
      arr[j] = v0 + 1e-2; const fp = f();
      arr[j] = v0 - 1e-2; const fm = f();
      arr[j] = v0;
      const fd = (fp - fm) / 2e-2;
      assert.ok(Math.abs(fd - g[j]) < 2e-4 + 1e-3 * Math.abs(g[j]), `routed linear d${name}[${j}]: fd ${fd}, analytic ${g[j]}`);
    }
  }
});

test('scorer backward equals finite differences, element by element', () => {
  const n = 6, d = 8;
  const sc = createScorer(d, 3);
  const h = rnd(n * d, 3), w = rnd(n);
  const f = () => dot64(scorerForward(be, sc, h, n).scores, w);
  const acts = scorerForward(be, sc, h, n);
  scorerBackward(be, sc, acts, w);
  for (const p of scorerParams(sc)) {
    for (let j = 0; j < p.data.length; j++) {
      const v0 = p.data[j];
      p.data[j] = v0 + 1e-3; const fp = f();
      p.data[j] = v0 - 1e-3; const fm = f();
      p.data[j] = v0;
      const fd = (fp - fm) / 2e-3, g = p.grad![j];
      assert.ok(Math.abs(fd - g) < 2e-3 + 2e-3 * Math.abs(g), `${p.name}[${j}]: fd ${fd}, analytic ${g}`);
    }
  }
});

test('zero LoRA B and retention 1: the student equals the teacher (KL = 0)', () => {
  const model = tinyModel(11);
  const kd = new KVDistill(model, { rank: 4, alpha: 8, seed: 3 });
  const ex = example(model.config.vocabSize, 13, 3, 4, 5);
  const r = kd.loss(ex, { retention: 1 });
  assert.equal(r.kept.length, 13);
  assert.ok(Math.abs(r.loss) < 1e-6 && Math.abs(r.klTS) < 1e-6 && Math.abs(r.klST) < 1e-6, `KL ${r.klTS}, ${r.klST}`);
  const partial = kd.loss(ex, { retention: 0.3 });
  assert.ok(partial.loss > 1e-4, `dropping tokens should change the answer distribution, KL ${partial.loss}`);
});

test('the student pass equals the inference forward over the compressed cache (positions continue at n)', () => {
  const model = tinyModel(12, { attentionBias: true, architecture: 'Qwen2ForCausalLM' });
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 4 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3));
  const ex = example(model.config.vocabSize, 15, 3, 3, 6);
  const teacher = kd.teacherLogits(ex);
  const res = kd.loss(ex, { retention: 0.4, teacher });
  // the same loss from the inference path: forward() over the KV-Distill cache
  const cache = kd.compress(ex.context, 0.4);
  assert.deepEqual([...cache.positions()], [...res.kept]);
  assert.equal(cache.seen, 15);
  const tail = Int32Array.from([...ex.question, ...ex.answer.subarray(0, ex.answer.length - 1)]);
  const all = forward(model, tail, cache, { logits: 'all' });
  const V = model.config.vocabSize;
  const zS = all.slice((tail.length - ex.answer.length) * V);
  const ref = mixedKl(zS, teacher, ex.answer.length, V, 0.6);
  assert.ok(Math.abs(ref.loss - res.loss) < 1e-5 * Math.max(1, ref.loss), `student loss ${res.loss}, inference ${ref.loss}`);
  assert.equal(cache.seen, 15 + tail.length);
});

/**
 * For each trainable tensor: the directional derivative along a random direction by central
 * differences (Richardson from ε and ε/2) against <grad, u>. Fixed selection (top-k is not
 * differentiable), training student (log-sigmoid bias).
 */
function checkDistill(label: string, kd: KVDistill, ex: DistillExample, retention: number, scorerGrad: ScorerGrad = 'logsigmoid'): void {
  // Keep the scorer's ReLU away from its kink, so that finite differences see a smooth function:
  // |W1 row · hn| <= 0.05·‖hn‖₁ <= 0.05·d <= 0.8 for d <= 16 (hn has unit rms), so with b1 = ±1
  // every pre-activation is at least 0.2 from 0, and a step of 1e-2 along u in [-1, 1] moves it
  // by at most 0.16.
  const d = kd.scorer.d;
  assert.ok(d <= 16);
  kd.scorer.w1.data.set(rnd(d * d, 0.05));
  for (let i = 0; i < d; i++) kd.scorer.b1.data[i] = i % 3 === 0 ? -1 : 1;
  kd.scorer.b2.data[0] = 0; // σ(s) near 1/2: a scorer gradient well above float32 noise
  const teacher = kd.teacherLogits(ex);
  const kept = kd.select(ex.context, retention);
  const params = kd.params();
  for (const p of params) p.grad!.fill(0);
  kd.loss(ex, { retention, grad: true, kept, teacher, scorerGrad });
  // straight-through: the forward is the inference-time student (no bias), so that is the function to difference
  const straight = scorerGrad === 'straight-through';
  const lossAt = () => kd.loss(ex, { retention, training: !straight, kept, teacher }).loss;
  const L = kd.model.config.nLayers;
  assert.equal(kd.adapters.length, 4 * L - 2); // the last layer's attention output never reaches the cache: no q, o adapters there
  for (const p of params) {
    if (straight && p.name.startsWith('scorer.')) { // its gradient is log-sigmoid's, taken at the unbiased forward: no function to difference
      assert.ok(p.grad!.some((g) => g !== 0), `${label} ${p.name}: expected a gradient`);
      continue;
    }
    const u = rnd(p.data.length);
    const saved = Float32Array.from(p.data);
    const at = (eps: number) => {
      for (let i = 0; i < u.length; i++) p.data[i] = saved[i] + eps * u[i];
      const l = lossAt();
      p.data.set(saved);
      return l;
    };
    // b1 moves every pre-activation by at most eps: a longer step (still kink-free) lifts its small derivative above float32 noise
    const eps = p.name === 'scorer.0.bias' ? 1e-1 : 1e-2;
    const d1 = (at(eps) - at(-eps)) / (2 * eps);
    const d2 = (at(eps / 2) - at(-eps / 2)) / eps;
    const fd = (4 * d2 - d1) / 3;
    const an = dot64(p.grad!, u);
    assert.ok(Math.abs(an) > 1e-7, `${label} ${p.name}: gradient is zero`);
    // tolerance: 0.5 % relative, plus the float32 noise of the loss (~3e-7 here) over the step
    assert.ok(Math.abs(fd - an) <= 5e-3 * Math.abs(an) + 3e-7 / eps, `${label} ${p.name}: directional derivative ${fd} by finite differences, ${an} by backward`);
  }
}

test('whole gradient against finite differences: routed adapters on q, k, v, o and the scorer (GQA)', () => {
  const model = tinyModel(21);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 5 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3)); // B starts at zero; make dA non-trivial
  checkDistill('routed', kd, example(model.config.vocabSize, 14, 3, 3, 7), 0.4);
});

test('whole gradient against finite differences: no routing, Qwen2 biases, tied embeddings, 3 layers', () => {
  const model = tinyModel(22, { nLayers: 3, attentionBias: true, tieWordEmbeddings: true, architecture: 'Qwen2ForCausalLM', nKVHeads: 1 });
  const kd = new KVDistill(model, { rank: 3, alpha: 2, seed: 6, routing: false, scoreLayer: 2 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3));
  checkDistill('unrouted', kd, example(model.config.vocabSize, 12, 2, 4, 8), 0.5);
});

test('straight-through scorer gradient: the adapters get the gradient of the unbiased (inference-time) student', () => {
  const model = tinyModel(23);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 7 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3));
  checkDistill('straight-through', kd, example(model.config.vocabSize, 13, 2, 3, 9), 0.4, 'straight-through');
});

test('the compressed cache saves and restores as a session; greedy decoding continues identically', async () => {
  const model = tinyModel(31);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 9 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3));
  const ex = example(model.config.vocabSize, 20, 3, 1, 10);
  const cache = kd.compress(ex.context, 0.25);
  assert.equal(cache.length, 4 + 5);
  const restored = await restoreCache(cache.save(), cacheShape(model.config));
  assert.equal(restored.policy, 'kvdistill');
  const a = greedyDecode(model, cache, ex.question, 5);
  const b = greedyDecode(model, restored, ex.question, 5);
  assert.deepEqual(a, b);
  assert.equal(cache.seen, 20 + 3 + 4);
});

test('adaptor file: save and load reproduce the compression exactly', async () => {
  const model = tinyModel(41);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 2, sinks: 2 });
  for (const a of kd.adapters) a.b.data.set(rnd(a.b.data.length, 0.3));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvdistill-'));
  try {
    const file = path.join(dir, 'adaptor.safetensors');
    await kd.save(file);
    const back = await KVDistill.load(file, model);
    assert.equal(back.sinks, 2);
    assert.equal(back.scoreLayer, kd.scoreLayer);
    const ctx = example(model.config.vocabSize, 16, 1, 1, 12).context;
    const x = kd.compressRows(ctx, 0.3), y = back.compressRows(ctx, 0.3);
    assert.deepEqual([...x.kept], [...y.kept]);
    for (let l = 0; l < model.config.nLayers; l++) assert.deepEqual(x.k[l], y.k[l]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('training: the loss falls on a fixed batch (adaptor and scorer, AdamW)', async () => {
  const model = tinyModel(51);
  const kd = new KVDistill(model, { rank: 4, alpha: 8, seed: 8 });
  const exs = [example(48, 16, 2, 3, 21), example(48, 14, 3, 2, 22)];
  const teach = exs.map((e) => kd.teacherLogits(e));
  const evalLoss = () => exs.reduce((s, e, i) => s + kd.loss(e, { retention: 0.3, teacher: teach[i], kept: kd.select(e.context, 0.3) }).loss, 0) / exs.length;
  const before = evalLoss();
  const recs = await trainKVDistill(kd, (_s, i) => exs[i], () => 0.5, { steps: 30, batch: 2, schedule: { kind: 'constant', lr: 1e-2, warmup: 0, steps: 30 }, clip: 1, lambda: 0.6, minRetain: 0.3, maxRetain: 0.3 });
  const after = evalLoss();
  assert.equal(recs.length, 30);
  assert.ok(after < 0.7 * before, `loss ${before} -> ${after}`);
});

test('training data from book tokens: each kind has its answer in the context (or after it, for continuation)', () => {
  const V = 48;
  const books = Int32Array.from({ length: 400 }, (_, i) => (i * 7) % V);
  const codec = { encode: (t: string) => Array.from(t, (ch) => ch.charCodeAt(0) % V) };
  const r = rng(3);
  for (const kind of ['passkey', 'fact', 'quote', 'continue'] as const) {
    const ex = distillExample(r, books, codec, { minContext: 20, maxContext: 40, bos: 1 }, kind);
    assert.equal(ex.kind, kind);
    assert.equal(ex.context[0], 1);
    assert.ok(ex.question.length > 0 && ex.answer.length > 0);
    if (kind === 'passkey' || kind === 'quote') {
      const ctx = [...ex.context].join(',');
      const ans = [...ex.answer].slice(1, -1).join(','); // the digits / the span, without the edges
      assert.ok(ctx.includes(ans), `${kind}: answer not in context`);
    }
  }
});

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function assertSameAdaptor(a: KVDistill, b: KVDistill, label: string): void {
  const pa = a.params(), pb = b.params();
  assert.equal(pa.length, pb.length);
  for (let i = 0; i < pa.length; i++) assert.ok(sameBits(pa[i].data, pb[i].data), `${label}: ${pa[i].name} differs`);
}

test('CountedRng: skipping k draws continues the stream of rng(seed) exactly', () => {
  const ref = rng(5);
  const want = Array.from({ length: 10 }, () => ref());
  const a = new CountedRng(5);
  assert.deepEqual(Array.from({ length: 4 }, () => a.next()), want.slice(0, 4));
  const b = new CountedRng(5, a.draws);
  assert.equal(b.draws, 4);
  assert.deepEqual(Array.from({ length: 6 }, () => b.next()), want.slice(4));
  assert.throws(() => new CountedRng(5, -1), /skip/);
});

test('training resumes bit-exactly: N steps straight == N/2, checkpoint, a fresh adaptor restored from it, on to N', async () => {
  const model = tinyModel(52);
  const V = model.config.vocabSize;
  const books = Int32Array.from({ length: 600 }, (_, i) => 3 + ((i * 11 + (i >> 3)) % (V - 3)));
  const codec = { encode: (t: string) => Array.from(t, (ch) => 3 + (ch.charCodeAt(0) % (V - 3))) };
  const N = 6;
  const opts = { steps: N, batch: 2, clip: 1, lambda: 0.6, minRetain: 0.2, maxRetain: 0.8, schedule: { kind: 'cosine' as const, lr: 5e-3, warmup: 2, steps: N } };
  // one session: the streams replayed to `draws`, steps startStep.. (stopping after stopAt)
  const session = async (kd: KVDistill, opt: AdamW, draws: { data: number; retain: number }, startStep: number, stopAt = N) => {
    const data = new CountedRng(11, draws.data), retain = new CountedRng(12, draws.retain);
    await trainKVDistill(kd, () => distillExample(data.next, books, codec, { minContext: 10, maxContext: 18, bos: 1 }), retain.next,
      { ...opts, startStep, onStep: (r) => (r.step === stopAt ? 'stop' : undefined) }, opt);
    return { data: data.draws, retain: retain.draws };
  };
  const straight = new KVDistill(model, { rank: 2, alpha: 4, seed: 3 });
  const optS = distillOptimizer(straight);
  await session(straight, optS, { data: 0, retain: 0 }, 0);
  assert.ok(straight.adapters.some((a) => a.b.data.some((x) => x !== 0)), 'the adaptor trained');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvdistill-resume-'));
  try {
    const file = path.join(dir, 'checkpoint.safetensors');
    const first = new KVDistill(model, { rank: 2, alpha: 4, seed: 3 });
    const optF = distillOptimizer(first);
    const draws = await session(first, optF, { data: 0, retain: 0 }, 0, N / 2);
    await saveDistillCheckpoint(file, first, optF, { draws }, { step: N / 2, tokens: 0, elapsedMs: 0 });
    const resumed = new KVDistill(model, { rank: 2, alpha: 4, seed: 99 }); // other initial weights: the checkpoint overwrites them
    const optR = distillOptimizer(resumed);
    const meta = await restoreDistillCheckpoint(file, resumed, optR);
    assert.equal(meta.state.step, N / 2);
    assertSameAdaptor(first, resumed, 'restored');
    await session(resumed, optR, meta.run.draws as typeof draws, meta.state.step);
    assertSameAdaptor(straight, resumed, 'resumed');
    assert.equal(optR.t, optS.t);
    for (let i = 0; i < optS.m.length; i++) assert.ok(sameBits(optS.m[i], optR.m[i]) && sameBits(optS.v[i], optR.v[i]), `AdamW moments ${i} differ`);
    const other = new KVDistill(tinyModel(53), { rank: 2, alpha: 4, seed: 3 });
    await assert.rejects(restoreDistillCheckpoint(file, other, distillOptimizer(other)), /frozen weights differ/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The CLI's frozen model and books (train and val splits). */
const cliFixture = (dir: string) => writeModelAndBooks(dir, {
  maxPositions: 64, modelSeed: 61, bookSeed: 4, books: [{ split: 'train', name: 'b1', tokens: 2000 }, { split: 'val', name: 'b2', tokens: 500 }],
});

test('CLI: train kvdistill writes an adaptor that loads, and a log with held-out evaluations', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvdistill-cli-'));
  try {
    const { modelDir, data, model } = await cliFixture(dir);
    const out = path.join(dir, 'out');
    const res = await cli(['train', 'kvdistill', '--model', modelDir, '--data', data, '--out', out, '--steps', '3', '--batch', '2', '--rank', '2',
      '--min-context', '12', '--max-context', '20', '--eval-examples', '2', '--eval-every', '2', '--log-every', '1', '--threads', '1']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /step 3\/3 loss \d/);
    const summary = JSON.parse(res.stdout);
    assert.equal(summary.steps, 3);
    const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(log.filter((x) => x.type === 'val').map((x) => x.step), [0, 2, 3]);
    const kd = await KVDistill.load(path.join(out, 'adaptor.safetensors'), model);
    assert.equal(kd.rank, 2);
    assert.ok(kd.adapters.some((a) => a.b.data.some((x) => x !== 0)), 'the adaptor trained');
    const again = await cli(['train', 'kvdistill', '--model', modelDir, '--data', data, '--out', out, '--steps', '1']);
    assert.equal(again.code, 2); // refuses to overwrite
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: train kvdistill --resume continues to the same adaptor, bit for bit; changed options are refused by name', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvdistill-cli-'));
  try {
    const { modelDir, data, model } = await cliFixture(dir);
    // a constant schedule does not depend on --steps, so 2 steps then 2 more are the 4 straight ones
    const common = ['--model', modelDir, '--data', data, '--batch', '2', '--rank', '2', '--lr', '1e-2', '--schedule', 'constant', '--warmup', '1',
      '--min-context', '12', '--max-context', '20', '--eval-examples', '1', '--log-every', '1', '--threads', '1'];
    const full = path.join(dir, 'full'), part = path.join(dir, 'part');
    const straight = await cli(['train', 'kvdistill', ...common, '--out', full, '--steps', '4']);
    assert.equal(straight.code, 0, straight.stderr);
    assert.match(straight.stderr, /step 4\/4 loss \d.* s\/step {2}ETA 0m00s/);
    assert.equal((await cli(['train', 'kvdistill', ...common, '--out', part, '--steps', '2'])).code, 0);
    const ckpt = path.join(part, 'checkpoint.safetensors');
    const meta = await readCheckpointMeta(ckpt);
    assert.equal(meta.state.step, 2);
    assert.equal(meta.run.kind, 'kvdistill');
    assert.equal((meta.run.flags as Record<string, unknown>)['min-context'], 12);
    const again = await cli(['train', 'kvdistill', ...common, '--out', part, '--steps', '4']);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists; pass --resume/);
    const bad = await cli(['train', 'kvdistill', '--out', part, '--resume', '--steps', '4', '--rank', '4']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--rank 4 differs from the checkpoint's 2 \(.*checkpoint\.safetensors\)/);
    const done = await cli(['train', 'kvdistill', '--out', part, '--resume', '--steps', '2']);
    assert.equal(done.code, 2);
    assert.match(done.stderr, /--steps 2: .* already at step 2/);
    const resumed = await cli(['train', 'kvdistill', '--out', part, '--resume', '--steps', '4', '--threads', '1']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resumed at step 2/);
    assert.equal(JSON.parse(resumed.stdout).step, 4);
    assertSameAdaptor(await KVDistill.load(path.join(full, 'adaptor.safetensors'), model), await KVDistill.load(path.join(part, 'adaptor.safetensors'), model), 'CLI resume');
    const log = fs.readFileSync(path.join(part, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(log.filter((x) => x.type === 'step').map((x) => x.step), [1, 2, 3, 4]);
    assert.deepEqual(log.filter((x) => x.type === 'resume').map((x) => x.step), [2]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: Ctrl-C at step N/2 of train kvdistill writes the adaptor and a checkpoint, exits 130; --resume ends at the straight run\'s adaptor (cosine)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvdistill-cli-'));
  try {
    const { modelDir, data, model } = await cliFixture(dir);
    const common = ['--model', modelDir, '--data', data, '--steps', '4', '--batch', '1', '--rank', '2', '--lr', '1e-2', '--schedule', 'cosine', '--warmup', '1',
      '--min-context', '12', '--max-context', '20', '--eval-examples', '0', '--log-every', '1', '--save-every', '0', '--threads', '1'];
    const full = path.join(dir, 'full'), part = path.join(dir, 'part');
    assert.equal((await cli(['train', 'kvdistill', ...common, '--out', full])).code, 0);
    const stopped = await cli(['train', 'kvdistill', ...common, '--out', part], { interruptAt: /step 2\/4/ });
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /interrupted, writing the adaptor and a checkpoint/);
    assert.doesNotMatch(stopped.stderr, /step 3\/4/);
    const summary = JSON.parse(stopped.stdout);
    assert.equal(summary.stopped, 'interrupted');
    assert.equal(summary.step, 2);
    assert.equal((await readCheckpointMeta(path.join(part, 'checkpoint.safetensors'))).state.step, 2);
    assert.ok(fs.existsSync(path.join(part, 'adaptor.safetensors')));
    const r = await cli(['train', 'kvdistill', '--out', part, '--resume']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).step, 4);
    assertSameAdaptor(await KVDistill.load(path.join(full, 'adaptor.safetensors'), model), await KVDistill.load(path.join(part, 'adaptor.safetensors'), model), 'Ctrl-C and resume');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
