// KV-Distill evaluation (issue 8, part 4): held-out questions over test-book contexts, each
// answered from a compressed context at several retentions by several methods, scored by
//   exact match: the greedy answer equals the reference, token for token. Greedy decoding
//                follows the reference for as long as every argmax equals it, so one
//                teacher-forced pass gives it exactly (argmax of every answer row = the answer);
//   KL:          the answer-token KL(teacher || method) and KL(method || teacher), teacher-forced
//                on the reference answer, the teacher being the frozen model over the whole
//                context, averaged over the answer tokens.
// Methods (see baselines.ts for the exact definitions of the baselines):
//   full            the whole context (retention 1; KL 0 by definition; the reference line)
//   kvdistill[:L]   an adaptor (KVDistill.compress: scorer + routed LoRA encoding)
//   h2o-qi, h2o-qi-oneshot, h2o-qa, snapkv  (baselines.ts)
//   freqkv          FreqKV at equal bytes: cache size chosen so its bytes held equal the bytes
//                   KV-Distill holds while answering (kept context rows + question rows, K and V
//                   in float32), counting FreqKV's rotated copy of the keys.
// At retention r every selection method holds keep = s + min(ceil(r*n), n - s) context rows per
// layer and KV head (s = min(sinks, n)), exactly what KVDistill keeps, and the question goes on
// at position n. Work is resumable per (example, method, retention) through an EvalState.
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import { createCache } from '../cache/factory.js';
import type { KVCache } from '../cache/types.js';
import { forward } from '../model/forward.js';
import type { Model } from '../model/types.js';
import { Progress, type ProgressSink } from '../eval/progress.js';
import type { EvalState } from '../eval/state.js';
import { formatBytes, markdownTable, type ResultHeader } from '../eval/output.js';
import { lineChart, type Series } from '../eval/svg.js';
import type { KindedExample } from './data.js';
import type { KVDistill } from './distill.js';
import { mixedKl } from './loss.js';
import { keptCount, selectTokens } from './scorer.js';
import { ContextScores, freqkvCacheSize, h2oStreaming, kvRowBytes, type CompressedPrefix } from './baselines.js';

export const EVAL_METHODS = ['full', 'kvdistill', 'h2o-qi', 'h2o-qa', 'snapkv', 'freqkv', 'h2o-qi-oneshot'] as const;
export type EvalMethodName = (typeof EVAL_METHODS)[number];
export const DEFAULT_EVAL_METHODS: EvalMethodName[] = ['full', 'kvdistill', 'h2o-qi', 'h2o-qa', 'snapkv', 'freqkv'];
export const DEFAULT_RETENTIONS = [0.01, 0.05, 0.1, 0.2, 0.25];

export const METHOD_NOTES: Record<EvalMethodName, string> = {
  full: 'the frozen model over the whole context (the teacher; retention 1, KL 0 by definition)',
  kvdistill: 'KV-Distill: the adaptor\'s scorer picks the rows, its routed LoRA encodes the context, the frozen model answers over the kept rows',
  'h2o-qi': 'H2O question-independent: the context alone streams through an H2O cache of budget = kept rows (original positions, its default recent window); the rows held after the context are frozen, then the question is decoded over them',
  'h2o-qi-oneshot': 'H2O question-independent, one shot: the context alone in one full prefill, H2O scores (attention received, summed over every query), per layer and KV head the top rows kept in one cut',
  'h2o-qa': 'H2O question-aware: [context; question] in one full prefill, H2O scores summed over every query including the question\'s, the context cut to the kept rows in one go per layer and KV head; the question is then decoded again over the kept rows (so the first answer token also comes from the compressed context)',
  snapkv: 'SnapKV (question-aware by construction): [context; question] in one prefill, the question\'s queries are the observation window, votes max-pooled (kernel 7), top context rows kept per KV head; the question decoded again over them',
  freqkv: 'FreqKV at equal bytes: a FreqKV cache (pre-RoPE keys, values and a rotated copy of the keys: three rows of floats per token) sized so its bytes equal what KV-Distill holds while answering (kept rows + question rows, K and V); context, question and answer stream through it',
};

/** One method of a run, as tables and plots name it. */
export interface EvalMethodSpec {
  label: string;
  method: EvalMethodName;
  /** kvdistill: the adaptor's label (a key of the adaptors map). */
  adaptor?: string;
}

export interface UnitRecord {
  example: number;
  label: string;
  retention: number;
  /** Greedy answer equals the reference token for token. */
  exact: boolean;
  /** Answer tokens the greedy answer got right before its first miss. */
  prefix: number;
  /** The greedy tokens up to and including the first miss. */
  greedy: number[];
  klTS: number;
  klST: number;
  /** Context rows held per layer and KV head after compression (freqkv: rows held after the context). */
  kept: number;
  /** Bytes the cache holds when the first answer token is predicted. */
  bytes: number;
  /** freqkv: its cache size N. */
  cacheSize?: number;
  /** Time of this unit (compression and answer; shared scoring prefills not included). */
  seconds: number;
}

export interface EvalExampleInfo {
  kind: string;
  context: number;
  question: number;
  answer: number;
  answerText?: string;
}

export interface SummaryRow {
  label: string;
  method: EvalMethodName;
  retention: number;
  count: number;
  exactMatch: number;
  klTS: number;
  klST: number;
  kept: number;
  bytes: number;
  byKind: Record<string, { count: number; exactMatch: number }>;
}

export interface AdaptorInfo {
  label: string;
  file: string;
  fingerprint: string;
  rank: number;
  alpha: number;
  sinks: number;
  routing: boolean;
  scoreLayer: number;
}

export interface KVDistillEvalResult extends ResultHeader {
  kind: 'kvdistill';
  data: { source: string; fingerprint: string };
  protocol: {
    retentions: number[];
    methods: EvalMethodSpec[];
    examples: number;
    kinds: string[];
    minContext: number;
    maxContext: number;
    seed: number;
    sinks: number;
    freqkvRetain: number;
    notes: Record<string, string>;
  };
  adaptors: AdaptorInfo[];
  examples: EvalExampleInfo[];
  rows: SummaryRow[];
  units: UnitRecord[];
  complete: boolean;
}

export interface RunOptions {
  retentions: number[];
  methods: EvalMethodSpec[];
  adaptors: Map<string, KVDistill>;
  /** Sinks of the baselines (KV-Distill uses its adaptor's). */
  sinks: number;
  /** FreqKV's gamma. */
  freqkvRetain: number;
  backend?: Backend;
  state?: EvalState<UnitRecord>;
  signal?: AbortSignal;
  progress?: ProgressSink | null;
}

export function unitKey(example: number, label: string, retention: number): string {
  return `${example}|${label}|${retention}`;
}

/** Context rows every selection method keeps at retention r: the sinks plus min(ceil(r*n), n - sinks). */
export function keepRows(n: number, r: number, sinks: number): number {
  const s0 = Math.min(sinks, n);
  return s0 + keptCount(n, r, s0);
}

/** [question; answer without its last token]: what is fed after the context. */
export function answerTail(ex: { question: Int32Array; answer: Int32Array }): Int32Array {
  const out = new Int32Array(ex.question.length + ex.answer.length - 1);
  out.set(ex.question);
  out.set(ex.answer.subarray(0, ex.answer.length - 1), ex.question.length);
  return out;
}

/** Logits [ma, vocab] predicting the answer, teacher-forced, over a cache that holds the (compressed) context. */
export function answerLogits(model: Model, cache: KVCache, ex: { question: Int32Array; answer: Int32Array }, backend?: Backend): Float32Array {
  const tail = answerTail(ex);
  const all = forward(model, tail, cache, { logits: 'all', backend });
  const V = model.config.vocabSize;
  return all.slice((tail.length - ex.answer.length) * V);
}

/** The teacher: the frozen model over the whole context, teacher-forced on the answer. */
export function teacherLogits(model: Model, ex: KindedExample, backend?: Backend): Float32Array {
  const cache = createCache(model.config, { backend });
  forward(model, ex.context, cache, { backend });
  return answerLogits(model, cache, ex, backend);
}

/** Exact match, matched prefix and the greedy tokens from teacher-forced logits; the KLs against the teacher. */
export function scoreAnswer(zS: Float32Array, zT: Float32Array, answer: Int32Array, V: number): Pick<UnitRecord, 'exact' | 'prefix' | 'greedy' | 'klTS' | 'klST'> {
  const ma = answer.length;
  const greedy: number[] = [];
  let prefix = 0;
  for (let i = 0; i < ma; i++) {
    let best = 0;
    const o = i * V;
    for (let j = 1; j < V; j++) if (zS[o + j] > zS[o + best]) best = j;
    greedy.push(best);
    if (best !== answer[i]) break;
    prefix++;
  }
  const kl = mixedKl(zS, zT, ma, V, 1);
  return { exact: prefix === ma, prefix, greedy, klTS: kl.klTS, klST: kl.klST };
}

/** Checks a run's methods against its adaptors; throws with the label at fault. */
export function checkMethods(methods: readonly EvalMethodSpec[], adaptors: ReadonlyMap<string, unknown>): void {
  const seen = new Set<string>();
  for (const m of methods) {
    if (seen.has(m.label)) throw new Error(`method "${m.label}" is listed twice`);
    seen.add(m.label);
    if (!EVAL_METHODS.includes(m.method)) throw new Error(`method "${m.label}": unknown method "${m.method}"`);
    if (m.method === 'kvdistill' && (m.adaptor === undefined || !adaptors.has(m.adaptor))) throw new Error(`method "${m.label}": no adaptor "${m.adaptor}"`);
  }
}

/** Units of one example, in run order: full once, then every other method at every retention. */
function unitsOf(methods: readonly EvalMethodSpec[], retentions: readonly number[]): { label: string; spec: EvalMethodSpec; retention: number }[] {
  const out: { label: string; spec: EvalMethodSpec; retention: number }[] = [];
  for (const spec of methods) {
    if (spec.method === 'full') out.push({ label: spec.label, spec, retention: 1 });
    else for (const r of retentions) out.push({ label: spec.label, spec, retention: r });
  }
  return out;
}

/** Runs (or resumes) the evaluation; returns every unit record in run order and whether all are done. */
export async function runKVDistillEval(model: Model, examples: readonly KindedExample[], opts: RunOptions): Promise<{ units: UnitRecord[]; complete: boolean }> {
  checkMethods(opts.methods, opts.adaptors);
  const be = opts.backend ?? getBackend();
  const c = model.config;
  const V = c.vocabSize;
  const rowBytes = kvRowBytes(c);
  const perExample = examples.map(() => unitsOf(opts.methods, opts.retentions));
  const total = perExample.reduce((s, u) => s + u.length, 0);
  const totalTokens = examples.reduce((s, ex, i) => s + ex.context.length * perExample[i].length, 0);
  const progress = new Progress('eval kvdistill', total, totalTokens, opts.progress === undefined ? process.stderr : opts.progress);
  const units: UnitRecord[] = [];
  let complete = true;
  outer: for (let i = 0; i < examples.length; i++) {
    const ex = examples[i];
    const n = ex.context.length, mq = ex.question.length;
    let teacher: Float32Array | null = null;
    const shared = new Map<string, ContextScores>();
    const kdScores = new Map<string, Float32Array>();
    for (const u of perExample[i]) {
      const key = unitKey(i, u.label, u.retention);
      const done = opts.state?.get(key);
      if (done) {
        units.push(done);
        progress.step(n, `${u.label} r=${u.retention}`, true);
        continue;
      }
      if (opts.signal?.aborted) {
        complete = false;
        break outer;
      }
      teacher ??= teacherLogits(model, ex, be);
      const t0 = performance.now();
      const r = u.retention;
      const spec = u.spec;
      let rec: UnitRecord;
      if (spec.method === 'full') {
        rec = { example: i, label: u.label, retention: 1, ...scoreAnswer(teacher, teacher, ex.answer, V), klTS: 0, klST: 0, kept: n, bytes: (n + mq) * rowBytes, seconds: 0 };
      } else if (spec.method === 'freqkv') {
        const target = (keepRows(n, r, opts.sinks) + mq) * rowBytes;
        const size = freqkvCacheSize(c, target, opts.sinks, opts.freqkvRetain);
        const cache = createCache(c, { policy: 'freqkv', cacheSize: size.cacheSize, sinks: opts.sinks, retain: opts.freqkvRetain, backend: be });
        forward(model, ex.context, cache, { backend: be });
        const kept = cache.length;
        const zS = answerLogits(model, cache, ex, be);
        rec = { example: i, label: u.label, retention: r, ...scoreAnswer(zS, teacher, ex.answer, V), kept, bytes: cache.bytes().total, cacheSize: size.cacheSize, seconds: 0 };
      } else {
        let prefix: CompressedPrefix;
        if (spec.method === 'kvdistill') {
          const kd = opts.adaptors.get(spec.adaptor!)!;
          let s = kdScores.get(spec.adaptor!);
          if (!s) kdScores.set(spec.adaptor!, (s = kd.scores(ex.context)));
          const sel = selectTokens(s, n, r, kd.sinks);
          prefix = { cache: kd.compress(ex.context, r, sel), kept: sel.length, keptSets: [] };
        } else if (spec.method === 'h2o-qi') {
          prefix = h2oStreaming(model, ex.context, keepRows(n, r, opts.sinks), opts.sinks, be);
        } else {
          let sc = shared.get(spec.method);
          if (!sc) {
            sc = spec.method === 'snapkv' ? ContextScores.snapkv(model, ex.context, ex.question, opts.sinks, 7, be)
              : ContextScores.h2o(model, ex.context, spec.method === 'h2o-qa' ? ex.question : null, opts.sinks, be);
            shared.set(spec.method, sc);
          }
          prefix = sc.select(keepRows(n, r, opts.sinks));
        }
        const zS = answerLogits(model, prefix.cache, ex, be);
        rec = { example: i, label: u.label, retention: r, ...scoreAnswer(zS, teacher, ex.answer, V), kept: prefix.kept, bytes: (prefix.kept + mq) * rowBytes, seconds: 0 };
      }
      rec.seconds = Number(((performance.now() - t0) / 1000).toFixed(3));
      opts.state?.set(key, rec);
      units.push(rec);
      progress.step(n, `example ${i + 1}/${examples.length} ${u.label} r=${u.retention}`);
      await new Promise<void>((resolve) => setImmediate(resolve)); // let Ctrl-C through
    }
  }
  opts.state?.flush();
  progress.end();
  return { units, complete };
}

/** Means per (method, retention), with exact match per example kind. */
export function summarize(units: readonly UnitRecord[], examples: readonly EvalExampleInfo[], methods: readonly EvalMethodSpec[], retentions: readonly number[]): SummaryRow[] {
  const rows: SummaryRow[] = [];
  for (const spec of methods) {
    for (const r of spec.method === 'full' ? [1] : retentions) {
      const us = units.filter((u) => u.label === spec.label && u.retention === r);
      if (us.length === 0) continue;
      const mean = (f: (u: UnitRecord) => number) => us.reduce((s, u) => s + f(u), 0) / us.length;
      const byKind: SummaryRow['byKind'] = {};
      for (const u of us) {
        const k = examples[u.example]?.kind ?? '?';
        const b = (byKind[k] ??= { count: 0, exactMatch: 0 });
        b.count++;
        b.exactMatch += u.exact ? 1 : 0;
      }
      for (const b of Object.values(byKind)) b.exactMatch /= b.count;
      rows.push({ label: spec.label, method: spec.method, retention: r, count: us.length, exactMatch: mean((u) => (u.exact ? 1 : 0)), klTS: mean((u) => u.klTS), klST: mean((u) => u.klST), kept: mean((u) => u.kept), bytes: mean((u) => u.bytes), byKind });
    }
  }
  return rows;
}

// ---- tables, plots, report -------------------------------------------------------------------------

const pct = (r: number) => `${Number((100 * r).toPrecision(3))}%`;

/** The row of a label at a retention; full is the same at every retention. */
function rowAt(res: KVDistillEvalResult, spec: EvalMethodSpec, r: number): SummaryRow | undefined {
  return res.rows.find((x) => x.label === spec.label && x.retention === (spec.method === 'full' ? 1 : r));
}

function table(res: KVDistillEvalResult, cell: (row: SummaryRow) => string, kind?: string): string {
  const rs = res.protocol.retentions;
  const rows = res.protocol.methods.map((m) => [m.label, ...rs.map((r) => {
    const row = rowAt(res, m, r);
    if (!row) return '-';
    if (kind === undefined) return cell(row);
    const b = row.byKind[kind];
    return b ? `${(100 * b.exactMatch).toFixed(1)} (${b.count})` : '-';
  })]);
  return markdownTable(['method', ...rs.map((r) => `kept ${pct(r)}`)], rows, ['l']);
}

export function kvdExactTable(res: KVDistillEvalResult): string {
  return table(res, (row) => `${(100 * row.exactMatch).toFixed(1)} (${row.count})`);
}

export function kvdKlTable(res: KVDistillEvalResult): string {
  return table(res, (row) => `${row.klTS.toPrecision(3)} / ${row.klST.toPrecision(3)}`);
}

export function kvdBytesTable(res: KVDistillEvalResult): string {
  return table(res, (row) => `${row.kept.toFixed(1)} rows, ${formatBytes(row.bytes)}`);
}

export function kvdKindTable(res: KVDistillEvalResult, kind: string): string {
  return table(res, () => '', kind);
}

export const KVD_EXACT_CHART = 'kvdistill-exact.svg';
export const KVD_KL_CHART = 'kvdistill-kl.svg';

export function kvdCharts(res: KVDistillEvalResult): Record<string, string> {
  const rs = res.protocol.retentions;
  const log = rs.length > 1 && rs[0] > 0 && rs[rs.length - 1] / rs[0] > 4;
  const series = (f: (row: SummaryRow) => number): Series[] => res.protocol.methods.map((m) => ({
    name: m.label,
    points: rs.map((r) => { const row = rowAt(res, m, r); return [r, row ? f(row) : NaN] as [number, number]; }),
  }));
  const out: Record<string, string> = {};
  out[KVD_EXACT_CHART] = lineChart(series((row) => 100 * row.exactMatch), { title: 'Exact match against retention', xLabel: 'context rows kept (fraction)', yLabel: 'exact match (%)', logX: log });
  const kl = series((row) => row.klTS).filter((s) => s.points.some((p) => p[1] > 0));
  if (kl.length > 0) out[KVD_KL_CHART] = lineChart(kl, { title: 'Answer-token KL(teacher || method)', xLabel: 'context rows kept (fraction)', yLabel: 'KL (nats per token)', logX: log, logY: true });
  return out;
}

function kinds(res: KVDistillEvalResult): string[] {
  return [...new Set(res.examples.map((e) => e.kind))];
}

/** Markdown lines shared by report.md and the results page (after the command and model lines). */
export function kvdSection(res: KVDistillEvalResult, image: (file: string, alt: string) => string): string[] {
  const p = res.protocol;
  const out: string[] = [];
  if (!res.complete) out.push('**Incomplete run** (some units missing).', '');
  const ctx = res.examples.map((e) => e.context);
  out.push(`${res.examples.length} held-out questions (${kinds(res).map((k) => `${res.examples.filter((e) => e.kind === k).length} ${k}`).join(', ')}) from ${res.data.source}; ` +
    `contexts of ${Math.min(...ctx)}..${Math.max(...ctx)} tokens; seed ${p.seed}; baseline sinks ${p.sinks}; FreqKV gamma ${p.freqkvRetain}.`, '');
  if (res.adaptors.length > 0) {
    out.push('Adaptors:', '', markdownTable(['label', 'file', 'rank', 'alpha', 'routing', 'sinks', 'score layer'],
      res.adaptors.map((a) => [a.label, a.file, String(a.rank), String(a.alpha), String(a.routing), String(a.sinks), String(a.scoreLayer)]), ['l', 'l']), '');
  }
  out.push('Exact match (%, greedy answer equal to the reference token for token; examples in brackets):', '', kvdExactTable(res), '', image(KVD_EXACT_CHART, 'exact match against retention'), '');
  out.push('Answer-token KL against the full context, KL(teacher || method) / KL(method || teacher), nats per token (teacher-forced):', '', kvdKlTable(res), '', image(KVD_KL_CHART, 'KL against retention'), '');
  out.push('Held while answering (context rows per layer and KV head; bytes at the first answer token):', '', kvdBytesTable(res), '');
  for (const k of kinds(res)) out.push(`<details><summary>exact match, ${k} only</summary>`, '', kvdKindTable(res, k), '', '</details>', '');
  out.push('Methods:', '');
  for (const m of p.methods) out.push(`- \`${m.label}\`: ${p.notes[m.method] ?? m.method}${m.adaptor ? ` (adaptor ${m.adaptor})` : ''}`);
  out.push('', `Every selection method keeps, at retention r, the sinks plus min(ceil(r*n), n - sinks) context rows per layer and KV head (what KV-Distill keeps), keys at their original positions; the question continues at position n.`, '');
  return out;
}

export function kvdReport(res: KVDistillEvalResult): string {
  const out = ['# KV-Distill evaluation', '', '```sh', res.command, '```', '', `Model: ${res.model.summary}, trained window ${res.model.window}. ${res.elapsedSeconds.toFixed(0)} s, backend ${res.backend}, ${res.threads} threads.`, ''];
  out.push(...kvdSection(res, (file) => (file in kvdCharts(res) ? `![${file}](${file})` : '')));
  return out.join('\n');
}
