// The baselines KV-Distill is compared with (issue 8, part 4), each reduced to the same shape as
// a KV-Distill compression: a context of n tokens becomes `keep` rows per layer and KV head
// (the sinks included), keys rotated at their ORIGINAL positions, and the question and answer
// are then decoded over those rows at positions n.. without any further eviction
// (FrozenPrefixCache). What differs is only how the rows are chosen:
//
//   h2o-qi          H2O, question-independent: the context alone streams through an H2O cache
//                   (createCache 'h2o', budget = keep, original positions, its default recent
//                   window); the rows it holds at the end of the context are frozen. The question
//                   does not exist when the rows are chosen.
//   h2o-qi-oneshot  the same scores without streaming: the context alone in one full-attention
//                   prefill; per layer and KV head, keep the sinks and the non-sink context rows
//                   with the most accumulated attention (H2O's score); evicted in one cut.
//   h2o-qa          H2O, question-aware: [context; question] in one full-attention prefill, H2O
//                   scores summed over every query (context and question), then the same one-shot
//                   cut of the CONTEXT rows to `keep`; the question's rows are thrown away and the
//                   question is decoded again over the kept rows, so the first answer token too is
//                   predicted from the compressed context only (as KV-Distill's is).
//   snapkv          SnapKV: [context; question] in one prefill, the question's queries are the
//                   observation window (window = question length), votes max-pooled (kernel 7),
//                   the top context rows kept per KV head; then as h2o-qa.
// FreqKV is a streaming policy and is run as itself, with a cache size chosen so that its
// bytes held match a target (freqkvCacheSize).
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { cacheShape, createCache } from '../cache/factory.js';
import { EvictionCache, lowestRows } from '../cache/evict.js';
import { FreqKVCache } from '../cache/freqkv.js';
import { H2OCache } from '../cache/h2o.js';
import { maxPool1d, SnapKVCache } from '../cache/snapkv.js';
import type { CacheShape, KVCache } from '../cache/types.js';
import { PrefixCache } from './cache.js';
import { forward } from '../model/forward.js';
import type { LlamaConfig, Model } from '../model/types.js';

/** A context compressed to `kept` rows per layer and KV head; decode the question over `cache`. */
export interface CompressedPrefix {
  cache: KVCache;
  /** Context rows held per layer and KV head. */
  kept: number;
  /** Token indices held, [layer][KV head] -> ascending indices into the context. */
  keptSets: Int32Array[][];
}

/**
 * A fixed prefix of rows per layer (keys already rotated, each KV head its own tokens), with
 * the stream going on at position n; new tokens are appended and kept, never evicted.
 */
export class FrozenPrefixCache extends PrefixCache {
  constructor(shape: CacheShape, prefix: { n: number; rows: number; k: Float32Array[]; v: Float32Array[] }, policy = 'frozen-prefix', backend?: Backend) {
    super(shape, { ...prefix, positions: null }, policy, { backend, minCapacity: 16 });
  }

  override save(): Uint8Array {
    throw new Error(`${this.policy}: an evaluation baseline's cache is not saved as a session`);
  }
}

/** Bytes of K and V (float32) for `rows` rows in every layer: what a compressed context of that many rows holds. */
export function kvRowBytes(config: LlamaConfig): number {
  return 2 * config.nKVHeads * config.headDim * 4 * config.nLayers;
}

/** H2O with the accumulated attention readable (one-shot selection). */
class ScoringH2O extends H2OCache {
  scoreRows(layer: number): Float32Array {
    return this.layers[layer].score!.subarray(0, this.length * this.nKVHeads);
  }
}

/** SnapKV with its votes readable (one-shot selection). */
class ScoringSnapKV extends SnapKVCache {
  scoreRows(layer: number): Float32Array {
    return this.layers[layer].score!.subarray(0, this.length * this.nKVHeads);
  }
}

/** rows[kept] of src [rows, H*hd] for each head h its own kept set, into [kept, H*hd]. */
function gatherPerHead(src: Float32Array, sets: Int32Array[], hd: number): Float32Array {
  const H = sets.length;
  const nc = sets[0].length;
  const width = H * hd;
  const out = new Float32Array(nc * width);
  for (let h = 0; h < H; h++) {
    const s = sets[h];
    for (let j = 0; j < nc; j++) out.set(src.subarray(s[j] * width + h * hd, s[j] * width + (h + 1) * hd), j * width + h * hd);
  }
  return out;
}

function checkKeep(n: number, keep: number, sinks: number): void {
  if (!(Number.isInteger(keep) && keep >= Math.min(n, sinks + 1) && keep <= n)) {
    throw new RangeError(`baseline keep: expected an integer in [${Math.min(n, sinks + 1)}, ${n}] (more than the ${sinks} sinks, at most the context), got ${keep}`);
  }
}

/**
 * h2o-qi: the context streams through an H2O cache of budget `keep` (original positions); the
 * rows held after its last token are frozen. Only the context is passed in.
 */
export function h2oStreaming(model: Model, context: Int32Array, keep: number, sinks: number, backend?: Backend): CompressedPrefix {
  const be = backend ?? getBackend();
  const n = context.length;
  checkKeep(n, keep, sinks);
  const cache = createCache(model.config, { policy: 'h2o', budget: keep, sinks, positions: 'original', backend: be }) as EvictionCache;
  forward(model, context, cache, { backend: be });
  const c = model.config;
  const keptSets: Int32Array[][] = [];
  const k: Float32Array[] = [], v: Float32Array[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    keptSets.push(Array.from({ length: c.nKVHeads }, (_, h) => cache.heldTokens(l, h)));
    k.push(cache.rotatedKeys(l));
    v.push(cache.values(l));
  }
  const frozen = new FrozenPrefixCache(cacheShape(c), { n, rows: cache.length, k, v }, 'h2o-qi', be);
  return { cache: frozen, kept: cache.length, keptSets };
}

/**
 * One scoring prefill over a context (and, question-aware, the question after it), read once
 * and cut to any number of kept rows: H2O's accumulated attention over every query, or SnapKV's
 * pooled votes of the question's queries.
 */
export class ContextScores {
  private constructor(
    private readonly model: Model,
    /** Context length: only rows [sinks, n) are candidates to evict. */
    readonly n: number,
    readonly sinks: number,
    /** Per layer: rotated keys and values of every prefilled row [rows, kvDim]. */
    private readonly k: Float32Array[],
    private readonly v: Float32Array[],
    /** Per layer and head: the score of every prefilled row (higher = kept first). */
    private readonly score: Float32Array[][],
    readonly policy: string,
    private readonly be: Backend,
  ) {}

  /** H2O scores: [context] (question-independent) or [context; question] (question-aware) in one full prefill. */
  static h2o(model: Model, context: Int32Array, question: Int32Array | null, sinks: number, backend?: Backend): ContextScores {
    const be = backend ?? getBackend();
    const c = model.config;
    const tokens = question ? concat(context, question) : context;
    const cache = new ScoringH2O(cacheShape(c), { budget: Math.max(tokens.length, sinks + 2), sinks, recent: 0, positions: 'original', backend: be });
    forward(model, tokens, cache, { backend: be });
    if (cache.length !== tokens.length) throw new Error('h2o scoring: the prefill evicted rows');
    const H = c.nKVHeads;
    const score = Array.from({ length: c.nLayers }, (_, l) => {
      const s = cache.scoreRows(l);
      return Array.from({ length: H }, (_, h) => Float32Array.from({ length: tokens.length }, (_, j) => s[j * H + h]));
    });
    const k = Array.from({ length: c.nLayers }, (_, l) => Float32Array.from(cache.rotatedKeys(l)));
    const v = Array.from({ length: c.nLayers }, (_, l) => Float32Array.from(cache.values(l)));
    return new ContextScores(model, context.length, sinks, k, v, score, question ? 'h2o-qa' : 'h2o-qi-oneshot', be);
  }

  /** SnapKV votes: [context; question] in one prefill, the question's queries as the observation window, max-pooled with `kernel`. */
  static snapkv(model: Model, context: Int32Array, question: Int32Array, sinks: number, kernel = 7, backend?: Backend): ContextScores {
    const be = backend ?? getBackend();
    const c = model.config;
    const tokens = concat(context, question);
    const window = question.length;
    const cache = new ScoringSnapKV(cacheShape(c), { budget: tokens.length + sinks + window + 1, sinks, window, kernel, positions: 'original', backend: be });
    forward(model, tokens, cache, { backend: be });
    if (cache.length !== tokens.length) throw new Error('snapkv scoring: the prefill evicted rows');
    const H = c.nKVHeads;
    const half = (kernel - 1) / 2;
    const score = Array.from({ length: c.nLayers }, (_, l) => {
      const votes = cache.scoreRows(l);
      return Array.from({ length: H }, (_, h) => {
        const pooled = new Float32Array(tokens.length);
        maxPool1d(pooled, votes, H, h, tokens.length, half);
        return pooled;
      });
    });
    const k = Array.from({ length: c.nLayers }, (_, l) => Float32Array.from(cache.rotatedKeys(l)));
    const v = Array.from({ length: c.nLayers }, (_, l) => Float32Array.from(cache.values(l)));
    return new ContextScores(model, context.length, sinks, k, v, score, 'snapkv', be);
  }

  /** Keeps `keep` context rows per layer and KV head (sinks + the highest scores; the lowest evicted, older first on ties). */
  select(keep: number): CompressedPrefix {
    const { n, sinks } = this;
    checkKeep(n, keep, sinks);
    const c = this.model.config;
    const s0 = Math.min(sinks, n);
    const drop = new Int32Array(n - keep);
    const keptSets: Int32Array[][] = [];
    const k: Float32Array[] = [], v: Float32Array[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const sets = this.score[l].map((s) => {
        if (drop.length > 0) lowestRows(s, 1, 0, s0, n, drop.length, drop);
        const out = new Int32Array(keep);
        let j = 0, d = 0;
        for (let t = 0; t < n; t++) {
          if (d < drop.length && drop[d] === t) d++;
          else out[j++] = t;
        }
        return out;
      });
      keptSets.push(sets);
      k.push(gatherPerHead(this.k[l], sets, c.headDim));
      v.push(gatherPerHead(this.v[l], sets, c.headDim));
    }
    return { cache: new FrozenPrefixCache(cacheShape(c), { n, rows: keep, k, v }, this.policy, this.be), kept: keep, keptSets };
  }
}

function concat(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The smallest FreqKV cache size that the cache accepts with these sinks and retention. */
export function freqkvMinSize(sinks: number, retain: number): number {
  for (let N = Math.max(2, sinks + 1); ; N++) {
    const L = Math.floor((N - sinks) * retain);
    if (L >= 1 && sinks + L < N) return N;
  }
}

/**
 * FreqKV at equal bytes: the cache size N whose bytes held (FreqKVCache.bytes(): pre-RoPE keys,
 * values AND the rotated copy of the keys, plus the slot table, i.e. three rows of floats per
 * token where a KV-Distill row holds two) are nearest to `target`; never below the smallest
 * valid size. perRow is the bytes of one more row, so |bytes - target| <= perRow / 2 unless clamped.
 */
export function freqkvCacheSize(config: LlamaConfig, target: number, sinks: number, retain: number): { cacheSize: number; bytes: number; perRow: number; clamped: boolean } {
  const shape = cacheShape(config);
  const bytesAt = (N: number) => new FreqKVCache(shape, { cacheSize: N, sinks, retain }).bytes().total;
  const N0 = freqkvMinSize(sinks, retain);
  const b0 = bytesAt(N0), b1 = bytesAt(N0 + 1);
  const perRow = b1 - b0;
  const fixed = b0 - perRow * N0;
  let N = Math.round((target - fixed) / perRow);
  const clamped = N < N0;
  if (clamped) N = N0;
  return { cacheSize: N, bytes: fixed + perRow * N, perRow, clamped };
}
