// Evaluation windows (FREQKV.md section 4): a window of T tokens starts every `stride` tokens
// inside each document, and only windows that fit entirely inside their document count, so no
// window ever spans two books. A cap picks an evenly spaced subset when the full set is too slow.
import type { DocumentSpan } from '../data/tokens.js';

export interface EvalWindow {
  /** Index of the document in the split's document list. */
  doc: number;
  /** First token, as an offset into the split's token array. */
  start: number;
  /** Tokens in the window (T). */
  length: number;
}

/** Every window of `length` tokens starting at 0, stride, 2*stride, ... of each document that fits inside it. */
export function enumerateWindows(docs: readonly DocumentSpan[], length: number, stride: number): EvalWindow[] {
  if (!Number.isInteger(length) || length < 2) throw new RangeError(`enumerateWindows length: expected a whole number >= 2, got ${length}`);
  if (!Number.isInteger(stride) || stride < 1) throw new RangeError(`enumerateWindows stride: expected a whole number >= 1, got ${stride}`);
  const out: EvalWindow[] = [];
  docs.forEach((d, doc) => {
    for (let s = 0; s + length <= d.length; s += stride) out.push({ doc, start: d.offset + s, length });
  });
  return out;
}

/**
 * At most k items, evenly spaced over the list: item floor((i + 0.5) * n / k) for i < k, so the
 * picks are centred in k equal stretches (and spread over every document of a window list).
 */
export function evenlySpaced<T>(items: readonly T[], k: number | undefined): T[] {
  if (k === undefined || k >= items.length) return items.slice();
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`evenlySpaced k: expected a whole number >= 1, got ${k}`);
  const n = items.length;
  const out: T[] = [];
  for (let i = 0; i < k; i++) out.push(items[Math.floor(((i + 0.5) * n) / k)]);
  return out;
}
