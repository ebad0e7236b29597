// FreqKV as a training attention (shared/spec/FREQKV.md section 3): equal to plain causal
// attention within the window; beyond it, the grouped forward equals token-by-token decoding
// through the inference cache (FreqKVCache) for the method and its ablations; finite-difference
// gradients through several compressions; a tiny model trains with it; the CLI methods
// (freqkv, and longlora's rope_scaling in the exported config).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getBackend } from '../src/kernels/index.js';
import { randomModel, rng, tinyConfig } from '../src/model/random.js';
import { ropeInvFreq } from '../src/model/rope.js';
import { configToJson } from '../src/model/config.js';
import { FreqKVCache, type FreqRope } from '../src/cache/freqkv.js';
import type { FreqKeep, FreqMethod, FreqScaling } from '../src/dsp/freqkv-op.js';
import { CausalAttention } from '../src/train/attention.js';
import { FreqKVAttention, freqkvAttention, freqkvGroups } from '../src/train/freqkv-attention.js';
import { TrainableModel } from '../src/train/model.js';
import { AdamW } from '../src/train/adamw.js';
import { trainLoop } from '../src/train/loop.js';
import { FINETUNE_METHODS } from '../src/cli/train.js';
import { saveModel } from '../src/model/writer.js';
import { loadModel } from '../src/model/loader.js';
import { concatDocuments, writeTokenDataset } from '../src/data/tokens.js';
import { checkGrad, cli, dot64, FixedBatcher, learnableTokens, loopOpts, oneLayerDims as dims, quiet, randomSource, randomWindows, tmpDir } from './util.js';

const be = getBackend();
const rnd = randomSource(4242);
const invFreq = Float32Array.from([1, 0.1]); // hd = 4
/** The finite-difference tolerance of this file: atol 5e-4 (grad.test.ts keeps checkGrad's default, 2e-4). */
const GRAD_TOL = { atol: 5e-4 };

interface Variant { keep?: FreqKeep; scaling?: FreqScaling; rope?: FreqRope; method?: FreqMethod }

/** out = attention(q, k, v) through a SequenceAttention (q, k are copied: forward rotates them in place). */
function run(attn: { forward: FreqKVAttention['forward'] }, q: Float32Array, k: Float32Array, v: Float32Array, qDim: number, T: number): Float32Array {
  const out = new Float32Array(T * qDim);
  attn.forward(0, 0, q.slice(), k.slice(), v, out);
  return out;
}

/** The inference path: each token through FreqKVCache (begin / append / end), its query at the slot begin() gives, then the attention kernel. */
function decode(q: Float32Array, k: Float32Array, v: Float32Array, T: number, nHeads: number, nKVHeads: number, hd: number, N: number, S: number, gamma: number, o: Variant): Float32Array {
  const cache = new FreqKVCache({ nLayers: 1, nKVHeads, headDim: hd, invFreq }, { cacheSize: N, sinks: S, retain: gamma, ...o, method: 'fft', backend: be });
  const qDim = nHeads * hd, D = nKVHeads * hd;
  const out = new Float32Array(T * qDim);
  for (let t = 0; t < T; t++) {
    const pos = cache.begin(1);
    const qr = q.slice(t * qDim, (t + 1) * qDim);
    be.rope(qr, 1, nHeads, hd, pos, invFreq, false);
    const view = cache.append(0, k.subarray(t * D, (t + 1) * D), v.subarray(t * D, (t + 1) * D));
    be.attention(out.subarray(t * qDim, (t + 1) * qDim), qr, view.k, view.v, { nQ: 1, nKV: view.n, nHeads, nKVHeads, headDim: hd, scale: 1 / Math.sqrt(hd), causal: true });
    cache.attended(0, view);
    cache.end();
  }
  return out;
}

function assertClose(a: Float32Array, b: Float32Array, rel: number, what: string): void {
  assert.equal(a.length, b.length, what);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= rel * scale, `${what}[${i}]: ${a[i]} vs ${b[i]} (max |ref| ${scale})`);
}

test('the schedule: group 0 fills the window, then groups of N - S - L at slots S + L..', () => {
  // N = 16, S = 2, gamma = 0.5: L = 7, groups of 7 after the first 16 tokens
  assert.deepEqual(freqkvGroups(50, 16, 2, 7), [
    { start: 0, len: 16, slot0: 0, kv: 16 }, { start: 16, len: 7, slot0: 9, kv: 16 }, { start: 23, len: 7, slot0: 9, kv: 16 },
    { start: 30, len: 7, slot0: 9, kv: 16 }, { start: 37, len: 7, slot0: 9, kv: 16 }, { start: 44, len: 6, slot0: 9, kv: 15 },
  ]);
  assert.deepEqual(freqkvGroups(10, 16, 2, 7), [{ start: 0, len: 10, slot0: 0, kv: 10 }]);
  assert.throws(() => freqkvAttention({ cacheSize: 16, retain: 1 }), /retain must be a number in \(0, 1\)/);
  assert.throws(() => freqkvAttention({ cacheSize: 16, scaling: 'energy' }), /energy is data dependent/);
  assert.throws(() => freqkvAttention({ cacheSize: 4, sinks: 3 }), /block of L = 0 rows/);
});

test('T <= N: forward and backward are exactly CausalAttention', () => {
  for (const T of [16, 11]) {
    const nHeads = 4, nKVHeads = 2, hd = 4, qDim = nHeads * hd, kvDim = nKVHeads * hd;
    const q = rnd(T * qDim), k = rnd(T * kvDim), v = rnd(T * kvDim), w = rnd(T * qDim);
    const fk = new FreqKVAttention(dims(T, nHeads, nKVHeads), invFreq, be, { cacheSize: 16, sinks: 2 });
    const ca = new CausalAttention(dims(T, nHeads, nKVHeads), invFreq, be);
    assert.equal(fk.compressions, 0);
    assert.deepEqual(run(fk, q, k, v, qDim, T), run(ca, q, k, v, qDim, T), `T = ${T}: forward`);
    const grads = (a: { backward: CausalAttention['backward'] }) => {
      const dq = new Float32Array(T * qDim).fill(NaN), dk = new Float32Array(T * kvDim).fill(NaN), dv = new Float32Array(T * kvDim).fill(NaN);
      a.backward(0, 0, w, dq, dk, dv); // written, not added: the NaNs must go
      return [dq, dk, dv];
    };
    const [a, b] = [grads(fk), grads(ca)];
    for (let i = 0; i < 3; i++) assert.deepEqual(a[i], b[i], `T = ${T}: gradient ${'qkv'[i]}`);
  }
});

test('T = 50 > N = 16 (5 compressions): the grouped forward equals token-by-token decoding through FreqKVCache', () => {
  const N = 16, S = 2, gamma = 0.5, T = 50, hd = 4;
  const variants: Variant[] = [
    {}, { method: 'dense' }, { method: 'fft' }, { rope: 'post' }, { keep: 'high' }, { scaling: 'none' }, { rope: 'post', keep: 'high', method: 'dense' },
  ];
  for (const [nHeads, nKVHeads] of [[2, 1], [4, 2]]) {
    const qDim = nHeads * hd, kvDim = nKVHeads * hd;
    const q = rnd(T * qDim), k = rnd(T * kvDim), v = rnd(T * kvDim);
    for (const o of variants) {
      const fk = new FreqKVAttention(dims(T, nHeads, nKVHeads), invFreq, be, { cacheSize: N, sinks: S, retain: gamma, ...o });
      assert.equal(fk.compressions, 5);
      const got = run(fk, q, k, v, qDim, T);
      const want = decode(q, k, v, T, nHeads, nKVHeads, hd, N, S, gamma, o);
      assertClose(got, want, 1e-5, `${nHeads}/${nKVHeads} heads ${JSON.stringify(o)}`);
    }
  }
  // the variants do differ beyond the window (the comparison above is not vacuous)
  const q = rnd(T * 8), k = rnd(T * 4), v = rnd(T * 4);
  const outs = [{}, { rope: 'post' as const }, { keep: 'high' as const }].map((o) => run(new FreqKVAttention(dims(T, 2, 1), invFreq, be, { cacheSize: N, sinks: S, ...o }), q, k, v, 8, T));
  const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
  assert.ok(diff(outs[0], outs[1]) > 1e-3 && diff(outs[0], outs[2]) > 1e-3);
  assert.ok(diff(outs[0].subarray(0, N * 8), outs[1].subarray(0, N * 8)) === 0, 'within the first window the variants agree');
});

test('gradients through 4 compressions match finite differences (method, rope post, keep high, the DCT route)', () => {
  // N = 8, S = 2, gamma = 0.5: L = 3, groups of 3; T = 18 gives groups 8, 3, 3, 3, 1
  const N = 8, S = 2, T = 18, nHeads = 2, nKVHeads = 1, hd = 4, qDim = nHeads * hd, kvDim = nKVHeads * hd;
  for (const o of [{ method: 'dense' }, { method: 'fft' }, { rope: 'post', method: 'dense' }, { keep: 'high', method: 'fft' }] as Variant[]) {
    const attn = new FreqKVAttention(dims(T, nHeads, nKVHeads), invFreq, be, { cacheSize: N, sinks: S, ...o });
    assert.equal(attn.compressions, 4);
    const q = rnd(T * qDim), k = rnd(T * kvDim), v = rnd(T * kvDim), R = rnd(T * qDim);
    const out = new Float32Array(T * qDim);
    const f = () => (attn.forward(0, 0, q.slice(), k.slice(), v, out), dot64(out, R));
    f();
    const dq = new Float32Array(T * qDim), dk = new Float32Array(T * kvDim), dv = new Float32Array(T * kvDim);
    attn.backward(0, 0, R, dq, dk, dv);
    const what = JSON.stringify(o);
    checkGrad(`${what} dq`, q, dq, f, GRAD_TOL);
    checkGrad(`${what} dk`, k, dk, f, GRAD_TOL);
    checkGrad(`${what} dv`, v, dv, f, GRAD_TOL);
    // the first tokens (sinks and the first compressed span) reach the last group only through the compressions
    assert.ok(dk.subarray(S * kvDim, N * kvDim).some((x) => x !== 0));
  }
});

test('a tiny model fine-tunes with --method freqkv at T = 3N: finite loss that falls; model gradient matches finite differences', async () => {
  const N = 8, T = 3 * N, B = 2;
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2, maxPositionEmbeddings: N });
  const attention = FINETUNE_METHODS.freqkv.attention(c, { sinks: 2, retain: 0.5 }); // --cache-size defaults to the context window
  const win = randomWindows(c, B, T, 9);
  const tm = new TrainableModel(randomModel(c, 5), { batch: B, seqLen: T, attention });
  // directional derivative of the loss along a random direction of one projection, through the attention's backward
  const p = tm.params.find((x) => x.name === 'model.layers.0.self_attn.k_proj.weight')!;
  for (const q of tm.params) q.grad?.fill(0);
  const before = tm.forwardBackward(win);
  assert.ok(Number.isFinite(before));
  const dir = rnd(p.data.length);
  const analytic = dot64(p.grad!, dir);
  const w0 = Float32Array.from(p.data);
  const at = (eps: number) => {
    for (let i = 0; i < w0.length; i++) p.data[i] = w0[i] + eps * dir[i];
    return tm.loss(win);
  };
  const eps = 1e-2;
  const fd = (at(eps) - at(-eps)) / (2 * eps);
  p.data.set(w0);
  assert.ok(Math.abs(fd - analytic) <= 2e-3 * Math.abs(analytic) + 1e-4, `k_proj directional derivative: finite difference ${fd}, analytic ${analytic}`);
  for (const q of tm.params) q.grad?.fill(0);

  const opt = new AdamW(tm.trainable(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
  await trainLoop(tm, new FixedBatcher(B, T, win), opt, { step: 0, tokens: 0, elapsedMs: 0 }, loopOpts(20), quiet);
  const after = tm.loss(win);
  assert.ok(Number.isFinite(after) && after < before - 0.3, `loss ${before} -> ${after}`);
});

test('--method longlora: linear rope_scaling T/N on the config (invFreq and the exported config.json carry it); freqkv flags are checked', () => {
  const c = tinyConfig({ maxPositionEmbeddings: 16 });
  const base = ropeInvFreq(c);
  FINETUNE_METHODS.longlora.attention(c, { 'seq-len': 64 });
  assert.deepEqual(c.ropeScaling, { type: 'linear', factor: 4 });
  const scaled = ropeInvFreq(c);
  for (let i = 0; i < base.length; i++) assert.ok(Math.abs(scaled[i] - base[i] / 4) <= 1e-7 * base[i]);
  const json = configToJson(c) as { rope_scaling: unknown; max_position_embeddings: number };
  assert.deepEqual(json.rope_scaling, { rope_type: 'linear', factor: 4 });
  assert.equal(json.max_position_embeddings, 16);
  const within = tinyConfig({ maxPositionEmbeddings: 16 });
  FINETUNE_METHODS.longlora.attention(within, {});
  assert.equal(within.ropeScaling, null, 'T <= N: nothing to interpolate');
  assert.throws(() => FINETUNE_METHODS.freqkv.attention(tinyConfig(), { 'cache-size': 8, sinks: 8, retain: 0.5 }), /sinks must be an integer in \[0, cache size - 1 = 7\]/);
});

test('CLI: finetune --method freqkv and --method longlora at T > N; the longlora export carries rope_scaling', async () => {
  const dir = tmpDir('freqkv-ft-');
  const r = rng(8);
  const tokens = [0, ...learnableTokens(r, 1500)];
  const data = path.join(dir, 'data');
  await writeTokenDataset(data, [concatDocuments('train', [{ name: 'b', tokens, chars: 4000 }], 64)], 64, 0);
  const base = path.join(dir, 'base');
  await saveModel(base, randomModel(tinyConfig({ vocabSize: 64, hiddenSize: 16, intermediateSize: 24, maxPositionEmbeddings: 16 }), 3));
  const common = ['train', 'finetune', '--model', base, '--data', data, '--steps', '2', '--batch', '1', '--seq-len', '40', '--lr', '1e-3', '--eval-every', '0', '--synthetic-share', '0'];
  const fk = await cli([...common, '--out', path.join(dir, 'fk'), '--method', 'freqkv', '--sinks', '2']);
  assert.equal(fk.code, 0, fk.stderr);
  assert.ok(Number.isFinite(JSON.parse(fk.stdout).loss));
  assert.equal((await loadModel(path.join(dir, 'fk'))).config.ropeScaling, null);
  const ll = await cli([...common, '--out', path.join(dir, 'll'), '--method', 'longlora']);
  assert.equal(ll.code, 0, ll.stderr);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'll', 'config.json'), 'utf8'));
  assert.deepEqual(cfg.rope_scaling, { rope_type: 'linear', factor: 2.5 });
  assert.deepEqual((await loadModel(path.join(dir, 'll'))).config.ropeScaling, { type: 'linear', factor: 2.5 });
  const bad = await cli([...common, '--out', path.join(dir, 'bad'), '--method', 'freqkv', '--cache-size', '8', '--sinks', '8']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /sinks must be an integer in \[0, cache size - 1 = 7\]/);
  fs.rmSync(dir, { recursive: true, force: true });
});
