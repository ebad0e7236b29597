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
import { gatherHeads, maskedSoftmax, scatterHeads, softmaxBackward } from './ops.js';

const PLAIN: MatmulOptions = {};
const TRANS_B: MatmulOptions = { transB: true };
const TRANS_A_ACC: MatmulOptions = { transA: true, accumulate: true };

/**
 * One head, forward. q [nQ, hd] already multiplied by the logit scale (1/sqrt(hd)), k and v
 * [nKV, hd] (head-major slices); writes the probabilities p [nQ, nKV] (kept for the backward)
 * and out [nQ, hd].
 */
export function headAttentionForward(be: Backend, out: Float32Array, p: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, nQ: number, nKV: number, hd: number, causal: boolean): void {
  be.matmul(p, q, k, nQ, nKV, hd, TRANS_B); // s = q kᵀ
  maskedSoftmax(be, p, nQ, nKV, causal);
  be.matmul(out, p, v, nQ, hd, nKV, PLAIN); // out = p v
}

/**
 * One head, backward. Given dOut [nQ, hd] and the forward's p, q, k, v: writes dq [nQ, hd]
 * (with respect to the scaled q), ADDS into dk, dv [nKV, hd] (query heads of a GQA group share
 * them). ds is scratch [nQ, nKV].
 */
export function headAttentionBackward(be: Backend, dq: Float32Array, dk: Float32Array, dv: Float32Array, dOut: Float32Array, p: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, ds: Float32Array, nQ: number, nKV: number, hd: number, causal: boolean): void {
  be.matmul(ds, dOut, v, nQ, nKV, hd, TRANS_B); // dp = dOut vᵀ
  be.matmul(dv, p, dOut, nKV, hd, nQ, TRANS_A_ACC); // dv += pᵀ dOut
  softmaxBackward(ds, p, nQ, nKV, causal); // ds = ∂/∂(q kᵀ)
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
  /** q [T, nHeads*hd], k and v [T, nKVHeads*hd] (pre-RoPE; may be overwritten) -> out [T, nHeads*hd]. */
  forward(layer: number, seq: number, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array): void;
  /** dOut [T, nHeads*hd] -> dq, dk, dv with respect to the pre-RoPE inputs (written, not added). */
  backward(layer: number, seq: number, dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
}

/** Builds the attention of a training model; invFreq [headDim/2] are the RoPE frequencies (rope_scaling included). */
export type AttentionFactory = (dims: AttentionDims, invFreq: Float32Array, be: Backend) => SequenceAttention;

/** Identity positions 0..n-1. */
export function positionsUpTo(n: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

/** `count` consecutive views of `size` floats over buf (one per head), made once so the step loop does not allocate. */
export function headViews(buf: Float32Array, count: number, size: number): Float32Array[] {
  return Array.from({ length: count }, (_, h) => buf.subarray(h * size, (h + 1) * size));
}

/** What one (layer, sequence) keeps for the backward, head-major, with per-head views. */
interface Kept {
  q: Float32Array; // [nHeads, T, hd], rotated and scaled by 1/sqrt(hd)
  k: Float32Array; // [nKVHeads, T, hd], rotated
  v: Float32Array; // [nKVHeads, T, hd]
  qv: Float32Array[]; kv: Float32Array[]; vv: Float32Array[];
  pv: Float32Array[]; // per head: probabilities [T, T]
}

/**
 * Ordinary causal self-attention at positions 0..T-1, with grouped-query heads. Keeps per
 * (layer, seq) the rotated head-major q, k, v and the probabilities: for T = 256, 8 heads
 * that is 2 MiB of probabilities per sequence and layer.
 */
export class CausalAttention implements SequenceAttention {
  private readonly kept: Kept[]; // per layer·batch + seq
  // scratch, head-major, with per-head views
  private readonly oh: Float32Array; private readonly ohv: Float32Array[]; // [nHeads, T, hd]: output, then dOut
  private readonly dqh: Float32Array; private readonly dqv: Float32Array[]; // [nHeads, T, hd]
  private readonly dkh: Float32Array; private readonly dkv: Float32Array[]; // [nKVHeads, T, hd]
  private readonly dvh: Float32Array; private readonly dvv: Float32Array[];
  private readonly ds: Float32Array; // [T, T]
  private readonly positions: Int32Array;
  private readonly scale: number;

  constructor(private readonly dims: AttentionDims, private readonly invFreq: Float32Array, private readonly be: Backend) {
    const { nLayers, batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = dims;
    if (nKVHeads <= 0 || nHeads % nKVHeads !== 0) throw new RangeError(`attention nHeads: expected a multiple of nKVHeads (${nKVHeads}), got ${nHeads}`);
    const th = T * hd;
    this.kept = Array.from({ length: nLayers * batch }, () => {
      const q = new Float32Array(nHeads * th), k = new Float32Array(nKVHeads * th), v = new Float32Array(nKVHeads * th);
      const p = new Float32Array(nHeads * T * T);
      return { q, k, v, qv: headViews(q, nHeads, th), kv: headViews(k, nKVHeads, th), vv: headViews(v, nKVHeads, th), pv: headViews(p, nHeads, T * T) };
    });
    this.oh = new Float32Array(nHeads * th);
    this.ohv = headViews(this.oh, nHeads, th);
    this.dqh = new Float32Array(nHeads * th);
    this.dqv = headViews(this.dqh, nHeads, th);
    this.dkh = new Float32Array(nKVHeads * th);
    this.dkv = headViews(this.dkh, nKVHeads, th);
    this.dvh = new Float32Array(nKVHeads * th);
    this.dvv = headViews(this.dvh, nKVHeads, th);
    this.ds = new Float32Array(T * T);
    this.positions = positionsUpTo(T);
    this.scale = 1 / Math.sqrt(hd);
  }

  forward(layer: number, seq: number, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array): void {
    const { batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = this.dims;
    const K = this.kept[layer * batch + seq];
    this.be.rope(q, T, nHeads, hd, this.positions, this.invFreq, false);
    this.be.rope(k, T, nKVHeads, hd, this.positions, this.invFreq, false);
    gatherHeads(K.q, q, 0, T, nHeads, hd, this.scale);
    gatherHeads(K.k, k, 0, T, nKVHeads, hd);
    gatherHeads(K.v, v, 0, T, nKVHeads, hd);
    const group = nHeads / nKVHeads;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      headAttentionForward(this.be, this.ohv[h], K.pv[h], K.qv[h], K.kv[g], K.vv[g], T, T, hd, true);
    }
    scatterHeads(out, 0, this.oh, T, nHeads, hd);
  }

  backward(layer: number, seq: number, dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void {
    const { batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = this.dims;
    const K = this.kept[layer * batch + seq];
    gatherHeads(this.oh, dOut, 0, T, nHeads, hd); // the forward scratch now holds dOut, head-major
    this.dkh.fill(0);
    this.dvh.fill(0);
    const group = nHeads / nKVHeads;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      headAttentionBackward(this.be, this.dqv[h], this.dkv[g], this.dvv[g], this.ohv[h], K.pv[h], K.qv[h], K.kv[g], K.vv[g], this.ds, T, T, hd, true);
    }
    scatterHeads(dq, 0, this.dqh, T, nHeads, hd, this.scale);
    scatterHeads(dk, 0, this.dkh, T, nKVHeads, hd);
    scatterHeads(dv, 0, this.dvh, T, nKVHeads, hd);
    this.be.rope(dq, T, nHeads, hd, this.positions, this.invFreq, true); // backward of a rotation: the inverse rotation
    this.be.rope(dk, T, nKVHeads, hd, this.positions, this.invFreq, true);
  }
}

export const causalAttention: AttentionFactory = (dims, invFreq, be) => new CausalAttention(dims, invFreq, be);
