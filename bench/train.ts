// `npm run bench -- train`: training throughput of the engine in src/train/ (forward, backward,
// AdamW) on random tokens, for the 4.3M-parameter configuration of issue 5 (hidden 256,
// 4 layers, 4 heads, SwiGLU 688, vocabulary 4096 tied: 4.2M parameters; sequence 128, batch 8)
// and for the shipped model's configuration when it exists. Prints tokens/s, the share of time
// in matrix products, and the achieved GFLOP/s next to the matmul peak measured in this run.
//
// FLOPs counted: 6 per parameter of every matrix product per token (forward 2, backward 4; the
// tied lm head counts once, the embedding lookup not at all) plus causal attention,
// 12·(T+1)/2·qDim per token and layer (q·kᵀ and p·v, forward and backward, over the keys a
// causal query actually sees).
import { type FlagSpec, helpText, parseArgs } from '../src/cli/args.js';
import { getBackend } from '../src/kernels/index.js';
import type { Backend } from '../src/kernels/backend.js';
import { rng, tinyConfig } from '../src/model/random.js';
import { readConfig } from '../src/model/loader.js';
import { findShippedModel } from '../src/model/shipped.js';
import type { LlamaConfig } from '../src/model/types.js';
import { AdamW } from '../src/train/adamw.js';
import { initModel } from '../src/train/init.js';
import { trainStep } from '../src/train/loop.js';
import { TrainableModel } from '../src/train/model.js';
import type { Batcher } from '../src/train/batcher.js';
import { timedBackend } from './runtime.js';
import { benchArray, fmt, formatTable } from './util.js';

const flags: Record<string, FlagSpec> = {
  steps: { kind: 'int', default: 10, min: 1, help: 'timed optimiser steps per configuration' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  batch: { kind: 'int', default: 8, min: 1, help: 'sequences per step (4.3M configuration)' },
  'seq-len': { kind: 'int', default: 128, min: 2, help: 'tokens per sequence (4.3M configuration)' },
  shipped: { kind: 'bool', default: true, help: "also time the shipped model's configuration (when it is installed)" },
  json: { kind: 'bool', default: false, help: 'print one JSON object' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

/** The 4.3M-parameter comparison configuration (jax-js measured 881 tokens/s on it with 2 threads). */
export function bench4mConfig(): LlamaConfig {
  return tinyConfig({ vocabSize: 4096, hiddenSize: 256, intermediateSize: 688, nLayers: 4, nHeads: 4, nKVHeads: 4, maxPositionEmbeddings: 128, tieWordEmbeddings: true });
}

/** Parameters of the matrix products (the tied head counted once) and all parameters. */
function paramCounts(c: LlamaConfig): { matmul: number; total: number } {
  const d = c.hiddenSize;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKVHeads * c.headDim;
  const layer = d * qDim * 2 + d * kvDim * 2 + 3 * d * c.intermediateSize;
  const head = c.vocabSize * d;
  const norms = (2 * c.nLayers + 1) * d + (c.attentionBias ? c.nLayers * (qDim + 2 * kvDim) : 0);
  return { matmul: c.nLayers * layer + head, total: c.nLayers * layer + head + (c.tieWordEmbeddings ? 0 : head) + norms };
}

/** FLOPs of one training token (see the header). */
export function flopsPerToken(c: LlamaConfig, T: number): number {
  return 6 * paramCounts(c).matmul + c.nLayers * 12 * ((T + 1) / 2) * c.nHeads * c.headDim;
}

/** Random token windows, a new batch every step. */
class RandomBatcher implements Batcher {
  constructor(readonly batch: number, readonly seqLen: number, private readonly vocab: number) {}
  fill(out: Int32Array, step: number, micro: number): void {
    const r = rng(7919 * step + micro + 1);
    for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * this.vocab);
  }
}

/** Best GFLOP/s of a square matmul of size n (the kernel peak, measured now on this machine). */
function matmulPeak(be: Backend, n: number, seconds = 0.5): number {
  const a = benchArray(n * n, 1), b = benchArray(n * n, 2), c = new Float32Array(n * n);
  be.matmul(c, a, b, n, n, n);
  let best = Infinity;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    be.matmul(c, a, b, n, n, n);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * n * n * n) / (best / 1000) / 1e9;
}

interface Row {
  name: string;
  params: number;
  batch: number;
  seqLen: number;
  tokPerSec: number;
  /** Median and best step time. */
  msPerStep: number;
  bestMs: number;
  gflops: number;
  matmulShare: number;
  loss: number;
}

function timeTraining(name: string, c: LlamaConfig, batch: number, seqLen: number, steps: number, be: Backend): Row {
  const ms = { 'matrix products': 0, attention: 0, 'other kernels': 0 };
  const timed = timedBackend(be, ms);
  const model = initModel(c, 1);
  const tm = new TrainableModel(model, { batch, seqLen, backend: timed });
  const opt = new AdamW(tm.trainable());
  const batcher = new RandomBatcher(batch, seqLen, c.vocabSize);
  const windows = new Int32Array(batch * (seqLen + 1));
  const trainable = tm.trainable();
  const schedule = { kind: 'constant' as const, lr: 1e-3, warmup: 0, steps };
  trainStep(tm, batcher, opt, trainable, windows, 0, 1, schedule, 1); // warm-up: JIT, page faults
  const times: number[] = [];
  let loss = NaN;
  ms['matrix products'] = 0;
  for (let s = 1; s <= steps; s++) {
    const t0 = performance.now();
    loss = trainStep(tm, batcher, opt, trainable, windows, s, 1, schedule, 1).loss;
    times.push(performance.now() - t0);
  }
  const total = times.reduce((a, b) => a + b, 0);
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1];
  const tokens = batch * seqLen;
  return {
    name, params: paramCounts(c).total, batch, seqLen, tokPerSec: tokens / (median / 1000), msPerStep: median, bestMs: times[0],
    gflops: (flopsPerToken(c, seqLen) * tokens) / (median / 1000) / 1e9, matmulShare: ms['matrix products'] / total, loss,
  };
}

export async function run(args: string[]): Promise<void> {
  const { flags: f } = parseArgs(args, flags, 'bench train');
  if (f.help) {
    process.stdout.write(`usage: npm run bench -- train [flags]\n\n${helpText(flags)}\n`);
    return;
  }
  const be = getBackend();
  if (f.threads !== undefined) be.setThreads(f.threads as number);
  const steps = f.steps as number;
  const peak = Math.max(matmulPeak(be, 512), matmulPeak(be, 256));
  const rows: Row[] = [timeTraining('4.3M (issue 5)', bench4mConfig(), f.batch as number, f['seq-len'] as number, steps, be)];
  const shippedDir = f.shipped ? findShippedModel() : null;
  if (shippedDir) {
    const c = await readConfig(shippedDir);
    rows.push(timeTraining('shipped', c, 8, c.maxPositionEmbeddings, Math.max(2, Math.ceil(steps / 2)), be));
  }
  const jaxjs = 881;
  if (f.json) {
    process.stdout.write(JSON.stringify({ backend: be.name, threads: be.threads(), matmulPeakGflops: peak, jaxjsTokPerSec: jaxjs, rows }, null, 2) + '\n');
    return;
  }
  process.stdout.write(`train: backend ${be.name}, ${be.threads()} thread(s); matmul peak ${fmt(peak)} GFLOP/s (best square 256/512 product, this run); ` +
    `median of ${steps} steps after one warm-up (best in brackets); the machine is shared, timings are noisy\n\n`);
  const header = ['configuration', 'params', 'batch x seq', 'ms/step', 'tokens/s', 'GFLOP/s', 'of peak', 'in matmul', 'vs jax-js 881'];
  const table = rows.map((r) => [
    r.name, `${(r.params / 1e6).toFixed(2)}M`, `${r.batch} x ${r.seqLen}`, `${fmt(r.msPerStep, 0)} (${fmt(r.bestMs, 0)})`,
    `${fmt(r.tokPerSec, 0)} (${fmt((r.batch * r.seqLen) / (r.bestMs / 1000), 0)})`, fmt(r.gflops, 1),
    `${fmt((100 * r.gflops) / peak, 0)}%`, `${fmt(100 * r.matmulShare, 0)}%`, r.name.startsWith('4.3M') ? `${fmt(r.tokPerSec / jaxjs, 2)}x (goal 3x)` : '',
  ]);
  process.stdout.write(formatTable(header, table));
}
