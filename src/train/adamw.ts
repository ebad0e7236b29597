// AdamW (Loshchilov & Hutter): Adam on the gradient, plus weight decay applied to the weights
// directly ("decoupled"), as torch.optim.AdamW does:
//   m = b1·m + (1−b1)·g,   v = b2·v + (1−b2)·g²
//   θ = θ·(1 − lr·wd) − lr · (m/(1−b1^t)) / (sqrt(v/(1−b2^t)) + eps)
// Decay only for parameters with decay = true (matrices); norms and biases never.
import type { Param } from './params.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

export class AdamW {
  /** First and second moments per trainable parameter, in the order of `params`. */
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  /** Updates applied so far (the bias-correction exponent). */
  t = 0;

  constructor(readonly params: Param[], readonly opts: AdamWOptions = ADAMW_DEFAULTS) {
    for (const p of params) if (!p.grad) throw new RangeError(`AdamW params: "${p.name}" is frozen (no gradient); pass trainable parameters only`);
    const { beta1, beta2, eps, weightDecay } = opts;
    if (!(beta1 >= 0 && beta1 < 1)) throw new RangeError(`AdamW beta1: expected a number in [0, 1), got ${beta1}`);
    if (!(beta2 >= 0 && beta2 < 1)) throw new RangeError(`AdamW beta2: expected a number in [0, 1), got ${beta2}`);
    if (!(eps > 0)) throw new RangeError(`AdamW eps: expected a positive number, got ${eps}`);
    if (!(weightDecay >= 0)) throw new RangeError(`AdamW weightDecay: expected a number >= 0, got ${weightDecay}`);
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
  }

  /** One update with learning rate lr from the current gradients times gradScale (gradient clipping folded in). */
  step(lr: number, gradScale = 1): void {
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.opts;
    this.t++;
    const c1 = 1 / (1 - Math.pow(b1, this.t));
    const c2 = 1 / (1 - Math.pow(b2, this.t));
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k];
      adamwUpdate(p.data, p.grad!, gradScale, this.m[k], this.v[k], lr, b1, b2, eps, p.decay ? weightDecay : 0, c1, c2);
    }
  }
}

/** The per-element update over one parameter tensor, gradient g·gs (c1, c2: the bias corrections 1/(1−β^t)). */
export function adamwUpdate(w: Float32Array, g: Float32Array, gs: number, m: Float32Array, v: Float32Array, lr: number, b1: number, b2: number, eps: number, wd: number, c1: number, c2: number): void {
  const shrink = 1 - lr * wd;
  const a1 = 1 - b1, a2 = 1 - b2, step = lr * c1;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i] * gs;
    const mi = b1 * m[i] + a1 * gi;
    const vi = b2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * shrink - (step * mi) / (Math.sqrt(vi * c2) + eps);
  }
}
