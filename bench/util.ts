// Timing and table helpers shared by the benchmark suites (bench/<suite>.ts).
// Timings on a shared machine are noisy: every measurement reports the best of several
// batches, which is the least disturbed one, and callers should say the machine was shared.
import type { Backend } from '../src/kernels/backend.js';
import type { NativeBackend } from '../src/kernels/native.js';

export interface Timing {
  /** Seconds per call, best batch. */
  best: number;
  /** Seconds per call, median batch. */
  median: number;
  /** Calls timed in all. */
  calls: number;
}

export interface TimeOptions {
  /** Keep timing until this many seconds have passed (default 0.3). */
  seconds?: number;
  /** At least this many batches (default 5). */
  batches?: number;
  /** Target length of one batch in seconds (default 0.005): short batches let the best one dodge interruptions. */
  batchSeconds?: number;
  /** Untimed calls first (JIT, page faults, pool start); default 1. */
  warmup?: number;
}

/**
 * Times fn: after the warm-up, calls it in batches sized to last ~batchSeconds each (at least one
 * call), until both `batches` batches and `seconds` have passed. Returns seconds per call.
 */
export function timeIt(fn: () => void, opts: TimeOptions = {}): Timing {
  const seconds = opts.seconds ?? 0.3;
  const batches = opts.batches ?? 5;
  for (let i = 0; i < (opts.warmup ?? 1); i++) fn();
  // Size one batch from a single timed call.
  let t0 = performance.now();
  fn();
  const once = Math.max((performance.now() - t0) / 1000, 1e-9);
  const perBatch = Math.max(1, Math.round((opts.batchSeconds ?? 0.005) / once));
  const samples: number[] = [];
  let calls = 1;
  const start = performance.now();
  while (samples.length < batches || (performance.now() - start) / 1000 < seconds) {
    t0 = performance.now();
    for (let i = 0; i < perBatch; i++) fn();
    samples.push((performance.now() - t0) / 1000 / perBatch);
    calls += perBatch;
    if (samples.length >= 10000) break;
  }
  samples.sort((a, b) => a - b);
  return { best: samples[0], median: samples[samples.length >> 1], calls };
}

/** Runs fn with the native pool at `threads` threads, then restores the previous count. */
export function onThreads<T>(nb: NativeBackend, threads: number, fn: () => T): T {
  const before = nb.threads();
  nb.setThreads(threads);
  try {
    return fn();
  } finally {
    nb.setThreads(before);
  }
}

/** Best seconds per call of fn on the native backend at 1 and at 2 threads (undefined without the addon). */
export function nativePair(nb: NativeBackend | null, fn: (b: Backend) => void, seconds: number): [number | undefined, number | undefined] {
  if (!nb) return [undefined, undefined];
  return [onThreads(nb, 1, () => timeIt(() => fn(nb), { seconds }).best), onThreads(nb, 2, () => timeIt(() => fn(nb), { seconds }).best)];
}

/** The columns of the kernels table (bench/kernels.ts; bench/dsp.ts adds its rows to it). */
export const KERNEL_HEADER = ['kernel', 'size', 'unit', 'reference', 'native 1t', 'native 2t', 'note'];

/** Formats a number with `digits` significant-looking decimals, or "-" when not finite. */
export function fmt(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/**
 * Left-aligns the first column and right-aligns the others. Rows shorter than the header are
 * padded; a row with a single cell is printed as a section line across the table.
 */
export function formatTable(header: string[], rows: string[][]): string {
  const cols = Math.max(header.length, ...rows.map((r) => (r.length === 1 ? 0 : r.length)));
  const all = [header, ...rows.filter((r) => r.length !== 1)];
  const width = Array.from({ length: cols }, (_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) =>
    width.map((w, c) => (c === 0 ? (r[c] ?? '').padEnd(w) : (r[c] ?? '').padStart(w))).join('  ').trimEnd();
  const rule = width.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map((r) => (r.length === 1 ? r[0] : line(r)))].join('\n') + '\n';
}

/** Float32Array of n values uniform in [-1, 1) from a fixed seed (content does not matter for timing). */
export function benchArray(n: number, seed = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    a[i] = ((s >>> 0) / 4294967296) * 2 - 1;
  }
  return a;
}
