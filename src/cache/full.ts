// The full (unbounded) KV cache: every token is kept, its key rotated once at its absolute
// position 0, 1, 2, ... and stored post-RoPE, so attention reads the rows as they are.
// Buffers grow by doubling; bytes() reports the capacity actually allocated.
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { type CacheState, checkStateShape, encodeState, registerRestore, stateF32, stateNumber, stateShape } from './session.js';
import type { BytesHeld, CacheShape, KVCache, LayerView } from './types.js';

export interface FullCacheOptions {
  backend?: Backend;
  /** Rows allocated per layer before the first growth (default 64). */
  initialRows?: number;
}

export class FullCache implements KVCache {
  readonly policy = 'full';
  readonly shape: CacheShape;
  private readonly backend: Backend;
  private readonly kvDim: number;
  /** Per layer: rotated keys and values, each [capacity, kvDim]; the first `rows` rows are live. */
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private capacity: number;
  private rows = 0;
  /** Tokens in the step begun and not yet ended (0 between steps). */
  private stepT = 0;
  private appended: boolean[];
  /** Query positions of the current step, [capacity of positions]. */
  private positions = new Int32Array(64);

  constructor(shape: CacheShape, opts: FullCacheOptions = {}) {
    checkShape(shape);
    this.shape = shape;
    this.backend = opts.backend ?? getBackend();
    this.kvDim = shape.nKVHeads * shape.headDim;
    const initial = opts.initialRows ?? 64;
    if (!Number.isInteger(initial) || initial < 1) throw new RangeError(`FullCache initialRows: expected a positive integer, got ${initial}`);
    this.capacity = initial;
    for (let l = 0; l < shape.nLayers; l++) {
      this.keys.push(new Float32Array(initial * this.kvDim));
      this.values.push(new Float32Array(initial * this.kvDim));
    }
    this.appended = new Array<boolean>(shape.nLayers).fill(false);
  }

  /** Every row is a token, so the stream length equals the rows held. */
  get seen(): number {
    return this.rows;
  }

  get length(): number {
    return this.rows;
  }

  room(): number {
    return Infinity;
  }

  begin(T: number): Int32Array {
    if (this.stepT !== 0) throw new Error('FullCache.begin: the previous step was not ended (call end() first)');
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`FullCache.begin T: expected a positive integer, got ${T}`);
    this.ensureCapacity(this.rows + T);
    if (this.positions.length < T) this.positions = new Int32Array(Math.max(T, 2 * this.positions.length));
    const pos = this.positions.subarray(0, T);
    for (let i = 0; i < T; i++) pos[i] = this.rows + i;
    this.stepT = T;
    this.appended.fill(false);
    return pos;
  }

  append(layer: number, k: Float32Array, v: Float32Array): LayerView {
    const T = this.stepT;
    if (T === 0) throw new Error('FullCache.append: no step begun (call begin(T) first)');
    this.checkLayer(layer);
    if (this.appended[layer]) throw new Error(`FullCache.append: layer ${layer} was already appended in this step`);
    const need = T * this.kvDim;
    if (k.length < need) throw new RangeError(`FullCache.append k: expected at least ${need} elements ([${T}, ${this.kvDim}]), got ${k.length}`);
    if (v.length < need) throw new RangeError(`FullCache.append v: expected at least ${need} elements ([${T}, ${this.kvDim}]), got ${v.length}`);
    const at = this.rows * this.kvDim;
    const kNew = this.keys[layer].subarray(at, at + need);
    kNew.set(k.subarray(0, need));
    this.values[layer].set(v.subarray(0, need), at);
    this.backend.rope(kNew, T, this.shape.nKVHeads, this.shape.headDim, this.positions, this.shape.invFreq, false);
    this.appended[layer] = true;
    const n = this.rows + T;
    return {
      k: this.keys[layer].subarray(0, n * this.kvDim),
      v: this.values[layer].subarray(0, n * this.kvDim),
      n,
      scores: null,
      scoresFromQuery: 0,
    };
  }

  attended(layer: number, _view: LayerView): void {
    this.checkLayer(layer);
  }

  end(): void {
    if (this.stepT === 0) throw new Error('FullCache.end: no step begun');
    const missing = this.appended.indexOf(false);
    if (missing >= 0) throw new Error(`FullCache.end: layer ${missing} was not appended in this step`);
    this.rows += this.stepT;
    this.stepT = 0;
  }

  bytes(): BytesHeld {
    const perLayer = this.keys.map((k, l) => k.byteLength + this.values[l].byteLength);
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) };
  }

  /** The session format of src/cache/session.ts: counters {seen, length}, arrays "<layer>.kRot" and "<layer>.v". */
  save(): Uint8Array {
    if (this.stepT !== 0) throw new Error('FullCache.save: a step is in progress');
    const live = this.rows * this.kvDim;
    const arrays: CacheState['arrays'] = {};
    for (let l = 0; l < this.shape.nLayers; l++) {
      arrays[`${l}.kRot`] = this.keys[l].subarray(0, live);
      arrays[`${l}.v`] = this.values[l].subarray(0, live);
    }
    return encodeState({
      policy: this.policy,
      params: {},
      counters: { seen: this.rows, length: this.rows },
      shape: stateShape(this.shape),
      arrays,
    });
  }

  /** Rebuilds a cache from a decoded session (restoreCache/loadSession in session.ts call this). */
  static restore(state: CacheState, shape: CacheShape, source: string, opts: FullCacheOptions = {}): FullCache {
    if (state.policy !== 'full') throw new Error(`${source}: expected a "full" cache session, got "${state.policy}"`);
    checkStateShape(state, shape, source);
    const rows = stateNumber(state, 'counters', 'length', source, 0);
    const seen = stateNumber(state, 'counters', 'seen', source, 0);
    if (seen !== rows) throw new Error(`${source}: field "counters.seen" (${seen}) must equal "counters.length" (${rows}) for a full cache`);
    const cache = new FullCache(shape, { ...opts, initialRows: Math.max(1, rows, opts.initialRows ?? 1) });
    const live = rows * cache.kvDim;
    for (let l = 0; l < shape.nLayers; l++) {
      cache.keys[l].set(stateF32(state, `${l}.kRot`, live, source));
      cache.values[l].set(stateF32(state, `${l}.v`, live, source));
    }
    cache.rows = rows;
    return cache;
  }

  private ensureCapacity(rows: number): void {
    if (rows <= this.capacity) return;
    let cap = this.capacity;
    while (cap < rows) cap *= 2;
    const live = this.rows * this.kvDim;
    for (let l = 0; l < this.shape.nLayers; l++) {
      const k = new Float32Array(cap * this.kvDim);
      const v = new Float32Array(cap * this.kvDim);
      k.set(this.keys[l].subarray(0, live));
      v.set(this.values[l].subarray(0, live));
      this.keys[l] = k;
      this.values[l] = v;
    }
    this.capacity = cap;
  }

  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.shape.nLayers) {
      throw new RangeError(`FullCache layer: expected an integer in [0, ${this.shape.nLayers - 1}], got ${layer}`);
    }
  }
}

function checkShape(shape: CacheShape): void {
  for (const name of ['nLayers', 'nKVHeads', 'headDim'] as const) {
    const v = shape[name];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`cache shape ${name}: expected a positive integer, got ${v}`);
  }
  if (shape.invFreq.length !== shape.headDim / 2) {
    throw new RangeError(`cache shape invFreq: expected ${shape.headDim / 2} entries (headDim/2), got ${shape.invFreq.length}`);
  }
}

// sessions of the full cache load through restoreCache/loadSession like every other policy's
registerRestore('full', (state, shape, source) => FullCache.restore(state, shape, source));
