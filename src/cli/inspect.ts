// `freqkv inspect spectrum`: where the energy of the KV cache sits in the frequency domain.
// For each layer and KV head, the share of K and of V energy in the lowest 10%, 25% and 50% of
// DCT-II frequencies along the token axis, over a span of N tokens of a text (keys pre-RoPE, as
// FreqKV compresses them). The paper's observation is that most energy is in the low
// frequencies, which is why keeping them loses little. Printed as a table and drawn as an SVG
// heat map.
import * as fs from 'node:fs';
import { type FlagSpec, UsageError, helpText, parseArgs } from './args.js';
import { WindowCache } from '../cache/window.js';
import { cacheShape } from '../cache/factory.js';
import { dctFFT } from '../dsp/dct.js';
import { heatMap } from '../eval/svg.js';
import { getBackend } from '../kernels/index.js';
import { loadModel } from '../model/loader.js';
import { forward } from '../model/forward.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { findShippedModel, shippedModelDir } from '../model/shipped.js';
import type { Model } from '../model/types.js';
import { writeFileAtomic } from '../util/atomic.js';

/** Fractions of the lowest frequencies whose energy share is reported. */
export const FRACTIONS = [0.1, 0.25, 0.5];

/**
 * Share of the energy of columns [col, col+width) of x[n, rowLen] that lies in the lowest
 * round(f*n) (at least 1) DCT-II frequencies along the token axis, for each f in fractions.
 * An all-zero input has no energy anywhere: shares of 0.
 */
export function lowFrequencyShares(x: Float32Array, n: number, rowLen: number, col: number, width: number, fractions: number[] = FRACTIONS): number[] {
  if (x.length < n * rowLen) throw new RangeError(`lowFrequencyShares x: expected [${n}, ${rowLen}], got ${x.length} values`);
  const a = new Float64Array(n * width);
  for (let t = 0; t < n; t++) for (let c = 0; c < width; c++) a[t * width + c] = x[t * rowLen + col + c];
  dctFFT(a, a, n, width, false);
  // cumulative energy per frequency (orthonormal DCT: total = the input's energy)
  const cum = new Float64Array(n + 1);
  for (let k = 0; k < n; k++) {
    let e = 0;
    for (let c = 0; c < width; c++) e += a[k * width + c] * a[k * width + c];
    cum[k + 1] = cum[k] + e;
  }
  const total = cum[n];
  return fractions.map((f) => (total > 0 ? cum[Math.min(n, Math.max(1, Math.round(f * n)))] / total : 0));
}

export interface HeadSpectrum {
  layer: number;
  head: number;
  /** Shares of K (pre-RoPE) and V energy, one per fraction. */
  k: number[];
  v: number[];
}

/** Runs the first `span` tokens through the model and measures every layer's and KV head's spectrum. */
export function kvSpectrum(model: Model, tokens: number[], span: number, fractions: number[] = FRACTIONS): HeadSpectrum[] {
  const c = model.config;
  if (!Number.isInteger(span) || span < 2 || span > tokens.length) throw new RangeError(`kvSpectrum span: expected an integer in [2, ${tokens.length}], got ${span}`);
  // a window as large as the span never evicts: it holds every pre-RoPE key and value
  const cache = new WindowCache(cacheShape(c), { budget: span, sinks: 0 });
  forward(model, tokens.slice(0, span), cache);
  const out: HeadSpectrum[] = [];
  const kvDim = c.nKVHeads * c.headDim;
  for (let l = 0; l < c.nLayers; l++) {
    const k = cache.rawKeys(l)!;
    const v = cache.values(l);
    for (let h = 0; h < c.nKVHeads; h++) {
      out.push({
        layer: l,
        head: h,
        k: lowFrequencyShares(k, span, kvDim, h * c.headDim, c.headDim, fractions),
        v: lowFrequencyShares(v, span, kvDim, h * c.headDim, c.headDim, fractions),
      });
    }
  }
  return out;
}

const pct = (f: number) => `${Math.round(f * 100)}%`;

/** The plain-text table, one row per layer and KV head, then the mean. */
export function spectrumTable(rows: HeadSpectrum[], fractions: number[] = FRACTIONS): string {
  const head = ['layer', 'head', ...fractions.map((f) => `K ${pct(f)}`), ...fractions.map((f) => `V ${pct(f)}`)];
  const fmt = (x: number) => x.toFixed(3);
  const lines = rows.map((r) => [String(r.layer), String(r.head), ...r.k.map(fmt), ...r.v.map(fmt)]);
  const mean = (pick: (r: HeadSpectrum) => number[]) => fractions.map((_, i) => rows.reduce((s, r) => s + pick(r)[i], 0) / rows.length);
  lines.push(['mean', '', ...mean((r) => r.k).map(fmt), ...mean((r) => r.v).map(fmt)]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cells: string[]) => cells.map((s, i) => s.padStart(widths[i])).join('  ');
  return [row(head), ...lines.map(row)].join('\n') + '\n';
}

export function spectrumSvg(rows: HeadSpectrum[], title: string, fractions: number[] = FRACTIONS): string {
  return heatMap(
    rows.map((r) => [...r.k, ...r.v]),
    {
      title,
      rowLabels: rows.map((r) => `layer ${r.layer} head ${r.head}`),
      colLabels: [...fractions.map((f) => `K ${pct(f)}`), ...fractions.map((f) => `V ${pct(f)}`)],
      min: 0,
      max: 1,
    },
  );
}

const COMMAND = 'inspect spectrum';

export const flags: Record<string, FlagSpec> = {
  model: { kind: 'string', help: 'model folder in Hugging Face layout (default: the shipped model)' },
  text: { kind: 'string', help: 'UTF-8 text file whose tokens are measured (required)' },
  span: { kind: 'int', min: 8, help: "tokens measured (default: the model's trained window, or the whole text when shorter)" },
  svg: { kind: 'string', default: 'spectrum.svg', help: 'where to write the heat map' },
  json: { kind: 'bool', default: false, help: 'print JSON instead of the table' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const USAGE = `usage: freqkv inspect spectrum --text FILE [--model DIR] [--span N] [--svg OUT.svg]\n\n${helpText(flags)}\n`;

export async function run(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === undefined || what === '--help' || what === '-h') {
    process.stdout.write(USAGE);
    return what === undefined ? 2 : 0;
  }
  if (what !== 'spectrum') throw new UsageError(`inspect: unknown view "${what}" (known: spectrum)\n\n${USAGE}`);
  const { flags: f, positional } = parseArgs(rest, flags, COMMAND);
  if (f.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length > 0) throw new UsageError(`${COMMAND}: unexpected argument "${positional[0]}"`);
  if (f.text === undefined) throw new UsageError(`${COMMAND}: --text FILE is required`);
  const textFile = f.text as string;
  let text: string;
  try {
    text = fs.readFileSync(textFile, 'utf8');
  } catch (err) {
    throw new UsageError(`${COMMAND}: --text ${textFile}: cannot read (${(err as Error).message})`);
  }
  const dir = (f.model as string | undefined) ?? findShippedModel();
  if (dir === null) throw new UsageError(`${COMMAND}: no --model given and the shipped model is not installed (expected in ${shippedModelDir()})`);
  if (f.threads !== undefined) getBackend().setThreads(f.threads as number);
  const [model, tokenizer] = await Promise.all([loadModel(dir), loadTokenizer(dir)]);
  const tokens = tokenizer.encode(text);
  let span = f.span as number | undefined;
  if (span !== undefined && span > tokens.length) {
    throw new UsageError(`${COMMAND}: --span ${span} is longer than the text (${textFile} has ${tokens.length} tokens)`);
  }
  span ??= Math.min(model.config.maxPositionEmbeddings, tokens.length);
  if (span < 8) throw new UsageError(`${COMMAND}: --text ${textFile} has ${tokens.length} tokens; at least 8 are needed`);
  const rows = kvSpectrum(model, tokens, span);
  const svgFile = f.svg as string;
  await writeFileAtomic(svgFile, spectrumSvg(rows, `Share of KV energy in the lowest DCT frequencies (${span} tokens)`));
  if (f.json) process.stdout.write(JSON.stringify({ model: dir, text: textFile, span, fractions: FRACTIONS, heads: rows }, null, 2) + '\n');
  else process.stdout.write(`share of energy in the lowest DCT frequencies over ${span} tokens (K pre-RoPE)\n${spectrumTable(rows)}`);
  process.stderr.write(`freqkv ${COMMAND}: heat map written to ${svgFile}\n`);
  return 0;
}
