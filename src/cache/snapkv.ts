// SnapKV (Li et al., 2024): the last `window` queries of the prompt (the observation window)
// vote for the earlier tokens with their attention (summed over the window and the query heads
// of a group); the votes are max-pooled over neighbouring tokens (kernel `kernel`) so that a kept
// token brings its neighbours; the highest pooled votes are kept, per KV head, with the sinks
// and the window itself.
//
// Steps: while the cache holds fewer than `budget` rows, room() is unbounded, so a prompt comes
// in one step and is attended in full (positions 0..P-1, as SnapKV does); if it overflows the
// budget, the cache is cut back to `budget` rows right after it (end of the step) and its memory
// given back. Then, during decode, every query votes too (votes keep accumulating) and every new
// token evicts, per KV head, the row with the lowest pooled vote outside the sinks and the
// `window` newest rows ("beyond the budget, evict by the same score"). Positions: see evict.ts.
import type { CacheShape } from './types.js';
import { EvictionCache, type EvictLayer, type EvictionOptions, lowestRows } from './evict.js';
import { type CacheState, stateNumber } from './session.js';

export interface SnapKVOptions extends EvictionOptions {
  /** Observation window: the newest queries that vote, and the newest rows never evicted (default min(32, (budget - sinks) / 2)). */
  window?: number;
  /** Max-pooling width over the votes, odd (default 7). */
  kernel?: number;
}

/** out[j] = max of v[i] for |i - j| <= half, i in [0, n). */
export function maxPool1d(out: Float32Array, v: Float32Array, stride: number, col: number, n: number, half: number): void {
  for (let j = 0; j < n; j++) {
    let m = -Infinity;
    const lo = Math.max(0, j - half);
    const hi = Math.min(n - 1, j + half);
    for (let i = lo; i <= hi; i++) m = Math.max(m, v[i * stride + col]);
    out[j] = m;
  }
}

export class SnapKVCache extends EvictionCache {
  readonly policy = 'snapkv';
  readonly window: number;
  readonly kernel: number;
  private pooled = new Float32Array(0);

  constructor(shape: CacheShape, opts: SnapKVOptions) {
    const sinks = opts.sinks ?? 4;
    const window = opts.window ?? Math.max(1, Math.min(32, Math.floor((opts.budget - sinks) / 2)));
    const kernel = opts.kernel ?? 7;
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`snapkv: window must be a positive integer, got ${window}`);
    if (!Number.isInteger(kernel) || kernel < 1 || kernel % 2 === 0) throw new RangeError(`snapkv: kernel must be an odd positive integer, got ${kernel}`);
    super('snapkv', shape, opts, true, sinks + window + 1);
    this.window = window;
    this.kernel = kernel;
  }

  override room(): number {
    return this.length < this.budget ? Infinity : 1;
  }

  protected override maxRows(): number {
    return Infinity;
  }

  /** Decode steps evict first; a prompt that overflows is cut back after it (afterStep). */
  protected override evictBefore(T: number): number {
    return this.length >= this.budget ? this.length + T - this.budget : 0;
  }

  protected override afterStep(): void {
    if (this.length <= this.budget) return;
    this.evict(this.length - this.budget);
    this.fitStorage(this.budget);
  }

  protected scoresFrom(T: number): number | null {
    return Math.max(0, T - this.window);
  }

  protected override observe(layer: EvictLayer, scores: Float32Array, n: number): void {
    const H = this.nKVHeads;
    const votes = layer.score!;
    for (let h = 0; h < H; h++) for (let j = 0; j < n; j++) votes[j * H + h] += scores[h * n + j];
  }

  protected victims(layer: EvictLayer, head: number, n: number, count: number, out: Int32Array): void {
    if (this.pooled.length < n) this.pooled = new Float32Array(n);
    maxPool1d(this.pooled, layer.score!, this.nKVHeads, head, n, (this.kernel - 1) / 2);
    lowestRows(this.pooled, 1, 0, this.sinks, n - this.window, count, out);
  }

  protected override extraParams(): Record<string, number> {
    return { window: this.window, kernel: this.kernel };
  }

  static restore(state: CacheState, shape: CacheShape, source: string): SnapKVCache {
    const window = stateNumber(state, 'params', 'window', source, 1);
    const kernel = stateNumber(state, 'params', 'kernel', source, 1);
    return new SnapKVCache(shape, { ...EvictionCache.baseOptions(state, source), window, kernel }).loadState(state, source);
  }
}
