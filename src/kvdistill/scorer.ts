// The KV-Distill token scorer and the selection it drives (KVDISTILL.md part 1).
//
//   hn = h / rms(h)                       frozen hidden states after `scoreLayer` layers, [n, d]
//   z = relu(hn·W1ᵀ + b1)                 [n, d]
//   s = z·W2ᵀ + b2                        [n]
// Selection: the first `sinks` tokens always, plus the top k = ceil(r·n) of the others by s
// (ours: k counts only the non-sink tokens kept, capped at what is there), the same indices in
// every layer, in position order. Ties go to the earlier token, so selection is deterministic.
//
// Ours: the parameter-free RMS normalisation of hn. The residual stream of a real model has
// a scale that grows with depth and varies by token (massive activations on sinks); without it
// the FFN's input scale is whatever the layer happens to produce.
import type { Backend } from '../kernels/backend.js';
import { randomArray, rng } from '../model/random.js';
import type { Param } from '../train/params.js';
import { addBias, biasBackward } from '../train/ops.js';

export const DEFAULT_SINKS = 4;
/** Initial output bias: sigmoid(3) ≈ 0.95, so the training-time log-sigmoid logit bias starts near 0 (ours). */
export const SCORER_INIT_BIAS = 3;

export interface Scorer {
  d: number;
  w1: Param; // [d, d]
  b1: Param; // [d]
  w2: Param; // [1, d]
  b2: Param; // [1]
}

/** What scorerForward keeps for its backward. */
export interface ScorerActs {
  n: number;
  hn: Float32Array; // [n, d]
  z: Float32Array; // relu output [n, d]
  scores: Float32Array; // [n]
}

/** Paper: layer 6 of 32; ours: about a fifth of the depth, at least 1 (hidden states after that many layers). */
export function defaultScoreLayer(nLayers: number): number {
  return Math.min(nLayers, Math.max(1, Math.round(nLayers / 5)));
}

/** A fresh scorer: PyTorch Linear initialisation (uniform ±1/sqrt(fan-in)), b2 = SCORER_INIT_BIAS. */
export function createScorer(d: number, seed: number): Scorer {
  const next = rng(seed);
  const p = (name: string, shape: number[], data: Float32Array, decay: boolean): Param => ({ name, shape, data, grad: new Float32Array(data.length), decay });
  const bound = 1 / Math.sqrt(d);
  return {
    d,
    w1: p('scorer.0.weight', [d, d], randomArray(d * d, bound, next), true),
    b1: p('scorer.0.bias', [d], randomArray(d, bound, next), false),
    w2: p('scorer.2.weight', [1, d], randomArray(d, bound, next), true),
    b2: p('scorer.2.bias', [1], Float32Array.of(SCORER_INIT_BIAS), false),
  };
}

export function scorerParams(s: Scorer): Param[] {
  return [s.w1, s.b1, s.w2, s.b2];
}

/** Scores [n] of the hidden states h [n, d]. */
export function scorerForward(be: Backend, s: Scorer, h: Float32Array, n: number): ScorerActs {
  const d = s.d;
  const hn = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += h[r * d + i] * h[r * d + i];
    const inv = 1 / Math.sqrt(ss / d + 1e-6);
    for (let i = 0; i < d; i++) hn[r * d + i] = h[r * d + i] * inv;
  }
  const z = new Float32Array(n * d);
  be.matmul(z, hn, s.w1.data, n, d, d, { transB: true });
  addBias(z, s.b1.data, n, d);
  for (let i = 0; i < z.length; i++) if (z[i] < 0) z[i] = 0;
  const scores = new Float32Array(n);
  be.matmul(scores, z, s.w2.data, n, 1, d, { transB: true });
  for (let r = 0; r < n; r++) scores[r] += s.b2.data[0];
  return { n, hn, z, scores };
}

/** Adds ∂/∂(scorer weights) given dScores [n] (the hidden states are frozen: no gradient to them). */
export function scorerBackward(be: Backend, s: Scorer, acts: ScorerActs, dScores: Float32Array): void {
  const { n, hn, z } = acts;
  const d = s.d;
  be.matmul(s.w2.grad!, dScores, z, 1, d, n, { transA: true, accumulate: true }); // dW2 += dsᵀ·z
  let db2 = 0;
  for (let r = 0; r < n; r++) db2 += dScores[r];
  s.b2.grad![0] += db2;
  const dz = new Float32Array(n * d);
  be.matmul(dz, dScores, s.w2.data, n, d, 1, {}); // ds·W2 [n, d]
  for (let i = 0; i < dz.length; i++) if (z[i] <= 0) dz[i] = 0;
  be.matmul(s.w1.grad!, dz, hn, d, d, n, { transA: true, accumulate: true }); // dW1 += dzᵀ·hn
  biasBackward(s.b1.grad!, dz, n, d);
}

/** Non-sink tokens kept for retention r of n context tokens: min(ceil(r·n), n − sinks). */
export function keptCount(n: number, r: number, sinks: number): number {
  if (!(r > 0 && r <= 1)) throw new RangeError(`kvdistill retention: expected a number in (0, 1], got ${r}`);
  const rest = Math.max(0, n - sinks);
  return Math.min(rest, Math.ceil(r * n));
}

/** Selected token indices (sinks + top-k of the rest by score), ascending. */
export function selectTokens(scores: Float32Array, n: number, r: number, sinks = DEFAULT_SINKS): Int32Array {
  const s0 = Math.min(sinks, n);
  const k = keptCount(n, r, s0);
  const rest = Array.from({ length: n - s0 }, (_, i) => i + s0);
  rest.sort((a, b) => scores[b] - scores[a] || a - b);
  const chosen = rest.slice(0, k).sort((a, b) => a - b);
  const out = new Int32Array(s0 + k);
  for (let i = 0; i < s0; i++) out[i] = i;
  out.set(chosen, s0);
  return out;
}
