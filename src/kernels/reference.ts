// Plain TypeScript kernels: the correctness oracle the native kernels are tested against, and
// the path used where the addon could not be built. Written for clarity, not speed; float64
// accumulators so that they are a trustworthy oracle at float32 tolerance.
import { type AttentionArgs, type Backend, type MatmulOptions, checkDims, checkLength } from './backend.js';

export function matmul(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number, opts: MatmulOptions = {}): void {
  checkDims({ M, N, K });
  checkLength('matmul c', c, M * N, `[${M}, ${N}]`);
  checkLength('matmul a', a, M * K, opts.transA ? `[${K}, ${M}]` : `[${M}, ${K}]`);
  checkLength('matmul b', b, K * N, opts.transB ? `[${N}, ${K}]` : `[${K}, ${N}]`);
  const { transA = false, transB = false, accumulate = false } = opts;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) {
        const av = transA ? a[p * M + i] : a[i * K + p];
        const bv = transB ? b[j * K + p] : b[p * N + j];
        s += av * bv;
      }
      c[i * N + j] = accumulate ? c[i * N + j] + s : s;
    }
  }
}

export function matvec(y: Float32Array, w: Float32Array, x: Float32Array, rows: number, cols: number): void {
  checkDims({ rows, cols });
  checkLength('matvec y', y, rows, `[${rows}]`);
  checkLength('matvec w', w, rows * cols, `[${rows}, ${cols}]`);
  checkLength('matvec x', x, cols, `[${cols}]`);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * cols;
    for (let j = 0; j < cols; j++) s += w[o + j] * x[j];
    y[r] = s;
  }
}

export function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void {
  checkDims({ rows, dim });
  checkLength('rmsnorm out', out, rows * dim, `[${rows}, ${dim}]`);
  checkLength('rmsnorm x', x, rows * dim, `[${rows}, ${dim}]`);
  checkLength('rmsnorm weight', weight, dim, `[${dim}]`);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = x[o + i] * inv * weight[i];
  }
}

export function rope(x: Float32Array, rows: number, heads: number, headDim: number, positions: Int32Array, invFreq: Float32Array, inverse: boolean): void {
  checkDims({ rows, heads, headDim });
  if (headDim % 2 !== 0) throw new RangeError(`rope headDim: expected an even number, got ${headDim}`);
  const half = headDim / 2;
  checkLength('rope x', x, rows * heads * headDim, `[${rows}, ${heads * headDim}]`);
  checkLength('rope positions', positions, rows, `[${rows}]`);
  checkLength('rope invFreq', invFreq, half, `[${half}]`);
  const sign = inverse ? -1 : 1;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[r] * invFreq[i];
      const cos = Math.cos(angle);
      const sin = sign * Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const o = (r * heads + h) * headDim;
        const x0 = x[o + i];
        const x1 = x[o + i + half];
        x[o + i] = x0 * cos - x1 * sin;
        x[o + i + half] = x1 * cos + x0 * sin;
      }
    }
  }
}

export function softmax(x: Float32Array, rows: number, cols: number): void {
  checkDims({ rows, cols });
  checkLength('softmax x', x, rows * cols, `[${rows}, ${cols}]`);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let m = -Infinity;
    for (let j = 0; j < cols; j++) m = Math.max(m, x[o + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(x[o + j] - m);
      x[o + j] = e;
      s += e;
    }
    for (let j = 0; j < cols; j++) x[o + j] /= s;
  }
}

export function silu(x: Float32Array, n: number): void {
  checkLength('silu x', x, n, `[${n}]`);
  for (let i = 0; i < n; i++) x[i] = x[i] / (1 + Math.exp(-x[i]));
}

export function swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  checkLength('swiglu out', out, n, `[${n}]`);
  checkLength('swiglu gate', gate, n, `[${n}]`);
  checkLength('swiglu up', up, n, `[${n}]`);
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

export function attention(out: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, args: AttentionArgs): void {
  const { nQ, nKV, nHeads, nKVHeads, headDim, scale, causal } = args;
  checkDims({ nQ, nKV, nHeads, nKVHeads, headDim });
  if (nKVHeads === 0 || nHeads % nKVHeads !== 0) {
    throw new RangeError(`attention nHeads: expected a multiple of nKVHeads (${nKVHeads}), got ${nHeads}`);
  }
  if (causal && nQ > nKV) throw new RangeError(`attention nQ: causal attention needs nQ <= nKV (${nKV}), got ${nQ}`);
  const qDim = nHeads * headDim;
  const kvDim = nKVHeads * headDim;
  checkLength('attention out', out, nQ * qDim, `[${nQ}, ${qDim}]`);
  checkLength('attention q', q, nQ * qDim, `[${nQ}, ${qDim}]`);
  checkLength('attention k', k, nKV * kvDim, `[${nKV}, ${kvDim}]`);
  checkLength('attention v', v, nKV * kvDim, `[${nKV}, ${kvDim}]`);
  const scores = args.scores;
  const from = args.scoresFromQuery ?? 0;
  if (scores) checkLength('attention scores', scores, nKVHeads * nKV, `[${nKVHeads}, ${nKV}]`);
  const group = nHeads / nKVHeads;
  const p = new Float64Array(nKV);
  for (let i = 0; i < nQ; i++) {
    const last = causal ? nKV - nQ + i : nKV - 1;
    for (let h = 0; h < nHeads; h++) {
      const kh = Math.floor(h / group);
      const qo = i * qDim + h * headDim;
      let m = -Infinity;
      for (let j = 0; j <= last; j++) {
        const ko = j * kvDim + kh * headDim;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qo + d] * k[ko + d];
        p[j] = s * scale;
        if (p[j] > m) m = p[j];
      }
      let sum = 0;
      for (let j = 0; j <= last; j++) {
        p[j] = Math.exp(p[j] - m);
        sum += p[j];
      }
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        for (let j = 0; j <= last; j++) acc += p[j] * v[j * kvDim + kh * headDim + d];
        out[qo + d] = last >= 0 ? acc / sum : 0;
      }
      if (scores && i >= from) {
        for (let j = 0; j <= last; j++) scores[kh * nKV + j] += p[j] / sum;
      }
    }
  }
}

/** Orthonormal DCT-II (or its inverse, DCT-III) along axis 0, straight from the definition. O(n²·channels). */
export function dct(out: Float32Array, x: Float32Array, n: number, channels: number, inverse: boolean): void {
  checkDims({ n, channels });
  checkLength('dct out', out, n * channels, `[${n}, ${channels}]`);
  checkLength('dct x', x, n * channels, `[${n}, ${channels}]`);
  if (out === x) throw new RangeError('dct out: must not alias x');
  const acc = new Float64Array(channels);
  for (let a = 0; a < n; a++) {
    acc.fill(0);
    for (let b = 0; b < n; b++) {
      // forward: out[k=a] += s(k) cos(pi k (2t+1) / 2n) x[t=b]; inverse: out[t=a] += s(k=b) cos(...) X[k=b]
      const kk = inverse ? b : a;
      const t = inverse ? a : b;
      const s = kk === 0 ? Math.sqrt(1 / n) : Math.sqrt(2 / n);
      const w = s * Math.cos((Math.PI * kk * (2 * t + 1)) / (2 * n));
      const o = b * channels;
      for (let c = 0; c < channels; c++) acc[c] += w * x[o + c];
    }
    for (let c = 0; c < channels; c++) out[a * channels + c] = acc[c];
  }
}

export const referenceBackend: Backend = {
  name: 'reference',
  threads: () => 1,
  setThreads: () => {},
  matmul,
  matvec,
  rmsnorm,
  rope,
  softmax,
  silu,
  swiglu,
  attention,
  dct,
};
