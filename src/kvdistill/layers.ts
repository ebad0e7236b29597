// Small building blocks of the KV-Distill passes: a frozen Linear with an optional, optionally
// row-routed LoRA adapter, frozen-Linear backward, the frozen MLP half of a layer, and
// head-major row copies into a larger key/value block. Per-example buffers (context lengths vary), so nothing here is pooled.
import type { Backend, MatmulOptions } from '../kernels/backend.js';
import type { LayerWeights } from '../model/types.js';
import type { LoraAdapter } from '../train/lora.js';
import { addBias, rmsnormBackward, rmsnormForward, swigluBackward, swigluForward } from '../train/ops.js';

const TRANS_B: MatmulOptions = { transB: true };
const TRANS_B_ACC: MatmulOptions = { transB: true, accumulate: true };
const TRANS_A_ACC: MatmulOptions = { transA: true, accumulate: true };
const PLAIN: MatmulOptions = {};
const ACC: MatmulOptions = { accumulate: true };

/**
 * y[rows, out] = x[rows, in]·Wᵀ (+ b) + s·mask ∘ ((x·Aᵀ)·Bᵀ): the base weight is frozen; the
 * adapter, when present, is added only on rows whose mask is 1 (mask null: every row). This is
 * KV-Distill's routing: Q and O adapters act on the selected tokens only.
 */
export class AdaptedLinear {
  /** s·mask∘(x·Aᵀ) [rows, rank], kept for the backward. */
  private readonly sxa: Float32Array;

  constructor(private readonly be: Backend, readonly w: Float32Array, readonly b: Float32Array | null, readonly lora: LoraAdapter | null,
    readonly inDim: number, readonly outDim: number, readonly rows: number, readonly mask: Float32Array | null) {
    this.sxa = new Float32Array(lora ? rows * lora.rank : 0);
  }

  forward(y: Float32Array, x: Float32Array, accumulate: boolean): void {
    const { be, inDim, outDim, rows } = this;
    be.matmul(y, x, this.w, rows, outDim, inDim, accumulate ? TRANS_B_ACC : TRANS_B);
    if (this.b) addBias(y, this.b, rows, outDim);
    const ad = this.lora;
    if (!ad) return;
    const r = ad.rank;
    be.matmul(this.sxa, x, ad.a.data, rows, r, inDim, TRANS_B); // x·Aᵀ
    scaleRows(this.sxa, ad.scale, this.mask, rows, r);
    be.matmul(y, this.sxa, ad.b.data, rows, outDim, r, TRANS_B_ACC); // y += (s·mask·xa)·Bᵀ
  }

  /** dx = (or += when accumulateDx) dy·W (+ the adapter path); dA, dB += their gradients. */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, accumulateDx: boolean): void {
    const { be, inDim, outDim, rows } = this;
    be.matmul(dx, dy, this.w, rows, inDim, outDim, accumulateDx ? ACC : PLAIN);
    const ad = this.lora;
    if (!ad) return;
    const r = ad.rank;
    be.matmul(ad.b.grad!, dy, this.sxa, outDim, r, rows, TRANS_A_ACC); // dB += dyᵀ·(s·mask·xa)
    const dxa = new Float32Array(rows * r);
    be.matmul(dxa, dy, ad.b.data, rows, r, outDim, PLAIN); // dy·B
    scaleRows(dxa, ad.scale, this.mask, rows, r);
    be.matmul(ad.a.grad!, dxa, x, r, inDim, rows, TRANS_A_ACC); // dA += dxaᵀ·x
    be.matmul(dx, dxa, ad.a.data, rows, inDim, r, ACC); // dx += dxa·A
  }
}

/** x[r, :] *= s·mask[r] (mask null: s). */
function scaleRows(x: Float32Array, s: number, mask: Float32Array | null, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const f = mask ? s * mask[r] : s;
    const o = r * cols;
    for (let i = 0; i < cols; i++) x[o + i] *= f;
  }
}

/** y[rows, out] = x·Wᵀ (or += when accumulate) for a frozen W [out, in]. */
export function frozenLinear(be: Backend, y: Float32Array, x: Float32Array, w: Float32Array, rows: number, outDim: number, inDim: number, accumulate = false): void {
  be.matmul(y, x, w, rows, outDim, inDim, accumulate ? TRANS_B_ACC : TRANS_B);
}

/** dx[rows, in] = dy[rows, out]·W (or += when accumulate) for a frozen W [out, in]. */
export function frozenLinearBackward(be: Backend, dx: Float32Array, dy: Float32Array, w: Float32Array, rows: number, outDim: number, inDim: number, accumulate = false): void {
  be.matmul(dx, dy, w, rows, inDim, outDim, accumulate ? ACC : PLAIN);
}

/** Activations of a layer's frozen MLP half, kept for its backward. */
export interface MlpActs {
  /** The MLP's input: the residual stream after attention [rows, d]. */
  xm: Float32Array;
  rstd2: Float32Array; xn2: Float32Array; // [rows], [rows, d]
  gate: Float32Array; up: Float32Array; s: Float32Array; h: Float32Array; // [rows, ff]
}

/** The residual stream out of a layer, xm + down(swiglu(gate, up)(rmsnorm(xm))) [rows, d], filling A's activations. */
export function mlpForward(be: Backend, A: MlpActs, W: LayerWeights, rows: number, d: number, ff: number, eps: number): Float32Array<ArrayBuffer> {
  rmsnormForward(A.xn2, A.rstd2, A.xm, W.mlpNorm, rows, d, eps);
  frozenLinear(be, A.gate, A.xn2, W.wGate, rows, ff, d);
  frozenLinear(be, A.up, A.xn2, W.wUp, rows, ff, d);
  swigluForward(be, A.h, A.s, A.gate, A.up, rows * ff);
  const x = Float32Array.from(A.xm);
  frozenLinear(be, x, A.h, W.wDown, rows, d, ff, true);
  return x;
}

/**
 * The backward of mlpForward: dRes holds ∂/∂(layer output) [rows, d] on entry and ∂/∂xm on
 * return (the residual path kept, the MLP's added). dXn [rows, d] and dH, dGate, dUp [rows, ff] are scratch.
 */
export function mlpBackward(be: Backend, dRes: Float32Array, A: MlpActs, W: LayerWeights, rows: number, d: number, ff: number,
  scratch: { dXn: Float32Array; dH: Float32Array; dGate: Float32Array; dUp: Float32Array }): void {
  const { dXn, dH, dGate, dUp } = scratch;
  frozenLinearBackward(be, dH, dRes, W.wDown, rows, d, ff);
  swigluBackward(dGate, dUp, dH, A.gate, A.up, A.s, rows * ff);
  frozenLinearBackward(be, dXn, dGate, W.wGate, rows, ff, d);
  frozenLinearBackward(be, dXn, dUp, W.wUp, rows, ff, d, true);
  rmsnormBackward(dRes, null, dXn, A.xm, W.mlpNorm, A.rstd2, rows, d);
}

/**
 * Copies rows [n, heads*hd] of src into head-major dst [heads, total, hd] at rows row0..row0+n-1,
 * times scale (gatherHeads of ops.ts, into a block larger than the source).
 */
export function rowsToHeads(dst: Float32Array, total: number, row0: number, src: Float32Array, n: number, heads: number, hd: number, scale = 1): void {
  const width = heads * hd;
  for (let r = 0; r < n; r++) {
    for (let h = 0; h < heads; h++) {
      const s = r * width + h * hd;
      const d = (h * total + row0 + r) * hd;
      for (let i = 0; i < hd; i++) dst[d + i] = src[s + i] * scale;
    }
  }
}

/** The transpose of rowsToHeads: rows row0..row0+n-1 of head-major src [heads, total, hd] into dst [n, heads*hd]. */
export function headsToRows(dst: Float32Array, src: Float32Array, total: number, row0: number, n: number, heads: number, hd: number, scale = 1): void {
  const width = heads * hd;
  for (let r = 0; r < n; r++) {
    for (let h = 0; h < heads; h++) {
      const s = (h * total + row0 + r) * hd;
      const d = r * width + h * hd;
      for (let i = 0; i < hd; i++) dst[d + i] = src[s + i] * scale;
    }
  }
}

/** out[j, :] = src[idx[j], :] for rows of `width` floats. */
export function gatherRows(src: Float32Array, idx: Int32Array, width: number): Float32Array {
  const out = new Float32Array(idx.length * width);
  for (let j = 0; j < idx.length; j++) out.set(src.subarray(idx[j] * width, (idx[j] + 1) * width), j * width);
  return out;
}

/** dst[idx[j], :] += src[j, :] (the transpose of gatherRows). */
export function scatterAddRows(dst: Float32Array, src: Float32Array, idx: Int32Array, width: number): void {
  for (let j = 0; j < idx.length; j++) {
    const d = idx[j] * width, s = j * width;
    for (let i = 0; i < width; i++) dst[d + i] += src[s + i];
  }
}

/** Positions start, start+1, ..., start+n-1. */
export function positionsFrom(start: number, n: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = start + i;
  return p;
}
