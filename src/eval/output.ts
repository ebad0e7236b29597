// What every evaluation writes: a result.json (with the exact command line that produced it,
// so the results page can quote it), a report.md and SVG plots, each written atomically.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';

export const RESULT_FORMAT = 'freqkv-eval';
export const RESULT_VERSION = 1;
export const RESULT_FILE = 'result.json';
export const STATE_FILE = 'state.json';

export type ResultKind = 'ppl' | 'passkey' | 'niah' | 'bench-decode' | 'kvdistill';

/** Fields every result.json carries. */
export interface ResultHeader {
  format: typeof RESULT_FORMAT;
  version: number;
  kind: ResultKind;
  /** The command line that produced this result, ready to paste into a shell. */
  command: string;
  createdAt: string;
  elapsedSeconds: number;
  backend: string;
  threads: number;
  model: { path: string; summary: string; window: number; fingerprint: string };
}

/** A word of a command line, quoted for a POSIX shell when it needs it. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** "freqkv eval ppl --model m ..." from the words after `freqkv`. */
export function commandLine(words: readonly string[]): string {
  return ['freqkv', ...words].map(shellQuote).join(' ');
}

/** A GitHub markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], align: ('l' | 'r')[] = []): string {
  const sep = header.map((_, i) => (align[i] === 'l' ? ':---' : '---:'));
  const line = (cells: readonly string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(sep), ...rows.map(line)].join('\n') + '\n';
}

/** Bytes as "1.5 MB", "12.0 kB", "512 B". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

/** Writes each named file into dir atomically (creating dir), the JSON result last. */
export async function writeOutputs(dir: string, files: Record<string, string>): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const names = Object.keys(files).sort((a, b) => Number(a === RESULT_FILE) - Number(b === RESULT_FILE));
  for (const name of names) await writeFileAtomic(path.join(dir, name), files[name]);
  return names.map((n) => path.join(dir, n));
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}
