// StreamingLLM (Xiao et al., 2023): the first `sinks` tokens plus the most recent ones, `budget`
// rows in all. Once full, every new token evicts the oldest non-sink token. With slot positions
// (the default) the held tokens sit at positions 0..budget-1 whatever the stream length, as in
// StreamingLLM; chunked prefill and eviction follow evict.ts.
import type { CacheShape } from './types.js';
import { EvictionCache, type EvictLayer, type EvictionOptions } from './evict.js';
import type { CacheState } from './session.js';

export type WindowOptions = EvictionOptions;

export class WindowCache extends EvictionCache {
  readonly policy = 'window';

  constructor(shape: CacheShape, opts: WindowOptions) {
    super('window', shape, opts, false);
  }

  protected scoresFrom(): number | null {
    return null;
  }

  /** The oldest rows after the sinks (the same tokens in every head). */
  protected victims(_layer: EvictLayer, _head: number, _n: number, count: number, out: Int32Array): void {
    for (let i = 0; i < count; i++) out[i] = this.sinks + i;
  }

  static restore(state: CacheState, shape: CacheShape, source: string): WindowCache {
    return new WindowCache(shape, EvictionCache.baseOptions(state, source)).loadState(state, source);
  }
}
