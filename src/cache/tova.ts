// TOVA, Token Omission Via Attention (Oren et al., 2024): once full, every new token evicts the
// token with the lowest attention from the CURRENT query, averaged over all heads of the layer
// (as the paper and its reference code do), so every head of a layer drops the same token;
// sinks excepted. The scores are those of the latest step's last query, so they are
// overwritten, not accumulated. Positions and prefill: see evict.ts.
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

  /** Every head's column holds the layer's score: the attention summed over all query heads. */
  protected override observe(layer: EvictLayer, scores: Float32Array, n: number): void {
    const H = this.nKVHeads;
    const s = layer.score!;
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let h = 0; h < H; h++) sum += scores[h * n + j];
      for (let h = 0; h < H; h++) s[j * H + h] = sum;
    }
  }

  protected victims(layer: EvictLayer, _head: number, n: number, count: number, out: Int32Array): void {
    lowestRows(layer.score!, this.nKVHeads, 0, this.sinks, n, count, out);
  }

  static restore(state: CacheState, shape: CacheShape, source: string): TOVACache {
    return new TOVACache(shape, EvictionCache.baseOptions(state, source)).loadState(state, source);
  }
}
