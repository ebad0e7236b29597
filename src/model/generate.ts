// Text generation: prefill the prompt in one forward call, then sample and feed one token at a
// time until EOS, a stop string or the token limit. Text is streamed as it becomes final:
// decoded incrementally so multi-byte characters come out whole, and held back while it could
// still be the start of a stop string.
import type { Backend } from '../kernels/backend.js';
import type { KVCache } from '../cache/types.js';
import { createCache } from '../cache/factory.js';
import { forward } from './forward.js';
import { Sampler, type SamplerOptions } from './sampler.js';
import type { Model } from './types.js';

/** What generation needs from a tokenizer (src/model/tokenizer.ts provides it). */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Extra end-of-sequence ids (e.g. from generation_config.json), added to the config's. */
  readonly eosIds?: readonly number[];
  readonly bosId?: number | null;
}

export interface GenerateOptions extends SamplerOptions {
  /** Most new tokens to produce (default 256). */
  maxTokens?: number;
  /** Stop as soon as the generated text contains one of these; the text is cut before it. */
  stop?: string[];
  /** The cache to append to (default: a new full cache). A cache that already holds tokens continues that stream. */
  cache?: KVCache;
  backend?: Backend;
  /** End-of-sequence ids (default: the config's and the tokenizer's). */
  eosIds?: number[];
  /** Also feed the last sampled token, so the cache holds the whole exchange (one more decode step). */
  feedLast?: boolean;
  /** Stops generation (finishReason 'abort') when aborted. */
  signal?: AbortSignal;
}

export interface Timings {
  /** Prompt tokens fed in the prefill, and the time to the first logits. */
  prefillTokens: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** One-token forward steps after the prefill, and their time including sampling. */
  decodeTokens: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'abort';

export interface GenerateResult {
  /** The generated text, cut before the stop string when one was hit. */
  text: string;
  /** Generated token ids (an EOS that ended generation is not included). */
  tokens: number[];
  promptTokens: number[];
  finishReason: FinishReason;
  /** The sampler's seed (reproduces the run with the same options). */
  seed: number;
  timings: Timings;
}

/**
 * Generates a continuation of `prompt` (text, encoded with the tokenizer, or token ids used as
 * they are) and calls onToken with each piece of final text as it is produced.
 */
export async function generate(
  model: Model,
  tokenizer: TextCodec,
  prompt: string | number[],
  opts: GenerateOptions = {},
  onToken?: (piece: string) => void,
): Promise<GenerateResult> {
  const config = model.config;
  const maxTokens = opts.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`generate maxTokens: expected an integer >= 0, got ${maxTokens}`);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const eos = new Set(opts.eosIds ?? [...config.eosTokenIds, ...(tokenizer.eosIds ?? [])]);
  const sampler = new Sampler(config.vocabSize, opts);
  const cache = opts.cache ?? createCache(config, { backend: opts.backend });
  const fwd = { backend: opts.backend, out: new Float32Array(config.vocabSize) };

  let promptTokens = typeof prompt === 'string' ? Array.from(tokenizer.encode(prompt)) : prompt.slice();
  if (promptTokens.length === 0) {
    const bos = tokenizer.bosId ?? config.bosTokenId;
    if (bos === null || bos === undefined) throw new Error('generate prompt: it encodes to no tokens and the model has no BOS token to start from');
    promptTokens = [bos];
  }

  const stream = new TextStream(tokenizer, promptTokens);
  const out = new StopFilter(stops, onToken);
  const tokens: number[] = [];
  let finishReason: FinishReason = 'length';

  let t0 = performance.now();
  let logits = forward(model, promptTokens, cache, fwd);
  const prefillMs = performance.now() - t0;
  t0 = performance.now();
  let decodeTokens = 0;
  while (tokens.length < maxTokens) {
    if (opts.signal?.aborted) {
      finishReason = 'abort';
      break;
    }
    const next = sampler.sample(logits);
    const last = tokens.length + 1 === maxTokens;
    if (eos.has(next)) {
      finishReason = 'eos';
      if (opts.feedLast) feed(next);
      break;
    }
    tokens.push(next);
    if (out.push(stream.push(next))) {
      finishReason = 'stop';
      if (opts.feedLast) feed(next);
      break;
    }
    if (!last || opts.feedLast) feed(next);
    await new Promise<void>((resolve) => setImmediate(resolve)); // let streamed output and aborts through
  }
  if (finishReason !== 'stop') out.finish(stream.flush());
  const decodeMs = performance.now() - t0;

  return {
    text: out.text,
    tokens,
    promptTokens,
    finishReason,
    seed: sampler.seed,
    timings: {
      prefillTokens: promptTokens.length,
      prefillMs,
      prefillTokensPerSecond: rate(promptTokens.length, prefillMs),
      decodeTokens,
      decodeMs,
      decodeTokensPerSecond: rate(decodeTokens, decodeMs),
    },
  };

  function feed(token: number): void {
    logits = forward(model, [token], cache, fwd);
    decodeTokens++;
  }
}

function rate(tokens: number, ms: number): number {
  return tokens > 0 && ms > 0 ? (tokens * 1000) / ms : 0;
}

/**
 * Incremental detokenizer. Decoding a token alone loses context (SentencePiece drops a leading
 * space at the start of a text; a multi-byte character split over tokens decodes to U+FFFD), so
 * it decodes a short window [prefix, end) and emits what extends the text of [prefix, read).
 */
export class TextStream {
  private ids: number[];
  private prefix: number;
  private read: number;

  /** `context`: tokens before the generated ones (the prompt's last few give the right spacing). */
  constructor(private readonly tokenizer: TextCodec, context: number[] = []) {
    this.ids = context.slice(-4);
    this.prefix = 0;
    this.read = this.ids.length;
  }

  /** Adds a token; returns the text that became final ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const now = this.tokenizer.decode(this.ids.slice(this.prefix));
    if (now.length <= before.length || now.endsWith('\uFFFD')) return '';
    this.prefix = this.read;
    this.read = this.ids.length;
    return now.slice(before.length);
  }

  /** The text still pending at the end (possibly an incomplete character, as U+FFFD). */
  flush(): string {
    if (this.read === this.ids.length) return '';
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const now = this.tokenizer.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    return now.slice(before.length);
  }
}

/** Accumulates generated text, emits it once no stop string can start in it, and finds stop strings. */
class StopFilter {
  text = '';
  private emitted = 0;

  constructor(private readonly stops: string[], private readonly onToken?: (piece: string) => void) {}

  /** Adds a piece; returns true when a stop string appeared (the text is then cut before it). */
  push(piece: string): boolean {
    if (piece === '') return false;
    this.text += piece;
    let cut = -1;
    for (const s of this.stops) {
      // earlier text was checked already; a match can only start where a held-back suffix began
      const at = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      this.emit(this.text.length);
      return true;
    }
    this.emit(this.text.length - this.heldBack());
    return false;
  }

  finish(piece: string): void {
    if (this.push(piece)) return;
    this.emit(this.text.length);
  }

  /** Length of the longest suffix of the text that is a proper prefix of some stop string. */
  private heldBack(): number {
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length); k > keep; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    return keep;
  }

  private emit(upTo: number): void {
    if (upTo <= this.emitted) return;
    this.onToken?.(this.text.slice(this.emitted, upTo));
    this.emitted = upTo;
  }
}
