// The FreqKV cache policy, exactly shared/spec/FREQKV.md section 2.
//
// Per layer, keys (pre-RoPE) and values each live in a FreqKVBuffer of N rows laid out
// [sinks | block | tail] (channels = nKVHeads*headDim, so the operator runs per KV head and per
// channel, never on repeated query heads). Every layer compresses at the same moment: in begin(),
// when the cache holds N rows and a token arrives, each layer's block+tail (always N - S rows)
// becomes L = floor((N - S) * gamma) rows, low frequencies kept, times sqrt(L/n).
//
// Positions are slots: row j is rotated to position j, a query at slot j uses position j, so no
// position ever exceeds N-1. Between compressions nothing moves, so a rotated copy of the keys
// is kept: new rows are rotated once when stored, and after a compression only the block rows
// (slots S..S+L-1, new contents) are rotated again. Sinks are never touched.
//
// Grouped prefill: room() is N - length while the cache fills, then N - S - L after each
// compression, so a long prompt goes in groups that attend to [sinks | block | group so far]
// with the causal mask aligned to the end, hitting the same compression points with the same
// inputs as token-by-token decoding.
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import type { FreqKeep, FreqMethod, FreqScaling } from '../dsp/freqkv-op.js';
import { FreqKVBuffer } from './freqkv-buffer.js';
import type { BytesHeld, CacheShape, KVCache, LayerView } from './types.js';
import { type CacheState, encodeState, stateBytes, stateChoice, stateF32, stateNumber, stateShape } from './session.js';

export interface FreqKVOptions {
  /** N: most rows held (default in the factory: the model's trained context window). */
  cacheSize: number;
  /** S: first tokens never compressed (default 4). */
  sinks?: number;
  /** gamma in (0, 1): the block keeps L = floor((N - S) * gamma) rows (default 0.5). */
  retain?: number;
  /** Ablations of the operator (defaults: the method's low frequencies, sqrt(L/n)). */
  keep?: FreqKeep;
  scaling?: FreqScaling;
  method?: FreqMethod;
  /**
   * 'pre' (the method): keys are cached before RoPE and rotated to their slots, re-rotated after
   * each compression. 'post' (the paper's failing ablation): each key is rotated once, at the slot
   * it arrives in, and the buffer holds and compresses the rotated keys; compressed rows are never
   * re-rotated, so they mix the phases of many positions. Positions stay below N either way, so
   * the ablation isolates "compress rotated keys" from "positions beyond the window".
   */
  rope?: FreqRope;
  /** Kernels for RoPE and the operator (default getBackend()). */
  backend?: Backend;
}

export type FreqRope = 'pre' | 'post';

const KEEPS: readonly FreqKeep[] = ['low', 'high'];
const SCALINGS: readonly FreqScaling[] = ['amplitude', 'none', 'energy'];
const METHODS: readonly FreqMethod[] = ['auto', 'dense', 'fft', 'backend'];
const ROPES: readonly FreqRope[] = ['pre', 'post'];

export class FreqKVCache implements KVCache {
  readonly policy = 'freqkv';
  readonly shape: CacheShape;
  /** N. */
  readonly cacheSize: number;
  /** S. */
  readonly sinks: number;
  /** gamma. */
  readonly retain: number;
  /** L. */
  readonly blockSize: number;
  readonly keep: FreqKeep;
  readonly scaling: FreqScaling;
  readonly method: FreqMethod;
  readonly rope: FreqRope;
  private seenCount = 0;
  private rowCount = 0;
  private compressCount = 0;
  private compressTime = 0;
  private readonly backend: Backend;
  private readonly kvDim: number;
  /** Per layer: pre-RoPE keys and values, [N, kvDim] each. */
  private kBufs: FreqKVBuffer[] = [];
  private vBufs: FreqKVBuffer[] = [];
  /** Per layer: keys rotated to their slots, [N, kvDim]. */
  private readonly rotated: Float32Array[] = [];
  /** 0, 1, ..., N-1: slot positions. */
  private readonly slots: Int32Array;
  private stepT = 0;

  constructor(shape: CacheShape, opts: FreqKVOptions) {
    const N = opts.cacheSize;
    const S = opts.sinks ?? 4;
    const gamma = opts.retain ?? 0.5;
    if (!Number.isInteger(N) || N < 2) throw new RangeError(`freqkv: cache size must be an integer >= 2, got ${N}`);
    if (!Number.isInteger(S) || S < 0 || S >= N) throw new RangeError(`freqkv: sinks must be an integer in [0, cache size - 1 = ${N - 1}], got ${S}`);
    if (typeof gamma !== 'number' || !(gamma > 0 && gamma < 1)) throw new RangeError(`freqkv: retain must be a number in (0, 1), got ${gamma}`);
    const L = Math.floor((N - S) * gamma);
    if (L < 1 || S + L >= N) {
      throw new RangeError(`freqkv: retain ${gamma} with cache size ${N} and ${S} sinks gives a block of L = ${L} rows; need 1 <= L < cache size - sinks (${N - S})`);
    }
    this.keep = opts.keep ?? 'low';
    this.scaling = opts.scaling ?? 'amplitude';
    this.method = opts.method ?? 'auto';
    this.rope = opts.rope ?? 'pre';
    if (!ROPES.includes(this.rope)) throw new RangeError(`freqkv: rope must be pre or post, got ${String(this.rope)}`);
    if (!KEEPS.includes(this.keep)) throw new RangeError(`freqkv: keep must be low or high, got ${String(this.keep)}`);
    if (!SCALINGS.includes(this.scaling)) throw new RangeError(`freqkv: scaling must be amplitude, none or energy, got ${String(this.scaling)}`);
    if (!METHODS.includes(this.method)) throw new RangeError(`freqkv: method must be auto, dense, fft or backend, got ${String(this.method)}`);
    this.shape = shape;
    this.cacheSize = N;
    this.sinks = S;
    this.retain = gamma;
    this.blockSize = L;
    this.backend = opts.backend ?? getBackend();
    this.kvDim = shape.nKVHeads * shape.headDim;
    const bufferOptions = { capacity: N, sinks: S, retain: gamma, channels: this.kvDim, keep: this.keep, scaling: this.scaling, method: this.method, backend: this.backend };
    for (let l = 0; l < shape.nLayers; l++) {
      this.kBufs.push(new FreqKVBuffer(bufferOptions));
      this.vBufs.push(new FreqKVBuffer(bufferOptions));
      this.rotated.push(new Float32Array(N * this.kvDim));
    }
    this.slots = Int32Array.from({ length: N }, (_, i) => i);
  }

  /** Tokens seen so far (the stream's length). */
  get seen(): number {
    return this.seenCount;
  }

  /** Rows held per layer (never above N). */
  get length(): number {
    return this.rowCount;
  }

  /** Compressions so far (every layer compresses at the same moments). */
  get compressions(): number {
    return this.compressCount;
  }

  /** Wall-clock seconds spent compressing and re-rotating the block (all layers). */
  get compressSeconds(): number {
    return this.compressTime;
  }

  /** Rows the next step may carry: N - length while filling, N - S - L once full (a compression comes first). */
  room(): number {
    return this.length < this.cacheSize ? this.cacheSize - this.length : this.cacheSize - this.sinks - this.blockSize;
  }

  begin(T: number): Int32Array {
    if (this.stepT !== 0) throw new Error('freqkv: begin() called twice without end()');
    const room = this.room();
    if (!Number.isInteger(T) || T < 1 || T > room) throw new RangeError(`freqkv: begin T must be an integer in [1, room() = ${room}], got ${T}`);
    if (this.length === this.cacheSize) this.compressAll();
    this.stepT = T;
    return this.slots.slice(this.length, this.length + T);
  }

  /** block <- compress(block + tail) in every layer, for K and V; then the block's keys are rotated again. */
  private compressAll(): void {
    const t0 = performance.now();
    const S = this.sinks;
    const L = this.blockSize;
    const D = this.kvDim;
    for (let l = 0; l < this.kBufs.length; l++) {
      this.kBufs[l].compress();
      this.vBufs[l].compress();
      const rot = this.rotated[l].subarray(S * D, (S + L) * D);
      rot.set(this.kBufs[l].view(S, S + L));
      if (this.rope === 'pre') this.backend.rope(rot, L, this.shape.nKVHeads, this.shape.headDim, this.slots.subarray(S, S + L), this.shape.invFreq, false);
    }
    this.rowCount = S + L;
    this.compressCount++;
    this.compressTime += (performance.now() - t0) / 1000;
  }

  append(layer: number, k: Float32Array, v: Float32Array): LayerView {
    const T = this.stepT;
    if (T === 0) throw new Error('freqkv: append() outside a step (call begin() first)');
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.kBufs.length) throw new RangeError(`freqkv: layer must be in [0, ${this.kBufs.length - 1}], got ${layer}`);
    const D = this.kvDim;
    if (k.length < T * D) throw new RangeError(`freqkv: append k: expected [${T}, ${D}], got ${k.length} values`);
    if (v.length < T * D) throw new RangeError(`freqkv: append v: expected [${T}, ${D}], got ${v.length} values`);
    const n0 = this.length;
    if (this.kBufs[layer].length !== n0) throw new Error(`freqkv: layer ${layer} was already appended in this step`);
    const n = n0 + T;
    const rot = this.rotated[layer].subarray(n0 * D, n * D);
    rot.set(k.subarray(0, T * D));
    this.backend.rope(rot, T, this.shape.nKVHeads, this.shape.headDim, this.slots.subarray(n0, n), this.shape.invFreq, false);
    this.kBufs[layer].appendRows(this.rope === 'pre' ? k.subarray(0, T * D) : rot);
    this.vBufs[layer].appendRows(v.subarray(0, T * D));
    return { k: this.rotated[layer].subarray(0, n * D), v: this.vBufs[layer].view(0, n), n, scores: null, scoresFromQuery: 0 };
  }

  attended(layer: number, _view?: LayerView): void {
    if (this.stepT === 0) throw new Error('freqkv: attended() outside a step');
    if (this.kBufs[layer]?.length !== this.length + this.stepT) throw new Error(`freqkv: attended(${layer}) before append(${layer})`);
  }

  end(): void {
    if (this.stepT === 0) throw new Error('freqkv: end() without begin()');
    const missing = this.kBufs.findIndex((b) => b.length !== this.length + this.stepT);
    if (missing >= 0) throw new Error(`freqkv: layer ${missing} was not appended in this step`);
    this.seenCount += this.stepT;
    this.rowCount += this.stepT;
    this.stepT = 0;
  }

  bytes(): BytesHeld {
    const perLayer = this.kBufs.map((kb, l) => kb.bytes + this.vBufs[l].bytes + this.rotated[l].byteLength);
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) + this.slots.byteLength };
  }

  /** Keys [length, kvDim] of a layer as held ([sinks | block | tail]): pre-RoPE (rotated under rope 'post'). */
  rawKeys(layer: number): Float32Array {
    return this.kBufs[layer].view(0, this.length);
  }

  /** Keys rotated to their slots [length, kvDim] (what attention reads). */
  rotatedKeys(layer: number): Float32Array {
    return this.rotated[layer].subarray(0, this.length * this.kvDim);
  }

  /** Values [length, kvDim] of a layer. */
  values(layer: number): Float32Array {
    return this.vBufs[layer].view(0, this.length);
  }

  save(): Uint8Array {
    if (this.stepT !== 0) throw new Error('freqkv: save() during a step');
    const arrays: CacheState['arrays'] = {};
    for (let l = 0; l < this.kBufs.length; l++) {
      arrays[`${l}.k`] = this.kBufs[l].save();
      arrays[`${l}.v`] = this.vBufs[l].save();
      arrays[`${l}.kRot`] = this.rotatedKeys(l).slice();
    }
    return encodeState({
      policy: this.policy,
      params: { cacheSize: this.cacheSize, sinks: this.sinks, retain: this.retain, keep: this.keep, scaling: this.scaling, method: this.method, rope: this.rope },
      counters: { seen: this.seen, length: this.length, compressions: this.compressions },
      shape: stateShape(this.shape),
      arrays,
    });
  }

  static restore(state: CacheState, shape: CacheShape, source: string): FreqKVCache {
    const cache = new FreqKVCache(shape, {
      cacheSize: stateNumber(state, 'params', 'cacheSize', source, 2),
      sinks: stateNumber(state, 'params', 'sinks', source, 0),
      retain: stateNumber(state, 'params', 'retain', source, 0, 1, false),
      keep: stateChoice(state, 'keep', KEEPS, source),
      scaling: stateChoice(state, 'scaling', SCALINGS, source),
      method: stateChoice(state, 'method', METHODS, source),
      // sessions written before the rope option existed are 'pre'
      rope: state.params.rope === undefined ? 'pre' : stateChoice(state, 'rope', ROPES, source),
    });
    const seen = stateNumber(state, 'counters', 'seen', source, 0);
    const length = stateNumber(state, 'counters', 'length', source, 0, Math.min(seen, cache.cacheSize));
    const compressions = stateNumber(state, 'counters', 'compressions', source, 0);
    const D = cache.kvDim;
    for (let l = 0; l < shape.nLayers; l++) {
      for (const [name, list] of [[`${l}.k`, cache.kBufs], [`${l}.v`, cache.vBufs]] as const) {
        let b: FreqKVBuffer;
        try {
          b = FreqKVBuffer.restore(stateBytes(state, name, source), { method: cache.method, backend: cache.backend });
        } catch (err) {
          throw new Error(`${source}: array "${name}": ${(err as Error).message}`);
        }
        const same = b.capacity === cache.cacheSize && b.sinks === cache.sinks && b.retain === cache.retain && b.channels === D && b.keep === cache.keep && b.scaling === cache.scaling;
        if (!same) throw new Error(`${source}: array "${name}" holds a buffer with other parameters than the session's`);
        if (b.length !== length || b.seen !== seen || b.compressions !== compressions) {
          throw new Error(`${source}: array "${name}" holds ${b.length} rows, ${b.seen} seen, ${b.compressions} compressions; the session says ${length}, ${seen}, ${compressions}`);
        }
        list[l] = b;
      }
      cache.rotated[l].set(stateF32(state, `${l}.kRot`, length * D, source));
    }
    cache.seenCount = seen;
    cache.rowCount = length;
    cache.compressCount = compressions;
    return cache;
  }
}
