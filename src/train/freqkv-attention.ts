// The FreqKV grouped schedule (shared/spec/FREQKV.md sections 2-3) as a training attention, so
// that fine-tuning runs with the compression inside the gradient path.
//
// Per sequence of T tokens, per layer, K and V alike (all KV heads at once: the operator mixes
// tokens, never channels, so this is "per KV head"):
//   group 0: tokens 0..min(T,N)-1, ordinary causal attention at positions 0..;
//   then repeatedly: block <- M·concat(block, tail) (M the L x n operator; n = N - S every time,
//   since a compression only happens when the set is full), and the next group of up to
//   G = N - S - L tokens attends to [sinks | block | group so far], causal aligned to the end.
// Positions are slots, exactly as FreqKVCache assigns them: sinks 0..S-1, block S..S+L-1, group
// token i at S+L+i (its query too), so no position exceeds N-1. Token-by-token decoding with
// the cache hits the same compression points with the same inputs (test/freqkv-train.test.ts).
//
// rope 'pre' (the method): the set holds pre-RoPE keys; compression acts on them and every key
// of a group's set is rotated to its current slot. rope 'post' (the paper's failing ablation,
// the same definition as FreqKVCache's): each key is rotated once, at the slot it arrives in
// (token t < N at t; group token i at S+L+i), and compression acts on the rotated keys; the
// compressed rows are never re-rotated, so they mix the phases of many positions. Queries use
// their slot position either way.
//
// Backward, per group from the last to the first: the gradient G_g with respect to the set's
// content at group g is the group's own attention gradient (through the inverse rotation under
// 'pre') plus what the next set sends back: its sink rows unchanged, and Mᵀ·(its block rows)
// into rows S..N-1 (M is linear, so the block of compression c feeds compression c+1 through
// Mᵀ). The group's own rows of G_g are then the gradient of its input keys and values.
//
// The operator: n = N - S is the only span length, so the L x n matrix is built once and the
// forward / backward are one Backend.matmul each (transA for Mᵀ), allocation-free. That is the
// fastest route where FreqKV's own measurements say so (chooseFreqMethod: native backend and
// n <= FREQ_DENSE_MAX); elsewhere (the reference backend, long spans) freqCompress /
// freqCompressTranspose take the DCT route, the same linear map.
import type { Backend, MatmulOptions } from '../kernels/backend.js';
import type { FreqRope } from '../cache/freqkv.js';
import {
  chooseFreqMethod, type FreqKeep, type FreqMethod, type FreqScaling, freqCompress, freqCompressTranspose, freqOperatorMatrix,
} from '../dsp/freqkv-op.js';
import {
  type AttentionDims, type AttentionFactory, headAttentionBackward, headAttentionForward, headViews, positionsUpTo, type SequenceAttention,
} from './attention.js';
import { gatherHeads, scatterHeads } from './ops.js';

const PLAIN: MatmulOptions = {};
const TRANS_A_ACC: MatmulOptions = { transA: true, accumulate: true };

export interface FreqKVAttentionOptions {
  /** N: most rows of a key set (the cache size at inference). */
  cacheSize: number;
  /** S: first tokens never compressed (default 4). */
  sinks?: number;
  /** gamma in (0, 1): the block keeps L = floor((N - S) * gamma) rows (default 0.5). */
  retain?: number;
  /** Ablations (defaults: the method's low frequencies, sqrt(L/n), compression before RoPE). */
  keep?: FreqKeep;
  /** 'amplitude' or 'none' ('energy' is data dependent: not a linear map, no transpose here). */
  scaling?: FreqScaling;
  rope?: FreqRope;
  /** Route of the operator: 'auto' (see the header), 'dense' (the explicit matrix), 'fft' or 'backend' (DCTs). */
  method?: FreqMethod;
}

/** The sizes of the schedule, checked like FreqKVCache's. */
export interface FreqKVParams {
  N: number;
  S: number;
  L: number;
}

export function freqkvParams(opts: FreqKVAttentionOptions): FreqKVParams {
  const N = opts.cacheSize;
  const S = opts.sinks ?? 4;
  const gamma = opts.retain ?? 0.5;
  if (!Number.isInteger(N) || N < 2) throw new RangeError(`freqkv attention: cache size must be an integer >= 2, got ${N}`);
  if (!Number.isInteger(S) || S < 0 || S >= N) throw new RangeError(`freqkv attention: sinks must be an integer in [0, cache size - 1 = ${N - 1}], got ${S}`);
  if (typeof gamma !== 'number' || !(gamma > 0 && gamma < 1)) throw new RangeError(`freqkv attention: retain must be a number in (0, 1), got ${gamma}`);
  const L = Math.floor((N - S) * gamma);
  if (L < 1 || S + L >= N) {
    throw new RangeError(`freqkv attention: retain ${gamma} with cache size ${N} and ${S} sinks gives a block of L = ${L} rows; need 1 <= L < cache size - sinks (${N - S})`);
  }
  const keep = opts.keep ?? 'low';
  const scaling = opts.scaling ?? 'amplitude';
  const rope = opts.rope ?? 'pre';
  const method = opts.method ?? 'auto';
  if (keep !== 'low' && keep !== 'high') throw new RangeError(`freqkv attention: keep must be low or high, got ${String(keep)}`);
  if (scaling !== 'amplitude' && scaling !== 'none') {
    throw new RangeError(`freqkv attention: scaling must be amplitude or none for training (energy is data dependent and has no transpose), got ${String(scaling)}`);
  }
  if (rope !== 'pre' && rope !== 'post') throw new RangeError(`freqkv attention: rope must be pre or post, got ${String(rope)}`);
  if (!['auto', 'dense', 'fft', 'backend'].includes(method)) throw new RangeError(`freqkv attention: method must be auto, dense, fft or backend, got ${String(method)}`);
  return { N, S, L };
}

/** One group of the schedule: queries = tokens start..start+len-1 at slots slot0..slot0+len-1; keys = the set's first `kv` rows. */
export interface FreqKVGroup {
  start: number;
  len: number;
  slot0: number;
  kv: number;
}

/** The groups of a sequence of T tokens (group g >= 1 comes after compression g). */
export function freqkvGroups(T: number, N: number, S: number, L: number): FreqKVGroup[] {
  const first = Math.min(T, N);
  const groups: FreqKVGroup[] = [{ start: 0, len: first, slot0: 0, kv: first }];
  const G = N - S - L;
  for (let start = N; start < T; start += G) {
    const len = Math.min(G, T - start);
    groups.push({ start, len, slot0: S + L, kv: S + L + len });
  }
  return groups;
}

/** What one (layer, sequence) keeps for the backward: head-major per group, with per-group per-head views. */
interface Kept {
  q: Grouped; // per group [nHeads, len, hd], rotated and scaled by 1/sqrt(hd)
  k: Grouped; // per group [nKVHeads, kv, hd]: the set's keys as attended (rotated)
  v: Grouped; // per group [nKVHeads, kv, hd]
  p: Grouped; // per group [nHeads, len, kv]: probabilities
}

/** Head-major data of each group: whole[g] spans all heads of group g, views[g][h] one head. */
interface Grouped {
  whole: Float32Array[];
  views: Float32Array[][];
}

/**
 * Per group, `heads` consecutive views of size(g) floats over buf; groups follow one another
 * when packed, else every group starts at 0 (scratch reused by each group in turn).
 */
function grouped(buf: Float32Array, groups: readonly FreqKVGroup[], heads: number, size: (g: FreqKVGroup) => number, packed: boolean): Grouped {
  const whole: Float32Array[] = [], views: Float32Array[][] = [];
  let off = 0;
  for (const g of groups) {
    const s = size(g);
    const w = buf.subarray(off, off + heads * s);
    whole.push(w);
    views.push(headViews(w, heads, s));
    if (packed) off += heads * s;
  }
  return { whole, views };
}

/**
 * FreqKV grouped attention with grouped-query heads. Per (layer, seq) it keeps q (T rows), the
 * key/value set of each group (<= N rows each) and the probabilities [len, kv] of each group:
 * for T = 2048, N = 256, S = 4, gamma = 0.5 that is one 256 x 256 group and 15 of at most
 * 126 x 256, 2 MiB of probabilities per head (plain causal attention at T = 2048 keeps 16 MiB
 * per head); ~21 MiB per (layer, seq) with 8 heads of 32 (2 KV), scratch included.
 */
export class FreqKVAttention implements SequenceAttention {
  readonly N: number;
  readonly S: number;
  readonly L: number;
  readonly groups: readonly FreqKVGroup[];
  private readonly keep: FreqKeep;
  private readonly scaling: FreqScaling;
  private readonly rope: FreqRope;
  /** The operator [L, n] when the dense route is taken, else null (DCT route with `method`). */
  private readonly M: Float32Array | null;
  private readonly method: Exclude<FreqMethod, 'auto'>;
  private readonly kept: Kept[]; // per layer·batch + seq
  // scratch, row-major [rows, kvDim]: the set's content (pre-RoPE under 'pre', rotated under 'post')
  private readonly curK: Float32Array; private readonly curV: Float32Array; // [N, kvDim]
  private readonly rotK: Float32Array; // [N, kvDim] the set's keys rotated to their slots ('pre')
  private readonly blockTmp: Float32Array; // [L, kvDim]
  // backward: G_g and G_{g+1} alternate in [2] (gradients of the set's content)
  private readonly gK: Float32Array[]; private readonly gV: Float32Array[]; // [kvMax, kvDim]
  // scratch, head-major, with per-group per-head views
  private readonly ohv: Float32Array[][]; // [nHeads, len, hd]: output, then dOut
  private readonly oh: Float32Array;
  private readonly dqh: Float32Array; private readonly dqv: Float32Array[][];
  private readonly dkh: Float32Array; private readonly dkv: Float32Array[][]; // [nKVHeads, kv, hd]
  private readonly dvh: Float32Array; private readonly dvv: Float32Array[][];
  private readonly ds: Float32Array; // [lenMax, kvMax]
  private readonly slots: Int32Array;
  private readonly scale: number;

  constructor(private readonly dims: AttentionDims, private readonly invFreq: Float32Array, private readonly be: Backend, opts: FreqKVAttentionOptions) {
    const { N, S, L } = freqkvParams(opts);
    const { nLayers, batch, seqLen: T, nHeads, nKVHeads, headDim: hd } = dims;
    if (nKVHeads <= 0 || nHeads % nKVHeads !== 0) throw new RangeError(`attention nHeads: expected a multiple of nKVHeads (${nKVHeads}), got ${nHeads}`);
    this.N = N; this.S = S; this.L = L;
    this.keep = opts.keep ?? 'low';
    this.scaling = opts.scaling ?? 'amplitude';
    this.rope = opts.rope ?? 'pre';
    const n = N - S;
    const m = opts.method ?? 'auto';
    this.method = m === 'auto' ? chooseFreqMethod(n, be) : m;
    this.M = T > N && this.method === 'dense' ? freqOperatorMatrix(n, L, { keep: this.keep, scaling: this.scaling }) : null;
    const groups = (this.groups = freqkvGroups(T, N, S, L));
    const D = nKVHeads * hd;
    const kvMax = Math.min(T, N); // group 0 is the widest query group and no set exceeds N rows
    const lenMax = groups[0].len;

    const qRows = T, kvRows = groups.reduce((a, g) => a + g.kv, 0), pSize = groups.reduce((a, g) => a + g.len * g.kv, 0);
    const f = (size: number) => new Float32Array(size);
    const qSize = (g: FreqKVGroup) => g.len * hd, kvSize = (g: FreqKVGroup) => g.kv * hd, pSizeOf = (g: FreqKVGroup) => g.len * g.kv;
    this.kept = Array.from({ length: nLayers * batch }, () => ({
      q: grouped(f(nHeads * qRows * hd), groups, nHeads, qSize, true),
      k: grouped(f(nKVHeads * kvRows * hd), groups, nKVHeads, kvSize, true),
      v: grouped(f(nKVHeads * kvRows * hd), groups, nKVHeads, kvSize, true),
      p: grouped(f(nHeads * pSize), groups, nHeads, pSizeOf, true),
    }));
    this.curK = new Float32Array(N * D);
    this.curV = new Float32Array(N * D);
    this.rotK = new Float32Array(N * D);
    this.blockTmp = new Float32Array(L * D);
    this.gK = [new Float32Array(kvMax * D), new Float32Array(kvMax * D)];
    this.gV = [new Float32Array(kvMax * D), new Float32Array(kvMax * D)];
    this.oh = f(nHeads * lenMax * hd);
    this.ohv = grouped(this.oh, groups, nHeads, qSize, false).views;
    this.dqh = f(nHeads * lenMax * hd);
    this.dqv = grouped(this.dqh, groups, nHeads, qSize, false).views;
    this.dkh = f(nKVHeads * kvMax * hd);
    this.dkv = grouped(this.dkh, groups, nKVHeads, kvSize, false).views;
    this.dvh = f(nKVHeads * kvMax * hd);
    this.dvv = grouped(this.dvh, groups, nKVHeads, kvSize, false).views;
    this.ds = new Float32Array(lenMax * kvMax);
    this.slots = positionsUpTo(N);
    this.scale = 1 / Math.sqrt(hd);
  }

  /** Compressions per sequence. */
  get compressions(): number {
    return this.groups.length - 1;
  }

  /** cur rows [S, N) -> M·them in rows [S, S+L) (cur [N, D]). */
  private compress(cur: Float32Array): void {
    const { N, S, L } = this;
    const D = this.dims.nKVHeads * this.dims.headDim;
    const x = cur.subarray(S * D, N * D);
    if (this.M) {
      this.be.matmul(this.blockTmp, this.M, x, L, D, N - S, PLAIN);
      cur.set(this.blockTmp, S * D);
    } else {
      cur.set(freqCompress(x, N - S, D, L, this.opOptions()), S * D);
    }
  }

  /** g rows [S, N) += Mᵀ·(next rows [S, S+L)), both [*, D]. */
  private compressTransposeAdd(g: Float32Array, next: Float32Array): void {
    const { N, S, L } = this;
    const D = this.dims.nKVHeads * this.dims.headDim;
    const out = g.subarray(S * D, N * D);
    const y = next.subarray(S * D, (S + L) * D);
    if (this.M) {
      this.be.matmul(out, this.M, y, N - S, D, L, TRANS_A_ACC);
    } else {
      const x = freqCompressTranspose(y, N - S, D, L, this.opOptions());
      for (let i = 0; i < x.length; i++) out[i] += x[i];
    }
  }

  private opOptions() {
    return { keep: this.keep, scaling: this.scaling, method: this.method, backend: this.be };
  }

  forward(layer: number, seq: number, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array): void {
    const { batch, nHeads, nKVHeads, headDim: hd } = this.dims;
    const D = nKVHeads * hd, qDim = nHeads * hd;
    const K = this.kept[layer * batch + seq];
    const { curK, curV, slots, invFreq, be } = this;
    const group = nHeads / nKVHeads;
    for (let g = 0; g < this.groups.length; g++) {
      const { start, len, slot0, kv } = this.groups[g];
      if (g > 0) {
        this.compress(curK);
        this.compress(curV);
      }
      // the group's tokens enter the set at slots slot0..
      curK.set(k.subarray(start * D, (start + len) * D), slot0 * D);
      curV.set(v.subarray(start * D, (start + len) * D), slot0 * D);
      const rows = slots.subarray(slot0, slot0 + len);
      let keys = curK;
      if (this.rope === 'post') {
        be.rope(curK.subarray(slot0 * D, kv * D), len, nKVHeads, hd, rows, invFreq, false); // rotated once, on arrival
      } else {
        keys = this.rotK;
        keys.set(curK.subarray(0, kv * D));
        be.rope(keys, kv, nKVHeads, hd, slots.subarray(0, kv), invFreq, false);
      }
      const qRows = q.subarray(start * qDim, (start + len) * qDim);
      be.rope(qRows, len, nHeads, hd, rows, invFreq, false);
      gatherHeads(K.q.whole[g], qRows, 0, len, nHeads, hd, this.scale);
      gatherHeads(K.k.whole[g], keys, 0, kv, nKVHeads, hd);
      gatherHeads(K.v.whole[g], curV, 0, kv, nKVHeads, hd);
      for (let h = 0; h < nHeads; h++) {
        const gh = Math.floor(h / group);
        headAttentionForward(be, this.ohv[g][h], K.p.views[g][h], K.q.views[g][h], K.k.views[g][gh], K.v.views[g][gh], len, kv, hd, true);
      }
      scatterHeads(out, start, this.oh, len, nHeads, hd);
    }
  }

  backward(layer: number, seq: number, dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void {
    const { batch, nHeads, nKVHeads, headDim: hd } = this.dims;
    const D = nKVHeads * hd, qDim = nHeads * hd;
    const K = this.kept[layer * batch + seq];
    const { slots, invFreq, be, S } = this;
    const group = nHeads / nKVHeads;
    const last = this.groups.length - 1;
    for (let g = last; g >= 0; g--) {
      const { start, len, slot0, kv } = this.groups[g];
      gatherHeads(this.oh, dOut, start, len, nHeads, hd); // the forward scratch now holds dOut, head-major
      this.dkh.fill(0, 0, nKVHeads * kv * hd);
      this.dvh.fill(0, 0, nKVHeads * kv * hd);
      for (let h = 0; h < nHeads; h++) {
        const gh = Math.floor(h / group);
        headAttentionBackward(be, this.dqv[g][h], this.dkv[g][gh], this.dvv[g][gh], this.ohv[g][h], K.p.views[g][h], K.q.views[g][h], K.k.views[g][gh], K.v.views[g][gh], this.ds, len, kv, hd, true);
      }
      const rows = slots.subarray(slot0, slot0 + len);
      const dqRows = dq.subarray(start * qDim, (start + len) * qDim);
      scatterHeads(dqRows, 0, this.dqh, len, nHeads, hd, this.scale);
      be.rope(dqRows, len, nHeads, hd, rows, invFreq, true); // backward of a rotation: the inverse rotation
      // G_g: this group's attention gradient with respect to the set's content ...
      const GK = this.gK[g & 1], GV = this.gV[g & 1];
      scatterHeads(GK, 0, this.dkh, kv, nKVHeads, hd);
      scatterHeads(GV, 0, this.dvh, kv, nKVHeads, hd);
      if (this.rope === 'pre') be.rope(GK, kv, nKVHeads, hd, slots.subarray(0, kv), invFreq, true);
      // ... plus what the next set took from it: the sinks as they are, rows S..N-1 through M.
      if (g < last) {
        const PK = this.gK[(g + 1) & 1], PV = this.gV[(g + 1) & 1];
        for (let i = 0; i < S * D; i++) {
          GK[i] += PK[i];
          GV[i] += PV[i];
        }
        this.compressTransposeAdd(GK, PK);
        this.compressTransposeAdd(GV, PV);
      }
      // the group's own rows are the gradient of its input keys and values
      const dkRows = dk.subarray(start * D, (start + len) * D);
      dkRows.set(GK.subarray(slot0 * D, kv * D));
      dv.set(GV.subarray(slot0 * D, kv * D), start * D);
      if (this.rope === 'post') be.rope(dkRows, len, nKVHeads, hd, rows, invFreq, true);
    }
  }
}

/** The training attention factory of the FreqKV schedule (validates the options up front). */
export function freqkvAttention(opts: FreqKVAttentionOptions): AttentionFactory {
  freqkvParams(opts);
  return (dims, invFreq, be) => new FreqKVAttention(dims, invFreq, be, opts);
}
