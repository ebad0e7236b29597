// The retrieval grid: for each task, length and depth, `trials` seeded samples; each sample is
// prefilled with every policy's fresh cache and continued greedily; the cell's accuracy is the
// mean score over its trials. All policies answer the same prompts. Outputs: a table per task
// and policy (rows depth, columns length) and one SVG heat map per task and policy.
import type { Backend } from '../kernels/backend.js';
import type { KVCache } from '../cache/types.js';
import { forward } from '../model/forward.js';
import { rng } from '../model/random.js';
import { argmax } from '../model/sampler.js';
import type { Model } from '../model/types.js';
import type { Rand } from '../data/synthetic.js';
import { cacheFor, labelSlug, type PolicySpec } from './policies.js';
import { Progress, type ProgressSink } from './progress.js';
import type { EvalState } from './state.js';
import { scoreSample, type Codec, type TaskName, type TaskSample } from './tasks.js';
import { markdownTable, type ResultHeader } from './output.js';
import { heatMap } from './svg.js';

export interface GreedyOptions {
  maxNew: number;
  /** Generation ends before an EOS id. */
  eos: ReadonlySet<number>;
  /** Ends generation early when it returns true for the tokens so far. */
  stop?: (ids: number[]) => boolean;
  backend?: Backend;
}

/** Greedy continuation of `prompt` over `cache`: prefill in one forward call, then one token at a time. */
export function greedyContinue(model: Model, prompt: readonly number[], cache: KVCache, opts: GreedyOptions): number[] {
  const V = model.config.vocabSize;
  const fwd = { backend: opts.backend, out: new Float32Array(V) };
  let logits = forward(model, prompt as number[], cache, fwd);
  const out: number[] = [];
  while (out.length < opts.maxNew) {
    const next = argmax(logits, V);
    if (opts.eos.has(next)) break;
    out.push(next);
    if (out.length === opts.maxNew || opts.stop?.(out)) break;
    logits = forward(model, [next], cache, fwd);
  }
  return out;
}

/** FNV-1a of a string: per-sample seeds from (seed, task, length, depth, trial) values, not indices. */
export function sampleSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  const s = parts.join('|');
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export interface TrialRecord {
  score: number;
  /** The continuation's text (at most 200 characters). */
  answer: string;
  promptTokens: number;
  expected: string[];
}

export interface GridRunOptions {
  tasks: readonly TaskName[];
  lengths: readonly number[];
  depths: readonly number[];
  trials: number;
  seed: number;
  policies: readonly PolicySpec[];
  makeSample: (task: TaskName, length: number, depth: number, next: Rand) => TaskSample;
  codec: Codec;
  eosIds: readonly number[];
  /** New tokens per answer for a task. */
  maxNew: (task: TaskName) => number;
  backend?: Backend;
  state?: EvalState<TrialRecord>;
  signal?: AbortSignal;
  progress?: ProgressSink | null;
  onComputed?: (count: number) => void;
}

export interface GridCell {
  task: TaskName;
  policy: string;
  length: number;
  depth: number;
  trials: number;
  /** Mean score over the trials (null when none ran). */
  accuracy: number | null;
  /** Mean prompt tokens. */
  promptTokens: number;
}

export interface GridTrial extends TrialRecord {
  task: TaskName;
  policy: string;
  length: number;
  depth: number;
  trial: number;
}

export interface GridRun {
  cells: GridCell[];
  trials: GridTrial[];
  complete: boolean;
}

/** Stops a passkey answer once a number has been followed by something else. */
function passkeyStop(codec: Codec): (ids: number[]) => boolean {
  return (ids) => /\d\D/.test(codec.decode(ids));
}

export async function runGrid(model: Model, opts: GridRunOptions): Promise<GridRun> {
  const P = opts.policies.length;
  const total = opts.tasks.length * opts.lengths.length * opts.depths.length * opts.trials * P;
  const units = opts.tasks.length * opts.lengths.reduce((a, b) => a + b, 0) * opts.depths.length * opts.trials * P;
  const progress = new Progress('eval grid', total, units, opts.progress === undefined ? process.stderr : opts.progress);
  const eos = new Set(opts.eosIds);
  const trials: GridTrial[] = [];
  let computed = 0;
  let complete = true;
  outer: for (const task of opts.tasks) {
    for (const length of opts.lengths) {
      for (const depth of opts.depths) {
        for (let t = 0; t < opts.trials; t++) {
          let sample: TaskSample | null = null;
          for (const spec of opts.policies) {
            const key = `${task}|${spec.label}|${length}|${depth}|${t}`;
            let rec = opts.state?.get(key);
            const restored = rec !== undefined;
            sample ??= restored ? null : opts.makeSample(task, length, depth, rng(sampleSeed(opts.seed, task, length, depth, t)));
            if (!rec) {
              if (opts.signal?.aborted) {
                complete = false;
                break outer;
              }
              const s = sample!;
              const cache = cacheFor(model.config, spec, opts.backend);
              const ids = greedyContinue(model, s.prompt, cache, {
                maxNew: opts.maxNew(task),
                eos,
                stop: task === 'passkey' ? passkeyStop(opts.codec) : undefined,
                backend: opts.backend,
              });
              const answer = opts.codec.decode(ids);
              rec = { score: scoreSample(s, answer), answer: answer.slice(0, 200), promptTokens: s.prompt.length, expected: s.expected };
              opts.state?.set(key, rec);
              computed++;
              opts.onComputed?.(computed);
              await new Promise<void>((resolve) => setImmediate(resolve));
            }
            trials.push({ task, policy: spec.label, length, depth, trial: t, ...rec });
            progress.step(length, `${task}, ${spec.label}, length ${length}, depth ${depth}`, restored);
          }
        }
      }
    }
  }
  opts.state?.flush();
  progress.end();
  return { cells: gridCells(opts, trials), trials, complete };
}

function gridCells(opts: GridRunOptions, trials: readonly GridTrial[]): GridCell[] {
  const cells: GridCell[] = [];
  for (const task of opts.tasks) {
    for (const spec of opts.policies) {
      for (const length of opts.lengths) {
        for (const depth of opts.depths) {
          const ts = trials.filter((x) => x.task === task && x.policy === spec.label && x.length === length && x.depth === depth);
          const n = ts.length;
          cells.push({
            task,
            policy: spec.label,
            length,
            depth,
            trials: n,
            accuracy: n === 0 ? null : ts.reduce((a, x) => a + x.score, 0) / n,
            promptTokens: n === 0 ? 0 : ts.reduce((a, x) => a + x.promptTokens, 0) / n,
          });
        }
      }
    }
  }
  return cells;
}

// ---- result, report and plots -----------------------------------------------------------------

export interface GridResult extends ResultHeader {
  kind: 'passkey' | 'niah';
  data: { source: string } | null;
  protocol: { tasks: TaskName[]; lengths: number[]; depths: number[]; trials: number; seed: number; maxNew: Record<string, number>; needles?: number };
  policies: PolicySpec[];
  cells: GridCell[];
  trials: GridTrial[];
  complete: boolean;
}

const pct = (v: number | null) => (v === null ? '-' : `${Math.round(v * 100)}%`);

function cellOf(r: GridResult, task: TaskName, policy: string, length: number, depth: number): GridCell | undefined {
  return r.cells.find((c) => c.task === task && c.policy === policy && c.length === length && c.depth === depth);
}

/** Mean accuracy over depths (null when no trial ran). */
function meanOverDepths(r: GridResult, task: TaskName, policy: string, length: number): number | null {
  const cs = r.protocol.depths.map((d) => cellOf(r, task, policy, length, d)).filter((c): c is GridCell => !!c && c.accuracy !== null);
  return cs.length === 0 ? null : cs.reduce((a, c) => a + c.accuracy!, 0) / cs.length;
}

/** Accuracy averaged over depths: rows policy, columns length. */
export function gridSummaryTable(r: GridResult, task: TaskName): string {
  const rows = r.policies.map((p) => [p.label, ...r.protocol.lengths.map((T) => pct(meanOverDepths(r, task, p.label, T)))]);
  return markdownTable(['policy', ...r.protocol.lengths.map(String)], rows, ['l']);
}

/** One policy's grid: rows depth, columns length. */
export function gridPolicyTable(r: GridResult, task: TaskName, policy: string): string {
  const rows = r.protocol.depths.map((d) => [String(d), ...r.protocol.lengths.map((T) => pct(cellOf(r, task, policy, T, d)?.accuracy ?? null))]);
  return markdownTable(['depth \\ length', ...r.protocol.lengths.map(String)], rows, ['l']);
}

export function gridChartName(task: TaskName, policy: string): string {
  return `${task}-${labelSlug(policy)}.svg`;
}

export function gridHeatMap(r: GridResult, task: TaskName, policy: string): string {
  const values = r.protocol.depths.map((d) => r.protocol.lengths.map((T) => cellOf(r, task, policy, T, d)?.accuracy ?? NaN));
  return heatMap(values, {
    title: `${task}: ${policy} (accuracy; rows depth, columns length)`,
    rowLabels: r.protocol.depths.map(String),
    colLabels: r.protocol.lengths.map(String),
    min: 0,
    max: 1,
    format: (v) => `${Math.round(v * 100)}`,
  });
}

export function gridCharts(r: GridResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const task of r.protocol.tasks) for (const p of r.policies) out[gridChartName(task, p.label)] = gridHeatMap(r, task, p.label);
  return out;
}

export function gridReport(r: GridResult, chartDir = ''): string {
  const out: string[] = [];
  out.push(`# ${r.kind === 'passkey' ? 'Passkey retrieval' : 'Needle in a haystack (RULER-style)'}: ${r.model.path}`, '');
  if (!r.complete) out.push('**Incomplete run**: some trials are missing; rerun the command with --resume.', '');
  out.push('```sh', r.command, '```', '');
  out.push(`Model: ${r.model.summary} (trained window ${r.model.window}).`, '');
  out.push(
    `${r.protocol.trials} trial(s) per cell (seed ${r.protocol.seed}), greedy decoding; ` +
      (r.data ? `haystack: ${r.data.source}; ` : '') +
      `depth 0 = the needle at the start of the context, 1 = at its end. Lengths are prompt tokens (at most).`,
    '',
  );
  for (const task of r.protocol.tasks) {
    out.push(`## ${task}`, '', 'Accuracy averaged over depths:', '', gridSummaryTable(r, task), '');
    for (const p of r.policies) {
      out.push(`### ${task}, ${p.label}`, '', gridPolicyTable(r, task, p.label), '', `![${task} ${p.label}](${chartDir}${gridChartName(task, p.label)})`, '');
    }
  }
  out.push(`Policies: ${r.policies.map((p) => `${p.label} ${JSON.stringify(p.options)}`).join('; ')}. Backend ${r.backend}, ${r.threads} threads, ${r.elapsedSeconds.toFixed(0)} s.`, '');
  return out.join('\n');
}
