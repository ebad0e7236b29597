// The results page (docs/results.md), regenerated from result.json files: for each result its
// exact command, the model, the tables and the plots (SVGs copied next to the page, under
// <page dir>/results/). Nothing on the page is typed by hand, so every number can be rerun.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { markdownTable, RESULT_FILE, RESULT_FORMAT, type ResultHeader, type ResultKind } from './output.js';
import { pplMemoryTable, pplTable, type PplResult } from './ppl.js';
import { gridChartName, gridPolicyTable, gridSummaryTable, type GridResult } from './grid.js';
import { benchTables, type BenchResult } from './bench.js';
import { kvdSection, type KVDistillEvalResult } from '../kvdistill/eval.js';

export interface FoundResult {
  /** Folder holding result.json (as found under the roots). */
  dir: string;
  result: ResultHeader;
}

const KIND_ORDER: ResultKind[] = ['ppl', 'passkey', 'niah', 'bench-decode', 'kvdistill'];
const KIND_TITLE: Record<ResultKind, string> = {
  ppl: 'Perplexity',
  passkey: 'Passkey retrieval',
  niah: 'Needle in a haystack (RULER-style)',
  'bench-decode': 'Decode speed and cache memory',
  kvdistill: 'KV-Distill: compressed contexts against H2O, SnapKV and FreqKV',
};

/** Every result.json under the roots (recursively; hidden folders and node_modules skipped). */
export function findResults(roots: readonly string[]): FoundResult[] {
  const out: FoundResult[] = [];
  const walk = (dir: string) => {
    const file = path.join(dir, RESULT_FILE);
    if (fs.existsSync(file)) {
      let json: ResultHeader;
      try {
        json = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (err) {
        throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
      }
      if (json.format !== RESULT_FORMAT) throw new Error(`${file}: field "format" must be "${RESULT_FORMAT}", got ${JSON.stringify(json.format)}`);
      if (!KIND_ORDER.includes(json.kind)) throw new Error(`${file}: unknown result kind ${JSON.stringify(json.kind)}`);
      out.push({ dir, result: json });
    }
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules') walk(path.join(dir, e.name));
    }
  };
  for (const r of roots) {
    if (!fs.existsSync(r) || !fs.statSync(r).isDirectory()) throw new Error(`results page: ${r} is not a folder`);
    walk(r);
  }
  out.sort((a, b) => KIND_ORDER.indexOf(a.result.kind) - KIND_ORDER.indexOf(b.result.kind) || a.dir.localeCompare(b.dir));
  return out;
}

/** Plot file name on the page: the run folder flattened, then the plot's own name. */
function assetName(dir: string, file: string): string {
  const flat = path.relative(process.cwd(), path.resolve(dir)).replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[-.]+/, '') || 'run';
  return `${flat}-${file}`;
}

export interface RenderedPage {
  markdown: string;
  /** Plot file (relative to the page's folder) -> source SVG path. */
  assets: Record<string, string>;
}

export interface PageOptions {
  /** Commands that regenerate the page, quoted at its top. */
  generatedBy?: string[];
  /** Hand-written commentary (markdown) placed after the header: what the numbers mean, where they differ from the paper. */
  notes?: string;
  /** Folder for the plots, relative to the page (default "results"). */
  assetDir?: string;
}

export function renderResultsPage(found: readonly FoundResult[], opts: PageOptions = {}): RenderedPage {
  const assetDir = opts.assetDir ?? 'results';
  const assets: Record<string, string> = {};
  const image = (dir: string, file: string, alt: string): string => {
    const src = path.join(dir, file);
    if (!fs.existsSync(src)) return `(plot ${file} missing from ${dir})`;
    const rel = `${assetDir}/${assetName(dir, file)}`;
    assets[rel] = src;
    return `![${alt}](${rel})`;
  };
  const out: string[] = ['# Results', ''];
  out.push('Generated from the result.json files of each run; do not edit by hand. To regenerate:', '');
  out.push('```sh', ...(opts.generatedBy ?? ['freqkv eval report --from runs --out docs/results.md']), '```', '');
  out.push('Each section quotes the command that produced it. Timings come from a shared machine and are noisy.', '');
  if (opts.notes) out.push(opts.notes.trim(), '');
  if (found.length === 0) out.push('No results yet.', '');
  let lastKind: ResultKind | null = null;
  for (const { dir, result } of found) {
    if (result.kind !== lastKind) {
      out.push(`## ${KIND_TITLE[result.kind]}`, '');
      lastKind = result.kind;
      if (result.kind === 'ppl') {
        const combined = combinedPplTable(found.filter((f) => f.result.kind === 'ppl').map((f) => f.result as PplResult));
        if (combined) out.push(combined, '');
      }
    }
    const r = result;
    out.push(`### ${r.model.path} (${dir})`, '');
    out.push('```sh', r.command, '```', '');
    out.push(`Model: ${r.model.summary}, trained window ${r.model.window}. Run ${r.createdAt.slice(0, 10)}, ${r.elapsedSeconds.toFixed(0)} s, backend ${r.backend}, ${r.threads} threads.`, '');
    if (r.kind === 'ppl') {
      const p = r as PplResult;
      if (!p.complete) out.push('**Incomplete run** (some windows missing).', '');
      out.push(
        `Data: ${p.data.source} (${p.data.documents.map((d) => `${d.name} ${d.tokens}`).join(', ')} tokens); a window every ${p.protocol.stride} tokens` +
          (p.protocol.maxWindows === null ? ', all windows.' : `, at most ${p.protocol.maxWindows} per length (evenly spaced).`),
        '',
      );
      out.push(pplTable(p), '', image(dir, 'ppl.svg', 'perplexity against length'), '', 'Cache memory at the end of a window:', '', pplMemoryTable(p), '');
    } else if (r.kind === 'passkey' || r.kind === 'niah') {
      const g = r as GridResult;
      if (!g.complete) out.push('**Incomplete run** (some trials missing).', '');
      out.push(`${g.protocol.trials} trial(s) per cell, depths ${g.protocol.depths.join(', ')}${g.data ? `; haystack ${g.data.source}` : ''}.`, '');
      for (const task of g.protocol.tasks) {
        if (g.protocol.tasks.length > 1 || r.kind === 'niah') out.push(`#### ${task}`, '');
        out.push('Accuracy averaged over depths:', '', gridSummaryTable(g, task), '');
        for (const p of g.policies) {
          out.push(`<details><summary>${task}, ${p.label}: by depth</summary>`, '', gridPolicyTable(g, task, p.label), '', '</details>', '');
          out.push(image(dir, gridChartName(task, p.label), `${task} ${p.label}`), '');
        }
      }
    } else if (r.kind === 'kvdistill') {
      out.push(...kvdSection(r as KVDistillEvalResult, (file, alt) => image(dir, file, alt)));
    } else {
      const b = r as BenchResult;
      const t = benchTables(b);
      out.push(`${b.protocol.steps} decode steps timed after each prefill.`, '');
      out.push('Milliseconds per decoded token:', '', t.time, '', image(dir, 'decode-time.svg', 'decode time'), '');
      out.push('Cache bytes held:', '', t.bytes, '', image(dir, 'decode-bytes.svg', 'cache bytes'), '');
      out.push('Share of decode time in compression or eviction:', '', t.share, '');
    }
  }
  return { markdown: out.join('\n'), assets };
}

/**
 * One table over several perplexity runs (rows: model + policy, columns: lengths), for the runs
 * that scored the same data under the same protocol as the first run: different models (a base
 * and its fine-tunes) then compare cell by cell, as in the paper's Table 1. Null with fewer than
 * two such runs. Rows come in the order the runs were made.
 */
export function combinedPplTable(results: readonly PplResult[]): string | null {
  const first = results[0];
  if (!first) return null;
  const same = results
    .filter((r) => r.data.fingerprint === first.data.fingerprint && r.protocol.stride === first.protocol.stride && r.protocol.maxWindows === first.protocol.maxWindows)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt)); // in the order they were run: base model first
  if (same.length < 2) return null;
  const lengths = [...new Set(same.flatMap((r) => r.protocol.lengths))].sort((a, b) => a - b);
  const rows = same.flatMap((r) => r.policies.map((p) => [`${r.model.path} + ${p.label}`, ...lengths.map((T) => {
    const x = r.rows.find((row) => row.policy === p.label && row.length === T);
    return x && x.perplexity !== null ? x.perplexity.toFixed(2) : '-';
  })]));
  const left = results.length - same.length;
  const note = `All ${same.length} runs below on the same windows (${first.data.source}, a window every ${first.protocol.stride} tokens` +
    `${first.protocol.maxWindows === null ? '' : `, at most ${first.protocol.maxWindows} per length`})` +
    `${left > 0 ? `; ${left} run(s) on other data or protocol are left out of this table` : ''}. Perplexity:`;
  return `${note}\n\n${markdownTable(['model + policy', ...lengths.map(String)], rows, ['l'])}`;
}

/** Finds the results under `roots`, writes the page and copies its plots (each file atomically). */
export async function writeResultsPage(roots: readonly string[], pagePath: string, opts: PageOptions = {}): Promise<{ results: number; assets: number }> {
  const found = findResults(roots);
  const page = renderResultsPage(found, opts);
  const pageDir = path.dirname(pagePath);
  for (const [rel, src] of Object.entries(page.assets)) {
    const dest = path.join(pageDir, rel);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    await writeFileAtomic(dest, fs.readFileSync(src));
  }
  fs.mkdirSync(pageDir, { recursive: true });
  await writeFileAtomic(pagePath, page.markdown);
  return { results: found.length, assets: Object.keys(page.assets).length };
}
