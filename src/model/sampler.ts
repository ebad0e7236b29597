// Picks the next token from logits: greedy, or temperature sampling restricted by top-k then
// top-p (the order Hugging Face applies them), from a seeded generator so a seed reproduces a
// run. Scratch is allocated once per vocabulary size.
import { rng } from './random.js';

export interface SamplerOptions {
  /** 0 = greedy (argmax); otherwise logits are divided by it before the softmax (default 0). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off (default 0). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 = off (default 1). */
  topP?: number;
  /** Seed of the random generator (default: from the clock). */
  seed?: number;
}

/** Index of the largest logit (the first one on ties). */
export function argmax(logits: Float32Array, n = logits.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  private readonly random: () => number;
  /** Candidate token ids, sorted by logit descending once selected, [vocab]. */
  private readonly ids: Int32Array;
  /** Their unnormalised probabilities, [vocab]. */
  private readonly probs: Float64Array;

  constructor(readonly vocabSize: number, opts: SamplerOptions = {}) {
    const { temperature = 0, topK = 0, topP = 1 } = opts;
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new RangeError(`Sampler vocabSize: expected a positive integer, got ${vocabSize}`);
    if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`Sampler temperature: expected a finite number >= 0, got ${temperature}`);
    if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`Sampler topK: expected an integer >= 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`Sampler topP: expected a number in (0, 1], got ${topP}`);
    this.temperature = temperature;
    this.topK = topK;
    this.topP = topP;
    this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    if (!Number.isInteger(this.seed) || this.seed < 0) throw new RangeError(`Sampler seed: expected a non-negative integer, got ${this.seed}`);
    this.random = rng(this.seed);
    this.ids = new Int32Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
  }

  /** The next token id for logits [vocabSize]. */
  sample(logits: Float32Array): number {
    const V = this.vocabSize;
    if (logits.length < V) throw new RangeError(`Sampler.sample logits: expected ${V} entries, got ${logits.length}`);
    if (this.temperature === 0 || this.topK === 1) return argmax(logits, V);
    const n = this.candidates(logits);
    // softmax (unnormalised) over the candidates at this temperature
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[this.ids[i]]);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const p = Math.exp((logits[this.ids[i]] - max) / this.temperature);
      this.probs[i] = p;
      sum += p;
    }
    let keep = n;
    if (this.topP < 1) {
      // candidates are sorted: keep the shortest prefix whose mass reaches topP
      let acc = 0;
      for (let i = 0; i < n; i++) {
        acc += this.probs[i];
        if (acc >= this.topP * sum) {
          keep = i + 1;
          sum = acc;
          break;
        }
      }
    }
    let r = this.random() * sum;
    for (let i = 0; i < keep; i++) {
      r -= this.probs[i];
      if (r < 0) return this.ids[i];
    }
    return this.ids[keep - 1]; // rounding left r >= 0
  }

  /** Fills ids[0..n) with the candidate tokens (top-k, or those that may be in the top-p nucleus) and returns n. */
  private candidates(logits: Float32Array): number {
    const V = this.vocabSize;
    const ids = this.ids;
    let n = 0;
    if (this.topK > 0 && this.topK < V) {
      n = selectTopK(logits, V, this.topK, ids);
    } else if (this.topP < 1) {
      // A token whose probability is below (1 - topP)/(V - 1) can never be in the nucleus: all such
      // tokens together weigh less than 1 - topP. Drop them before sorting (as llama2.c does).
      let max = -Infinity;
      for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp((logits[i] - max) / this.temperature);
      const cutoff = V > 1 ? ((1 - this.topP) / (V - 1)) * sum : 0;
      for (let i = 0; i < V; i++) if (Math.exp((logits[i] - max) / this.temperature) >= cutoff) ids[n++] = i;
    } else {
      for (let i = 0; i < V; i++) ids[i] = i;
      return V;
    }
    // top-p needs them most likely first; ties by id so a seed reproduces a run
    if (this.topP < 1) ids.subarray(0, n).sort((a, b) => logits[b] - logits[a] || a - b);
    return n;
  }
}

/** Writes the ids of the k largest logits into ids[0..k) (unordered) with a min-heap; returns k. */
function selectTopK(logits: Float32Array, V: number, k: number, ids: Int32Array): number {
  // heap of size k on ids[0..k), smallest logit at the root
  const less = (a: number, b: number) => logits[a] < logits[b] || (logits[a] === logits[b] && a > b);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < k && less(ids[l], ids[m])) m = l;
      if (r < k && less(ids[r], ids[m])) m = r;
      if (m === i) return;
      const t = ids[i];
      ids[i] = ids[m];
      ids[m] = t;
      i = m;
    }
  };
  for (let i = 0; i < k; i++) ids[i] = i;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let t = k; t < V; t++) {
    if (less(ids[0], t)) {
      ids[0] = t;
      siftDown(0);
    }
  }
  return k;
}
