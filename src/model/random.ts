// Seeded random models for tests and benchmarks: no file, no download, same weights for the
// same seed on every machine.
import type { LayerWeights, LlamaConfig, Model } from './types.js';

/** mulberry32: a tiny, fast, seedable PRNG returning floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Float32Array of n values uniform in [-scale, scale). */
export function randomArray(n: number, scale: number, next: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (next() * 2 - 1) * scale;
  return a;
}

/** A small Llama configuration; override any field. */
export function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  const base: LlamaConfig = {
    architecture: 'LlamaForCausalLM',
    vocabSize: 64,
    hiddenSize: 32,
    intermediateSize: 48,
    nLayers: 2,
    nHeads: 4,
    nKVHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: false,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  const c = { ...base, ...overrides };
  if (overrides.headDim === undefined) c.headDim = c.hiddenSize / c.nHeads;
  return c;
}

/** Random weights with roughly unit-variance activations (uniform, scaled by 1/sqrt(fan-in)). */
export function randomModel(config: LlamaConfig, seed = 1): Model {
  const next = rng(seed);
  const d = config.hiddenSize;
  const qDim = config.nHeads * config.headDim;
  const kvDim = config.nKVHeads * config.headDim;
  const ff = config.intermediateSize;
  const lin = (out: number, inp: number) => randomArray(out * inp, Math.sqrt(3 / inp), next);
  const norm = () => {
    const w = new Float32Array(d);
    for (let i = 0; i < d; i++) w[i] = 1 + (next() * 2 - 1) * 0.1;
    return w;
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    layers.push({
      attnNorm: norm(),
      wq: lin(qDim, d),
      wk: lin(kvDim, d),
      wv: lin(kvDim, d),
      wo: lin(d, qDim),
      bq: config.attentionBias ? randomArray(qDim, 0.1, next) : null,
      bk: config.attentionBias ? randomArray(kvDim, 0.1, next) : null,
      bv: config.attentionBias ? randomArray(kvDim, 0.1, next) : null,
      mlpNorm: norm(),
      wGate: lin(ff, d),
      wUp: lin(ff, d),
      wDown: lin(d, ff),
    });
  }
  const embed = randomArray(config.vocabSize * d, 1, next);
  const lmHead = config.tieWordEmbeddings ? embed : lin(config.vocabSize, d);
  return { config, weights: { embed, layers, norm: norm(), lmHead } };
}
