// Synthetic retrieval text: a fact stated once, filler, then a question whose answer is the fact.
// Mixed into pretraining (a small share of the tokens) so the model learns to look back within
// its window; the passkey evaluation and KV-Distill reuse the same generators with longer filler.
//
// Every generator is a pure function of (next, options): `next` is a seeded PRNG returning
// floats in [0, 1) (see rng() in src/model/random.ts), so a seed always gives the same text.

export type Rand = () => number;

/** One sample: `text` = `prompt` + `answer`; a model given `prompt` should continue with `answer`. */
export interface RetrievalSample {
  kind: 'passkey' | 'facts';
  prompt: string;
  /** Starts with a space, e.g. " 48213." or " green.". */
  answer: string;
  text: string;
}

/** The classic passkey filler (Mohtashami and Jaggi, 2023), one sentence per entry. */
export const CLASSIC_FILLER: readonly string[] = [
  'The grass is green.',
  'The sky is blue.',
  'The sun is yellow.',
  'Here we go.',
  'There and back again.',
];

/** A whole number in [0, n). */
export function randInt(next: Rand, n: number): number {
  return Math.min(n - 1, Math.floor(next() * n));
}

function pick<T>(next: Rand, items: readonly T[]): T {
  return items[randInt(next, items.length)];
}

/** A string of `digits` random decimal digits; the first is never 0. */
export function randomDigits(next: Rand, digits: number): string {
  let s = String(1 + randInt(next, 9));
  for (let i = 1; i < digits; i++) s += String(randInt(next, 10));
  return s;
}

/** Filler sentences joined by spaces until at least `chars` characters (empty for chars <= 0). */
export function fillerText(next: Rand, chars: number, filler: readonly string[] = CLASSIC_FILLER): string {
  if (filler.length === 0) throw new Error('fillerText: filler must hold at least one sentence');
  const parts: string[] = [];
  let n = 0;
  while (n < chars) {
    const s = pick(next, filler);
    parts.push(s);
    n += s.length + 1;
  }
  return parts.join(' ');
}

export interface PasskeyOptions {
  /** Filler characters in total (before and after the key); the sample is about 120 longer. */
  fillerChars: number;
  /** Digits in the pass key (default 5). */
  digits?: number;
  /** Where the key goes: 0 = before all filler, 1 = after it; random when omitted. */
  depth?: number;
  filler?: readonly string[];
}

/**
 * "The pass key is 48213. Remember it. 48213 is the pass key." hidden in filler, then
 * "What is the pass key? The pass key is" with answer " 48213.".
 */
export function passkeySample(next: Rand, opts: PasskeyOptions): RetrievalSample {
  const digits = opts.digits ?? 5;
  if (!Number.isInteger(digits) || digits < 1 || digits > 30) throw new Error(`passkeySample: digits must be a whole number in [1, 30], got ${digits}`);
  checkDepth('passkeySample', opts.depth);
  const key = randomDigits(next, digits);
  const depth = opts.depth ?? next();
  const before = fillerText(next, Math.round(opts.fillerChars * depth), opts.filler);
  const after = fillerText(next, opts.fillerChars - Math.round(opts.fillerChars * depth), opts.filler);
  const statement = `The pass key is ${key}. Remember it. ${key} is the pass key.`;
  const prompt = joinSentences([before, statement, after, 'What is the pass key? The pass key is']);
  const answer = ` ${key}.`;
  return { kind: 'passkey', prompt, answer, text: prompt + answer };
}

// Facts: "<name>'s <attribute> is <value>." Values fit after "is" and are single words or short phrases.
const NAMES: readonly string[] = [
  'Ada', 'Ben', 'Clara', 'Daniel', 'Edith', 'Felix', 'Grace', 'Henry', 'Iris', 'James', 'Kate', 'Leo',
  'Mara', 'Noah', 'Olive', 'Peter', 'Quinn', 'Rosa', 'Samuel', 'Tess', 'Uma', 'Victor', 'Wendy', 'Xavier',
  'Yara', 'Zach', 'Alice', 'Hugo', 'Nina', 'Oscar', 'Ruth', 'Simon',
];
const ATTRIBUTES: readonly { name: string; values: readonly string[] }[] = [
  { name: 'favourite colour', values: ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'black', 'white', 'grey', 'brown'] },
  { name: 'pet', values: ['a cat', 'a dog', 'a horse', 'a parrot', 'a rabbit', 'a goat', 'a tortoise', 'a hen'] },
  { name: 'home town', values: ['York', 'Bath', 'Dover', 'Leeds', 'Chester', 'Norwich', 'Exeter', 'Durham', 'Oxford', 'Derby'] },
  { name: 'lucky number', values: ['7', '12', '19', '23', '31', '42', '56', '64', '77', '88', '93'] },
  { name: 'favourite fruit', values: ['apples', 'pears', 'plums', 'cherries', 'figs', 'grapes', 'lemons', 'peaches'] },
  { name: 'trade', values: ['baker', 'smith', 'miller', 'weaver', 'potter', 'tailor', 'carpenter', 'sailor', 'farmer'] },
];

export interface FactsOptions {
  /** Filler characters in total. */
  fillerChars: number;
  /** Facts stated (distinct name and attribute pairs), one of which is asked about (default 3). */
  facts?: number;
  /** Where the asked-about fact goes, 0..1 as in PasskeyOptions; random when omitted. */
  depth?: number;
  filler?: readonly string[];
}

/**
 * Several facts "Mara's pet is a goat." scattered in filler, then a question about one of them:
 * "What is Mara's pet? Mara's pet is" with answer " a goat.".
 */
export function factsSample(next: Rand, opts: FactsOptions): RetrievalSample {
  const nFacts = opts.facts ?? 3;
  const maxFacts = NAMES.length * ATTRIBUTES.length;
  if (!Number.isInteger(nFacts) || nFacts < 1 || nFacts > maxFacts) throw new Error(`factsSample: facts must be a whole number in [1, ${maxFacts}], got ${nFacts}`);
  checkDepth('factsSample', opts.depth);
  // Distinct (name, attribute) pairs so the question has one answer.
  const used = new Set<string>();
  const facts: { subject: string; value: string }[] = [];
  while (facts.length < nFacts) {
    const name = pick(next, NAMES);
    const attr = pick(next, ATTRIBUTES);
    const id = `${name}/${attr.name}`;
    if (used.has(id)) continue;
    used.add(id);
    facts.push({ subject: `${name}'s ${attr.name}`, value: pick(next, attr.values) });
  }
  const asked = facts[0];
  // Positions in [0, 1] along the filler: the asked fact at `depth`, the others anywhere.
  const placed = facts.map((f, i) => ({ f, at: i === 0 ? (opts.depth ?? next()) : next() }));
  placed.sort((x, y) => x.at - y.at);
  const parts: string[] = [];
  let done = 0; // filler characters emitted so far
  for (const { f, at } of placed) {
    const upTo = Math.round(opts.fillerChars * at);
    parts.push(fillerText(next, upTo - done, opts.filler));
    done = Math.max(done, upTo);
    parts.push(`${f.subject} is ${f.value}.`);
  }
  parts.push(fillerText(next, opts.fillerChars - done, opts.filler));
  parts.push(`What is ${asked.subject}? ${asked.subject} is`);
  const prompt = joinSentences(parts);
  const answer = ` ${asked.value}.`;
  return { kind: 'facts', prompt, answer, text: prompt + answer };
}

export interface MixedSampleOptions {
  /** Filler characters are drawn uniformly from [minFillerChars, maxFillerChars]. */
  minFillerChars: number;
  maxFillerChars: number;
  /** Share of passkey samples; the rest are facts (default 0.5). */
  passkeyShare?: number;
  filler?: readonly string[];
}

/** The pretraining mix: passkey or facts samples of varying length, key at a random depth. */
export function retrievalSample(next: Rand, opts: MixedSampleOptions): RetrievalSample {
  if (!(opts.minFillerChars >= 0 && opts.maxFillerChars >= opts.minFillerChars)) {
    throw new Error(`retrievalSample: need 0 <= minFillerChars <= maxFillerChars, got ${opts.minFillerChars}, ${opts.maxFillerChars}`);
  }
  const fillerChars = opts.minFillerChars + randInt(next, opts.maxFillerChars - opts.minFillerChars + 1);
  if (next() < (opts.passkeyShare ?? 0.5)) return passkeySample(next, { fillerChars, filler: opts.filler });
  return factsSample(next, { fillerChars, facts: 1 + randInt(next, 4), filler: opts.filler });
}

function checkDepth(fn: string, depth: number | undefined): void {
  if (depth !== undefined && !(depth >= 0 && depth <= 1)) throw new Error(`${fn}: depth must be in [0, 1], got ${depth}`);
}

function joinSentences(parts: string[]): string {
  return parts.filter((p) => p.length > 0).join(' ');
}
