// Attention for training: forward that keeps the softmax probabilities, and its backward.
//
// The unit of work is one head attending from an explicit list of query rows to an explicit
// list of key/value rows (already rotated to whatever positions the caller assigns), causal
// aligned to the end. Plain causal training uses it once per head with keys = the sequence
// itself at positions 0..T-1 (CausalAttention below). The FreqKV grouped schedule
// (FREQKV.md sections 2-3) is the same unit called per group, with keys
// [sinks | M·earlier rows | group so far] at slot positions; the gradient of the compressed
// block flows back through Mᵀ. That schedule plugs in as another SequenceAttention.
import type { Backend, MatmulOptions } from '../kernels/backend.js';
import { gatherHeads, maskedSoftmax, type RopeTable, scatterHeads, softmaxBackward } from './ops.js';

const PLAIN: MatmulOptions = {};
const TRANS_B: MatmulOptions = { transB: true };
const TRANS_A_ACC: MatmulOptions = { transA: true, accumulate: true };

/**
 * One head, forward. q [nQ, hd], k and v [nKV, hd] (head-major slices); writes the
 * probabilities p [nQ, nKV] (kept for the backward) and out [nQ, hd].
 */
export function headAttentionForward(be: Backend, out: Float32Array, p: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, nQ: number, nKV: number, hd: number, scale: number, causal: boolean): void {
  be.matmul(p, q, k, nQ, nKV, hd, TRANS_B); // s = q kᵀ
  maskedSoftmax(p, nQ, nKV, scale, causal);
  be.matmul(out, p, v, nQ, hd, nKV, PLAIN); // out = p v
}

/**
 * One head, backward. Given dOut [nQ, hd] and the forward's p, q, k, v: writes dq [nQ, hd],
 * ADDS into dk, dv [nKV, hd] (query heads of a GQA group share them). ds is scratch [nQ, nKV].
 */
export function headAttentionBackward(be: Backend, dq: Float32Array, dk: Float32Array, dv: Float32Array, dOut: Float32Array, p: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, ds: Float32Array, nQ: number, nKV: number, hd: number, scale: number): void {
  be.matmul(ds, dOut, v, nQ, nKV, hd, TRANS_B); // dp = dOut vᵀ
  be.matmul(dv, p, dOut, nKV, hd, nQ, TRANS_A_ACC); // dv += pᵀ dOut
  softmaxBackward(ds, p, nQ, nKV, scale); // ds = ∂/∂(q kᵀ)
  be.matmul(dq, ds, k, nQ, hd, nKV, PLAIN); // dq = ds k
  be.matmul(dk, ds, q, nKV, hd, nQ, TRANS_A_ACC); // dk += dsᵀ q
}

export interface AttentionDims {
  nLayers: number;
  /** Sequences per micro-batch. */
  batch: number;
  /** Tokens per sequence. */
  seqLen: number;
  nHeads: number;
  nKVHeads: number;
  headDim: number;
}

/**
 * The attention of one sequence of one layer, as the training model calls it. Inputs are the
 * PRE-RoPE projections; the implementation decides positions (and, for FreqKV, compression).
 * It keeps what its backward needs per (layer, seq) between forward and backward.
 */
export interface SequenceAttention {
  /** q [T, nHeads*hd], k and v [T, nKVHeads*hd] (pre-RoPE) -> out [T, nHeads*hd]. */
  forward(layer: number, seq: number, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array): void;
  /** dOut [T, nHeads*hd] -> dq, dk, dv with respect to the pre-RoPE inputs (written, not added). */
  backward(layer: number, seq: number, dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
}

export type AttentionFactory = (dims: AttentionDims, rope: RopeTable, be: Backend) => SequenceAttention;

/** Identity positions 0..n-1. */
export function positionsUpTo(n: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

/**
 * Ordinary causal self-attention at positions 0..T-1, with grouped-query heads. Keeps per
 * (layer, seq) the rotated head-major q, k, v and the probabilities: for T = 256, 8 heads
 * that is 2 MiB of probabilities per sequence and layer.
 */
export class CausalAttention implements SequenceAttention {
  private readonly qh: Float32Array[]; // per (layer, seq): [nHeads, T, hd] rotated
  private readonly kh: Float32Array[]; // [nKVHeads, T, hd] rotated
  private readonly vh: Float32Array[]; // [nKVHeads, T, hd]
  private readonly probs: Float32Array[]; // [nHeads, T, T]
  private readonly oh: Float32Array; // scratch [nHeads, T, hd]
  private readonly dqh: Float32Array; // scratch [nHeads, T, hd]
  private readonly dkh: Float32Array; // scratch [nKVHeads, T, hd]
  private readonly dvh: Float32Array;
  private readonly ds: Float32Array; // scratch [T, T]
  private readonly positions: Int32Array;
  private readonly scale: number;

  constructor(private readonly dims: AttentionDims, private readonly rope: RopeTable, private readonly be: Backend) {
    const { nLayers, batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = dims;
    if (nKVHeads <= 0 || nHeads % nKVHeads !== 0) throw new RangeError(`attention nHeads: expected a multiple of nKVHeads (${nKVHeads}), got ${nHeads}`);
    if (T > rope.maxPos) throw new RangeError(`attention seqLen: ${T} exceeds the rope table (${rope.maxPos} positions)`);
    const n = nLayers * batch;
    const alloc = (size: number) => Array.from({ length: n }, () => new Float32Array(size));
    this.qh = alloc(nHeads * T * hd);
    this.kh = alloc(nKVHeads * T * hd);
    this.vh = alloc(nKVHeads * T * hd);
    this.probs = alloc(nHeads * T * T);
    this.oh = new Float32Array(nHeads * T * hd);
    this.dqh = new Float32Array(nHeads * T * hd);
    this.dkh = new Float32Array(nKVHeads * T * hd);
    this.dvh = new Float32Array(nKVHeads * T * hd);
    this.ds = new Float32Array(T * T);
    this.positions = positionsUpTo(T);
    this.scale = 1 / Math.sqrt(hd);
  }

  forward(layer: number, seq: number, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array): void {
    const { batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = this.dims;
    const i = layer * batch + seq;
    const qh = this.qh[i], kh = this.kh[i], vh = this.vh[i], p = this.probs[i];
    gatherHeads(qh, q, 0, T, nHeads, hd, this.rope, this.positions);
    gatherHeads(kh, k, 0, T, nKVHeads, hd, this.rope, this.positions);
    gatherHeads(vh, v, 0, T, nKVHeads, hd, null, null);
    const group = nHeads / nKVHeads;
    const th = T * hd;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      headAttentionForward(this.be, this.oh.subarray(h * th, (h + 1) * th), p.subarray(h * T * T, (h + 1) * T * T),
        qh.subarray(h * th, (h + 1) * th), kh.subarray(g * th, (g + 1) * th), vh.subarray(g * th, (g + 1) * th), T, T, hd, this.scale, true);
    }
    scatterHeads(out, 0, this.oh, T, nHeads, hd, null, null, false);
  }

  backward(layer: number, seq: number, dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void {
    const { batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = this.dims;
    const i = layer * batch + seq;
    const qh = this.qh[i], kh = this.kh[i], vh = this.vh[i], p = this.probs[i];
    const doh = this.oh; // reuse the forward scratch for dOut in head-major layout
    gatherHeads(doh, dOut, 0, T, nHeads, hd, null, null);
    this.dkh.fill(0);
    this.dvh.fill(0);
    const group = nHeads / nKVHeads;
    const th = T * hd;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const hs = h * th, gs = g * th;
      headAttentionBackward(this.be, this.dqh.subarray(hs, hs + th), this.dkh.subarray(gs, gs + th), this.dvh.subarray(gs, gs + th),
        doh.subarray(hs, hs + th), p.subarray(h * T * T, (h + 1) * T * T), qh.subarray(hs, hs + th), kh.subarray(gs, gs + th),
        vh.subarray(gs, gs + th), this.ds, T, T, hd, this.scale);
    }
    scatterHeads(dq, 0, this.dqh, T, nHeads, hd, this.rope, this.positions, false);
    scatterHeads(dk, 0, this.dkh, T, nKVHeads, hd, this.rope, this.positions, false);
    scatterHeads(dv, 0, this.dvh, T, nKVHeads, hd, null, null, false);
  }
}

export const causalAttention: AttentionFactory = (dims, rope, be) => new CausalAttention(dims, rope, be);
