// The cache a KV-Distill compression produces: per layer the kept rows of K (rotated at their
// ORIGINAL positions) and V, and a stream that goes on at position n, the original context
// length (KVDISTILL.md part 4). New tokens are appended and kept like the full cache does, so
// decoding over it is the frozen model over [compressed context; question; generated tokens].
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { type CacheState, encodeState, registerRestore, stateF32, stateI32, stateNumber, stateShape } from '../cache/session.js';
import type { BytesHeld, CacheShape, KVCache, LayerView } from '../cache/types.js';

export interface CompressedContext {
  /** Original context length n (the next token's position). */
  n: number;
  /** Positions of the kept tokens, ascending [nc]. */
  kept: Int32Array;
  /** Per layer: rotated keys and values of the kept tokens, [nc, kvDim] each. */
  k: Float32Array[];
  v: Float32Array[];
}

export class KVDistillCache implements KVCache {
  readonly policy = 'kvdistill';
  private readonly be: Backend;
  private readonly kvDim: number;
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  private rows: number;
  private stream: number;
  /** Positions of every held row (kept context tokens, then appended tokens). */
  private pos: Int32Array;
  private stepT = 0;
  private appended: boolean[];
  private qPos = new Int32Array(64);

  constructor(readonly shape: CacheShape, ctx: CompressedContext, opts: { backend?: Backend } = {}) {
    this.be = opts.backend ?? getBackend();
    this.kvDim = shape.nKVHeads * shape.headDim;
    const nc = ctx.kept.length;
    if (ctx.k.length !== shape.nLayers || ctx.v.length !== shape.nLayers) throw new RangeError(`KVDistillCache: expected ${shape.nLayers} layers of rows`);
    for (let l = 0; l < shape.nLayers; l++) {
      if (ctx.k[l].length !== nc * this.kvDim || ctx.v[l].length !== nc * this.kvDim) throw new RangeError(`KVDistillCache layer ${l}: expected [${nc}, ${this.kvDim}] keys and values`);
    }
    for (let j = 0; j < nc; j++) {
      if (!(ctx.kept[j] >= 0 && ctx.kept[j] < ctx.n) || (j > 0 && ctx.kept[j] <= ctx.kept[j - 1])) throw new RangeError(`KVDistillCache kept: expected ascending positions in [0, ${ctx.n}), got ${ctx.kept[j]} at ${j}`);
    }
    this.capacity = Math.max(64, nc);
    this.keys = ctx.k.map((k) => grow(k, this.capacity * this.kvDim));
    this.values = ctx.v.map((v) => grow(v, this.capacity * this.kvDim));
    this.pos = grow32(ctx.kept, this.capacity);
    this.rows = nc;
    this.stream = ctx.n;
    this.appended = new Array<boolean>(shape.nLayers).fill(false);
  }

  get seen(): number {
    return this.stream;
  }

  get length(): number {
    return this.rows;
  }

  room(): number {
    return Infinity;
  }

  /** Positions of the held rows [length]. */
  positions(): Int32Array {
    return this.pos.subarray(0, this.rows);
  }

  begin(T: number): Int32Array {
    if (this.stepT !== 0) throw new Error('KVDistillCache.begin: the previous step was not ended');
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`KVDistillCache.begin T: expected a positive integer, got ${T}`);
    this.ensure(this.rows + T);
    if (this.qPos.length < T) this.qPos = new Int32Array(Math.max(T, 2 * this.qPos.length));
    const q = this.qPos.subarray(0, T);
    for (let i = 0; i < T; i++) q[i] = this.stream + i;
    this.stepT = T;
    this.appended.fill(false);
    return q;
  }

  append(layer: number, k: Float32Array, v: Float32Array): LayerView {
    const T = this.stepT;
    if (T === 0) throw new Error('KVDistillCache.append: no step begun');
    if (this.appended[layer]) throw new Error(`KVDistillCache.append: layer ${layer} was already appended in this step`);
    const need = T * this.kvDim;
    const at = this.rows * this.kvDim;
    const kNew = this.keys[layer].subarray(at, at + need);
    kNew.set(k.subarray(0, need));
    this.values[layer].set(v.subarray(0, need), at);
    this.be.rope(kNew, T, this.shape.nKVHeads, this.shape.headDim, this.qPos, this.shape.invFreq, false);
    this.appended[layer] = true;
    const n = this.rows + T;
    return { k: this.keys[layer].subarray(0, n * this.kvDim), v: this.values[layer].subarray(0, n * this.kvDim), n, scores: null, scoresFromQuery: 0 };
  }

  attended(_layer: number, _view: LayerView): void {}

  end(): void {
    if (this.stepT === 0) throw new Error('KVDistillCache.end: no step begun');
    const missing = this.appended.indexOf(false);
    if (missing >= 0) throw new Error(`KVDistillCache.end: layer ${missing} was not appended in this step`);
    for (let i = 0; i < this.stepT; i++) this.pos[this.rows + i] = this.stream + i;
    this.rows += this.stepT;
    this.stream += this.stepT;
    this.stepT = 0;
  }

  bytes(): BytesHeld {
    const perLayer = this.keys.map((k, l) => k.byteLength + this.values[l].byteLength);
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) };
  }

  /** Session format: counters {seen, length}, arrays "positions" (i32), "<layer>.kRot", "<layer>.v". */
  save(): Uint8Array {
    if (this.stepT !== 0) throw new Error('KVDistillCache.save: a step is in progress');
    const live = this.rows * this.kvDim;
    const arrays: CacheState['arrays'] = { positions: this.pos.subarray(0, this.rows) };
    for (let l = 0; l < this.shape.nLayers; l++) {
      arrays[`${l}.kRot`] = this.keys[l].subarray(0, live);
      arrays[`${l}.v`] = this.values[l].subarray(0, live);
    }
    return encodeState({ policy: this.policy, params: {}, counters: { seen: this.stream, length: this.rows }, shape: stateShape(this.shape), arrays });
  }

  static restore(state: CacheState, shape: CacheShape, source: string): KVDistillCache {
    if (state.policy !== 'kvdistill') throw new Error(`${source}: expected a "kvdistill" cache session, got "${state.policy}"`);
    const rows = stateNumber(state, 'counters', 'length', source, 0);
    const seen = stateNumber(state, 'counters', 'seen', source, rows);
    const kvDim = shape.nKVHeads * shape.headDim;
    const positions = stateI32(state, 'positions', rows, source);
    const k: Float32Array[] = [], v: Float32Array[] = [];
    for (let l = 0; l < shape.nLayers; l++) {
      k.push(Float32Array.from(stateF32(state, `${l}.kRot`, rows * kvDim, source)));
      v.push(Float32Array.from(stateF32(state, `${l}.v`, rows * kvDim, source)));
    }
    return new KVDistillCache(shape, { n: seen, kept: Int32Array.from(positions), k, v });
  }

  private ensure(rows: number): void {
    if (rows <= this.capacity) return;
    let cap = this.capacity;
    while (cap < rows) cap *= 2;
    this.keys = this.keys.map((k) => grow(k, cap * this.kvDim));
    this.values = this.values.map((v) => grow(v, cap * this.kvDim));
    this.pos = grow32(this.pos, cap);
    this.capacity = cap;
  }
}

function grow(a: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

function grow32(a: Int32Array, n: number): Int32Array {
  const out = new Int32Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

registerRestore('kvdistill', (state, shape, source) => KVDistillCache.restore(state, shape, source));
