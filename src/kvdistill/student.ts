// The student: the FROZEN decoder reading m new tokens (question, then the teacher-forced
// answer) at positions start..start+m-1 over a compressed prefix of nc rows per layer (keys
// already rotated at their original positions), with its hand-written backward to the prefix
// rows and to an optional additive logit bias on the prefix columns (KVDISTILL.md "Training":
// log sigmoid(score) while training, nothing at inference).
//
// Per layer (N = nc + m keys; query i sees every prefix row and new rows 0..i):
//   xn1 = rmsnorm(x); q, k, v = frozen projections; rope(q, k) at start..
//   s_h = q_h·[Kc; k]_gᵀ/sqrt(hd) + [bias | 0];  p_h = softmax(causal aligned to the end)
//   att = p·[Vc; v]; xm = x + att·Woᵀ; x' = xm + mlp(rmsnorm(xm))
// then logits of the last `outRows` rows = rmsnorm(x)·lm_headᵀ.
import type { Backend } from '../kernels/backend.js';
import { ropeInvFreq } from '../model/rope.js';
import type { LlamaConfig, Model } from '../model/types.js';
import { headAttentionBackward } from '../train/attention.js';
import { embeddingForward, maskedSoftmax, rmsnormBackward, rmsnormForward } from '../train/ops.js';
import { frozenLinear, frozenLinearBackward, headsToRows, type MlpActs, mlpBackward, mlpForward, positionsFrom, rowsToHeads } from './layers.js';

interface StudentLayer extends MlpActs {
  x: Float32Array; rstd1: Float32Array; xn1: Float32Array; // [m, d]
  qh: Float32Array; // rotated, scaled, head-major [nHeads, m, hd]
  kh: Float32Array; vh: Float32Array; // head-major [nKVHeads, N, hd]: prefix rows then the new rows
  p: Float32Array; // [nHeads, m, N]
  att: Float32Array;
}

/** Sizes and constants both passes use (N = nc + m keys a query sees at most). */
interface StudentDims {
  c: LlamaConfig; m: number; N: number; d: number; ff: number; hd: number; V: number; qDim: number; kvDim: number;
  invFreq: Float32Array; scale: number; group: number;
}

export interface StudentGrads {
  /** ∂loss/∂(rotated prefix keys) and ∂/∂(prefix values), per layer [nc, kvDim]. */
  dK: Float32Array[];
  dV: Float32Array[];
  /** ∂loss/∂bias [nc], summed over layers, heads and queries. */
  dBias: Float32Array;
}

export class StudentPass {
  private readonly layers: StudentLayer[] = [];
  private readonly positions: Int32Array;
  private readonly dims: StudentDims;
  private xF = new Float32Array(0);
  private rstdF = new Float32Array(0);
  private xnF = new Float32Array(0);

  /**
   * tokens [m] at positions start..; prefixK/prefixV per layer [nc, kvDim]; bias [nc] or null;
   * logits are produced for the last outRows rows.
   */
  constructor(private readonly model: Model, private readonly tokens: Int32Array, readonly start: number,
    private readonly prefixK: readonly Float32Array[], private readonly prefixV: readonly Float32Array[], readonly nc: number,
    private readonly bias: Float32Array | null, readonly outRows: number, private readonly be: Backend) {
    const c = model.config;
    const m = tokens.length;
    if (m < 1) throw new RangeError('kvdistill student: expected at least one token');
    if (!(outRows >= 1 && outRows <= m)) throw new RangeError(`kvdistill student outRows: expected 1..${m}, got ${outRows}`);
    if (prefixK.length !== c.nLayers || prefixV.length !== c.nLayers) throw new RangeError(`kvdistill student: expected ${c.nLayers} layers of prefix rows`);
    this.positions = positionsFrom(start, m);
    const hd = c.headDim;
    this.dims = {
      c, m, N: nc + m, d: c.hiddenSize, ff: c.intermediateSize, hd, V: c.vocabSize, qDim: c.nHeads * hd, kvDim: c.nKVHeads * hd,
      invFreq: ropeInvFreq(c), scale: 1 / Math.sqrt(hd), group: c.nHeads / c.nKVHeads,
    };
  }

  /** Logits [outRows, vocab]. */
  forward(): Float32Array {
    const { model, be, nc } = this;
    const { c, m, N, d, ff, hd, V, qDim, kvDim, invFreq, scale, group } = this.dims;
    const f = (k: number) => new Float32Array(k);
    let x = f(m * d);
    embeddingForward(x, model.weights.embed, this.tokens, 0, m, d, V);
    const q = f(m * qDim), k = f(m * kvDim), v = f(m * kvDim), oh = f(m * qDim);
    for (let l = 0; l < c.nLayers; l++) {
      const W = model.weights.layers[l];
      const A: StudentLayer = {
        x, rstd1: f(m), xn1: f(m * d), qh: f(m * qDim), kh: f(N * kvDim), vh: f(N * kvDim), p: f(c.nHeads * m * N),
        att: f(m * qDim), xm: f(m * d), rstd2: f(m), xn2: f(m * d), gate: f(m * ff), up: f(m * ff), s: f(m * ff), h: f(m * ff),
      };
      this.layers.push(A);
      rmsnormForward(A.xn1, A.rstd1, x, W.attnNorm, m, d, c.rmsNormEps);
      frozenLinear(be, q, A.xn1, W.wq, m, qDim, d);
      frozenLinear(be, k, A.xn1, W.wk, m, kvDim, d);
      frozenLinear(be, v, A.xn1, W.wv, m, kvDim, d);
      if (W.bq) addRow(q, W.bq, m);
      if (W.bk) addRow(k, W.bk, m);
      if (W.bv) addRow(v, W.bv, m);
      be.rope(q, m, c.nHeads, hd, this.positions, invFreq, false);
      be.rope(k, m, c.nKVHeads, hd, this.positions, invFreq, false);
      rowsToHeads(A.qh, m, 0, q, m, c.nHeads, hd, scale);
      rowsToHeads(A.kh, N, 0, this.prefixK[l], nc, c.nKVHeads, hd);
      rowsToHeads(A.kh, N, nc, k, m, c.nKVHeads, hd);
      rowsToHeads(A.vh, N, 0, this.prefixV[l], nc, c.nKVHeads, hd);
      rowsToHeads(A.vh, N, nc, v, m, c.nKVHeads, hd);
      for (let h = 0; h < c.nHeads; h++) {
        const g = Math.floor(h / group);
        const ph = A.p.subarray(h * m * N, (h + 1) * m * N);
        const kg = A.kh.subarray(g * N * hd, (g + 1) * N * hd), vg = A.vh.subarray(g * N * hd, (g + 1) * N * hd);
        be.matmul(ph, A.qh.subarray(h * m * hd, (h + 1) * m * hd), kg, m, N, hd, { transB: true });
        if (this.bias) for (let i = 0; i < m; i++) for (let j = 0; j < nc; j++) ph[i * N + j] += this.bias[j];
        maskedSoftmax(be, ph, m, N, true);
        be.matmul(oh.subarray(h * m * hd, (h + 1) * m * hd), ph, vg, m, hd, N, {});
      }
      headsToRows(A.att, oh, m, 0, m, c.nHeads, hd);
      A.xm.set(x);
      frozenLinear(be, A.xm, A.att, W.wo, m, d, qDim, true);
      x = mlpForward(be, A, W, m, d, ff, c.rmsNormEps);
    }
    const R = this.outRows;
    this.xF = x;
    this.rstdF = f(m);
    this.xnF = f(m * d);
    rmsnormForward(this.xnF, this.rstdF, x, model.weights.norm, m, d, c.rmsNormEps);
    const logits = f(R * V);
    frozenLinear(be, logits, this.xnF.subarray((m - R) * d), model.weights.lmHead, R, V, d);
    return logits;
  }

  /** From ∂loss/∂logits [outRows, vocab] to the prefix rows and the bias. */
  backward(dLogits: Float32Array): StudentGrads {
    const { model, be, nc } = this;
    const { c, m, N, d, ff, hd, V, qDim, kvDim, invFreq, scale, group } = this.dims;
    const f = (k: number) => new Float32Array(k);
    const R = this.outRows;
    const dXn = f(m * d);
    frozenLinearBackward(be, dXn.subarray((m - R) * d), dLogits, model.weights.lmHead, R, V, d);
    const dRes = f(m * d);
    rmsnormBackward(dRes, null, dXn, this.xF, model.weights.norm, this.rstdF, m, d);
    const scratch = { dXn, dH: f(m * ff), dGate: f(m * ff), dUp: f(m * ff) };
    const dAtt = f(m * qDim), dOh = f(m * qDim);
    const dqh = f(m * qDim), dkh = f(N * kvDim), dvh = f(N * kvDim), ds = f(m * N);
    const dq = f(m * qDim), dk = f(m * kvDim), dv = f(m * kvDim);
    const out: StudentGrads = { dK: [], dV: [], dBias: f(nc) };
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const A = this.layers[l];
      const W = model.weights.layers[l];
      mlpBackward(be, dRes, A, W, m, d, ff, scratch);
      frozenLinearBackward(be, dAtt, dRes, W.wo, m, d, qDim);
      rowsToHeads(dOh, m, 0, dAtt, m, c.nHeads, hd);
      dkh.fill(0);
      dvh.fill(0);
      for (let h = 0; h < c.nHeads; h++) {
        const g = Math.floor(h / group);
        const hq = (a: Float32Array) => a.subarray(h * m * hd, (h + 1) * m * hd);
        const hk = (a: Float32Array) => a.subarray(g * N * hd, (g + 1) * N * hd);
        headAttentionBackward(be, hq(dqh), hk(dkh), hk(dvh), hq(dOh), A.p.subarray(h * m * N, (h + 1) * m * N), hq(A.qh), hk(A.kh), hk(A.vh), ds, m, N, hd, true);
        // ds now holds ∂/∂(logits) of this head: the bias is added to the prefix columns as is
        for (let i = 0; i < m; i++) for (let j = 0; j < nc; j++) out.dBias[j] += ds[i * N + j];
      }
      headsToRows(dq, dqh, m, 0, m, c.nHeads, hd, scale);
      headsToRows(dk, dkh, N, nc, m, c.nKVHeads, hd);
      headsToRows(dv, dvh, N, nc, m, c.nKVHeads, hd);
      be.rope(dq, m, c.nHeads, hd, this.positions, invFreq, true);
      be.rope(dk, m, c.nKVHeads, hd, this.positions, invFreq, true);
      const dKc = f(nc * kvDim), dVc = f(nc * kvDim);
      headsToRows(dKc, dkh, N, 0, nc, c.nKVHeads, hd);
      headsToRows(dVc, dvh, N, 0, nc, c.nKVHeads, hd);
      out.dK[l] = dKc;
      out.dV[l] = dVc;
      frozenLinearBackward(be, dXn, dq, W.wq, m, qDim, d);
      frozenLinearBackward(be, dXn, dk, W.wk, m, kvDim, d, true);
      frozenLinearBackward(be, dXn, dv, W.wv, m, kvDim, d, true);
      rmsnormBackward(dRes, null, dXn, A.x, W.attnNorm, A.rstd1, m, d);
    }
    return out;
  }
}

/** x[r, :] += b for every row of x [rows, b.length]. */
function addRow(x: Float32Array, b: Float32Array, rows: number): void {
  const w = b.length;
  for (let r = 0; r < rows; r++) for (let i = 0; i < w; i++) x[r * w + i] += b[i];
}
