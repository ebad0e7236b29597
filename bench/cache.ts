// `npm run bench -- cache`: per cache policy, decode time per token at contexts of 1K, 4K, 16K
// and 64K tokens, the bytes the cache holds, and FreqKV's compression time as a share of decode
// time at 32K (the paper reports 0.64%).
//
// Model: the ~100M benchmark configuration of bench/runtime.ts (12 layers, hidden 768, 12 query
// / 4 KV heads of 64, random weights); --layers makes it shallower. Bounded policies use a cache
// size / budget of --cache-size rows (default 2048, the model's trained window).
//
// How a context of C tokens is reached: running the model over 64K tokens of prefill is out of
// reach on a CPU (full attention is quadratic), and the timings do not depend on the values in
// the cache, so the cache is first fed C tokens of random pre-RoPE keys and values (no model),
// with the policy's real schedule: the full cache grows to C rows, FreqKV compresses exactly as
// it would. Eviction policies are fed budget + 256 tokens only: their per-token work depends on
// the budget, not on C (nothing grows with the stream; bytes stay flat, see test/cache.test.ts),
// and streaming 64K tokens one by one through their eviction would take most of an hour; the
// "seen" column says how many tokens each cache really saw. Random attention scores stand in for
// the real ones during that fill. Then --decode real decode steps run through the model and are
// timed one by one (median and mean; a FreqKV step that compresses is in the mean).
import { pathToFileURL } from 'node:url';
import { type FlagSpec, helpText, parseArgs } from '../src/cli/args.js';
import { getBackend } from '../src/kernels/index.js';
import { createCache } from '../src/cache/factory.js';
import { FreqKVCache } from '../src/cache/freqkv.js';
import type { KVCache } from '../src/cache/types.js';
import type { PositionMode } from '../src/cache/evict.js';
import { forward } from '../src/model/forward.js';
import { randomArray, randomModel, rng } from '../src/model/random.js';
import type { Model } from '../src/model/types.js';
import { lineChart } from '../src/eval/svg.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { benchConfig } from './runtime.js';

const POLICIES = ['full', 'window', 'freqkv', 'h2o', 'snapkv', 'tova'];
const EVICTION = new Set(['window', 'h2o', 'snapkv', 'tova']);

const flags: Record<string, FlagSpec> = {
  policies: { kind: 'list', default: POLICIES, choices: POLICIES, help: 'policies to measure' },
  contexts: { kind: 'list', default: ['1024', '4096', '16384', '65536'], help: 'contexts (tokens) at which decoding is timed' },
  decode: { kind: 'int', default: 16, min: 1, help: 'decode steps timed at each context' },
  layers: { kind: 'int', default: 12, min: 1, help: 'transformer layers (fewer for a quick look)' },
  'cache-size': { kind: 'int', default: 2048, min: 16, help: 'cache size N (freqkv, window) and budget (h2o, snapkv, tova)' },
  positions: { kind: 'string', default: 'slot', choices: ['slot', 'original'], help: 'positions of the eviction policies (slot re-rotates moved keys every step)' },
  'share-context': { kind: 'int', default: 32768, min: 0, help: 'context where the FreqKV compression share is measured over one compression period; 0 = skip' },
  quick: { kind: 'bool', default: false, help: 'a small run: 2 layers, contexts 1K and 4K, cache size 512, 4 decode steps, share at 4K' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  svg: { kind: 'string', help: 'write a line chart of ms/token against context here' },
  json: { kind: 'bool', default: false, help: 'print one JSON object' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

export interface CacheRow {
  policy: string;
  context: number;
  /** Tokens the cache really saw before the timed steps. */
  seen: number;
  msPerTokenMedian: number;
  msPerTokenMean: number;
  bytesHeld: number;
  bytesPerLayer: number;
}

/** Feeds `tokens` rows of random pre-RoPE keys/values (and random attention scores) through the cache's schedule. */
export function fillCache(cache: KVCache, tokens: number, seed = 1): void {
  const next = rng(seed);
  const D = cache.shape.nKVHeads * cache.shape.headDim;
  const rows = 256;
  const k = randomArray(rows * D, 1, next);
  const v = randomArray(rows * D, 1, next);
  for (let done = 0; done < tokens; ) {
    const T = Math.min(tokens - done, cache.room(), rows);
    cache.begin(T);
    for (let l = 0; l < cache.shape.nLayers; l++) {
      const view = cache.append(l, k, v);
      if (view.scores) for (let i = 0; i < view.scores.length; i++) view.scores[i] = next() / view.n;
      cache.attended(l, view);
    }
    cache.end();
    done += T;
  }
}

/** Times `steps` one-token decode steps through the model; returns each step's milliseconds. */
function timeDecode(model: Model, cache: KVCache, steps: number, next: () => number): number[] {
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    const tok = Math.floor(next() * model.config.vocabSize);
    const t0 = performance.now();
    forward(model, [tok], cache);
    ms.push(performance.now() - t0);
  }
  return ms;
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

function makeCache(model: Model, policy: string, size: number, positions: PositionMode): KVCache {
  if (policy === 'full') return createCache(model.config, { policy });
  if (policy === 'freqkv') return createCache(model.config, { policy, cacheSize: size, sinks: 4, retain: 0.5 });
  return createCache(model.config, { policy, budget: size, sinks: 4, positions });
}

export async function run(args: string[]): Promise<void> {
  const { flags: f } = parseArgs(args, flags, 'bench cache');
  if (f.help) {
    process.stdout.write(`usage: npm run bench -- cache [flags]\n\n${helpText(flags)}\n`);
    return;
  }
  const quick = f.quick as boolean;
  const given = (name: string) => args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  const layers = quick && !given('layers') ? 2 : (f.layers as number);
  const size = quick && !given('cache-size') ? 512 : (f['cache-size'] as number);
  const steps = quick && !given('decode') ? 4 : (f.decode as number);
  const contexts = (quick && !given('contexts') ? ['1024', '4096'] : (f.contexts as string[])).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`bench cache: --contexts expects positive whole numbers, got "${s}"`);
    return n;
  });
  const shareContext = quick && !given('share-context') ? 4096 : (f['share-context'] as number);
  const backend = getBackend();
  if (f.threads !== undefined) backend.setThreads(f.threads as number);
  const config = benchConfig(layers);
  const model = randomModel(config, 1);
  const log = (s: string) => process.stderr.write(s);
  log(`bench cache: ${layers} layers, hidden ${config.hiddenSize}, ${config.nHeads}/${config.nKVHeads} heads of ${config.headDim}, cache size ${size}, backend ${backend.name} (${backend.threads()} threads)\n`);

  const rows: CacheRow[] = [];
  const next = rng(7);
  for (const policy of f.policies as string[]) {
    for (const context of contexts) {
      const cache = makeCache(model, policy, size, f.positions as PositionMode);
      const fill = EVICTION.has(policy) ? Math.min(context, size + 256) : context;
      const t0 = performance.now();
      fillCache(cache, fill);
      const fillS = (performance.now() - t0) / 1000;
      const seen = cache.seen;
      const ms = timeDecode(model, cache, steps, next);
      const b = cache.bytes();
      rows.push({ policy, context, seen, msPerTokenMedian: median(ms), msPerTokenMean: mean(ms), bytesHeld: b.total, bytesPerLayer: b.perLayer[0] });
      log(`  ${policy.padEnd(7)} context ${String(context).padStart(6)} (seen ${seen}, fill ${fillS.toFixed(1)} s): ${median(ms).toFixed(2)} ms/token, ${(b.total / 2 ** 20).toFixed(1)} MiB\n`);
    }
  }

  // FreqKV's compression share: decode one whole compression period from shareContext
  let share: { context: number; tokens: number; compressions: number; compressMs: number; totalMs: number; share: number } | null = null;
  if (shareContext > 0 && (f.policies as string[]).includes('freqkv')) {
    const cache = makeCache(model, 'freqkv', size, 'slot') as FreqKVCache;
    fillCache(cache, shareContext);
    const period = cache.cacheSize - cache.sinks - cache.blockSize;
    const c0 = cache.compressSeconds;
    const n0 = cache.compressions;
    const ms = timeDecode(model, cache, period, next);
    const totalMs = ms.reduce((a, b) => a + b, 0);
    const compressMs = (cache.compressSeconds - c0) * 1000;
    share = { context: shareContext, tokens: period, compressions: cache.compressions - n0, compressMs, totalMs, share: compressMs / totalMs };
  }

  const ratio = (policy: string, a: number, b: number) => {
    const ra = rows.find((r) => r.policy === policy && r.context === a);
    const rb = rows.find((r) => r.policy === policy && r.context === b);
    return ra && rb ? rb.msPerTokenMean / ra.msPerTokenMean : null;
  };
  const hi = contexts[contexts.length - 1];
  const lo = contexts.includes(4096) && hi !== 4096 ? 4096 : contexts[0];
  const summary = { freqkv: ratio('freqkv', lo, hi), full: ratio('full', lo, hi), from: lo, to: hi };

  if (f.svg) {
    const series = (f.policies as string[]).map((p) => ({
      name: p,
      points: rows.filter((r) => r.policy === p).map((r) => [r.context, r.msPerTokenMedian] as [number, number]),
    }));
    await writeFileAtomic(f.svg as string, lineChart(series, { title: `Decode time per token (${layers} layers, cache ${size})`, xLabel: 'context (tokens)', yLabel: 'ms per token (median)', logX: true, logY: true }));
  }
  const meta = { positions: f.positions, hiddenSize: config.hiddenSize, nHeads: config.nHeads, nKVHeads: config.nKVHeads, headDim: config.headDim, cacheSize: size, decodeSteps: steps, backend: backend.name, threads: backend.threads() };
  if (f.json) {
    process.stdout.write(JSON.stringify({ bench: 'cache', ...meta, rows, compressionShare: share, meanRatio: summary }, null, 2) + '\n');
    return;
  }
  const out: string[] = [];
  out.push(`cache policies: ${layers}-layer model (hidden ${config.hiddenSize}, ${config.nHeads}/${config.nKVHeads} heads), cache size/budget ${size}, ${f.positions} positions for eviction, ${steps} decode steps per point, ${backend.name} kernels x${backend.threads()}`);
  out.push('policy   context     seen  ms/token (median)  ms/token (mean)  MiB held  KiB/layer');
  for (const r of rows) {
    out.push(
      `${r.policy.padEnd(7)} ${String(r.context).padStart(8)} ${String(r.seen).padStart(8)} ${r.msPerTokenMedian.toFixed(2).padStart(18)} ${r.msPerTokenMean.toFixed(2).padStart(16)} ${(r.bytesHeld / 2 ** 20).toFixed(1).padStart(9)} ${(r.bytesPerLayer / 1024).toFixed(0).padStart(10)}`,
    );
  }
  if (summary.freqkv !== null) out.push(`freqkv mean ms/token at ${hi} / at ${lo}: ${summary.freqkv.toFixed(3)}x (target <= 1.15x)`);
  if (summary.full !== null) out.push(`full   mean ms/token at ${hi} / at ${lo}: ${summary.full.toFixed(3)}x`);
  if (share) {
    out.push(
      `freqkv compression share at ${share.context}: ${(share.share * 100).toFixed(2)}% of ${(share.totalMs / 1000).toFixed(1)} s decoding ${share.tokens} tokens (${share.compressions} compression(s), ${share.compressMs.toFixed(1)} ms; paper: 0.64%)`,
    );
  }
  out.push('(timings on a shared machine are noisy; see the header of bench/cache.ts for how contexts are reached)');
  process.stdout.write(out.join('\n') + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  });
}
