// Every backward of the training engine against central finite differences, in float32 with
// tolerances sized for it: each op on its own (objective Σ w·y with a fixed random w, summed
// in float64), then the whole model's gradient along random directions per parameter tensor
// on tiny configurations (GQA, tied + Qwen2 biases, LoRA). Also: the training forward gives the
// same loss as the inference forward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getBackend } from '../src/kernels/index.js';
import { randomModel, tinyConfig } from '../src/model/random.js';
import { ropeInvFreq } from '../src/model/rope.js';
import type { Model } from '../src/model/types.js';
import { forwardNll } from '../src/model/forward.js';
import { createCache } from '../src/cache/factory.js';
import {
  softmaxCrossEntropy, embeddingBackward, embeddingForward, gatherHeads, rmsnormBackward, rmsnormForward,
  scatterHeads, swigluBackward, swigluForward,
} from '../src/train/ops.js';
import { CausalAttention, headAttentionBackward, headAttentionForward } from '../src/train/attention.js';
import { Linear, TrainableModel } from '../src/train/model.js';
import type { Param } from '../src/train/params.js';
import type { LoraAdapter } from '../src/train/lora.js';
import { checkGrad, dot64, oneLayerDims, randomSource, randomWindows } from './util.js';

const be = getBackend();
const rnd = randomSource(12345);

test('embedding backward scatters into the rows of the used tokens', () => {
  const V = 5, d = 4, n = 6;
  const embed = rnd(V * d);
  const tokens = Int32Array.from([3, 1, 3, 0, 4, 3]);
  const w = rnd(n * d);
  const y = new Float32Array(n * d);
  const f = () => (embeddingForward(y, embed, tokens, 0, n, d, V), dot64(y, w));
  const g = new Float32Array(V * d);
  embeddingBackward(g, w, tokens, 0, n, d);
  checkGrad('dEmbed', embed, g, f);
  assert.throws(() => embeddingForward(y, embed, Int32Array.from([9]), 0, 1, d, V), /token 9 .* outside the vocabulary/);
});

test('rmsnorm backward (input and weight)', () => {
  const rows = 3, d = 8;
  const x = rnd(rows * d, 2), wt = rnd(d, 1.5), w = rnd(rows * d);
  const y = new Float32Array(rows * d), rstd = new Float32Array(rows);
  const f = () => (rmsnormForward(y, rstd, x, wt, rows, d, 1e-5), dot64(y, w));
  f();
  const dx = new Float32Array(rows * d), dw = new Float32Array(d);
  rmsnormBackward(dx, dw, w, x, wt, rstd, rows, d);
  checkGrad('rmsnorm dx', x, dx, f);
  checkGrad('rmsnorm dw', wt, dw, f);
});

function param(name: string, data: Float32Array, shape: number[]): Param {
  return { name, shape, data, grad: new Float32Array(data.length), decay: shape.length === 2 };
}

test('linear backward with bias (Qwen2) and with LoRA', () => {
  const rows = 4, inDim = 6, outDim = 5, r = 2;
  const x = rnd(rows * inDim), w = rnd(rows * outDim);
  const W = param('w', rnd(outDim * inDim), [outDim, inDim]);
  const b = param('b', rnd(outDim), [outDim]);
  const lora: LoraAdapter = {
    layer: 0, target: 'q', inDim, outDim, rank: r, scale: 1.5,
    a: param('a', rnd(r * inDim), [r, inDim]), b: param('bb', rnd(outDim * r), [outDim, r]), // B nonzero so dA is
  };
  for (const withLora of [false, true]) {
    const lin = new Linear(be, W, b, withLora ? lora : null, inDim, outDim, rows);
    const y = new Float32Array(rows * outDim);
    const f = () => (lin.forward(y, x, rows, false), dot64(y, w));
    f();
    for (const p of [W, b, lora.a, lora.b]) p.grad!.fill(0);
    const dx = new Float32Array(rows * inDim).fill(7); // overwritten, not added to
    lin.backward(dx, w, x, rows, false);
    checkGrad('linear dx', x, dx, f);
    checkGrad('linear dW', W.data, W.grad!, f);
    checkGrad('linear db', b.data, b.grad!, f);
    if (withLora) {
      checkGrad('lora dA', lora.a.data, lora.a.grad!, f);
      checkGrad('lora dB', lora.b.data, lora.b.grad!, f);
    }
  }
});

test('rope backward is the inverse rotation (the kernel with inverse = true)', () => {
  const n = 4, heads = 2, hd = 6;
  const invFreq = Float32Array.from([1, 0.3, 0.05]);
  const positions = Int32Array.from([3, 0, 9, 5]);
  const x = rnd(n * heads * hd), w = rnd(n * heads * hd);
  const f = () => {
    const y = Float32Array.from(x);
    be.rope(y, n, heads, hd, positions, invFreq, false);
    return dot64(y, w);
  };
  const dx = Float32Array.from(w);
  be.rope(dx, n, heads, hd, positions, invFreq, true);
  checkGrad('rope dx', x, dx, f);
});

test('head gather and scatter are transposes of each other', () => {
  const n = 3, heads = 2, hd = 4;
  const x = rnd(n * heads * hd), y = rnd(n * heads * hd);
  const gx = new Float32Array(x.length), sy = new Float32Array(y.length);
  gatherHeads(gx, x, 0, n, heads, hd, 0.5);
  scatterHeads(sy, 0, y, n, heads, hd, 0.5);
  assert.ok(Math.abs(dot64(gx, y) - dot64(x, sy)) < 1e-6);
  assert.equal(gx[hd], x[heads * hd] * 0.5); // head 0 of row 1
});

test('one head of attention: backward of q, k, v, causal aligned to the end and not causal', () => {
  const nQ = 3, nKV = 5, hd = 4;
  for (const causal of [true, false]) {
    const q = rnd(nQ * hd), k = rnd(nKV * hd), v = rnd(nKV * hd), w = rnd(nQ * hd);
    const out = new Float32Array(nQ * hd), p = new Float32Array(nQ * nKV);
    const f = () => (headAttentionForward(be, out, p, q, k, v, nQ, nKV, hd, causal), dot64(out, w));
    f();
    const dq = new Float32Array(nQ * hd), dk = new Float32Array(nKV * hd), dv = new Float32Array(nKV * hd);
    headAttentionBackward(be, dq, dk, dv, w, p, q, k, v, new Float32Array(nQ * nKV), nQ, nKV, hd, causal);
    checkGrad(`attn dq causal=${causal}`, q, dq, f);
    checkGrad(`attn dk causal=${causal}`, k, dk, f);
    checkGrad(`attn dv causal=${causal}`, v, dv, f);
    if (causal) for (let i = 0; i < nQ; i++) for (let j = nKV - nQ + i + 1; j < nKV; j++) assert.equal(p[i * nKV + j], 0);
  }
});

test('causal GQA attention with RoPE over a sequence: forward equals the backend kernel, backward equals finite differences', () => {
  const T = 5, nHeads = 4, nKVHeads = 2, hd = 4;
  const qDim = nHeads * hd, kvDim = nKVHeads * hd;
  const invFreq = Float32Array.from([1, 0.1]);
  const attn = new CausalAttention(oneLayerDims(T, nHeads, nKVHeads, hd), invFreq, be);
  const q = rnd(T * qDim), k = rnd(T * kvDim), v = rnd(T * kvDim), w = rnd(T * qDim);
  const out = new Float32Array(T * qDim);
  const f = () => (attn.forward(0, 0, Float32Array.from(q), Float32Array.from(k), v, out), dot64(out, w)); // q, k are rotated in place
  f();
  // the inference path: backend rope + attention kernel
  const pos = Int32Array.from([0, 1, 2, 3, 4]);
  const qr = Float32Array.from(q), kr = Float32Array.from(k), ref = new Float32Array(T * qDim);
  be.rope(qr, T, nHeads, hd, pos, invFreq, false);
  be.rope(kr, T, nKVHeads, hd, pos, invFreq, false);
  be.attention(ref, qr, kr, v, { nQ: T, nKV: T, nHeads, nKVHeads, headDim: hd, scale: 1 / Math.sqrt(hd), causal: true });
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(out[i] - ref[i]) < 1e-5, `attention out[${i}]: ${out[i]} vs kernel ${ref[i]}`);
  const dq = new Float32Array(T * qDim), dk = new Float32Array(T * kvDim), dv = new Float32Array(T * kvDim);
  attn.backward(0, 0, w, dq, dk, dv);
  checkGrad('seq attn dq', q, dq, f);
  checkGrad('seq attn dk', k, dk, f);
  checkGrad('seq attn dv', v, dv, f);
});

test('swiglu backward', () => {
  const n = 12;
  const gate = rnd(n, 3), up = rnd(n, 2), w = rnd(n);
  gate[3] = 0; // σ(0) = 1/2 is a special case of the backward
  const h = new Float32Array(n), s = new Float32Array(n);
  const f = () => (swigluForward(be, h, s, gate, up, n), dot64(h, w));
  f();
  const dg = new Float32Array(n), du = new Float32Array(n);
  swigluBackward(dg, du, w, gate, up, s, n);
  checkGrad('swiglu dgate', gate, dg, f);
  checkGrad('swiglu dup', up, du, f);
});

test('cross-entropy backward, ignored targets get no gradient', () => {
  const rows = 3, V = 7;
  const logits = rnd(rows * V, 3);
  const targets = Int32Array.from([4, -1, 0]);
  const f = () => softmaxCrossEntropy(be, Float32Array.from(logits), targets, 0, rows, V, false);
  const g = Float32Array.from(logits);
  const nll = softmaxCrossEntropy(be, g, targets, 0, rows, V, true);
  assert.ok(Math.abs(nll - f()) < 1e-9);
  let ref = 0; // -log softmax at the targets, in float64
  for (const r of [0, 2]) {
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[r * V + j]);
    ref += Math.log(z) - logits[r * V + targets[r]];
  }
  assert.ok(Math.abs(nll - ref) < 1e-5 * ref, `nll ${nll} vs ${ref}`);
  checkGrad('ce dlogits', logits, g, f);
  for (let j = 0; j < V; j++) assert.equal(g[V + j], 0);
});

// ---------- the whole model ----------

/**
 * For each parameter tensor: D = (L(θ + εu) − L(θ − εu)) / 2ε along a random direction u of
 * that tensor (Richardson-extrapolated from ε and ε/2), against <g, u>.
 */
function checkModel(label: string, tm: TrainableModel, win: Int32Array): number {
  for (const p of tm.params) p.grad?.fill(0);
  tm.forwardBackward(win);
  let worst = 0;
  for (const p of tm.params) {
    if (!p.grad) continue;
    const u = rnd(p.data.length);
    const saved = Float32Array.from(p.data);
    const lossAt = (eps: number) => {
      for (let i = 0; i < u.length; i++) p.data[i] = saved[i] + eps * u[i];
      const l = tm.loss(win);
      p.data.set(saved);
      return l;
    };
    const eps = 2e-2;
    const d1 = (lossAt(eps) - lossAt(-eps)) / (2 * eps);
    const d2 = (lossAt(eps / 2) - lossAt(-eps / 2)) / eps;
    const fd = (4 * d2 - d1) / 3;
    const an = dot64(p.grad, u);
    const err = Math.abs(fd - an) / Math.max(Math.abs(an), 1e-2);
    worst = Math.max(worst, err);
    assert.ok(err < 3e-3, `${label} ${p.name}: directional derivative ${fd} by finite differences, ${an} by backward`);
  }
  return worst;
}

test('whole model gradient: GQA, untied head', () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2 });
  const tm = new TrainableModel(randomModel(c, 3), { batch: 2, seqLen: 6 });
  checkModel('gqa', tm, randomWindows(c, 2, 6, 1));
});

test('whole model gradient: tied embeddings and Qwen2 biases', () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24, nHeads: 2, nKVHeads: 1, tieWordEmbeddings: true, attentionBias: true, architecture: 'Qwen2ForCausalLM' });
  const tm = new TrainableModel(randomModel(c, 4), { batch: 2, seqLen: 5 });
  assert.ok(!tm.params.some((p) => p.name === 'lm_head.weight'));
  checkModel('tied+bias', tm, randomWindows(c, 2, 5, 2));
});

test('whole model gradient: LoRA on every projection, embeddings and norms trainable, the rest frozen', () => {
  const c = tinyConfig({ vocabSize: 32, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2 });
  const tm = new TrainableModel(randomModel(c, 5), {
    batch: 2, seqLen: 6, train: ['embed', 'norm'], lora: { rank: 2, alpha: 4, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }, loraSeed: 9,
  });
  for (const ad of tm.lora) ad.b.data.set(rnd(ad.b.data.length, 0.3)); // B starts at zero; make dA non-trivial
  const trainable = tm.trainable().map((p) => p.name);
  assert.ok(trainable.includes('model.embed_tokens.weight') && trainable.includes('model.norm.weight'));
  assert.ok(!trainable.includes('lm_head.weight') && !trainable.includes('model.layers.0.self_attn.q_proj.weight'));
  assert.equal(tm.lora.length, 2 * 7);
  checkModel('lora', tm, randomWindows(c, 2, 6, 3));
});

test('training forward loss equals the inference forward (full cache) on the same tokens', () => {
  const c = tinyConfig({ nHeads: 4, nKVHeads: 2, attentionBias: true });
  const model: Model = randomModel(c, 6);
  const B = 2, T = 9;
  const win = randomWindows(c, B, T, 4);
  const tm = new TrainableModel(model, { batch: B, seqLen: T });
  const loss = tm.loss(win);
  let sum = 0;
  for (let b = 0; b < B; b++) {
    const nll = forwardNll(model, win.subarray(b * (T + 1), (b + 1) * (T + 1)), createCache(c));
    for (const x of nll) sum += x;
  }
  const ref = sum / (B * T);
  assert.ok(Math.abs(loss - ref) < 1e-4 * ref, `training loss ${loss}, inference ${ref}`);
  assert.ok(Math.abs(ropeInvFreq(c)[1] - 1 / Math.pow(c.ropeTheta, 2 / c.headDim)) < 1e-6);
});
