// `npm run bench -- kernels`: one table, native next to reference.
//   matmul   GFLOP/s (2·n³ flops) for square products, 1 and 2 threads; reference at 512 only
//   matvec   GB/s of the matrix streamed once (rows·cols·4 bytes)
//   copy     GB/s of the same bytes copied, counted read + written (2 bytes moved per byte,
//            the STREAM convention): the memory-bandwidth yardstick for matvec
//   overhead µs per call of tiny calls (what a decode step pays hundreds of times)
//   compression rows come from bench/dsp.ts (its dspRows()) when that suite exists.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type FlagSpec, helpText, parseArgs } from '../src/cli/args.js';
import type { Backend } from '../src/kernels/backend.js';
import { loadNativeBackend, type NativeBackend } from '../src/kernels/native.js';
import { referenceBackend } from '../src/kernels/reference.js';
import { benchArray, fmt, formatTable, KERNEL_HEADER, nativePair, timeIt } from './util.js';

const flags: Record<string, FlagSpec> = {
  seconds: { kind: 'number', default: 0.4, min: 0.01, help: 'time spent on each measurement (more = steadier numbers)' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

function matmulRows(nb: NativeBackend | null, seconds: number): string[][] {
  const rows: string[][] = [];
  for (const n of [512, 1024]) {
    const a = benchArray(n * n, 1);
    const b = benchArray(n * n, 2);
    const c = new Float32Array(n * n);
    const gflops = (t: number | undefined) => (t === undefined ? undefined : (2 * n ** 3) / t / 1e9);
    for (const transB of [false, true]) {
      const call = (be: Backend) => be.matmul(c, a, b, n, n, n, { transB });
      // The reference runs ~1 GFLOP/s: one call at 512 only.
      const ref = n === 512 && !transB ? timeIt(() => call(referenceBackend), { seconds: 0, batches: 1, warmup: 0 }).best : undefined;
      const [t1, t2] = nativePair(nb, call, seconds);
      rows.push([`matmul${transB ? ' (B transposed)' : ''}`, `${n}x${n}x${n}`, 'GFLOP/s', fmt(gflops(ref)), fmt(gflops(t1)), fmt(gflops(t2)),
        transB ? '' : 'target >= 90 (1t), >= 150 (2t)']);
    }
  }
  return rows;
}

function bandwidthRows(nb: NativeBackend | null, seconds: number): string[][] {
  const rows: string[][] = [];
  for (const [rows_, cols] of [[2048, 2048], [8192, 2048]]) {
    const w = benchArray(rows_ * cols, 3);
    const x = benchArray(cols, 4);
    const y = new Float32Array(rows_);
    const bytes = rows_ * cols * 4;
    const gbs = (t: number | undefined) => (t === undefined ? undefined : bytes / t / 1e9);
    const copyGbs = (t: number | undefined) => (t === undefined ? undefined : (2 * bytes) / t / 1e9);
    const call = (be: Backend) => be.matvec(y, w, x, rows_, cols);
    const ref = timeIt(() => call(referenceBackend), { seconds: Math.min(seconds, 0.2), batches: 2 }).best;
    const [m1, m2] = nativePair(nb, call, seconds);

    const dst = new Float32Array(rows_ * cols);
    const jsCopy = timeIt(() => dst.set(w), { seconds }).best;
    const [c1, c2] = nb ? nativePair(nb, () => nb.copy(dst, w, w.length), seconds) : [undefined, undefined];
    const ratio = (m: number | undefined, c: number | undefined) =>
      m === undefined || c === undefined ? '-' : `${Math.round((100 * gbs(m)!) / copyGbs(c)!)}%`;
    const mb = `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    rows.push(['matvec', `[${rows_},${cols}]·x (${mb})`, 'GB/s', fmt(gbs(ref)), fmt(gbs(m1)), fmt(gbs(m2)),
      `of copy: ${ratio(m1, c1)} (1t), ${ratio(m2, c2)} (2t); target >= 80%`]);
    rows.push(['copy (native memmove)', mb, 'GB/s', '', fmt(copyGbs(c1)), fmt(copyGbs(c2)), 'read + written']);
    rows.push(['copy (Float32Array.set)', mb, 'GB/s', fmt(copyGbs(jsCopy)), '', '', 'read + written, 1 thread']);
  }
  return rows;
}

function overheadRows(nb: NativeBackend | null, seconds: number): string[][] {
  const us = (t: number | undefined) => fmt(t === undefined ? undefined : t * 1e6, 2);
  const w = benchArray(16, 5);
  const x = benchArray(8, 6);
  const y = new Float32Array(8);
  const cases: [string, string, (b: Backend) => void][] = [
    ['matvec', '[4,4]', (b) => b.matvec(y, w, x, 4, 4)],
    ['rmsnorm', '[1,8]', (b) => b.rmsnorm(y, x, w, 1, 8, 1e-5)],
    ['silu', '[8]', (b) => b.silu(y, 8)],
  ];
  const rows = cases.map(([name, size, call]) => {
    const ref = timeIt(() => call(referenceBackend), { seconds }).best;
    const [t1, t2] = nativePair(nb, call, seconds);
    return [`${name} (per call)`, size, 'µs', us(ref), us(t1), us(t2), 'call overhead'];
  });
  if (nb) {
    const bare = timeIt(() => nb.threads(), { seconds }).best;
    rows.push(['bare Node-API call', 'threads()', 'µs', '', us(bare), '', 'floor of any native call']);
  }
  return rows;
}

/** Compression timings from the DSP suite, if it has been written: bench/dsp.ts exports dspRows(). */
async function dspRows(): Promise<string[][]> {
  const path = fileURLToPath(new URL('./dsp.js', import.meta.url));
  if (!existsSync(path)) return [['compression: bench/dsp.ts not available yet']];
  const mod = (await import(pathToFileURL(path).href)) as { dspRows?: () => Promise<string[][]> };
  if (typeof mod.dspRows !== 'function') return [['compression: bench/dsp.ts exports no dspRows()']];
  return mod.dspRows();
}

export async function run(args: string[]): Promise<void> {
  const f = parseArgs(args, flags, 'bench kernels').flags;
  if (f.help) {
    process.stdout.write(`usage: npm run bench -- kernels [flags]\n\n${helpText(flags)}\n`);
    return;
  }
  const seconds = f.seconds as number;
  const nb = loadNativeBackend();
  const rows = [
    ...matmulRows(nb, seconds),
    ...bandwidthRows(nb, seconds),
    ...overheadRows(nb, seconds),
    ...(await dspRows()),
  ];
  const simd = nb ? `native ${nb.simd()}, pool default ${nb.threads()} thread(s)` : 'native addon NOT built: reference only';
  process.stdout.write(`kernels: ${simd}; best of several batches per cell (a shared machine is noisy)\n\n`);
  process.stdout.write(formatTable(KERNEL_HEADER, rows));
}
