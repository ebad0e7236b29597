// `npm run bench -- runtime`: prefill and decode speed of a 100M-parameter Llama with random
// weights (12 layers, hidden 768, 12 heads / 4 KV heads, intermediate 2048, vocabulary 32000)
// at a context of 512 tokens, with the share of time spent in matrix products, attention and
// everything else (measured by wrapping every kernel of the backend with a timer).
import { pathToFileURL } from 'node:url';
import { type FlagSpec, helpText, parseArgs } from '../src/cli/args.js';
import type { Backend } from '../src/kernels/backend.js';
import { getBackend } from '../src/kernels/index.js';
import { createCache } from '../src/cache/factory.js';
import { forward } from '../src/model/forward.js';
import { argmax } from '../src/model/sampler.js';
import { randomModel, rng, tinyConfig } from '../src/model/random.js';
import { modelSummary } from '../src/model/loader.js';
import type { LlamaConfig } from '../src/model/types.js';

const flags: Record<string, FlagSpec> = {
  context: { kind: 'int', default: 512, min: 1, help: 'prompt tokens in the prefill; decoding continues from there' },
  decode: { kind: 'int', default: 32, min: 1, help: 'decode steps timed after the prefill' },
  layers: { kind: 'int', default: 12, min: 1, help: 'transformer layers (fewer for a quick look)' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  json: { kind: 'bool', default: false, help: 'print one JSON object' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

/** The benchmark model: Llama with tied embeddings, 100.1M parameters with 12 layers (the untied head would add 24.6M, not compute). */
export function benchConfig(layers = 12): LlamaConfig {
  return tinyConfig({
    vocabSize: 32000,
    hiddenSize: 768,
    intermediateSize: 2048,
    nLayers: layers,
    nHeads: 12,
    nKVHeads: 4,
    headDim: 64,
    maxPositionEmbeddings: 2048,
    tieWordEmbeddings: true,
  });
}

type Category = 'matrix products' | 'attention' | 'other kernels';
const CATEGORY: Record<string, Category> = { matmul: 'matrix products', matvec: 'matrix products', attention: 'attention' };

/** The backend with each kernel call timed into `ms` by category. */
export function timedBackend(inner: Backend, ms: Record<Category, number>): Backend {
  const timed = <A extends unknown[]>(name: string, fn: (...a: A) => void) => (...a: A): void => {
    const t0 = performance.now();
    fn(...a);
    ms[CATEGORY[name] ?? 'other kernels'] += performance.now() - t0;
  };
  return {
    name: inner.name,
    threads: () => inner.threads(),
    setThreads: (n) => inner.setThreads(n),
    matmul: timed('matmul', inner.matmul.bind(inner)),
    matvec: timed('matvec', inner.matvec.bind(inner)),
    rmsnorm: timed('rmsnorm', inner.rmsnorm.bind(inner)),
    rope: timed('rope', inner.rope.bind(inner)),
    softmax: timed('softmax', inner.softmax.bind(inner)),
    swiglu: timed('swiglu', inner.swiglu.bind(inner)),
    silu: timed('silu', inner.silu.bind(inner)),
    attention: timed('attention', inner.attention.bind(inner)),
    dct: timed('dct', inner.dct.bind(inner)),
  };
}

interface Phase {
  tokens: number;
  ms: number;
  tokensPerSecond: number;
  /** Share of the phase's wall time, in [0, 1]; 'rest' = other kernels + everything outside kernels. */
  share: { matrixProducts: number; attention: number; rest: number };
}

function phase(tokens: number, ms: number, k: Record<Category, number>): Phase {
  const matrixProducts = k['matrix products'] / ms;
  const attention = k.attention / ms;
  return { tokens, ms, tokensPerSecond: (tokens * 1000) / ms, share: { matrixProducts, attention, rest: 1 - matrixProducts - attention } };
}

const zero = (): Record<Category, number> => ({ 'matrix products': 0, attention: 0, 'other kernels': 0 });

export async function run(args: string[]): Promise<void> {
  const { flags: f } = parseArgs(args, flags, 'bench runtime');
  if (f.help) {
    process.stdout.write(`usage: npm run bench -- runtime [flags]\n\n${helpText(flags)}\n`);
    return;
  }
  const context = f.context as number;
  const steps = f.decode as number;
  const config = benchConfig(f.layers as number);
  const inner = getBackend();
  if (f.threads !== undefined) inner.setThreads(f.threads as number);
  const ms = zero();
  const backend = timedBackend(inner, ms);
  const model = randomModel(config, 1);
  const params = modelSummary(model).parameters;
  const next = rng(7);
  const prompt = Array.from({ length: context }, () => Math.floor(next() * config.vocabSize));

  // a short warm-up so the first timed call does not pay for JIT compilation and page faults
  forward(model, prompt.slice(0, 8), createCache(config, { backend }), { backend });

  const cache = createCache(config, { backend });
  const out = new Float32Array(config.vocabSize);
  Object.assign(ms, zero());
  let t0 = performance.now();
  forward(model, prompt, cache, { backend, out });
  const prefill = phase(context, performance.now() - t0, ms);

  Object.assign(ms, zero());
  let token = argmax(out);
  t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    forward(model, [token], cache, { backend, out });
    token = argmax(out);
  }
  const decode = phase(steps, performance.now() - t0, ms);

  const result = {
    model: { layers: config.nLayers, hidden: config.hiddenSize, heads: config.nHeads, kvHeads: config.nKVHeads, intermediate: config.intermediateSize, vocab: config.vocabSize, parameters: params },
    backend: inner.name,
    threads: inner.threads(),
    context,
    prefill,
    decode,
  };
  if (f.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const pct = (x: number) => `${(100 * x).toFixed(1).padStart(5)}%`;
  const row = (name: string, p: Phase) =>
    `${name.padEnd(8)} ${String(p.tokens).padStart(6)} ${p.tokensPerSecond.toFixed(1).padStart(10)} ${pct(p.share.matrixProducts)} ${pct(p.share.attention)} ${pct(p.share.rest)}`;
  process.stdout.write(
    [
      `runtime: Llama, ${(params / 1e6).toFixed(1)}M params (${config.nLayers} layers, hidden ${config.hiddenSize}, ` +
        `${config.nHeads}/${config.nKVHeads} heads, ff ${config.intermediateSize}, vocab ${config.vocabSize}), random weights`,
      `backend ${inner.name}, ${inner.threads()} thread(s); prefill ${context} tokens, then ${steps} decode steps at context ${context}..${context + steps}`,
      '',
      'phase    tokens   tokens/s matmul  attn   rest',
      row('prefill', prefill),
      row('decode', decode),
      '',
    ].join('\n'),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`bench runtime: ${err instanceof Error ? err.message : err}\n`);
    process.exit(1);
  });
}
