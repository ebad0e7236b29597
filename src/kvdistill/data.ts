// KV-Distill training examples built from the training books (issue 8, part 2): a window of
// book tokens as the context, and a question whose answer must come from it.
//   passkey:  "The pass key is 48213. Remember it. ..." inserted at a random depth; question
//             " What is the pass key? The pass key is", answer " 48213."
//   fact:     "Mara's pet is a goat." inserted; " What is Mara's pet? Mara's pet is", " a goat."
//   quote:    a span of the context itself: the question is the few tokens before it (a cue),
//             the answer the span (copy a sentence out of the context)
//   continue: plain continuation: the next tokens of the book after the context
// Texts come from the generators of src/data/synthetic.ts; the statement and the question are
// tokenised apart from the book tokens (with a leading space, as mid-text words are).
import { passkeySample, factsSample, randInt, type Rand } from '../data/synthetic.js';
import type { DistillExample } from './distill.js';

export const DISTILL_KINDS = ['passkey', 'fact', 'quote', 'continue'] as const;
export type DistillKind = (typeof DISTILL_KINDS)[number];

export interface TextEncoder {
  /** Token ids of text, without special tokens. */
  encode(text: string): number[];
}

export interface DistillDataOptions {
  /** Book tokens in the context: uniform in [minContext, maxContext]. */
  minContext: number;
  maxContext: number;
  /** Kinds drawn uniformly (default all). */
  kinds?: readonly DistillKind[];
  /** Prepended to every context when not null (the model's BOS). */
  bos?: number | null;
  /** quote: cue and span lengths in tokens (default 4 and 8). */
  cueTokens?: number;
  quoteTokens?: number;
  /** continue: question and answer lengths in tokens (default 4 and 8). */
  continueQuestion?: number;
  continueAnswer?: number;
}

export interface KindedExample extends DistillExample {
  kind: DistillKind;
}

/** Splits a retrieval prompt "<statement> What is ...? ... is" into the statement and the question. */
function splitPrompt(prompt: string): { statement: string; question: string } {
  const at = prompt.lastIndexOf('What is ');
  if (at < 0) throw new Error(`kvdistill data: no question in "${prompt}"`);
  return { statement: prompt.slice(0, at).trim(), question: prompt.slice(at).trim() };
}

/** A window of `n` tokens of books at a random offset. */
function bookWindow(next: Rand, books: ArrayLike<number>, n: number): number[] {
  if (books.length < n) throw new RangeError(`kvdistill data: the books hold ${books.length} tokens, an example needs ${n}`);
  const at = randInt(next, books.length - n + 1);
  return Array.from({ length: n }, (_, i) => books[at + i]);
}

/** One example of a random kind (or the given one). */
export function distillExample(next: Rand, books: ArrayLike<number>, codec: TextEncoder, opts: DistillDataOptions, kind?: DistillKind): KindedExample {
  const { minContext, maxContext } = opts;
  if (!(Number.isInteger(minContext) && minContext >= 1 && maxContext >= minContext)) throw new RangeError(`kvdistill data: need 1 <= minContext <= maxContext, got ${minContext}, ${maxContext}`);
  const kinds = opts.kinds ?? DISTILL_KINDS;
  const k = kind ?? kinds[randInt(next, kinds.length)];
  const L = minContext + randInt(next, maxContext - minContext + 1);
  const head = opts.bos !== null && opts.bos !== undefined ? [opts.bos] : [];
  const i32 = (a: number[]) => Int32Array.from(a);
  if (k === 'passkey' || k === 'fact') {
    const s = k === 'passkey' ? passkeySample(next, { fillerChars: 0 }) : factsSample(next, { fillerChars: 0, facts: 1 });
    const { statement, question } = splitPrompt(s.prompt);
    const window = bookWindow(next, books, L);
    const at = randInt(next, L + 1);
    const stmt = codec.encode(' ' + statement);
    return { kind: k, context: i32([...head, ...window.slice(0, at), ...stmt, ...window.slice(at)]), question: i32(codec.encode(' ' + question)), answer: i32(codec.encode(s.answer)) };
  }
  if (k === 'quote') {
    const cue = opts.cueTokens ?? 4, span = opts.quoteTokens ?? 8;
    const window = bookWindow(next, books, Math.max(L, cue + span + 1));
    const at = randInt(next, window.length - cue - span + 1);
    return { kind: k, context: i32([...head, ...window]), question: i32(window.slice(at, at + cue)), answer: i32(window.slice(at + cue, at + cue + span)) };
  }
  const q = opts.continueQuestion ?? 4, a = opts.continueAnswer ?? 8;
  const window = bookWindow(next, books, L + q + a);
  return { kind: k, context: i32([...head, ...window.slice(0, L)]), question: i32(window.slice(L, L + q)), answer: i32(window.slice(L + q)) };
}
