// The parameters the optimiser sees: every weight of the model under its Hugging Face tensor
// name, plus LoRA adapters, each either trainable (with a gradient buffer) or frozen.
import { hfTensorSlots, weightAt } from '../model/loader.js';
import type { Model } from '../model/types.js';

export interface Param {
  /** Hugging Face tensor name, e.g. "model.layers.0.self_attn.q_proj.weight". */
  name: string;
  shape: number[];
  /** The live values (shared with the Model's weights or the LoRA adapter). */
  data: Float32Array;
  /** Gradient, same length as data; null when the parameter is frozen. */
  grad: Float32Array | null;
  /** AdamW weight decay applies: matrices yes; norms and biases never. */
  decay: boolean;
}

/** Groups of base weights that can be made fully trainable. */
export const PARAM_GROUPS = ['all', 'embed', 'norm', 'lm_head'] as const;
export type ParamGroup = (typeof PARAM_GROUPS)[number];

/** Which group a base weight belongs to, for the trainable/frozen choice. */
function groupOf(name: string): 'embed' | 'norm' | 'lm_head' | 'other' {
  if (name === 'model.embed_tokens.weight') return 'embed';
  if (name === 'lm_head.weight') return 'lm_head';
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return 'norm';
  return 'other';
}

/**
 * All base weights of `model` as Params, in a fixed order (the checkpoint order). A weight is
 * trainable when its group is listed or 'all' is. Tied embeddings are one parameter
 * ("model.embed_tokens.weight"), trainable when 'embed' or 'lm_head' is listed.
 */
export function baseParams(model: Model, groups: readonly ParamGroup[]): Param[] {
  const c = model.config;
  return hfTensorSlots(c).map((slot) => {
    const data = weightAt(model.weights, slot.key);
    const n = slot.shape.reduce((a, b) => a * b, 1);
    if (!data || data.length !== n) {
      throw new RangeError(`${slot.name}: expected ${n} values for shape [${slot.shape.join(', ')}], got ${data ? data.length : 'none'}`);
    }
    const g = groupOf(slot.name);
    const trainable = groups.includes('all') || (g !== 'other' && groups.includes(g)) ||
      (c.tieWordEmbeddings && g === 'embed' && groups.includes('lm_head'));
    return { name: slot.name, shape: slot.shape, data, grad: trainable ? new Float32Array(n) : null, decay: slot.shape.length === 2 };
  });
}

/** Σ of trainable sizes, and of all sizes. */
export function countParams(params: readonly Param[]): { trainable: number; total: number } {
  let trainable = 0;
  let total = 0;
  for (const p of params) {
    total += p.data.length;
    if (p.grad) trainable += p.data.length;
  }
  return { trainable, total };
}

export function zeroGrads(params: readonly Param[]): void {
  for (const p of params) p.grad?.fill(0);
}

/** sqrt(Σ grad²) over the trainable parameters, accumulated in float64. */
export function gradNorm(params: readonly Param[]): number {
  let ss = 0;
  for (const p of params) {
    const g = p.grad;
    if (!g) continue;
    for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  }
  return Math.sqrt(ss);
}

/**
 * Global-norm clipping factor: min(1, maxNorm/norm) for the norm of all gradients (maxNorm <= 0
 * disables clipping). The optimiser multiplies the gradients by it as it reads them.
 */
export function clipFactor(norm: number, maxNorm: number): number {
  return maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}
