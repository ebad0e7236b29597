// H2O, Heavy-Hitter Oracle (Zhang et al., 2023): keep the `recent` newest tokens plus the tokens
// that have received the most attention so far ("heavy hitters"), per KV head. A token's score is
// the attention it has received, summed over every query since it arrived and over the query
// heads of its group. Once full, every new token evicts, per KV head, the lowest-scoring row
// that is neither a sink nor one of the `recent` newest. Positions and prefill: see evict.ts.
import type { CacheShape } from './types.js';
import { EvictionCache, type EvictLayer, type EvictionOptions, lowestRows } from './evict.js';
import { type CacheState, stateNumber } from './session.js';

export interface H2OOptions extends EvictionOptions {
  /** Newest rows never evicted (default: half of budget - sinks). */
  recent?: number;
}

export class H2OCache extends EvictionCache {
  readonly policy = 'h2o';
  readonly recent: number;

  constructor(shape: CacheShape, opts: H2OOptions) {
    const sinks = opts.sinks ?? 4;
    const recent = opts.recent ?? Math.floor((opts.budget - sinks) / 2);
    if (!Number.isInteger(recent) || recent < 0) throw new RangeError(`h2o: recent must be a non-negative integer, got ${recent}`);
    // at least one heavy-hitter row beside the sinks and the recent window
    super('h2o', shape, opts, true, sinks + recent + 1);
    this.recent = recent;
  }

  protected scoresFrom(): number | null {
    return 0;
  }

  protected override observe(layer: EvictLayer, scores: Float32Array, n: number): void {
    const H = this.nKVHeads;
    const acc = layer.score!;
    for (let h = 0; h < H; h++) for (let j = 0; j < n; j++) acc[j * H + h] += scores[h * n + j];
  }

  protected victims(layer: EvictLayer, head: number, n: number, count: number, out: Int32Array): void {
    lowestRows(layer.score!, this.nKVHeads, head, this.sinks, n - this.recent, count, out);
  }

  protected override extraParams(): Record<string, number> {
    return { recent: this.recent };
  }

  static restore(state: CacheState, shape: CacheShape, source: string): H2OCache {
    const recent = stateNumber(state, 'params', 'recent', source, 0);
    return new H2OCache(shape, { ...EvictionCache.baseOptions(state, source), recent }).loadState(state, source);
  }
}
