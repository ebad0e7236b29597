// The mixing rule for pretraining: each training window comes from the synthetic retrieval split
// with probability `share`, otherwise from the books. All windows have the same length, so
// `share` is also the share of training tokens that are synthetic.
import type { Rand } from './synthetic.js';
import { randInt } from './synthetic.js';
import type { TokenArray, TokenSplit } from './tokens.js';

/**
 * Start offset of the next training window of `length` tokens (inputs plus the shifted target
 * usually: pass window + 1). Book windows start anywhere; synthetic windows start at a sample
 * start so the whole sample, its question last, is inside. Returns which split it came from.
 */
export function pickWindow(
  next: Rand,
  books: TokenSplit,
  synthetic: TokenSplit | null,
  length: number,
  share: number,
): { split: TokenSplit; offset: number } {
  if (!(share >= 0 && share <= 1)) throw new Error(`pickWindow: share must be in [0, 1], got ${share}`);
  if (share > 0 && synthetic === null) throw new Error('pickWindow: share > 0 needs a synthetic split');
  if (synthetic !== null && share > 0 && next() < share) {
    const last = lastStartingDocument(synthetic, length);
    if (last < 0) throw new Error(`pickWindow: synthetic split ${synthetic.name} has fewer than ${length} tokens`);
    return { split: synthetic, offset: synthetic.documents[randInt(next, last + 1)].offset };
  }
  if (books.tokens.length < length) throw new Error(`pickWindow: split ${books.name} has ${books.tokens.length} tokens, fewer than the window ${length}`);
  return { split: books, offset: randInt(next, books.tokens.length - length + 1) };
}

/** The tokens of a window picked by pickWindow (a view, no copy). */
export function windowTokens(w: { split: TokenSplit; offset: number }, length: number): TokenArray {
  return w.split.tokens.subarray(w.offset, w.offset + length);
}

// Index of the last document a full window can start at (-1 if none). Documents tile the split
// in order, so this is a binary search on offsets.
function lastStartingDocument(split: TokenSplit, length: number): number {
  const limit = split.tokens.length - length;
  let lo = 0;
  let hi = split.documents.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (split.documents[mid].offset <= limit) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}
