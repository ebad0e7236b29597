// Forward and backward of the element-wise and row-wise operations of a Llama layer, as small
// pure functions on row-major Float32Arrays. The matrix products go through Backend.matmul
// (see model.ts); everything here is O(rows·cols). The exponentials run in the backend's
// softmax and silu kernels (they dominate otherwise); the rest is TypeScript for now, written
// so that any function can later move into the native addon unchanged.
//
// Convention for backward functions: a gradient flowing into a tensor that has another
// consumer (the residual stream) is ADDED to (`+=`); a gradient into a fresh buffer is
// written (`=`). Each function says which.
import type { Backend } from '../kernels/backend.js';

/** out[r,:] = embed[tokens[r],:]; out is [rows, dim]. */
export function embeddingForward(out: Float32Array, embed: Float32Array, tokens: Int32Array, tokOffset: number, rows: number, dim: number, vocab: number): void {
  for (let r = 0; r < rows; r++) {
    const t = tokens[tokOffset + r];
    if (t < 0 || t >= vocab) throw new RangeError(`embedding tokens: token ${t} at row ${r} is outside the vocabulary [0, ${vocab})`);
    out.set(embed.subarray(t * dim, t * dim + dim), r * dim);
  }
}

/** dEmbed[tokens[r],:] += dOut[r,:]. */
export function embeddingBackward(dEmbed: Float32Array, dOut: Float32Array, tokens: Int32Array, tokOffset: number, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = tokens[tokOffset + r] * dim;
    const g = r * dim;
    for (let i = 0; i < dim; i++) dEmbed[o + i] += dOut[g + i];
  }
}

/** out[r,:] = x[r,:] · rstd[r] · w, rstd[r] = 1/sqrt(mean(x[r,:]²) + eps) is kept for the backward. x, out: [rows, dim]. */
export function rmsnormForward(out: Float32Array, rstd: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const s = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = s;
    for (let i = 0; i < dim; i++) out[o + i] = x[o + i] * s * w[i];
  }
}

/**
 * Backward of rmsnormForward. dx += ∂/∂x (the residual stream already holds the other path),
 * dw += ∂/∂w when dw is not null (frozen norm).
 *   y_i = w_i x_i s,  s = (mean x² + eps)^-1/2  =>  dx_i = s (w_i dy_i − x_i s² mean_j(w_j dy_j x_j))
 */
export function rmsnormBackward(dx: Float32Array, dw: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    const s = rstd[r];
    let dot = 0;
    for (let i = 0; i < dim; i++) dot += w[i] * dy[o + i] * x[o + i];
    const c = (s * s * dot) / dim;
    if (dw) {
      for (let i = 0; i < dim; i++) {
        const xi = x[o + i], gi = dy[o + i];
        dx[o + i] += s * (w[i] * gi - xi * c);
        dw[i] += gi * xi * s;
      }
    } else {
      for (let i = 0; i < dim; i++) dx[o + i] += s * (w[i] * dy[o + i] - x[o + i] * c);
    }
  }
}

/** y[r,:] += b for every row of y [rows, dim]. */
export function addBias(y: Float32Array, b: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    for (let i = 0; i < dim; i++) y[o + i] += b[i];
  }
}

/** db += column sums of dy [rows, dim]. */
export function biasBackward(db: Float32Array, dy: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    for (let i = 0; i < dim; i++) db[i] += dy[o + i];
  }
}

/**
 * SwiGLU, h = silu(gate) · up over n elements. Keeps s = silu(gate) (the native kernel does the
 * exponentials) so that the backward needs none.
 */
export function swigluForward(be: Backend, h: Float32Array, s: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  s.set(gate.subarray(0, n));
  be.silu(s, n);
  multiply(h, s, up, n);
}

/** out[i] = a[i] · b[i], i < n. */
export function multiply(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
}

/** x[i] *= c, i < n. */
export function scale(x: Float32Array, c: number, n: number): void {
  for (let i = 0; i < n; i++) x[i] *= c;
}

/**
 * Backward of swigluForward from s = silu(gate): dUp = dh · s, dGate = dh · up · silu'(gate) with
 * silu'(g) = σ(g) + s·(1 − σ(g)) and σ(g) = s/g (1/2 at g = 0). Both written.
 */
export function swigluBackward(dGate: Float32Array, dUp: Float32Array, dh: Float32Array, gate: Float32Array, up: Float32Array, s: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    const si = s[i];
    const sig = g !== 0 ? si / g : 0.5; // g = 0 is rare: the branch predicts well
    const d = dh[i];
    dUp[i] = d * si;
    dGate[i] = d * up[i] * (sig + si * (1 - sig));
  }
}

/**
 * Softmax cross-entropy over the vocabulary, in place: logits [rows, vocab] become the
 * probabilities, minus 1 at the target when grad (then each row is ∂nll/∂logits). Rows whose
 * target is negative are ignored (zeroed). Returns Σ nll over the counted rows; the caller
 * divides by their count and scales the gradient.
 */
export function softmaxCrossEntropy(be: Backend, logits: Float32Array, targets: Int32Array, tgtOffset: number, rows: number, vocab: number, grad: boolean): number {
  be.softmax(logits, rows, vocab);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    const t = targets[tgtOffset + r];
    if (t < 0) {
      logits.fill(0, o, o + vocab);
      continue;
    }
    if (t >= vocab) throw new RangeError(`cross-entropy targets: token ${t} at row ${r} is outside the vocabulary [0, ${vocab})`);
    total -= Math.log(Math.max(logits[o + t], 1e-45)); // p underflows only past a loss of ~100
    if (grad) logits[o + t] -= 1;
  }
  return total;
}

/**
 * Copies rows src0..src0+n-1 of src [*, heads*hd] into head-major dst [heads, n, hd], times
 * `scale`: the layout change lets every head's attention be plain matmuls. (RoPE runs before,
 * in place on the rows, with the backend's kernel; its backward is the same kernel with
 * inverse = true, a rotation's inverse being its transpose.)
 */
export function gatherHeads(dst: Float32Array, src: Float32Array, src0: number, n: number, heads: number, hd: number, scale = 1): void {
  const width = heads * hd;
  for (let r = 0; r < n; r++) {
    const so = (src0 + r) * width;
    for (let h = 0; h < heads; h++) {
      const s = so + h * hd;
      const d = (h * n + r) * hd;
      for (let i = 0; i < hd; i++) dst[d + i] = src[s + i] * scale;
    }
  }
}

/** The transpose of gatherHeads: head-major src [heads, n, hd] times `scale` into rows dst0.. of dst [*, heads*hd]. */
export function scatterHeads(dst: Float32Array, dst0: number, src: Float32Array, n: number, heads: number, hd: number, scale = 1): void {
  const width = heads * hd;
  for (let r = 0; r < n; r++) {
    const dO = (dst0 + r) * width;
    for (let h = 0; h < heads; h++) {
      const s = (h * n + r) * hd;
      const d = dO + h * hd;
      for (let i = 0; i < hd; i++) dst[d + i] = src[s + i] * scale;
    }
  }
}

/**
 * Softmax over each row of s [nQ, nKV], in place (the logit scale is folded into q), with the
 * causal mask aligned to the end when causal: query i sees keys j <= nKV − nQ + i, and the
 * masked entries come out 0 (they are set to −∞ before the native softmax).
 */
export function maskedSoftmax(be: Backend, s: Float32Array, nQ: number, nKV: number, causal: boolean): void {
  if (causal) {
    if (nQ > nKV) throw new RangeError(`attention nQ: causal attention needs nQ <= nKV (${nKV}), got ${nQ}`);
    for (let i = 0; i < nQ; i++) s.fill(-Infinity, i * nKV + nKV - nQ + i + 1, (i + 1) * nKV);
  }
  be.softmax(s, nQ, nKV);
}

/**
 * Backward of maskedSoftmax, in place: dp [nQ, nKV] (∂/∂p) becomes ∂/∂s = p ∘ (dp − Σ_j p·dp);
 * masked entries become 0.
 */
export function softmaxBackward(dp: Float32Array, p: Float32Array, nQ: number, nKV: number, causal: boolean): void {
  for (let i = 0; i < nQ; i++) {
    const o = i * nKV;
    const last = causal ? nKV - nQ + i : nKV - 1;
    let dot = 0;
    for (let j = 0; j <= last; j++) dot += p[o + j] * dp[o + j];
    for (let j = 0; j <= last; j++) dp[o + j] = p[o + j] * (dp[o + j] - dot);
    dp.fill(0, o + last + 1, o + nKV);
  }
}
