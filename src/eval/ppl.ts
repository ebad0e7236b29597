// The paper's perplexity protocol (FREQKV.md section 4). For each length T, windows of T tokens
// start every `stride` tokens inside each test document (never across two); each window is one
// grouped forward pass with a fresh cache, forwardNll cutting it into steps of cache.room()
// (FreqKV compresses between groups, eviction policies step as their room() says). The loss
// covers every token of the window: tokens 1..T-1 predicted from their prefixes.
//   PPL(policy, T) = exp(mean over windows of the window's mean NLL)
// Every policy runs on the same windows in the same invocation.
import type { Backend } from '../kernels/backend.js';
import { documentTokens, type TokenSplit } from '../data/tokens.js';
import { forwardNll } from '../model/forward.js';
import type { KVCache } from '../cache/types.js';
import type { Model } from '../model/types.js';
import { cacheFor, type PolicySpec } from './policies.js';
import { Progress, type ProgressSink } from './progress.js';
import type { EvalState } from './state.js';
import { enumerateWindows, evenlySpaced, type EvalWindow } from './windows.js';
import { formatBytes, markdownTable, type ResultHeader } from './output.js';
import { lineChart } from './svg.js';

/** One window under one policy. */
export interface WindowScore {
  /** Mean NLL (nats) over the window's T-1 predicted tokens. */
  meanNll: number;
  /** Predicted tokens (T-1). */
  tokens: number;
  /** Entries the cache held at the end (per layer). */
  entries: number;
  /** Bytes the cache held at the end (all layers). */
  bytes: number;
}

/** Scores `tokens` in one forward pass over `cache` (which should be fresh). */
export function windowNll(model: Model, tokens: Int32Array, cache: KVCache, opts: { backend?: Backend; maxStep?: number } = {}): WindowScore {
  const nll = forwardNll(model, tokens, cache, opts);
  let s = 0;
  for (let i = 0; i < nll.length; i++) s += nll[i];
  return { meanNll: s / nll.length, tokens: nll.length, entries: cache.length, bytes: cache.bytes().total };
}

export interface PplRow {
  policy: string;
  length: number;
  /** exp(mean window NLL); null when no window of this length fits in any document. */
  perplexity: number | null;
  meanNll: number | null;
  /** Windows scored, and windows the protocol has before the --max-windows cap. */
  windows: number;
  windowsAvailable: number;
  /** Predicted tokens summed over the windows. */
  tokens: number;
  /** Cache entries held per layer at the end of a window (mean over windows). */
  entriesHeld: number;
  /** Bytes the cache held at the end of a window (all layers, mean over windows). */
  bytesHeld: number;
  /** bytesHeld / entriesHeld: bytes per held entry across all layers. */
  bytesPerEntry: number;
  /** T / entriesHeld: tokens of context each held entry stands for (1 for an uncompressed cache). */
  tokensPerEntry: number;
}

export interface PplRunOptions {
  lengths: readonly number[];
  stride: number;
  /** At most this many windows per length, evenly spaced (all when absent). */
  maxWindows?: number;
  policies: readonly PolicySpec[];
  backend?: Backend;
  maxStep?: number;
  /** Finished (policy, length, window) scores; restored ones are not recomputed. */
  state?: EvalState<WindowScore>;
  /** Stops after the unit in progress; the run comes back with complete = false. */
  signal?: AbortSignal;
  /** Progress lines (default stderr); null for none. */
  progress?: ProgressSink | null;
  /** Called after each newly computed (policy, window) with the count computed so far. */
  onComputed?: (count: number) => void;
}

export interface PplRun {
  rows: PplRow[];
  /** False when stopped by the signal before every window was scored. */
  complete: boolean;
}

/** The windows of each length, after the cap. */
export function pplWindows(split: TokenSplit, lengths: readonly number[], stride: number, maxWindows?: number): { length: number; available: number; windows: EvalWindow[] }[] {
  return lengths.map((length) => {
    const all = enumerateWindows(split.documents, length, stride);
    return { length, available: all.length, windows: evenlySpaced(all, maxWindows) };
  });
}

export function stateKey(label: string, w: EvalWindow): string {
  return `${label}|${w.length}|${w.start}`;
}

/** Runs the protocol for every policy and length; scores come back aggregated per (policy, length). */
export async function runPpl(model: Model, split: TokenSplit, opts: PplRunOptions): Promise<PplRun> {
  const plan = pplWindows(split, opts.lengths, opts.stride, opts.maxWindows);
  const P = opts.policies.length;
  const totalItems = plan.reduce((s, p) => s + p.windows.length, 0) * P;
  const totalTokens = plan.reduce((s, p) => s + p.windows.length * p.length, 0) * P;
  const progress = new Progress('eval ppl', totalItems, totalTokens, opts.progress === undefined ? process.stderr : opts.progress);
  const scores = new Map<string, WindowScore[]>(); // `${label}|${T}` -> scores in window order
  let computed = 0;
  let complete = true;
  outer: for (const { length, windows } of plan) {
    for (const [wi, w] of windows.entries()) {
      let tokens: Int32Array | null = null;
      for (const spec of opts.policies) {
        const key = stateKey(spec.label, w);
        let s = opts.state?.get(key);
        const restored = s !== undefined;
        if (!s) {
          if (opts.signal?.aborted) {
            complete = false;
            break outer;
          }
          tokens ??= Int32Array.from(split.tokens.subarray(w.start, w.start + w.length));
          s = windowNll(model, tokens, cacheFor(model.config, spec, opts.backend), { backend: opts.backend, maxStep: opts.maxStep });
          opts.state?.set(key, s);
          computed++;
          opts.onComputed?.(computed);
          await new Promise<void>((resolve) => setImmediate(resolve)); // lets SIGINT and aborts through
        }
        const id = `${spec.label}|${length}`;
        if (!scores.has(id)) scores.set(id, []);
        scores.get(id)!.push(s);
        progress.step(w.length, `${spec.label}, T=${length}, window ${wi + 1}/${windows.length}`, restored);
      }
    }
  }
  opts.state?.flush();
  progress.end();
  const rows: PplRow[] = [];
  for (const spec of opts.policies) {
    for (const { length, available } of plan) {
      rows.push(aggregate(spec.label, length, available, scores.get(`${spec.label}|${length}`) ?? []));
    }
  }
  return { rows, complete };
}

/** PPL = exp(mean over windows of the window's mean NLL), plus the memory figures. */
export function aggregate(policy: string, length: number, available: number, s: readonly WindowScore[]): PplRow {
  const n = s.length;
  const mean = (f: (x: WindowScore) => number) => (n === 0 ? 0 : s.reduce((a, x) => a + f(x), 0) / n);
  const meanNll = n === 0 ? null : mean((x) => x.meanNll);
  const entriesHeld = mean((x) => x.entries);
  const bytesHeld = mean((x) => x.bytes);
  return {
    policy,
    length,
    perplexity: meanNll === null ? null : Math.exp(meanNll),
    meanNll,
    windows: n,
    windowsAvailable: available,
    tokens: s.reduce((a, x) => a + x.tokens, 0),
    entriesHeld,
    bytesHeld,
    bytesPerEntry: entriesHeld > 0 ? bytesHeld / entriesHeld : 0,
    tokensPerEntry: entriesHeld > 0 ? length / entriesHeld : 0,
  };
}

// ---- result, report and plot ------------------------------------------------------------------

export interface PplResult extends ResultHeader {
  kind: 'ppl';
  data: { source: string; documents: { name: string; tokens: number }[]; fingerprint: string };
  protocol: { lengths: number[]; stride: number; maxWindows: number | null };
  policies: PolicySpec[];
  rows: PplRow[];
  complete: boolean;
}

function rowOf(r: PplResult, policy: string, length: number): PplRow | undefined {
  return r.rows.find((x) => x.policy === policy && x.length === length);
}

/** Cells per policy and length; `cell` gets undefined where the result has no row. */
function policyRows(r: PplResult, cell: (x: PplRow | undefined) => string): string[][] {
  return r.policies.map((p) => [p.label, ...r.protocol.lengths.map((T) => cell(rowOf(r, p.label, T)))]);
}

/** The perplexity table (rows policy, columns length) in markdown, with the windows scored. */
export function pplTable(r: PplResult): string {
  const rows = policyRows(r, (x) => (x && x.perplexity !== null ? x.perplexity.toFixed(2) : '-'));
  const first = r.policies[0]?.label;
  rows.push(['windows', ...r.protocol.lengths.map((T) => {
    const x = first === undefined ? undefined : rowOf(r, first, T);
    return x ? (x.windows === x.windowsAvailable ? String(x.windows) : `${x.windows} of ${x.windowsAvailable}`) : '-';
  })]);
  return markdownTable(['policy', ...r.protocol.lengths.map(String)], rows, ['l']);
}

/** Bytes held at the end of a window and tokens per held entry, at each length. */
export function pplMemoryTable(r: PplResult): string {
  const rows = policyRows(r, (x) => (x && x.windows > 0 ? `${formatBytes(x.bytesHeld)} (${x.tokensPerEntry.toFixed(2)} tok/entry)` : '-'));
  return markdownTable(['policy', ...r.protocol.lengths.map(String)], rows, ['l']);
}

export function pplChart(r: PplResult): string {
  const series = r.policies.map((p) => ({
    name: p.label,
    points: r.protocol.lengths.map((T): [number, number] => [T, rowOf(r, p.label, T)?.perplexity ?? NaN]),
  }));
  return lineChart(series, { title: `Perplexity against length (${r.model.path})`, xLabel: 'window length T (tokens)', yLabel: 'perplexity', logX: true, logY: true });
}

export function pplReport(r: PplResult, chartFile = 'ppl.svg'): string {
  const out: string[] = [];
  out.push(`# Perplexity: ${r.model.path}`, '');
  if (!r.complete) out.push('**Incomplete run**: some windows are missing; rerun the command with --resume.', '');
  out.push('```sh', r.command, '```', '');
  out.push(`Model: ${r.model.summary} (trained window ${r.model.window}).`, '');
  out.push(
    `Data: ${r.data.source}, ${r.data.documents.length} documents (${r.data.documents.map((d) => `${d.name} ${d.tokens}`).join(', ')} tokens). ` +
      `A window starts every ${r.protocol.stride} tokens inside each document` +
      (r.protocol.maxWindows === null ? '' : `, at most ${r.protocol.maxWindows} per length, evenly spaced`) +
      '; PPL = exp(mean over windows of the window mean NLL).',
    '',
  );
  out.push(pplTable(r), '');
  out.push(`![perplexity against length](${chartFile})`, '');
  out.push('Cache memory at the end of a window (all layers):', '', pplMemoryTable(r), '');
  out.push(`Policies: ${r.policies.map((p) => `${p.label} ${JSON.stringify(p.options)}`).join('; ')}. Backend ${r.backend}, ${r.threads} threads, ${r.elapsedSeconds.toFixed(0)} s.`, '');
  return out.join('\n');
}

/** Document names and lengths of a split, for the result. */
export function splitDocuments(split: TokenSplit): { name: string; tokens: number }[] {
  return split.documents.map((d) => ({ name: d.name, tokens: documentTokens(split, d).length }));
}
