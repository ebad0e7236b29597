// TOVA, Token Omission Via Attention (Oren et al., 2024): once full, every new token evicts, per
// KV head, the row with the lowest attention from the CURRENT query (summed over the query heads
// of its group), sinks excepted. The scores are those of the latest step's last query, so they
// are overwritten, not accumulated. Positions and prefill: see evict.ts.
import type { CacheShape } from './types.js';
import { EvictionCache, type EvictLayer, type EvictionOptions, lowestRows } from './evict.js';
import type { CacheState } from './session.js';

export type TOVAOptions = EvictionOptions;

export class TOVACache extends EvictionCache {
  readonly policy = 'tova';

  constructor(shape: CacheShape, opts: TOVAOptions) {
    super('tova', shape, opts, true);
  }

  /** Only the step's last query counts. */
  protected scoresFrom(T: number): number | null {
    return T - 1;
  }

  protected override observe(layer: EvictLayer, scores: Float32Array, n: number): void {
    const H = this.nKVHeads;
    const s = layer.score!;
    for (let h = 0; h < H; h++) for (let j = 0; j < n; j++) s[j * H + h] = scores[h * n + j];
  }

  protected victims(layer: EvictLayer, head: number, n: number, count: number, out: Int32Array): void {
    lowestRows(layer.score!, this.nKVHeads, head, this.sinks, n, count, out);
  }

  static restore(state: CacheState, shape: CacheShape, source: string): TOVACache {
    return new TOVACache(shape, EvictionCache.baseOptions(state, source)).loadState(state, source);
  }
}
