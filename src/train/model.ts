// The Llama forward pass for training and its hand-written backward, layer by layer.
//
// Why hand-written (as in llm.c) rather than a tape: the graph is fixed (the same ~12 ops per
// layer every step), so a tape would only add bookkeeping. Written out, every activation the
// backward needs is a named buffer allocated once for [batch·seqLen] rows, the step loop
// allocates nothing, memory is known up front, and each op's backward sits next to the
// forward it inverts. The matrix products are Backend.matmul (the native kernels); the rest
// are the small functions of ops.ts.
//
// Per layer, N = batch·seqLen rows (d = hidden, qDim = nHeads·hd, kvDim = nKVHeads·hd):
//   xn1 = rmsnorm(x)                        keep x, rstd1, xn1
//   q, k, v = xn1·Wqᵀ(+b), ...              (pre-RoPE; the attention applies positions)
//   att = attention(q, k, v) per sequence   (SequenceAttention keeps its own state)
//   xm = x + att·Woᵀ                        keep att, xm
//   xn2 = rmsnorm(xm)                       keep rstd2, xn2
//   h = silu(xn2·Wgateᵀ) * xn2·Wupᵀ         keep gate, up, silu(gate), h
//   x' = xm + h·Wdownᵀ
// then logits = rmsnorm(x)·lm_headᵀ and mean cross-entropy, computed in row chunks so that
// [N, vocab] is never held.
import type { Backend, MatmulOptions } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { ropeInvFreq } from '../model/rope.js';
import type { LlamaConfig, Model } from '../model/types.js';
import { type AttentionFactory, causalAttention, type SequenceAttention } from './attention.js';
import { createLora, type LoraAdapter, type LoraSpec, type LoraTarget } from './lora.js';
import {
  addBias, biasBackward, embeddingBackward, embeddingForward, rmsnormBackward, rmsnormForward,
  scale, softmaxCrossEntropy, swigluBackward, swigluForward,
} from './ops.js';
import { baseParams, type Param, type ParamGroup } from './params.js';

const TRANS_B: MatmulOptions = { transB: true };
const TRANS_B_ACC: MatmulOptions = { transB: true, accumulate: true };
const TRANS_A_ACC: MatmulOptions = { transA: true, accumulate: true };
const PLAIN: MatmulOptions = {};
const ACC: MatmulOptions = { accumulate: true };

/** Rows of logits computed at once: bounds the [rows, vocab] buffer. */
const HEAD_ROWS = 512;

/**
 * A Hugging Face Linear y[rows, out] = x[rows, in]·Wᵀ (+ b) (+ LoRA), with its backward.
 * Owns the LoRA activation x·Aᵀ [maxRows, rank] that its backward needs.
 */
export class Linear {
  private readonly xa: Float32Array;
  private readonly sxa: Float32Array;

  constructor(private readonly be: Backend, readonly w: Param, readonly b: Param | null, readonly lora: LoraAdapter | null,
    readonly inDim: number, readonly outDim: number, maxRows: number) {
    const r = lora ? lora.rank : 0;
    this.xa = new Float32Array(maxRows * r);
    this.sxa = new Float32Array(maxRows * r);
  }

  /** y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, or y += that when accumulate. */
  forward(y: Float32Array, x: Float32Array, rows: number, accumulate: boolean): void {
    const { be, inDim, outDim } = this;
    be.matmul(y, x, this.w.data, rows, outDim, inDim, accumulate ? TRANS_B_ACC : TRANS_B);
    if (this.b) addBias(y, this.b.data, rows, outDim);
    const ad = this.lora;
    if (ad) {
      const r = ad.rank;
      be.matmul(this.xa, x, ad.a.data, rows, r, inDim, TRANS_B); // xa = x·Aᵀ [rows, r]
      scaleInto(this.sxa, this.xa, ad.scale, rows * r);
      be.matmul(y, this.sxa, ad.b.data, rows, outDim, r, TRANS_B_ACC); // y += s·xa·Bᵀ
    }
  }

  /** dx = (or +=, when accumulateDx) dy·W (+ LoRA path); dW, db, dA, dB += their gradients when trainable. */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, rows: number, accumulateDx: boolean): void {
    const { be, inDim, outDim } = this;
    if (this.w.grad) be.matmul(this.w.grad, dy, x, outDim, inDim, rows, TRANS_A_ACC); // dW += dyᵀ·x
    if (this.b?.grad) biasBackward(this.b.grad, dy, rows, outDim);
    be.matmul(dx, dy, this.w.data, rows, inDim, outDim, accumulateDx ? ACC : PLAIN); // dx = dy·W
    const ad = this.lora;
    if (ad) {
      const r = ad.rank;
      scaleInto(this.sxa, this.xa, ad.scale, rows * r);
      be.matmul(ad.b.grad!, dy, this.sxa, outDim, r, rows, TRANS_A_ACC); // dB += dyᵀ·(s·xa)
      const dxa = this.sxa; // reuse: d(xa) = s·dy·B [rows, r]
      be.matmul(dxa, dy, ad.b.data, rows, r, outDim, PLAIN);
      scaleInto(dxa, dxa, ad.scale, rows * r);
      be.matmul(ad.a.grad!, dxa, x, r, inDim, rows, TRANS_A_ACC); // dA += dxaᵀ·x
      be.matmul(dx, dxa, ad.a.data, rows, inDim, r, ACC); // dx += dxa·A
    }
  }
}

function scaleInto(out: Float32Array, x: Float32Array, s: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = x[i] * s;
}

/** What one layer keeps from forward for backward ([N, ·] each, N = batch·seqLen). */
interface LayerActs {
  x: Float32Array; // layer input (residual) [N, d]
  rstd1: Float32Array; // [N]
  xn1: Float32Array; // [N, d]
  att: Float32Array; // attention output [N, qDim]
  xm: Float32Array; // residual after attention [N, d]
  rstd2: Float32Array;
  xn2: Float32Array;
  gate: Float32Array; // [N, ff]
  up: Float32Array;
  s: Float32Array; // silu(gate)
  h: Float32Array; // s·up
}

interface LayerLinears {
  q: Linear; k: Linear; v: Linear; o: Linear; gate: Linear; up: Linear; down: Linear;
}

export interface TrainableOptions {
  /** Sequences per micro-batch. */
  batch: number;
  /** Tokens per sequence (the model sees seqLen inputs and predicts seqLen targets). */
  seqLen: number;
  /** Fully trainable groups of base weights (default ['all']); [] with LoRA trains only the adapters. */
  train?: readonly ParamGroup[];
  lora?: LoraSpec | null;
  /** Seeds the LoRA A matrices. */
  loraSeed?: number;
  /** Adapters to use instead of fresh ones (resuming; must match lora). */
  loraAdapters?: LoraAdapter[];
  /** How one sequence attends (default: plain causal); the FreqKV grouped schedule plugs in here. */
  attention?: AttentionFactory;
  backend?: Backend;
}

/**
 * A model wrapped for training at a fixed [batch, seqLen]: all buffers are allocated here.
 * Its weights are the Model's own arrays, updated in place by the optimiser.
 */
export class TrainableModel {
  readonly config: LlamaConfig;
  readonly batch: number;
  readonly seqLen: number;
  /** Every parameter, base weights first (HF order), then LoRA adapters. */
  readonly params: Param[];
  readonly lora: LoraAdapter[];
  private readonly be: Backend;
  private readonly attn: SequenceAttention;
  private readonly lin: LayerLinears[];
  private readonly acts: LayerActs[];
  private readonly embed: Param;
  private readonly finalNorm: Param;
  private readonly lmHead: Param;
  private readonly norms: { attn: Param; mlp: Param }[];
  // [N] inputs and targets of the current micro-batch
  private readonly inputs: Int32Array;
  private readonly targets: Int32Array;
  // final norm
  private readonly xFinal: Float32Array; // [N, d]
  private readonly rstdF: Float32Array;
  private readonly xnF: Float32Array;
  // scratch
  private readonly q: Float32Array; private readonly k: Float32Array; private readonly v: Float32Array;
  private readonly logits: Float32Array; // [HEAD_ROWS, vocab]
  private readonly xnScaled: Float32Array; // [HEAD_ROWS, d]
  private readonly dRes: Float32Array; // [N, d] gradient of the residual stream
  private readonly dXn: Float32Array; // [N, d]
  private readonly dAtt: Float32Array; // [N, qDim]
  private readonly dq: Float32Array; private readonly dk: Float32Array; private readonly dv: Float32Array;
  private readonly dH: Float32Array; private readonly dGate: Float32Array; private readonly dUp: Float32Array;
  // per-sequence views of the attention inputs/outputs (made once: no allocation per step)
  private readonly seqViews: { q: Float32Array; k: Float32Array; v: Float32Array; att: Float32Array[]; dAtt: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array }[];
  private counted = 0;

  constructor(readonly model: Model, opts: TrainableOptions) {
    const c = (this.config = model.config);
    const { batch, seqLen } = opts;
    if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`TrainableModel batch: expected a positive integer, got ${batch}`);
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`TrainableModel seqLen: expected a positive integer, got ${seqLen}`);
    if (model.weights.layers.length !== c.nLayers) throw new RangeError(`TrainableModel model: ${model.weights.layers.length} layers of weights, config says ${c.nLayers}`);
    this.batch = batch;
    this.seqLen = seqLen;
    this.be = opts.backend ?? getBackend();
    const N = batch * seqLen;
    const d = c.hiddenSize;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKVHeads * c.headDim;
    const ff = c.intermediateSize;
    const V = c.vocabSize;

    const base = baseParams(model, opts.train ?? ['all']);
    this.lora = opts.loraAdapters ?? (opts.lora ? createLora(model, opts.lora, opts.loraSeed ?? 1) : []);
    this.params = [...base, ...this.lora.flatMap((a) => [a.a, a.b])];
    const byName = new Map(base.map((p) => [p.name, p]));
    const get = (name: string): Param => byName.get(name)!;
    const opt = (name: string): Param | null => byName.get(name) ?? null;
    this.embed = get('model.embed_tokens.weight');
    this.finalNorm = get('model.norm.weight');
    this.lmHead = c.tieWordEmbeddings ? this.embed : get('lm_head.weight');

    const adapterFor = (l: number, t: LoraTarget) => this.lora.find((a) => a.layer === l && a.target === t) ?? null;
    this.lin = [];
    this.norms = [];
    for (let l = 0; l < c.nLayers; l++) {
      const p = `model.layers.${l}.`;
      const mk = (mod: string, t: LoraTarget, inDim: number, outDim: number) =>
        new Linear(this.be, get(p + mod + '.weight'), opt(p + mod + '.bias'), adapterFor(l, t), inDim, outDim, N);
      this.lin.push({
        q: mk('self_attn.q_proj', 'q', d, qDim), k: mk('self_attn.k_proj', 'k', d, kvDim), v: mk('self_attn.v_proj', 'v', d, kvDim),
        o: mk('self_attn.o_proj', 'o', qDim, d), gate: mk('mlp.gate_proj', 'gate', d, ff), up: mk('mlp.up_proj', 'up', d, ff),
        down: mk('mlp.down_proj', 'down', ff, d),
      });
      this.norms.push({ attn: get(p + 'input_layernorm.weight'), mlp: get(p + 'post_attention_layernorm.weight') });
    }
    for (const ad of this.lora) {
      if (ad.layer >= c.nLayers) throw new RangeError(`TrainableModel loraAdapters: layer ${ad.layer} does not exist`);
    }

    const f = (n: number) => new Float32Array(n);
    this.acts = Array.from({ length: c.nLayers }, () => ({
      x: f(N * d), rstd1: f(N), xn1: f(N * d), att: f(N * qDim), xm: f(N * d), rstd2: f(N), xn2: f(N * d),
      gate: f(N * ff), up: f(N * ff), s: f(N * ff), h: f(N * ff),
    }));
    this.inputs = new Int32Array(N);
    this.targets = new Int32Array(N);
    this.xFinal = f(N * d);
    this.rstdF = f(N);
    this.xnF = f(N * d);
    this.q = f(N * qDim); this.k = f(N * kvDim); this.v = f(N * kvDim);
    this.logits = f(Math.min(N, HEAD_ROWS) * V);
    this.xnScaled = f(Math.min(N, HEAD_ROWS) * d);
    this.dRes = f(N * d); this.dXn = f(N * d); this.dAtt = f(N * qDim);
    this.dq = f(N * qDim); this.dk = f(N * kvDim); this.dv = f(N * kvDim);
    this.dH = f(N * ff); this.dGate = f(N * ff); this.dUp = f(N * ff);
    const T = seqLen;
    this.seqViews = Array.from({ length: batch }, (_, b) => {
      const rq = (a: Float32Array, w: number) => a.subarray(b * T * w, (b + 1) * T * w);
      return {
        q: rq(this.q, qDim), k: rq(this.k, kvDim), v: rq(this.v, kvDim), att: this.acts.map((A) => rq(A.att, qDim)),
        dAtt: rq(this.dAtt, qDim), dq: rq(this.dq, qDim), dk: rq(this.dk, kvDim), dv: rq(this.dv, kvDim),
      };
    });
    const factory = opts.attention ?? causalAttention;
    this.attn = factory({ nLayers: c.nLayers, batch, seqLen, nHeads: c.nHeads, nKVHeads: c.nKVHeads, headDim: c.headDim }, ropeInvFreq(c), this.be);
  }

  /** Trainable parameters only. */
  trainable(): Param[] {
    return this.params.filter((p) => p.grad !== null);
  }

  /**
   * Forward and backward on one micro-batch of token windows [batch, seqLen+1] (inputs are
   * the first seqLen of each window, targets the last seqLen; a negative target is ignored).
   * ADDS lossScale·∂(mean loss)/∂θ into the trainable gradients (gradient accumulation:
   * lossScale = 1/microBatches). Returns the mean loss of this micro-batch.
   */
  forwardBackward(windows: Int32Array, lossScale = 1): number {
    this.forward(windows);
    const loss = this.head(lossScale, true);
    this.backward();
    return loss;
  }

  /** Mean loss of a micro-batch of windows [batch, seqLen+1], no gradients. */
  loss(windows: Int32Array): number {
    this.forward(windows);
    return this.head(0, false);
  }

  private forward(windows: Int32Array): void {
    const c = this.config;
    const { batch: B, seqLen: T } = this;
    const N = B * T;
    const d = c.hiddenSize;
    const ff = c.intermediateSize;
    if (windows.length !== B * (T + 1)) throw new RangeError(`TrainableModel windows: expected [${B}, ${T + 1}] = ${B * (T + 1)} tokens, got ${windows.length}`);
    for (let b = 0; b < B; b++) {
      this.inputs.set(windows.subarray(b * (T + 1), b * (T + 1) + T), b * T);
      this.targets.set(windows.subarray(b * (T + 1) + 1, (b + 1) * (T + 1)), b * T);
    }
    embeddingForward(this.acts[0].x, this.embed.data, this.inputs, 0, N, d, c.vocabSize);
    for (let l = 0; l < c.nLayers; l++) {
      const A = this.acts[l];
      const L = this.lin[l];
      const next = l + 1 < c.nLayers ? this.acts[l + 1].x : this.xFinal;
      rmsnormForward(A.xn1, A.rstd1, A.x, this.norms[l].attn.data, N, d, c.rmsNormEps);
      L.q.forward(this.q, A.xn1, N, false);
      L.k.forward(this.k, A.xn1, N, false);
      L.v.forward(this.v, A.xn1, N, false);
      for (let b = 0; b < B; b++) {
        const s = this.seqViews[b];
        this.attn.forward(l, b, s.q, s.k, s.v, s.att[l]);
      }
      A.xm.set(A.x);
      L.o.forward(A.xm, A.att, N, true);
      rmsnormForward(A.xn2, A.rstd2, A.xm, this.norms[l].mlp.data, N, d, c.rmsNormEps);
      L.gate.forward(A.gate, A.xn2, N, false);
      L.up.forward(A.up, A.xn2, N, false);
      swigluForward(this.be, A.h, A.s, A.gate, A.up, N * ff);
      next.set(A.xm);
      L.down.forward(next, A.h, N, true);
    }
    rmsnormForward(this.xnF, this.rstdF, this.xFinal, this.finalNorm.data, N, d, c.rmsNormEps);
  }

  /**
   * The lm head and cross-entropy, in chunks of rows. With grad: leaves ∂loss/∂xnF in dXn and
   * adds ∂loss/∂lm_head. Returns the mean loss over counted targets (NaN when none).
   */
  private head(lossScale: number, grad: boolean): number {
    const c = this.config;
    const N = this.batch * this.seqLen;
    const d = c.hiddenSize;
    const V = c.vocabSize;
    let count = 0;
    for (let i = 0; i < N; i++) if (this.targets[i] >= 0) count++;
    this.counted = count;
    const gradScale = count > 0 ? lossScale / count : 0;
    let total = 0;
    for (let r0 = 0; r0 < N; r0 += HEAD_ROWS) {
      const rows = Math.min(HEAD_ROWS, N - r0);
      const xn = this.xnF.subarray(r0 * d, (r0 + rows) * d);
      this.be.matmul(this.logits, xn, this.lmHead.data, rows, V, d, TRANS_B);
      total += softmaxCrossEntropy(this.be, this.logits, this.targets, r0, rows, V, grad);
      if (!grad) continue;
      // logits now hold ∂nll/∂logits unscaled; gradScale goes on the small [rows, d] side.
      if (this.lmHead.grad) {
        scaleInto(this.xnScaled, xn, gradScale, rows * d);
        this.be.matmul(this.lmHead.grad, this.logits, this.xnScaled, V, d, rows, TRANS_A_ACC); // dHead += dlogitsᵀ·xn
      }
      const dxn = this.dXn.subarray(r0 * d, (r0 + rows) * d);
      this.be.matmul(dxn, this.logits, this.lmHead.data, rows, d, V, PLAIN); // dxn = dlogits·Head
      scale(dxn, gradScale, rows * d);
    }
    return count > 0 ? total / count : NaN;
  }

  /** Targets counted in the last micro-batch. */
  lastCount(): number {
    return this.counted;
  }

  private backward(): void {
    const c = this.config;
    const { batch: B } = this;
    const N = B * this.seqLen;
    const d = c.hiddenSize;
    const ff = c.intermediateSize;
    const dRes = this.dRes;
    dRes.fill(0);
    rmsnormBackward(dRes, this.finalNorm.grad, this.dXn, this.xFinal, this.finalNorm.data, this.rstdF, N, d);
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const A = this.acts[l];
      const L = this.lin[l];
      // MLP block: x' = xm + down(h)
      L.down.backward(this.dH, dRes, A.h, N, false);
      swigluBackward(this.dGate, this.dUp, this.dH, A.gate, A.up, A.s, N * ff);
      L.gate.backward(this.dXn, this.dGate, A.xn2, N, false);
      L.up.backward(this.dXn, this.dUp, A.xn2, N, true);
      rmsnormBackward(dRes, this.norms[l].mlp.grad, this.dXn, A.xm, this.norms[l].mlp.data, A.rstd2, N, d);
      // attention block: xm = x + o(att)
      L.o.backward(this.dAtt, dRes, A.att, N, false);
      for (let b = 0; b < B; b++) {
        const s = this.seqViews[b];
        this.attn.backward(l, b, s.dAtt, s.dq, s.dk, s.dv);
      }
      L.q.backward(this.dXn, this.dq, A.xn1, N, false);
      L.k.backward(this.dXn, this.dk, A.xn1, N, true);
      L.v.backward(this.dXn, this.dv, A.xn1, N, true);
      rmsnormBackward(dRes, this.norms[l].attn.grad, this.dXn, A.x, this.norms[l].attn.data, A.rstd1, N, d);
    }
    if (this.embed.grad) embeddingBackward(this.embed.grad, dRes, this.inputs, 0, N, d);
  }
}
