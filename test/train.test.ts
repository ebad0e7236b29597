// The training engine end to end on tiny models: the optimiser, schedules, clipping and
// accumulation; a two-layer model memorises a fixed batch; LoRA trains, stays off the frozen
// weights and merges exactly; checkpoints resume bit-exactly (in process and through the CLI,
// including a Ctrl-C); the CLI writes a model folder the loader reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomModel, rng, tinyConfig } from '../src/model/random.js';
import type { Model } from '../src/model/types.js';
import { loadModel } from '../src/model/loader.js';
import { concatDocuments, writeTokenDataset } from '../src/data/tokens.js';
import { AdamW, adamwUpdate } from '../src/train/adamw.js';
import { type Batcher, evenWindows, MixedWindowBatcher } from '../src/train/batcher.js';
import { readCheckpointMeta, restoreCheckpoint, type TrainState } from '../src/train/checkpoint.js';
import { initModel } from '../src/train/init.js';
import { mergeLora } from '../src/train/lora.js';
import { evaluate, trainLoop } from '../src/train/loop.js';
import { TrainableModel } from '../src/train/model.js';
import { clipFactor, gradNorm, type Param } from '../src/train/params.js';
import { learningRate } from '../src/train/schedule.js';
import { cli, FixedBatcher, learnableTokens, loopOpts, quiet, randomWindows, tmpDir } from './util.js';

const tmp = () => tmpDir('freqkv-train-');

/** A different pseudo-random batch per (step, micro), like the real batcher. */
class SeededBatcher implements Batcher {
  constructor(readonly batch: number, readonly seqLen: number, private readonly vocab: number) {}
  fill(out: Int32Array, step: number, micro: number): void {
    const r = rng(1000 * step + micro + 1);
    for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * this.vocab);
  }
}

test('AdamW: one update by the formula; decay on matrices only', () => {
  const mat: Param = { name: 'w', shape: [1, 2], data: Float32Array.from([1, -2]), grad: Float32Array.from([0.5, -0.25]), decay: true };
  const norm: Param = { name: 'n', shape: [2], data: Float32Array.from([1, -2]), grad: Float32Array.from([0.5, -0.25]), decay: false };
  const opt = new AdamW([mat, norm], { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.5 });
  opt.step(0.1);
  // first step: m̂ = g, v̂ = g², so the Adam part is lr·sign(g) (up to eps)
  const expect = (w: number, g: number, wd: number) => Math.fround(w * (1 - 0.1 * wd) - 0.1 * Math.sign(g));
  assert.ok(Math.abs(mat.data[0] - expect(1, 0.5, 0.5)) < 1e-6 && Math.abs(mat.data[1] - expect(-2, -0.25, 0.5)) < 1e-6);
  assert.ok(Math.abs(norm.data[0] - expect(1, 0.5, 0)) < 1e-6 && Math.abs(norm.data[1] - expect(-2, -0.25, 0)) < 1e-6);
  assert.equal(opt.t, 1);
  // second step against the update written out
  const w = Float32Array.from([2]), m = Float32Array.from([0.1]), v = Float32Array.from([0.01]);
  adamwUpdate(w, Float32Array.from([0.3]), 1, m, v, 0.01, 0.9, 0.99, 1e-8, 0.1, 1 / (1 - 0.81), 1 / (1 - 0.9801));
  const mm = 0.9 * 0.1 + 0.1 * 0.3, vv = 0.99 * 0.01 + 0.01 * 0.09;
  const ref = 2 * (1 - 0.001) - (0.01 * mm / (1 - 0.81)) / (Math.sqrt(vv / (1 - 0.9801)) + 1e-8);
  assert.ok(Math.abs(w[0] - ref) < 1e-6, `${w[0]} vs ${ref}`);
  assert.throws(() => new AdamW([{ ...mat, grad: null }]), /frozen/);
});

test('schedules: linear warm-up, constant, cosine down to the floor', () => {
  const s = { kind: 'cosine' as const, lr: 1, warmup: 4, steps: 14, minRatio: 0.1 };
  assert.deepEqual([0, 1, 2, 3].map((i) => learningRate(s, i)), [0.25, 0.5, 0.75, 1]);
  assert.equal(learningRate(s, 4), 1);
  assert.ok(Math.abs(learningRate(s, 13) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(s, 8.5) - 0.55) < 1e-12); // half way: mean of peak and floor
  assert.equal(learningRate({ ...s, kind: 'constant' }, 13), 1);
});

test('global-norm clipping: the optimiser sees every gradient scaled by min(1, max/norm)', () => {
  const a: Param = { name: 'a', shape: [2], data: new Float32Array(2), grad: Float32Array.from([3, 0]), decay: false };
  const b: Param = { name: 'b', shape: [1], data: new Float32Array(1), grad: Float32Array.from([4]), decay: false };
  assert.equal(gradNorm([a, b]), 5);
  assert.equal(clipFactor(5, 10), 1);
  assert.equal(clipFactor(5, 0), 1);
  assert.ok(Math.abs(clipFactor(5, 1) - 0.2) < 1e-6);
  // AdamW with clipped gradients = AdamW on gradients scaled by hand
  const x = { ...a, data: new Float32Array(2), grad: Float32Array.from([0.6, 0]) };
  const y = { ...b, data: new Float32Array(1), grad: Float32Array.from([0.8]) };
  const o1 = new AdamW([a, b], { beta1: 0.9, beta2: 0.99, eps: 1e-3, weightDecay: 0 });
  const o2 = new AdamW([x, y], { beta1: 0.9, beta2: 0.99, eps: 1e-3, weightDecay: 0 });
  o1.step(0.1, clipFactor(5, 1));
  o2.step(0.1);
  for (const [u, w] of [[a.data, x.data], [b.data, y.data], [o1.v[1], o2.v[1]]]) {
    for (let i = 0; i < u.length; i++) assert.ok(Math.abs(u[i] - w[i]) <= 1e-6 * Math.abs(w[i]), `${u[i]} vs ${w[i]}`);
  }
  assert.ok(a.data[0] !== 0 && b.data[0] !== 0);
});

test('gradient accumulation: two micro-batches of B equal one batch of 2B', () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24 });
  const T = 6;
  const win = randomWindows(c, 4, T, 7);
  const big = new TrainableModel(randomModel(c, 2), { batch: 4, seqLen: T });
  const small = new TrainableModel(randomModel(c, 2), { batch: 2, seqLen: T });
  const lossBig = big.forwardBackward(win);
  const half = 2 * (T + 1);
  const lossSmall = small.forwardBackward(win.subarray(0, half), 0.5) / 2 + small.forwardBackward(win.subarray(half), 0.5) / 2;
  assert.ok(Math.abs(lossBig - lossSmall) < 1e-5);
  for (let i = 0; i < big.params.length; i++) {
    const g1 = big.params[i].grad!, g2 = small.params[i].grad!;
    for (let j = 0; j < g1.length; j++) assert.ok(Math.abs(g1[j] - g2[j]) < 1e-5 + 1e-3 * Math.abs(g1[j]), `${big.params[i].name}[${j}]: ${g1[j]} vs ${g2[j]}`);
  }
});

test('a two-layer toy model memorises a fixed batch (loss falls)', async () => {
  const c = tinyConfig({ vocabSize: 48, hiddenSize: 32, intermediateSize: 64, nLayers: 2 });
  const B = 4, T = 16;
  const win = randomWindows(c, B, T, 11);
  const tm = new TrainableModel(initModel(c, 3), { batch: B, seqLen: T });
  const before = tm.loss(win);
  const opt = new AdamW(tm.trainable(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
  const state: TrainState = { step: 0, tokens: 0, elapsedMs: 0 };
  const r = await trainLoop(tm, new FixedBatcher(B, T, win), opt, state, loopOpts(60), quiet);
  const after = tm.loss(win);
  assert.ok(Math.abs(before - Math.log(c.vocabSize)) < 0.1, `initial loss ${before} should be near log(vocab)`);
  assert.ok(after < 0.25 * before, `loss ${before} -> ${after}`);
  assert.equal(r.state.step, 60);
  assert.equal(r.state.tokens, 60 * B * T);
});

test('LoRA: starts at the base model, trains only adapters (+groups), merges into the same function', async () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24 });
  const base = randomModel(c, 8);
  const frozenBefore = Float32Array.from(base.weights.layers[0].wq);
  const B = 2, T = 8;
  const win = randomWindows(c, B, T, 3);
  const plain = new TrainableModel(base, { batch: B, seqLen: T });
  const baseLoss = plain.loss(win);
  const tm = new TrainableModel(base, { batch: B, seqLen: T, train: ['norm'], lora: { rank: 2, alpha: 4, targets: ['q', 'v', 'down'] }, loraSeed: 5 });
  assert.equal(tm.loss(win), baseLoss, 'B = 0: the adapted model is the base model');
  const normBefore = Float32Array.from(base.weights.norm);
  const opt = new AdamW(tm.trainable(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
  await trainLoop(tm, new FixedBatcher(B, T, win), opt, { step: 0, tokens: 0, elapsedMs: 0 }, loopOpts(20), quiet);
  const trained = tm.loss(win);
  assert.ok(trained < baseLoss - 0.1, `LoRA training: ${baseLoss} -> ${trained}`);
  assert.deepEqual(base.weights.layers[0].wq, frozenBefore, 'frozen weight changed');
  assert.notDeepEqual(base.weights.norm, normBefore, 'a trainable norm did not change');
  const merged: Model = mergeLora(base, tm.lora);
  assert.deepEqual(base.weights.layers[0].wq, frozenBefore, 'merging must not modify the base');
  const mergedLoss = new TrainableModel(merged, { batch: B, seqLen: T }).loss(win);
  assert.ok(Math.abs(mergedLoss - trained) < 1e-4, `merged ${mergedLoss} vs adapted ${trained}`);
  assert.equal(merged.weights.layers[0].wk, base.weights.layers[0].wk, 'untargeted weights are shared, not copied');
});

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function resumeCase(label: string, build: () => TrainableModel, accum: number) {
  const dir = tmp();
  const file = path.join(dir, 'ckpt.safetensors');
  const mk = (tm: TrainableModel) => new AdamW(tm.trainable(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const opts = (steps: number) => loopOpts(steps, { accum, schedule: { kind: 'cosine', lr: 3e-3, warmup: 2, steps: 10 } });
  const io = { ...quiet, checkpointFile: file, checkpointMeta: () => ({ config: { label }, run: { label } }) };
  // run A: 3 steps (checkpoint), then 1 more
  const a = build();
  const batcherA = new SeededBatcher(a.batch, a.seqLen, a.config.vocabSize);
  const optA = mk(a);
  const stA: TrainState = { step: 0, tokens: 0, elapsedMs: 0 };
  await trainLoop(a, batcherA, optA, stA, opts(3), io);
  await trainLoop(a, batcherA, optA, stA, opts(4), { ...io, checkpointFile: null });
  // run B: fresh process state, restore step 3, 1 step
  const b = build();
  for (const p of b.trainable()) p.data.fill(0.5); // whatever was there is overwritten by the checkpoint
  const optB = mk(b);
  const meta = await restoreCheckpoint(file, b.params, optB);
  assert.equal(meta.state.step, 3);
  assert.deepEqual(meta.run, { label });
  const stB: TrainState = { ...meta.state };
  await trainLoop(b, new SeededBatcher(b.batch, b.seqLen, b.config.vocabSize), optB, stB, opts(4), { ...io, checkpointFile: null });
  assert.equal(stB.step, 4);
  assert.equal(optB.t, optA.t);
  for (let i = 0; i < a.params.length; i++) {
    assert.ok(sameBits(a.params[i].data, b.params[i].data), `${label}: ${a.params[i].name} differs after resuming`);
  }
  for (let i = 0; i < optA.m.length; i++) assert.ok(sameBits(optA.m[i], optB.m[i]) && sameBits(optA.v[i], optB.v[i]), `${label}: moments ${i} differ`);
  fs.rmSync(dir, { recursive: true, force: true });
}

test('resume: k steps, checkpoint, 1 step == restore, 1 step, bit for bit (pretraining)', async () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24, tieWordEmbeddings: true });
  await resumeCase('pretrain', () => new TrainableModel(initModel(c, 1), { batch: 2, seqLen: 6 }), 2);
});

test('resume: LoRA fine-tune with trainable embeddings; a different base is refused', async () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24 });
  const build = () => new TrainableModel(randomModel(c, 4), { batch: 2, seqLen: 6, train: ['embed'], lora: { rank: 2, alpha: 4, targets: ['q', 'up'] }, loraSeed: 2 });
  await resumeCase('lora', build, 1);
  const dir = tmp();
  const file = path.join(dir, 'c.safetensors');
  const tm = build();
  const opt = new AdamW(tm.trainable());
  await trainLoop(tm, new SeededBatcher(2, 6, 32), opt, { step: 0, tokens: 0, elapsedMs: 0 }, loopOpts(1), { ...quiet, checkpointFile: file });
  const other = new TrainableModel(randomModel(c, 5), { batch: 2, seqLen: 6, train: ['embed'], lora: { rank: 2, alpha: 4, targets: ['q', 'up'] } });
  await assert.rejects(restoreCheckpoint(file, other.params, new AdamW(other.trainable())), /frozen weights differ/);
  const noLora = new TrainableModel(randomModel(c, 4), { batch: 2, seqLen: 6, train: ['embed'] });
  await assert.rejects(restoreCheckpoint(file, noLora.params, new AdamW(noLora.trainable())), /trainable parameters differ/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('batcher: windows are a pure function of (seed, step, micro); the synthetic share is honoured', () => {
  const books = concatDocuments('train', [{ name: 'a', tokens: Array.from({ length: 500 }, (_, i) => 10 + (i % 50)), chars: 1000 }], 64);
  const synthetic = concatDocuments('synthetic', Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, tokens: [1, 2, 3, 4, 5, 6, 7, 8], chars: 8 })), 64);
  const bt = new MixedWindowBatcher(books, synthetic, 0.5, 16, 7, 42);
  const x = new Int32Array(16 * 8), y = new Int32Array(16 * 8), z = new Int32Array(16 * 8);
  bt.fill(x, 5, 0);
  bt.fill(y, 5, 0);
  bt.fill(z, 5, 1);
  assert.deepEqual(x, y);
  assert.notDeepEqual(x, z);
  let synth = 0;
  for (let s = 0; s < 20; s++) {
    bt.fill(x, s, 0);
    for (let b = 0; b < 16; b++) if (x[b * 8] === 1) synth++;
  }
  assert.ok(synth > 100 && synth < 220, `synthetic windows ${synth} of 320`);
  const ev = evenWindows(books.tokens, 4, 7);
  assert.equal(ev.length, 32);
  assert.equal(ev[0], books.tokens[0]);
  assert.equal(ev[31], books.tokens[499]);
});

test('evaluate: mean over windows equals the mean of per-batch losses', () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24 });
  const tm = new TrainableModel(randomModel(c, 1), { batch: 2, seqLen: 5 });
  const win = randomWindows(c, 4, 5, 9);
  const l1 = tm.loss(win.subarray(0, 12)), l2 = tm.loss(win.subarray(12));
  assert.ok(Math.abs(evaluate(tm, win) - (l1 + l2) / 2) < 1e-9);
  assert.throws(() => evaluate(tm, win.subarray(0, 18)), /multiple of 2 windows/);
});

// ---------- the CLI ----------

async function writeDataset(dir: string): Promise<void> {
  const r = rng(3);
  const train = concatDocuments('train', [{ name: 'b1', tokens: [0, ...learnableTokens(r, 3000)], chars: 9000 }], 64);
  const val = concatDocuments('val', [{ name: 'b2', tokens: [0, ...learnableTokens(r, 600)], chars: 1800 }], 64);
  const synthetic = concatDocuments('synthetic', Array.from({ length: 30 }, (_, i) => ({ name: `s${i}`, tokens: [0, 1, 2, 5 + (i % 9), 1, 2, 5 + (i % 9)], chars: 20 })), 64);
  await writeTokenDataset(dir, [train, val, synthetic], 64, 0, { synthetic: { split: 'synthetic', share: 0.1 } });
}

test('CLI: pretrain writes a loadable model, a log and a checkpoint; --resume continues to the same weights', async () => {
  const dir = tmp();
  const data = path.join(dir, 'data');
  await writeDataset(data);
  const common = ['--data', data, '--config', 'tiny', '--batch', '2', '--seq-len', '16', '--lr', '3e-3', '--warmup', '2', '--schedule', 'constant', '--eval-every', '3', '--eval-windows', '2', '--log-every', '2'];
  // straight through: 6 steps
  const full = await cli(['train', 'pretrain', ...common, '--out', path.join(dir, 'full'), '--steps', '6']);
  assert.equal(full.code, 0, full.stderr);
  const summary = JSON.parse(full.stdout);
  assert.equal(summary.step, 6);
  assert.ok(Number.isFinite(summary.valLoss));
  assert.match(full.stderr, /step 6\/6 {2}loss \d/);
  assert.match(full.stderr, /tok\/s {2}ETA/);
  const log = fs.readFileSync(path.join(dir, 'full', 'train', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(log.filter((r) => r.type === 'val').map((r) => r.step), [3, 6]);
  assert.ok(log.some((r) => r.type === 'step' && r.step === 6 && r.loss > 0));
  // 4 steps, then --resume to 6 (a constant schedule does not depend on --steps)
  const part = path.join(dir, 'part');
  assert.equal((await cli(['train', 'pretrain', ...common, '--out', part, '--steps', '4'])).code, 0);
  assert.equal((await readCheckpointMeta(path.join(part, 'train', 'checkpoint.safetensors'))).state.step, 4);
  const again = await cli(['train', 'pretrain', ...common, '--out', part, '--steps', '4']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists; pass --resume/);
  const bad = await cli(['train', 'pretrain', '--out', part, '--resume', '--lr', '1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--lr 1 differs from the checkpoint's 0.003/);
  const resumed = await cli(['train', 'pretrain', '--out', part, '--resume', '--steps', '6']);
  assert.equal(resumed.code, 0, resumed.stderr);
  const m1 = await loadModel(path.join(dir, 'full'));
  const m2 = await loadModel(part);
  assert.equal(m1.config.vocabSize, 64);
  assert.ok(m1.config.tieWordEmbeddings);
  assert.ok(sameBits(m1.weights.embed, m2.weights.embed) && sameBits(m1.weights.layers[1].wDown, m2.weights.layers[1].wDown), 'resumed run differs');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('CLI: LoRA fine-tune exports a merged model of the base architecture', async () => {
  const dir = tmp();
  const data = path.join(dir, 'data');
  await writeDataset(data);
  const base = path.join(dir, 'base');
  assert.equal((await cli(['train', 'pretrain', '--data', data, '--out', base, '--steps', '2', '--batch', '2', '--seq-len', '16', '--eval-every', '0'])).code, 0);
  const out = path.join(dir, 'ft');
  const r = await cli(['train', 'finetune', '--model', base, '--data', data, '--out', out, '--steps', '3', '--batch', '2', '--seq-len', '32',
    '--lora-rank', '4', '--train', 'embed,norm', '--lr', '1e-2', '--eval-every', '0', '--synthetic-share', '0']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.ok(s.trainable < s.parameters);
  const ft = await loadModel(out);
  const b = await loadModel(base);
  assert.deepEqual(ft.config.hiddenSize, b.config.hiddenSize);
  assert.notDeepEqual(ft.weights.layers[0].wq, b.weights.layers[0].wq, 'LoRA on q was not merged');
  assert.deepEqual(ft.weights.layers[0].wGate, b.weights.layers[0].wGate, 'gate had no adapter and is frozen');
  const none = await cli(['train', 'finetune', '--model', base, '--data', data, '--out', path.join(dir, 'x'), '--train', 'none']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /nothing to train/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('CLI: Ctrl-C writes a checkpoint and the model, exits 130, and --resume finishes the run', async () => {
  const dir = tmp();
  const data = path.join(dir, 'data');
  await writeDataset(data);
  const out = path.join(dir, 'run');
  const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'freqkv.js');
  const child = spawn(process.execPath, [bin, 'train', 'pretrain', '--data', data, '--out', out, '--steps', '100000', '--batch', '2', '--seq-len', '16',
    '--log-every', '1', '--eval-every', '0', '--save-every', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (b) => (stdout += b));
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.on('data', (b) => {
      stderr += b;
      if (/step 3\//.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    child.on('exit', (c) => resolve(c));
  });
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted, writing a checkpoint/);
  const meta = await readCheckpointMeta(path.join(out, 'train', 'checkpoint.safetensors'));
  assert.ok(meta.state.step >= 3);
  assert.equal(JSON.parse(stdout).stopped, 'interrupted');
  assert.ok(fs.existsSync(path.join(out, 'model.safetensors')));
  const r = await cli(['train', 'pretrain', '--out', out, '--resume', '--steps', String(meta.state.step + 1)]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).step, meta.state.step + 1);
  fs.rmSync(dir, { recursive: true, force: true });
});
