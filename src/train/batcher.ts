// Training batches: token windows [batch, seqLen+1] (seqLen inputs, each shifted by one as
// the targets). Which windows a step gets is a pure function of (seed, step, micro-batch), so
// a resumed run needs only the step number to see exactly the data it would have seen.
import { pickWindow, windowTokens } from '../data/mix.js';
import type { TokenSplit } from '../data/tokens.js';
import { rng } from '../model/random.js';

export interface Batcher {
  readonly batch: number;
  readonly seqLen: number;
  /** Fills out [batch, seqLen+1] for micro-batch `micro` of optimiser step `step`. */
  fill(out: Int32Array, step: number, micro: number): void;
}

/** lowbias32 (Wellons): a 32-bit integer mixer; chained to derive a seed per window. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** A 32-bit seed derived from the run seed and the window's coordinates. */
export function windowSeed(seed: number, step: number, micro: number, row: number): number {
  return mix32(mix32(mix32(mix32(seed >>> 0) ^ step) ^ micro) ^ row);
}

/**
 * The pretraining batches: each window comes from the synthetic retrieval split with
 * probability `share`, otherwise from a random offset of the books (the rule of
 * src/data/mix.ts), drawn with a generator seeded by (seed, step, micro, row).
 */
export class MixedWindowBatcher implements Batcher {
  constructor(private readonly books: TokenSplit, private readonly synthetic: TokenSplit | null, private readonly share: number,
    readonly batch: number, readonly seqLen: number, private readonly seed: number) {
    if (books.tokens.length < seqLen + 1) throw new RangeError(`batcher: split "${books.name}" has ${books.tokens.length} tokens, need at least seqLen + 1 = ${seqLen + 1}`);
    if (!(share >= 0 && share <= 1)) throw new RangeError(`batcher share: expected a number in [0, 1], got ${share}`);
    if (share > 0 && !synthetic) throw new RangeError('batcher: a synthetic share > 0 needs a synthetic split');
  }

  fill(out: Int32Array, step: number, micro: number): void {
    const W = this.seqLen + 1;
    if (out.length !== this.batch * W) throw new RangeError(`batcher out: expected [${this.batch}, ${W}] = ${this.batch * W} tokens, got ${out.length}`);
    for (let b = 0; b < this.batch; b++) {
      const next = rng(windowSeed(this.seed, step, micro, b));
      out.set(windowTokens(pickWindow(next, this.books, this.synthetic, W, this.share), W), b * W);
    }
  }
}

/**
 * `count` windows of seqLen+1 tokens spread evenly over `tokens` (the validation set: the same
 * windows at every evaluation), as [count, seqLen+1].
 */
export function evenWindows(tokens: ArrayLike<number>, count: number, seqLen: number): Int32Array {
  const W = seqLen + 1;
  if (tokens.length < W) throw new RangeError(`validation tokens: ${tokens.length} tokens, need at least seqLen + 1 = ${W}`);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`validation windows: expected a positive count, got ${count}`);
  const out = new Int32Array(count * W);
  const last = tokens.length - W;
  for (let i = 0; i < count; i++) {
    const start = count === 1 ? 0 : Math.round((i * last) / (count - 1));
    for (let j = 0; j < W; j++) out[i * W + j] = tokens[start + j];
  }
  return out;
}
