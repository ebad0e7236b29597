// Initial weights for pretraining from scratch (GPT-2 style): every matrix normal(0, std),
// the two projections that write into the residual stream (o_proj, down_proj) scaled by
// 1/sqrt(2·layers) so the stream's variance does not grow with depth; norms 1, biases 0.
import { rng } from '../model/random.js';
import type { LayerWeights, LlamaConfig, Model } from '../model/types.js';

/** Float32Array of n normal(0, std) values (Box-Muller over a seeded uniform generator). */
export function normalArray(n: number, std: number, next: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - next(); // (0, 1]
    const r = std * Math.sqrt(-2 * Math.log(u));
    const t = 2 * Math.PI * next();
    a[i] = r * Math.cos(t);
    if (i + 1 < n) a[i + 1] = r * Math.sin(t);
  }
  return a;
}

export function initModel(config: LlamaConfig, seed: number, std = 0.02): Model {
  const next = rng(seed);
  const d = config.hiddenSize;
  const qDim = config.nHeads * config.headDim;
  const kvDim = config.nKVHeads * config.headDim;
  const ff = config.intermediateSize;
  const residStd = std / Math.sqrt(2 * config.nLayers);
  const ones = () => new Float32Array(d).fill(1);
  const bias = (n: number) => (config.attentionBias ? new Float32Array(n) : null);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    layers.push({
      attnNorm: ones(),
      wq: normalArray(qDim * d, std, next),
      wk: normalArray(kvDim * d, std, next),
      wv: normalArray(kvDim * d, std, next),
      wo: normalArray(d * qDim, residStd, next),
      bq: bias(qDim),
      bk: bias(kvDim),
      bv: bias(kvDim),
      mlpNorm: ones(),
      wGate: normalArray(ff * d, std, next),
      wUp: normalArray(ff * d, std, next),
      wDown: normalArray(d * ff, residStd, next),
    });
  }
  const embed = normalArray(config.vocabSize * d, std, next);
  const lmHead = config.tieWordEmbeddings ? embed : normalArray(config.vocabSize * d, std, next);
  return { config, weights: { embed, layers, norm: ones(), lmHead } };
}
