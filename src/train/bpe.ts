// A byte-level BPE trainer in the GPT-2 style, writing a Hugging Face tokenizer.json.
//
// 1. Pre-tokenise: the GPT-2 regex cuts text into words (" the", "'s", " 1984", "\n\n", ...);
//    we only keep how often each distinct word occurs.
// 2. Every word starts as its UTF-8 bytes; all 256 bytes are in the vocabulary, so any text
//    encodes and decodes exactly.
// 3. Repeatedly merge the most frequent adjacent pair of symbols (weighted by word counts) into a
//    new symbol. Pair counts are updated incrementally: only the words that contain the merged
//    pair are touched, and a lazy max-heap finds the best pair (stale entries are re-pushed
//    with their current count when they reach the top).
//
// Determinism: ties in pair count are broken by the smaller left symbol id, then the smaller
// right symbol id. Symbol ids are assigned in a fixed order (special tokens, then bytes 0..255,
// then merges in the order they are learned), and words are visited in first-seen order, so the
// same text and options always give the same tokenizer.
import { byteLevelTokenizerJson, byteToUnicode } from '../model/tokenizer.js';

/** GPT-2's pre-tokenisation pattern, exactly as @huggingface/tokenizers' ByteLevel uses it. */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export const END_OF_TEXT = '<|endoftext|>';
export const PAD = '<|pad|>';

/** Adds the words of `text` (GPT-2 pre-tokenisation) to `counts`. */
export function countWords(text: string, counts: Map<string, number> = new Map()): Map<string, number> {
  for (const m of text.matchAll(GPT2_PATTERN)) {
    const w = m[0];
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return counts;
}

export interface BpeModel {
  /** Token strings (byte-level unicode form), indexed by id: special tokens, 256 bytes, merges. */
  vocab: string[];
  /** Merges in rank order, as pairs of token strings. */
  merges: [string, string][];
  /** The special tokens, which are also vocab[0..specialTokens.length). */
  specialTokens: string[];
}

export interface BpeOptions {
  /** Target vocabulary size, special tokens and the 256 bytes included. */
  vocabSize: number;
  /** Special tokens, given the first ids. Default [END_OF_TEXT, PAD]. */
  specialTokens?: string[];
  /** Stop early when the best pair occurs fewer times than this. Default 2. */
  minPairCount?: number;
  /** Called every `progressEvery` merges with (merges done, vocab size now). */
  onProgress?: (merges: number, vocab: number) => void;
  progressEvery?: number;
}

// Pair keys: left * 2^21 + right, exact in a double for ids < 2^21 (2 M symbols).
const PAIR_SHIFT = 2 ** 21;
const pairKey = (a: number, b: number): number => a * PAIR_SHIFT + b;

/**
 * A binary max-heap of pair keys ordered by count (descending), then left id, then right id
 * (ascending). Counts live in parallel arrays so pushes allocate nothing per entry.
 */
class PairHeap {
  private keys: number[] = [];
  private counts: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  // True when entry i should be nearer the top than entry j. Comparing keys compares
  // (left, right) lexicographically because left is the high part.
  private above(i: number, j: number): boolean {
    const ci = this.counts[i];
    const cj = this.counts[j];
    return ci !== cj ? ci > cj : this.keys[i] < this.keys[j];
  }

  private swap(i: number, j: number): void {
    const k = this.keys[i];
    this.keys[i] = this.keys[j];
    this.keys[j] = k;
    const c = this.counts[i];
    this.counts[i] = this.counts[j];
    this.counts[j] = c;
  }

  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the top entry and returns [key, count at push time]. */
  pop(): [number, number] {
    const top: [number, number] = [this.keys[0], this.counts[0]];
    const lastKey = this.keys.pop()!;
    const lastCount = this.counts.pop()!;
    const n = this.keys.length;
    if (n > 0) {
      this.keys[0] = lastKey;
      this.counts[0] = lastCount;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < n && this.above(l, best)) best = l;
        if (r < n && this.above(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Replaces every non-overlapping (a, b), left to right, in `word` by `merged`; returns the new word. */
function mergeWord(word: Int32Array, a: number, b: number, merged: number): Int32Array {
  const out = new Int32Array(word.length);
  let n = 0;
  for (let i = 0; i < word.length; i++) {
    if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
      out[n++] = merged;
      i++;
    } else {
      out[n++] = word[i];
    }
  }
  return out.subarray(0, n);
}

/** Trains a byte-level BPE on word counts (see countWords). */
export function trainBpe(wordCounts: Map<string, number>, opts: BpeOptions): BpeModel {
  const specialTokens = opts.specialTokens ?? [END_OF_TEXT, PAD];
  const minPairCount = opts.minPairCount ?? 2;
  const byteBase = specialTokens.length; // id of byte 0
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < byteBase + 256) {
    throw new Error(`trainBpe: vocabSize must be a whole number >= ${byteBase + 256} (special tokens + 256 bytes), got ${opts.vocabSize}`);
  }
  if (opts.vocabSize >= PAIR_SHIFT) throw new Error(`trainBpe: vocabSize must be below ${PAIR_SHIFT}, got ${opts.vocabSize}`);
  if (new Set(specialTokens).size !== specialTokens.length) throw new Error('trainBpe: specialTokens has duplicates');

  const unicode = byteToUnicode();
  const vocab: string[] = [...specialTokens, ...unicode];
  const idOf = new Map<string, number>();
  vocab.forEach((t, i) => idOf.set(t, i));
  if (idOf.size !== vocab.length) throw new Error('trainBpe: a special token collides with a byte token');
  const merges: [string, string][] = [];

  // Words as symbol-id arrays, with their counts.
  const encoder = new TextEncoder();
  const words: Int32Array[] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    const bytes = encoder.encode(w);
    const word = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) word[i] = byteBase + bytes[i];
    words.push(word);
    counts.push(c);
  }

  // Pair counts and, for each pair, the words it (may) occur in. The word lists only grow:
  // a word that no longer holds the pair is skipped when the pair is merged.
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const notePair = (key: number, w: number) => {
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [w]);
    else if (list[list.length - 1] !== w) list.push(w);
  };
  for (let w = 0; w < words.length; w++) {
    const word = words[w];
    for (let i = 0; i + 1 < word.length; i++) {
      const key = pairKey(word[i], word[i + 1]);
      pairCount.set(key, (pairCount.get(key) ?? 0) + counts[w]);
      notePair(key, w);
    }
  }
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(key, c);

  const every = opts.progressEvery ?? 256;
  const delta = new Map<number, number>();
  while (vocab.length < opts.vocabSize && heap.size > 0) {
    const [key, pushedCount] = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== pushedCount) {
      // Stale entry: the count fell since it was pushed. Re-queue with the true count.
      if (current > 0) heap.push(key, current);
      continue;
    }
    if (current < minPairCount) break;
    const a = Math.floor(key / PAIR_SHIFT);
    const b = key - a * PAIR_SHIFT;
    const text = vocab[a] + vocab[b];
    let merged = idOf.get(text);
    if (merged === undefined) {
      merged = vocab.length;
      vocab.push(text);
      idOf.set(text, merged);
    }
    merges.push([vocab[a], vocab[b]]);

    // Re-count the pairs of every word holding (a, b): subtract its old pairs, add its new ones.
    delta.clear();
    const list = pairWords.get(key) ?? [];
    for (const w of list) {
      const old = words[w];
      let holds = false;
      for (let i = 0; i + 1 < old.length; i++) {
        if (old[i] === a && old[i + 1] === b) {
          holds = true;
          break;
        }
      }
      if (!holds) continue;
      const c = counts[w];
      for (let i = 0; i + 1 < old.length; i++) {
        const k = pairKey(old[i], old[i + 1]);
        delta.set(k, (delta.get(k) ?? 0) - c);
      }
      const word = mergeWord(old, a, b, merged);
      words[w] = word;
      for (let i = 0; i + 1 < word.length; i++) {
        const k = pairKey(word[i], word[i + 1]);
        delta.set(k, (delta.get(k) ?? 0) + c);
        notePair(k, w);
      }
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(k) ?? 0) + d;
      if (c > 0) pairCount.set(k, c);
      else pairCount.delete(k);
      // A count that grew needs a fresh entry (an old one would surface too late);
      // one that fell is fixed lazily when its stale entry reaches the top.
      if (d > 0) heap.push(k, c);
    }
    pairWords.delete(key);
    if (opts.onProgress && merges.length % every === 0) opts.onProgress(merges.length, vocab.length);
  }
  return { vocab, merges, specialTokens };
}

/**
 * The same model cut down to `vocabSize` tokens: BPE is greedy, so the first merges of a bigger
 * training are exactly what a smaller training would learn.
 */
export function truncateBpe(model: BpeModel, vocabSize: number): BpeModel {
  const base = model.specialTokens.length + 256;
  if (!Number.isInteger(vocabSize) || vocabSize < base || vocabSize > model.vocab.length) {
    throw new Error(`truncateBpe: vocabSize must be in [${base}, ${model.vocab.length}], got ${vocabSize}`);
  }
  // Training stops right after the merge that creates token id vocabSize - 1 (a merge may
  // re-create an existing token, so merges and new ids are not one to one).
  let n = 0;
  if (vocabSize > base) {
    const last = model.vocab[vocabSize - 1];
    while (n < model.merges.length && model.merges[n][0] + model.merges[n][1] !== last) n++;
    n++;
  }
  return { vocab: model.vocab.slice(0, vocabSize), merges: model.merges.slice(0, n), specialTokens: model.specialTokens };
}

/**
 * The Hugging Face tokenizer.json for a trained model: the byte-level layout of
 * byteLevelTokenizerJson (special tokens, then the 256 bytes; ByteLevel pre-tokeniser and
 * decoder; BOS prepended when encoding with special tokens, like Llama) with our vocab and merges.
 * Merges are written as "left right" strings, which every loader reads.
 */
export function toTokenizerJson(model: BpeModel, bos: string = END_OF_TEXT): Record<string, unknown> {
  if (!model.specialTokens.includes(bos)) throw new Error(`toTokenizerJson: bos token ${bos} is not a special token`);
  const json = byteLevelTokenizerJson({ specialTokens: model.specialTokens, merges: [], bosToken: bos });
  const vocab: Record<string, number> = {};
  model.vocab.forEach((t, i) => (vocab[t] = i));
  json.model = { ...(json.model as Record<string, unknown>), vocab, merges: model.merges.map(([a, b]) => `${a} ${b}`) };
  return json;
}

/**
 * The tokenizer_config.json that goes with it. clean_up_tokenization_spaces must be false or
 * decode() would rewrite " ." to "." and break exact round trips.
 */
export function toTokenizerConfig(model: BpeModel, bos: string = END_OF_TEXT, eos: string = END_OF_TEXT): Record<string, unknown> {
  const pad = model.specialTokens.includes(PAD) ? PAD : null;
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos,
    eos_token: eos,
    unk_token: null,
    pad_token: pad,
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 1000000,
  };
}
