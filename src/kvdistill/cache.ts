// The cache a KV-Distill compression produces: per layer the kept rows of K (rotated at their
// ORIGINAL positions) and V, and a stream that goes on at position n, the original context
// length (KVDISTILL.md part 4). New tokens are appended and kept like the full cache does, so
// decoding over it is the frozen model over [compressed context; question; generated tokens].
//
// PrefixCache is that growable, never-evicting body; the eviction baselines (baselines.ts,
// FrozenPrefixCache) reuse it without a position table, since there each KV head holds its own
// tokens and no one list of positions describes a row.
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

/** The rows a PrefixCache starts from. */
export interface PrefixRows {
  /** The next token's position (the context length the rows came from). */
  n: number;
  /** Rows held per layer; k[l] and v[l] hold at least rows x kvDim values (rotated keys). */
  rows: number;
  k: Float32Array[];
  v: Float32Array[];
  /** Positions of the rows [rows], tracked for appended tokens too; null: not tracked. */
  positions: Int32Array | null;
}

/**
 * A fixed prefix of rows per layer (keys already rotated), with the stream going on at
 * position n; new tokens are appended and kept, never evicted. Buffers grow by doubling from
 * `minCapacity` rows.
 */
export class PrefixCache implements KVCache {
  protected readonly be: Backend;
  protected readonly kvDim: number;
  protected keys: Float32Array[];
  protected values: Float32Array[];
  protected capacity: number;
  protected rows: number;
  private stream: number;
  protected pos: Int32Array | null;
  protected stepT = 0;
  private appended: boolean[];
  private qPos = new Int32Array(64);

  constructor(readonly shape: CacheShape, prefix: PrefixRows, readonly policy: string, opts: { backend?: Backend; minCapacity: number }) {
    this.be = opts.backend ?? getBackend();
    this.kvDim = shape.nKVHeads * shape.headDim;
    const nc = prefix.rows;
    if (prefix.k.length !== shape.nLayers || prefix.v.length !== shape.nLayers) throw new RangeError(`${policy} cache: expected ${shape.nLayers} layers of rows`);
    for (let l = 0; l < shape.nLayers; l++) {
      if (prefix.k[l].length < nc * this.kvDim || prefix.v[l].length < nc * this.kvDim) throw new RangeError(`${policy} cache layer ${l}: expected [${nc}, ${this.kvDim}] keys and values`);
    }
    if (!(nc <= prefix.n)) throw new RangeError(`${policy} cache: ${nc} rows from a context of ${prefix.n}`);
    if (prefix.positions && prefix.positions.length !== nc) throw new RangeError(`${policy} cache: ${prefix.positions.length} positions for ${nc} rows`);
    this.capacity = Math.max(opts.minCapacity, nc);
    this.keys = prefix.k.map((k) => grow(k.subarray(0, nc * this.kvDim), this.capacity * this.kvDim));
    this.values = prefix.v.map((v) => grow(v.subarray(0, nc * this.kvDim), this.capacity * this.kvDim));
    this.pos = prefix.positions ? grow32(prefix.positions, this.capacity) : null;
    this.rows = nc;
    this.stream = prefix.n;
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

  begin(T: number): Int32Array {
    if (this.stepT !== 0) throw new Error(`${this.policy}: the previous step was not ended`);
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`${this.policy}: begin T must be a positive integer, got ${T}`);
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
    if (T === 0) throw new Error(`${this.policy}: append() outside a step`);
    if (this.appended[layer]) throw new Error(`${this.policy}: layer ${layer} was already appended in this step`);
    const need = T * this.kvDim;
    const at = this.rows * this.kvDim;
    const kNew = this.keys[layer].subarray(at, at + need);
    kNew.set(k.subarray(0, need));
    this.values[layer].set(v.subarray(0, need), at);
    this.be.rope(kNew, T, this.shape.nKVHeads, this.shape.headDim, this.qPos.subarray(0, T), this.shape.invFreq, false);
    this.appended[layer] = true;
    const n = this.rows + T;
    return { k: this.keys[layer].subarray(0, n * this.kvDim), v: this.values[layer].subarray(0, n * this.kvDim), n, scores: null, scoresFromQuery: 0 };
  }

  attended(_layer: number, _view: LayerView): void {}

  end(): void {
    if (this.stepT === 0) throw new Error(`${this.policy}: end() without begin()`);
    const missing = this.appended.indexOf(false);
    if (missing >= 0) throw new Error(`${this.policy}: layer ${missing} was not appended in this step`);
    if (this.pos) for (let i = 0; i < this.stepT; i++) this.pos[this.rows + i] = this.stream + i;
    this.rows += this.stepT;
    this.stream += this.stepT;
    this.stepT = 0;
  }

  /** Bytes of the live rows (keys and values), not of the spare capacity. */
  bytes(): BytesHeld {
    const perLayer = this.keys.map(() => 2 * this.rows * this.kvDim * 4);
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) };
  }

  /** Rotated keys of the held rows of a layer [length, kvDim]. */
  rotatedKeys(layer: number): Float32Array {
    return this.keys[layer].subarray(0, this.rows * this.kvDim);
  }

  save(): Uint8Array {
    throw new Error(`${this.policy}: this cache is not saved as a session`);
  }

  private ensure(rows: number): void {
    if (rows <= this.capacity) return;
    let cap = this.capacity;
    while (cap < rows) cap *= 2;
    this.keys = this.keys.map((k) => grow(k, cap * this.kvDim));
    this.values = this.values.map((v) => grow(v, cap * this.kvDim));
    if (this.pos) this.pos = grow32(this.pos, cap);
    this.capacity = cap;
  }
}

export class KVDistillCache extends PrefixCache {
  constructor(shape: CacheShape, ctx: CompressedContext, opts: { backend?: Backend } = {}) {
    const kvDim = shape.nKVHeads * shape.headDim;
    const nc = ctx.kept.length;
    if (ctx.k.length !== shape.nLayers || ctx.v.length !== shape.nLayers) throw new RangeError(`KVDistillCache: expected ${shape.nLayers} layers of rows`);
    for (let l = 0; l < shape.nLayers; l++) {
      if (ctx.k[l].length !== nc * kvDim || ctx.v[l].length !== nc * kvDim) throw new RangeError(`KVDistillCache layer ${l}: expected [${nc}, ${kvDim}] keys and values`);
    }
    for (let j = 0; j < nc; j++) {
      if (!(ctx.kept[j] >= 0 && ctx.kept[j] < ctx.n) || (j > 0 && ctx.kept[j] <= ctx.kept[j - 1])) throw new RangeError(`KVDistillCache kept: expected ascending positions in [0, ${ctx.n}), got ${ctx.kept[j]} at ${j}`);
    }
    super(shape, { n: ctx.n, rows: nc, k: ctx.k, v: ctx.v, positions: ctx.kept }, 'kvdistill', { backend: opts.backend, minCapacity: 64 });
  }

  /** Positions of the held rows [length]. */
  positions(): Int32Array {
    return this.pos!.subarray(0, this.rows);
  }

  /** Bytes allocated (capacity included), as the full cache reports them. */
  override bytes(): BytesHeld {
    const perLayer = this.keys.map((k, l) => k.byteLength + this.values[l].byteLength);
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) };
  }

  /** Session format: counters {seen, length}, arrays "positions" (i32), "<layer>.kRot", "<layer>.v". */
  override save(): Uint8Array {
    if (this.stepT !== 0) throw new Error('KVDistillCache.save: a step is in progress');
    const live = this.rows * this.kvDim;
    const arrays: CacheState['arrays'] = { positions: this.positions() };
    for (let l = 0; l < this.shape.nLayers; l++) {
      arrays[`${l}.kRot`] = this.keys[l].subarray(0, live);
      arrays[`${l}.v`] = this.values[l].subarray(0, live);
    }
    return encodeState({ policy: this.policy, params: {}, counters: { seen: this.seen, length: this.rows }, shape: stateShape(this.shape), arrays });
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
