// `npm run bench -- dsp`: time of one FreqKV compression (n rows -> L = n/2 rows, 64 channels)
// by each route, in the kernels table's columns (reference | native 1 thread | native 2 threads):
//   dense       the cached L x n operator matrix times x through Backend.matmul (O(L n C))
//   fft (TS)    DCT-II_n, keep L, DCT-III_L in TypeScript (Makhoul + radix-2/Bluestein FFT);
//               backend-independent, shown under "reference" (it is what runs without the addon)
//   native dct  the same through the addon's Backend.dct
// plus the route `auto` picks (src/dsp/freqkv-op.ts, FREQ_DENSE_MAX). The matrix is built once per
// size before timing (it is cached in use too). bench/kernels.ts prints these rows in its table.
import { pathToFileURL } from 'node:url';
import { type FlagSpec, helpText, parseArgs } from '../src/cli/args.js';
import type { Backend } from '../src/kernels/backend.js';
import { loadNativeBackend } from '../src/kernels/native.js';
import { referenceBackend } from '../src/kernels/reference.js';
import { FREQ_DENSE_MAX, type FreqMethod, chooseFreqMethod, freqCompress, freqOperatorMatrix } from '../src/dsp/freqkv-op.js';
import { hasFastDct } from '../src/dsp/dct.js';
import { benchArray, fmt, formatTable, KERNEL_HEADER, nativePair, timeIt } from './util.js';

const flags: Record<string, FlagSpec> = {
  sizes: { kind: 'list', default: ['256', '512', '1024', '2048', '4092', '4096', '8192'], help: 'span lengths n (L = floor(n/2))' },
  channels: { kind: 'int', default: 64, min: 1, help: 'channels per row' },
  'reference-max': { kind: 'int', default: 1024, min: 0, help: 'largest n timed with the (slow) reference matmul' },
  seconds: { kind: 'number', default: 0.3, min: 0.01, help: 'time spent on each measurement' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

interface Options {
  sizes: number[];
  channels: number;
  referenceMax: number;
  seconds: number;
}

/** Seconds to milliseconds; NaN for a route not timed. */
const ms = (t: number | undefined) => (t === undefined ? NaN : t * 1000);
const msPair = ([t1, t2]: [number | undefined, number | undefined]) => ({ t1: ms(t1), t2: ms(t2) });

function rowsFor(o: Options): string[][] {
  const nb = loadNativeBackend();
  const fast = nb !== null && hasFastDct(nb);
  const C = o.channels;
  const rows: string[][] = [];
  const winners: string[] = [];
  for (const n of o.sizes) {
    const L = Math.floor(n / 2);
    const size = `n=${n} C=${C}`;
    const x = benchArray(n * C, n);
    freqOperatorMatrix(n, L); // built once, outside the timings
    // one compression of x[n, C] to L rows by `method` on a backend
    const compress = (method: FreqMethod) => (backend: Backend) => freqCompress(x, n, C, L, { method, backend });
    const refMs = (method: FreqMethod) => ms(timeIt(() => compress(method)(referenceBackend), { seconds: o.seconds }).best);
    const dense = { ref: n <= o.referenceMax ? refMs('dense') : NaN, ...msPair(nativePair(nb, compress('dense'), o.seconds)) };
    const fftTs = refMs('fft');
    const dct = msPair(fast ? nativePair(nb, compress('backend'), o.seconds) : [undefined, undefined]);
    const auto = { dense: 'dense', fft: 'fft (TS)', backend: 'native dct' }[chooseFreqMethod(n, nb ?? referenceBackend)];
    rows.push(['compress dense', size, 'ms', fmt(dense.ref, 2), fmt(dense.t1, 2), fmt(dense.t2, 2), n > o.referenceMax ? 'reference skipped (slow)' : '']);
    rows.push(['compress fft (TS)', size, 'ms', fmt(fftTs, 2), '', '', 'TypeScript, float64']);
    rows.push(['compress native dct', size, 'ms', '', fmt(dct.t1, 2), fmt(dct.t2, 2), `auto: ${auto}`]);
    if (nb) {
      const best = [['dense', dense.t2], ['native dct', dct.t2], ['fft (TS)', fftTs]].filter(([, v]) => Number.isFinite(v as number));
      best.sort((a, b) => (a[1] as number) - (b[1] as number));
      winners.push(`${n}: ${best[0][0]}`);
    }
  }
  const rule = nb ? `dense up to n = ${FREQ_DENSE_MAX}, then ${fast ? 'native dct' : 'the TypeScript FFT'}` : 'the TypeScript FFT (no addon)';
  rows.push([`compression crossover: auto = ${rule}` +
    (winners.length ? `; fastest at 2 threads here: ${winners.join(', ')}` : '')]);
  return rows;
}

/** The compression rows of the kernels table (defaults: n = 256 ... 8192, 64 channels). */
export async function dspRows(): Promise<string[][]> {
  return rowsFor({ sizes: [256, 512, 1024, 2048, 4092, 4096, 8192], channels: 64, referenceMax: 1024, seconds: 0.3 });
}

export async function run(args: string[]): Promise<void> {
  const f = parseArgs(args, flags, 'bench dsp').flags;
  if (f.help) {
    process.stdout.write(`usage: npm run bench -- dsp [flags]\n\n${helpText(flags)}\n`);
    return;
  }
  const sizes = (f.sizes as string[]).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 2) throw new Error(`bench dsp: --sizes expects whole numbers >= 2, got "${s}"`);
    return n;
  });
  const nb = loadNativeBackend();
  const rows = rowsFor({ sizes, channels: f.channels as number, referenceMax: f['reference-max'] as number, seconds: f.seconds as number });
  const what = nb ? `native ${nb.simd()}${hasFastDct(nb) ? '' : ', addon built without dct.cc'}` : 'native addon NOT built';
  process.stdout.write(`dsp: one FreqKV compression n -> n/2 rows; ${what}; best of several batches (a shared machine is noisy)\n\n`);
  process.stdout.write(formatTable(KERNEL_HEADER, rows));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`bench dsp: ${err instanceof Error ? err.message : err}\n`);
    process.exit(1);
  });
}
