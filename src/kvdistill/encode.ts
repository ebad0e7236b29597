// The encoding pass of the context, forward and hand-written backward (KVDISTILL.md parts 2-3).
//
// n context tokens at positions 0..n-1, full causal attention among them. Per layer l:
//   xn1 = rmsnorm(x); q = Q(xn1); k = K(xn1); v = V(xn1)   K, V: LoRA on every row; Q: only on routed rows
//   K_l = rope(k, 0..n-1), V_l = v                           the layer's cache rows (all n; the caller picks)
//   att = causal attention; xm = x + O(att)                  O: LoRA only on routed rows
//   x' = xm + mlp(rmsnorm(xm))                               frozen
// The cache of the last layer is its K and V, so its attention, O and MLP never reach the loss:
// they are not computed (and KVDistill gives that layer no Q/O adapters).
// The same pass without adapters and stopped after `scoreLayer` full layers gives the frozen
// hidden states the scorer reads.
import type { Backend } from '../kernels/backend.js';
import { ropeInvFreq } from '../model/rope.js';
import type { Model } from '../model/types.js';
import { CausalAttention } from '../train/attention.js';
import type { LoraAdapter, LoraTarget } from '../train/lora.js';
import { embeddingForward, rmsnormBackward, rmsnormForward } from '../train/ops.js';
import { AdaptedLinear, type MlpActs, mlpBackward, mlpForward, positionsFrom } from './layers.js';

interface EncLayer extends MlpActs { // the MLP activations: full layers only
  x: Float32Array; rstd1: Float32Array; xn1: Float32Array; // [n, d], [n], [n, d]
  q: Float32Array; k: Float32Array; v: Float32Array; // q [n, qDim]; k rotated after forward [n, kvDim]; v [n, kvDim]
  att: Float32Array; // full layers only
  lq: AdaptedLinear; lk: AdaptedLinear; lv: AdaptedLinear; lo: AdaptedLinear;
}

export interface ContextPassOptions {
  /** Adapters on q/k/v/o by layer (null: the frozen model). */
  adapters: readonly LoraAdapter[] | null;
  /** Routing mask [n] (1 = selected) for the Q and O adapters; null: Q and O adapters on every row (the no-routing ablation). */
  route: Float32Array | null;
  /** Layers computed in full (attention, O, MLP). */
  fullLayers: number;
  /** Also project K and V of layer fullLayers (the encoding pass: fullLayers = nLayers − 1). */
  kvOfNext: boolean;
}

/** One context, one pass. forward() once, then backward() at most once. */
export class ContextPass {
  readonly n: number;
  private readonly layers: EncLayer[] = [];
  private readonly attn: CausalAttention;
  private readonly positions: Int32Array;
  private readonly tokens: Int32Array;
  /** Residual stream after fullLayers layers [n, d]. */
  hidden: Float32Array = new Float32Array(0);

  constructor(private readonly model: Model, tokens: Int32Array, private readonly opts: ContextPassOptions, private readonly be: Backend) {
    const c = model.config;
    const n = (this.n = tokens.length);
    if (n < 1) throw new RangeError('kvdistill context: expected at least one token');
    if (opts.fullLayers < 0 || opts.fullLayers + (opts.kvOfNext ? 1 : 0) > c.nLayers) throw new RangeError(`kvdistill pass: ${opts.fullLayers} full layers do not fit ${c.nLayers}`);
    this.tokens = tokens;
    this.positions = positionsFrom(0, n);
    this.attn = new CausalAttention({ nLayers: c.nLayers, batch: 1, seqLen: n, nHeads: c.nHeads, nKVHeads: c.nKVHeads, headDim: c.headDim }, ropeInvFreq(c), be);
    const d = c.hiddenSize, qDim = c.nHeads * c.headDim, kvDim = c.nKVHeads * c.headDim, ff = c.intermediateSize;
    const count = opts.fullLayers + (opts.kvOfNext ? 1 : 0);
    const f = (k: number) => new Float32Array(k);
    const adapter = (l: number, t: LoraTarget) => opts.adapters?.find((a) => a.layer === l && a.target === t) ?? null;
    for (let l = 0; l < count; l++) {
      const W = model.weights.layers[l];
      const full = l < opts.fullLayers;
      this.layers.push({
        x: f(n * d), rstd1: f(n), xn1: f(n * d), q: f(full ? n * qDim : 0), k: f(n * kvDim), v: f(n * kvDim),
        att: f(full ? n * qDim : 0), xm: f(full ? n * d : 0), rstd2: f(full ? n : 0), xn2: f(full ? n * d : 0),
        gate: f(full ? n * ff : 0), up: f(full ? n * ff : 0), s: f(full ? n * ff : 0), h: f(full ? n * ff : 0),
        lq: new AdaptedLinear(be, W.wq, W.bq, adapter(l, 'q'), d, qDim, n, opts.route),
        lk: new AdaptedLinear(be, W.wk, W.bk, adapter(l, 'k'), d, kvDim, n, null),
        lv: new AdaptedLinear(be, W.wv, W.bv, adapter(l, 'v'), d, kvDim, n, null),
        lo: new AdaptedLinear(be, W.wo, null, adapter(l, 'o'), qDim, d, n, opts.route),
      });
    }
  }

  /** Runs the pass. Returns per computed layer the rotated keys and values of all n tokens ([n, kvDim] each; views, not copies). */
  forward(): { k: Float32Array[]; v: Float32Array[] } {
    const { model, be, n } = this;
    const c = model.config;
    const d = c.hiddenSize, ff = c.intermediateSize;
    const invFreq = ropeInvFreq(c);
    let x = new Float32Array(n * d);
    embeddingForward(x, model.weights.embed, this.tokens, 0, n, d, c.vocabSize);
    for (let l = 0; l < this.layers.length; l++) {
      const A = this.layers[l];
      const W = model.weights.layers[l];
      A.x.set(x);
      rmsnormForward(A.xn1, A.rstd1, A.x, W.attnNorm, n, d, c.rmsNormEps);
      A.lk.forward(A.k, A.xn1, false);
      A.lv.forward(A.v, A.xn1, false);
      if (l >= this.opts.fullLayers) {
        be.rope(A.k, n, c.nKVHeads, c.headDim, this.positions, invFreq, false); // K only: nothing reads this layer's attention
        continue;
      }
      A.lq.forward(A.q, A.xn1, false);
      this.attn.forward(l, 0, A.q, A.k, A.v, A.att); // rotates q and k in place: A.k is now the cache's K
      A.xm.set(A.x);
      A.lo.forward(A.xm, A.att, true);
      x = mlpForward(be, A, W, n, d, ff, c.rmsNormEps);
    }
    this.hidden = x;
    return { k: this.layers.map((A) => A.k), v: this.layers.map((A) => A.v) };
  }

  /**
   * Backward from the gradients of the cache rows: dK[l] (with respect to the ROTATED keys) and
   * dV[l], [n, kvDim] each (zero rows for tokens not kept). Adds into the adapters' gradients.
   */
  backward(dK: readonly Float32Array[], dV: readonly Float32Array[]): void {
    const { model, be, n } = this;
    const c = model.config;
    const d = c.hiddenSize, ff = c.intermediateSize, qDim = c.nHeads * c.headDim, kvDim = c.nKVHeads * c.headDim;
    const invFreq = ropeInvFreq(c);
    const dRes = new Float32Array(n * d); // ∂/∂(output of layer l)
    const dXn = new Float32Array(n * d);
    const scratch = { dXn, dH: new Float32Array(n * ff), dGate: new Float32Array(n * ff), dUp: new Float32Array(n * ff) };
    const dAtt = new Float32Array(n * qDim), dq = new Float32Array(n * qDim);
    const dk = new Float32Array(n * kvDim), dv = new Float32Array(n * kvDim);
    for (let l = this.layers.length - 1; l >= 0; l--) {
      const A = this.layers[l];
      const W = model.weights.layers[l];
      const full = l < this.opts.fullLayers;
      if (full) {
        mlpBackward(be, dRes, A, W, n, d, ff, scratch); // dRes: now ∂/∂xm
        A.lo.backward(dAtt, dRes, A.att, false);
        this.attn.backward(l, 0, dAtt, dq, dk, dv); // pre-RoPE dq, dk, dv (written)
      } else {
        dk.fill(0);
        dv.fill(0);
      }
      // the cache's gradient: rotated-key space -> pre-RoPE by the inverse rotation
      const dkc = Float32Array.from(dK[l]);
      be.rope(dkc, n, c.nKVHeads, c.headDim, this.positions, invFreq, true);
      for (let i = 0; i < dk.length; i++) dk[i] += dkc[i];
      const dvl = dV[l];
      for (let i = 0; i < dv.length; i++) dv[i] += dvl[i];
      A.lk.backward(dXn, dk, A.xn1, false);
      A.lv.backward(dXn, dv, A.xn1, true);
      if (full) A.lq.backward(dXn, dq, A.xn1, true);
      rmsnormBackward(dRes, null, dXn, A.x, W.attnNorm, A.rstd1, n, d); // dRes: now ∂/∂x of layer l
    }
  }
}
