// LoRA (Hu et al. 2021): a frozen Linear W [out, in] gets a trainable low-rank update,
//   y = x·Wᵀ + (alpha/rank)·(x·Aᵀ)·Bᵀ,   A [rank, in], B [out, rank],
// with A random and B zero at the start, so training starts from the base model exactly.
// Merging for export: W' = W + (alpha/rank)·B·A, and the model has the base architecture again.
import { getBackend } from '../kernels/index.js';
import type { Backend } from '../kernels/backend.js';
import { randomArray, rng } from '../model/random.js';
import type { LayerWeights, Model } from '../model/types.js';
import type { Param } from './params.js';

export const LORA_TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraSpec {
  rank: number;
  alpha: number;
  targets: LoraTarget[];
}

export interface LoraAdapter {
  layer: number;
  target: LoraTarget;
  inDim: number;
  outDim: number;
  rank: number;
  /** alpha / rank. */
  scale: number;
  a: Param; // [rank, in]
  b: Param; // [out, rank]
}

/** The weight field, HF module path and [out, in] of each target projection. */
export function targetInfo(model: Model, target: LoraTarget): { field: keyof LayerWeights; module: string; outDim: number; inDim: number } {
  const c = model.config;
  const d = c.hiddenSize;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKVHeads * c.headDim;
  const ff = c.intermediateSize;
  switch (target) {
    case 'q': return { field: 'wq', module: 'self_attn.q_proj', outDim: qDim, inDim: d };
    case 'k': return { field: 'wk', module: 'self_attn.k_proj', outDim: kvDim, inDim: d };
    case 'v': return { field: 'wv', module: 'self_attn.v_proj', outDim: kvDim, inDim: d };
    case 'o': return { field: 'wo', module: 'self_attn.o_proj', outDim: d, inDim: qDim };
    case 'gate': return { field: 'wGate', module: 'mlp.gate_proj', outDim: ff, inDim: d };
    case 'up': return { field: 'wUp', module: 'mlp.up_proj', outDim: ff, inDim: d };
    case 'down': return { field: 'wDown', module: 'mlp.down_proj', outDim: d, inDim: ff };
  }
}

export function validateLoraSpec(spec: LoraSpec): void {
  if (!Number.isInteger(spec.rank) || spec.rank < 1) throw new RangeError(`lora rank: expected a positive integer, got ${spec.rank}`);
  if (!(spec.alpha > 0)) throw new RangeError(`lora alpha: expected a positive number, got ${spec.alpha}`);
  if (spec.targets.length === 0) throw new RangeError('lora targets: expected at least one of ' + LORA_TARGETS.join(', '));
  for (const t of spec.targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new RangeError(`lora targets: unknown target "${t}" (expected ${LORA_TARGETS.join(', ')})`);
  }
}

/**
 * Fresh adapters for every layer and target: A uniform in ±1/sqrt(in) (PyTorch's Linear
 * default, as PEFT uses), B zero. Deterministic for a seed. Order: layer, then target.
 */
export function createLora(model: Model, spec: LoraSpec, seed: number): LoraAdapter[] {
  validateLoraSpec(spec);
  const next = rng(seed);
  const out: LoraAdapter[] = [];
  for (let l = 0; l < model.config.nLayers; l++) {
    for (const target of LORA_TARGETS) {
      if (!spec.targets.includes(target)) continue;
      const { module, outDim, inDim } = targetInfo(model, target);
      const name = `model.layers.${l}.${module}`;
      const r = spec.rank;
      const aData = randomArray(r * inDim, 1 / Math.sqrt(inDim), next);
      out.push({
        layer: l, target, inDim, outDim, rank: r, scale: spec.alpha / r,
        a: { name: `${name}.lora_A.weight`, shape: [r, inDim], data: aData, grad: new Float32Array(r * inDim), decay: true },
        b: { name: `${name}.lora_B.weight`, shape: [outDim, r], data: new Float32Array(outDim * r), grad: new Float32Array(outDim * r), decay: true },
      });
    }
  }
  return out;
}

/**
 * A copy of the model with every adapter merged, W' = W + scale·B·A; weights without an
 * adapter are shared with the input, not copied. Tied embeddings stay tied.
 */
export function mergeLora(model: Model, adapters: readonly LoraAdapter[], be: Backend = getBackend()): Model {
  const layers = model.weights.layers.map((L) => ({ ...L }));
  for (const ad of adapters) {
    const { field } = targetInfo(model, ad.target);
    const L = layers[ad.layer];
    const merged = Float32Array.from(L[field] as Float32Array);
    const sb = new Float32Array(ad.b.data.length);
    for (let i = 0; i < sb.length; i++) sb[i] = ad.scale * ad.b.data[i];
    be.matmul(merged, sb, ad.a.data, ad.outDim, ad.inDim, ad.rank, { accumulate: true }); // W += (s·B)[out, r]·A[r, in]
    L[field] = merged;
  }
  return { config: model.config, weights: { ...model.weights, layers } };
}
