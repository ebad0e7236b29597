// Retrieval tasks at a chosen prompt length (in tokens) and depth, with their scoring:
// - passkey (LongLoRA, Landmark Attention): the classic five filler sentences repeated in order,
//   "The pass key is 48213. Remember it. 48213 is the pass key." at the depth, then
//   "What is the pass key? The pass key is"; correct when the first number of the greedy
//   continuation is the key.
// - RULER-style needle tasks in a book haystack: single (one needle), multikey (several needles
//   with different keys, one asked), multivalue (one key with several values, all asked) and
//   vt (variable tracking: a chain VAR A = 12345, VAR B = VAR A, ...; name every variable).
//   Score: the share of expected values found as whole words in the continuation.
// Every sample is a pure function of (seed, length, depth): every policy sees the same prompts.
// A prompt is fitted to the length by binary search over filler (sentences or haystack
// characters): the longest one whose encoding has at most `length` tokens.
import { CLASSIC_FILLER, randInt, randomDigits, type Rand } from '../data/synthetic.js';

/** Encoding of a prompt (with the BOS the tokenizer adds) and decoding of a continuation. */
export interface Codec {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export const NIAH_TASKS = ['single', 'multikey', 'multivalue', 'vt'] as const;
export type NiahTask = (typeof NIAH_TASKS)[number];
export type TaskName = 'passkey' | NiahTask;

export interface TaskSample {
  task: TaskName;
  /** Target length (tokens) and depth the sample was made for. */
  length: number;
  depth: number;
  /** Prompt token ids, at most `length` of them. */
  prompt: number[];
  /** Strings the continuation must contain (passkey: the key). */
  expected: string[];
}

/** Largest n in [0, maxN] whose build(n) has at most `target` tokens (build's length must grow with n). */
export function fitToTokens(build: (n: number) => number[], maxN: number, target: number, what: string): { n: number; ids: number[] } {
  let best = build(0);
  if (best.length > target) throw new Error(`${what}: length ${target} is too short; the fixed text alone takes ${best.length} tokens`);
  let lo = 0; // build(lo) fits
  let hi = maxN + 1; // build(hi) does not fit (or is past the end)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const ids = build(mid);
    if (ids.length <= target) {
      lo = mid;
      best = ids;
    } else {
      hi = mid;
    }
  }
  if (lo === maxN) throw new Error(`${what}: not enough filler text to reach ${target} tokens (all ${maxN} units give ${best.length})`);
  return { n: lo, ids: best };
}

function checkDepth(depth: number): void {
  if (!(depth >= 0 && depth <= 1)) throw new RangeError(`depth: expected a number in [0, 1], got ${depth}`);
}

// ---- passkey ----------------------------------------------------------------------------------

/** The passkey prompt with `before` and `after` filler sentences (the classic five, cycled in order). */
export function passkeyText(key: string, before: number, after: number): string {
  const filler = (from: number, n: number) => Array.from({ length: n }, (_, i) => CLASSIC_FILLER[(from + i) % CLASSIC_FILLER.length]);
  const parts = [...filler(0, before), `The pass key is ${key}. Remember it. ${key} is the pass key.`, ...filler(before, after), 'What is the pass key? The pass key is'];
  return parts.join(' ');
}

export function passkeySample(next: Rand, length: number, depth: number, codec: Codec): TaskSample {
  checkDepth(depth);
  const key = randomDigits(next, 5);
  // Sentences are ~4-6 tokens; 2 * length sentences are always more than enough.
  const build = (n: number) => {
    const before = Math.round(n * depth);
    return codec.encode(passkeyText(key, before, n - before));
  };
  const { ids } = fitToTokens(build, 2 * length, length, `passkey`);
  return { task: 'passkey', length, depth, prompt: ids, expected: [key] };
}

/** Passkey scoring: the first run of digits in the continuation equals the key. */
export function scorePasskey(continuation: string, key: string): number {
  const m = /\d+/.exec(continuation);
  return m !== null && m[0] === key ? 1 : 0;
}

// ---- needle tasks ----------------------------------------------------------------------------

/** Haystack text: documents joined, needles go in at sentence boundaries. */
export interface Haystack {
  text: string;
}

const WORDS: readonly string[] = [
  'amber', 'anchor', 'apple', 'arrow', 'autumn', 'badger', 'barley', 'beacon', 'birch', 'bishop', 'bramble', 'bridge',
  'candle', 'canyon', 'castle', 'cedar', 'cherry', 'cinder', 'clover', 'comet', 'copper', 'coral', 'cotton', 'crystal',
  'dagger', 'dawn', 'desert', 'dragon', 'eagle', 'ember', 'falcon', 'feather', 'fern', 'forest', 'garden', 'glacier',
  'granite', 'harbor', 'hazel', 'hollow', 'island', 'ivory', 'jasper', 'kettle', 'lantern', 'lemon', 'linen', 'maple',
  'marble', 'meadow', 'mirror', 'velvet', 'orchid', 'otter', 'pebble', 'pepper', 'pilgrim', 'quartz', 'raven', 'river',
  'saddle', 'silver', 'thistle', 'willow',
];

function magicKey(next: Rand): string {
  return `${WORDS[randInt(next, WORDS.length)]}-${WORDS[randInt(next, WORDS.length)]}`;
}

function varName(next: Rand): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += String.fromCharCode(65 + randInt(next, 26));
  return s;
}

/** Distinct values from gen (retrying duplicates). */
function distinct(n: number, gen: () => string): string[] {
  const out: string[] = [];
  for (let guard = 0; out.length < n; guard++) {
    if (guard > 1000 * n) throw new Error('niah: could not draw distinct values');
    const v = gen();
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

interface Needles {
  /** Statements placed in the haystack with their depths in [0, 1]. */
  needles: { text: string; depth: number }[];
  question: string;
  expected: string[];
}

const NIAH_PREAMBLE = 'Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz you about the numbers afterwards.';
const VT_PREAMBLE = 'Memorize and track the chain of variable assignments hidden in the following text.';

/** The needles and question of a task; `count` = needles (multikey, multivalue) or chain length - 1 (vt). */
export function makeNeedles(task: NiahTask, next: Rand, depth: number, count: number): Needles {
  checkDepth(depth);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`niah needles: expected a whole number >= 1, got ${count}`);
  const number = () => randomDigits(next, 7);
  const stmt = (key: string, value: string) => `One of the special magic numbers for ${key} is: ${value}.`;
  switch (task) {
    case 'single': {
      const key = magicKey(next);
      const value = number();
      return { needles: [{ text: stmt(key, value), depth }], question: askOne(key), expected: [value] };
    }
    case 'multikey': {
      const keys = distinct(Math.max(1, count), () => magicKey(next));
      const values = distinct(keys.length, number);
      const needles = keys.map((k, i) => ({ text: stmt(k, values[i]), depth: i === 0 ? depth : next() }));
      return { needles, question: askOne(keys[0]), expected: [values[0]] };
    }
    case 'multivalue': {
      const key = magicKey(next);
      const values = distinct(Math.max(1, count), number);
      const needles = values.map((v, i) => ({ text: stmt(key, v), depth: i === 0 ? depth : next() }));
      const question =
        `What are all the special magic numbers for ${key} mentioned in the provided text? ` +
        `The special magic numbers for ${key} mentioned in the provided text are`;
      return { needles, question, expected: values };
    }
    case 'vt': {
      const names = distinct(count + 1, () => varName(next));
      const value = randomDigits(next, 5);
      // the chain starts at the depth and its links spread evenly from there to the end
      const needles = names.map((name, i) => ({
        text: i === 0 ? `VAR ${name} = ${value}.` : `VAR ${name} = VAR ${names[i - 1]}.`,
        depth: depth + ((1 - depth) * i) / (names.length),
      }));
      const question =
        `Find all variables that are assigned the value ${value} in the text above. Answer: According to the chain of variable ` +
        `assignments in the text above, ${names.length} variables are assigned the value ${value}, they are:`;
      return { needles, question, expected: names };
    }
  }
}

function askOne(key: string): string {
  return `What is the special magic number for ${key} mentioned in the provided text? The special magic number for ${key} mentioned in the provided text is`;
}

/** Index just after the sentence end at or after `at` (or text.length when there is none). */
export function sentenceBoundary(text: string, at: number): number {
  const re = /[.!?]["'’”)\]]*\s+/g;
  re.lastIndex = Math.max(0, Math.min(at, text.length));
  const m = re.exec(text);
  return m ? m.index + m[0].length : text.length;
}

/** `span` with each needle inserted at the first sentence boundary at or after its depth (0: the start, 1: the end). */
export function insertNeedles(span: string, needles: readonly { text: string; depth: number }[]): string {
  const at = (d: number) => (d <= 0 ? 0 : d >= 1 ? span.length : sentenceBoundary(span, Math.round(d * span.length)));
  const placed = needles.map((n) => ({ text: n.text, at: at(n.depth) }));
  placed.sort((a, b) => a.at - b.at);
  let out = '';
  let from = 0;
  for (const p of placed) {
    const piece = span.slice(from, p.at).trimEnd();
    out += piece + (piece.length ? ' ' : '') + p.text + ' ';
    from = p.at;
  }
  return (out + span.slice(from).trimStart()).trim();
}

/**
 * A needle task prompt of at most `length` tokens: the preamble, a haystack span starting at a
 * random sentence of the haystack with the needles inside, then the question.
 */
export function niahSample(task: NiahTask, next: Rand, length: number, depth: number, haystack: Haystack, codec: Codec, count = 4): TaskSample {
  const { needles, question, expected } = makeNeedles(task, next, depth, count);
  const text = haystack.text;
  // at most ~8 characters per token of English; leave room to reach the target from any start
  const maxChars = Math.min(text.length, 8 * length + 64);
  if (text.length === 0) throw new Error('niah: the haystack text is empty');
  const start = text.length > maxChars ? sentenceBoundary(text, randInt(next, text.length - maxChars)) : 0;
  const preamble = task === 'vt' ? VT_PREAMBLE : NIAH_PREAMBLE;
  const available = Math.min(maxChars, text.length - start);
  const build = (n: number) => codec.encode(`${preamble}\n\n${insertNeedles(text.slice(start, start + n), needles)}\n\n${question}`);
  const { ids } = fitToTokens(build, available, length, `niah ${task}`);
  return { task, length, depth, prompt: ids, expected };
}

/** Needle scoring: the share of expected values that appear as whole words in the continuation. */
export function scoreNeedles(continuation: string, expected: readonly string[]): number {
  if (expected.length === 0) return 0;
  let found = 0;
  for (const e of expected) {
    const re = new RegExp(`(^|[^A-Za-z0-9])${e.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^A-Za-z0-9])`);
    if (re.test(continuation)) found++;
  }
  return found / expected.length;
}

export function scoreSample(sample: TaskSample, continuation: string): number {
  return sample.task === 'passkey' ? scorePasskey(continuation, sample.expected[0]) : scoreNeedles(continuation, sample.expected);
}
