// Decode speed and memory against context length, per policy: prefill a context of n tokens
// with the policy's cache, then time K one-token decode steps (greedy). Compression and eviction
// happen inside cache.begin(), so a wrapper times begin() to give the share of time they take.
// Timings on a shared machine are noisy; each figure is one run.
import type { Backend } from '../kernels/backend.js';
import type { BytesHeld, CacheShape, KVCache, LayerView } from '../cache/types.js';
import { forward } from '../model/forward.js';
import { rng } from '../model/random.js';
import { argmax } from '../model/sampler.js';
import type { Model } from '../model/types.js';
import { cacheFor, type PolicySpec } from './policies.js';
import { formatBytes, markdownTable, type ResultHeader } from './output.js';
import { lineChart } from './svg.js';

/** A KVCache that forwards every call and adds the time spent in begin() to `beginMs`. */
export class TimedCache implements KVCache {
  beginMs = 0;
  constructor(readonly inner: KVCache) {}
  get policy(): string {
    return this.inner.policy;
  }
  get shape(): CacheShape {
    return this.inner.shape;
  }
  get seen(): number {
    return this.inner.seen;
  }
  get length(): number {
    return this.inner.length;
  }
  room(): number {
    return this.inner.room();
  }
  begin(T: number): Int32Array {
    const t0 = performance.now();
    try {
      return this.inner.begin(T);
    } finally {
      this.beginMs += performance.now() - t0;
    }
  }
  append(layer: number, k: Float32Array, v: Float32Array): LayerView {
    return this.inner.append(layer, k, v);
  }
  attended(layer: number, view: LayerView): void {
    this.inner.attended(layer, view);
  }
  end(): void {
    this.inner.end();
  }
  bytes(): BytesHeld {
    return this.inner.bytes();
  }
  save(): Uint8Array {
    return this.inner.save();
  }
}

export interface DecodeBenchRow {
  policy: string;
  /** Tokens prefilled before the timed steps. */
  context: number;
  steps: number;
  prefillMs: number;
  /** Share of the prefill time spent in begin() (compression/eviction). */
  prefillCompressShare: number;
  /** Mean time of one decode step (forward of one token + argmax). */
  msPerToken: number;
  /** Share of the decode time spent in begin() (compression/eviction). */
  compressShare: number;
  /** Cache bytes (all layers) and entries (per layer) after the last step. */
  bytesHeld: number;
  entriesHeld: number;
}

/** Prefills `context` seeded random tokens with the policy, then times `steps` greedy decode steps. */
export function benchDecode(model: Model, spec: PolicySpec, context: number, steps: number, opts: { backend?: Backend; seed?: number } = {}): DecodeBenchRow {
  if (!Number.isInteger(context) || context < 1) throw new RangeError(`benchDecode context: expected a whole number >= 1, got ${context}`);
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`benchDecode steps: expected a whole number >= 1, got ${steps}`);
  const V = model.config.vocabSize;
  const next = rng(opts.seed ?? 1);
  const prompt = new Int32Array(context);
  for (let i = 0; i < context; i++) prompt[i] = Math.floor(next() * V) % V;
  const cache = new TimedCache(cacheFor(model.config, spec, opts.backend));
  const fwd = { backend: opts.backend, out: new Float32Array(V) };
  let t0 = performance.now();
  let logits = forward(model, prompt, cache, fwd);
  const prefillMs = performance.now() - t0;
  const prefillBegin = cache.beginMs;
  cache.beginMs = 0;
  t0 = performance.now();
  for (let s = 0; s < steps; s++) logits = forward(model, [argmax(logits, V)], cache, fwd);
  const decodeMs = performance.now() - t0;
  return {
    policy: spec.label,
    context,
    steps,
    prefillMs,
    prefillCompressShare: prefillMs > 0 ? prefillBegin / prefillMs : 0,
    msPerToken: decodeMs / steps,
    compressShare: decodeMs > 0 ? cache.beginMs / decodeMs : 0,
    bytesHeld: cache.bytes().total,
    entriesHeld: cache.length,
  };
}

export interface BenchResult extends ResultHeader {
  kind: 'bench-decode';
  protocol: { contexts: number[]; steps: number; seed: number };
  policies: PolicySpec[];
  rows: DecodeBenchRow[];
}

function rowOf(r: BenchResult, policy: string, n: number): DecodeBenchRow | undefined {
  return r.rows.find((x) => x.policy === policy && x.context === n);
}

function table(r: BenchResult, cell: (x: DecodeBenchRow) => string): string {
  const rows = r.policies.map((p) => [p.label, ...r.protocol.contexts.map((n) => {
    const x = rowOf(r, p.label, n);
    return x ? cell(x) : '-';
  })]);
  return markdownTable(['policy', ...r.protocol.contexts.map(String)], rows, ['l']);
}

export function benchTables(r: BenchResult): { time: string; bytes: string; share: string } {
  return {
    time: table(r, (x) => x.msPerToken.toFixed(2)),
    bytes: table(r, (x) => formatBytes(x.bytesHeld)),
    share: table(r, (x) => `${(100 * x.compressShare).toFixed(2)}%`),
  };
}

export function benchCharts(r: BenchResult): Record<string, string> {
  const series = (f: (x: DecodeBenchRow) => number) =>
    r.policies.map((p) => ({ name: p.label, points: r.protocol.contexts.map((n): [number, number] => [n, rowOf(r, p.label, n) ? f(rowOf(r, p.label, n)!) : NaN]) }));
  return {
    'decode-time.svg': lineChart(series((x) => x.msPerToken), { title: 'Decode time per token against context', xLabel: 'context (tokens)', yLabel: 'ms per token', logX: true, logY: true }),
    'decode-bytes.svg': lineChart(series((x) => x.bytesHeld), { title: 'KV cache bytes held against context', xLabel: 'context (tokens)', yLabel: 'bytes', logX: true, logY: true }),
  };
}

export function benchReport(r: BenchResult, chartDir = ''): string {
  const t = benchTables(r);
  return [
    `# Decode speed and cache memory: ${r.model.path}`,
    '',
    '```sh',
    r.command,
    '```',
    '',
    `Model: ${r.model.summary} (trained window ${r.model.window}). After a prefill of n random tokens, ${r.protocol.steps} greedy ` +
      `decode steps are timed. One run per cell on a shared machine: timings are noisy. Backend ${r.backend}, ${r.threads} threads.`,
    '',
    'Milliseconds per decoded token:',
    '',
    t.time,
    `![decode time](${chartDir}decode-time.svg)`,
    '',
    'Cache bytes held after the steps (all layers):',
    '',
    t.bytes,
    `![cache bytes](${chartDir}decode-bytes.svg)`,
    '',
    'Share of decode time spent in cache.begin() (compression or eviction):',
    '',
    t.share,
  ].join('\n') + '\n';
}
