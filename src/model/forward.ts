// The Llama forward pass over a KV cache, llama2.c-plain. One call feeds T tokens; they are
// cut into steps of min(remaining, cache.room()) tokens exactly as the protocol in
// src/cache/types.ts says (a bounded policy compresses between steps; SnapKV wants a prompt in
// one step). Prefill steps run on matmul, one-token decode steps on matvec. The MLP, the
// largest scratch ([rows, ff]), runs in blocks of MLP_ROWS rows, so a long step's scratch is
// about T·(2·d + 2·qDim + 2·kvDim) floats plus a fixed 2·MLP_ROWS·ff.
//
// Per layer, for n tokens (d = hidden, qDim = nHeads*headDim, kvDim = nKVHeads*headDim):
//   xb = rmsnorm(x)                      [n, d]
//   q, k, v = xb·Wqᵀ (+bq), ...          [n, qDim], [n, kvDim], [n, kvDim]
//   rope(q) at the positions cache.begin returned; k goes to the cache pre-RoPE
//   att = attention(q, cached k, v)      [n, qDim]
//   x += att·Woᵀ
//   xb = rmsnorm(x); x += (silu(xb·Wgateᵀ) * xb·Wupᵀ)·Wdownᵀ
// then logits = rmsnorm(x)·lm_headᵀ in float32.
import type { AttentionArgs, Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import type { KVCache } from '../cache/types.js';
import type { Model } from './types.js';

export interface ForwardOptions {
  /** 'last' (default): logits of the last token, [vocab]; 'all': every token's, [T, vocab]. */
  logits?: 'last' | 'all';
  backend?: Backend;
  /** Where to write the logits (length >= the returned size); a new array when absent. */
  out?: Float32Array;
  /**
   * Also cap steps at this many tokens (default: no cap, steps are exactly what room() allows).
   * Only for policies where splitting a step changes nothing (full; freqkv within its room).
   */
  maxStep?: number;
}

/** Rows of the MLP computed at once: bounds the [rows, ff] scratch. */
const MLP_ROWS = 256;
/** Rows of logits computed at once by forwardNll: [HEAD_ROWS, vocab] of scratch. */
const HEAD_ROWS = 16;

/** Scratch buffers for one model, sized for `rows` tokens per step; reused so decode does not allocate. */
class Workspace {
  rows = 0;
  x = new Float32Array(0); // residual stream [rows, d]
  xb = new Float32Array(0); // normed input / projection output [rows, d]
  q = new Float32Array(0); // [rows, qDim]
  k = new Float32Array(0); // [rows, kvDim]
  v = new Float32Array(0); // [rows, kvDim]
  att = new Float32Array(0); // attention output [rows, qDim]
  hb = new Float32Array(0); // gate, then silu(gate)*up [min(rows, MLP_ROWS), ff]
  hb2 = new Float32Array(0); // up [min(rows, MLP_ROWS), ff]
  logits = new Float32Array(0); // [HEAD_ROWS, vocab], only for forwardNll
  args: AttentionArgs;

  constructor(readonly model: Model) {
    const c = model.config;
    this.args = {
      nQ: 0, nKV: 0, nHeads: c.nHeads, nKVHeads: c.nKVHeads, headDim: c.headDim,
      scale: 1 / Math.sqrt(c.headDim), causal: true, scores: undefined, scoresFromQuery: 0,
    };
  }

  ensure(rows: number): void {
    if (rows <= this.rows) return;
    const c = this.model.config;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKVHeads * c.headDim;
    this.x = new Float32Array(rows * c.hiddenSize);
    this.xb = new Float32Array(rows * c.hiddenSize);
    this.q = new Float32Array(rows * qDim);
    this.k = new Float32Array(rows * kvDim);
    this.v = new Float32Array(rows * kvDim);
    this.att = new Float32Array(rows * qDim);
    this.hb = new Float32Array(Math.min(rows, MLP_ROWS) * c.intermediateSize);
    this.hb2 = new Float32Array(Math.min(rows, MLP_ROWS) * c.intermediateSize);
    this.rows = rows;
  }
}

const workspaces = new WeakMap<Model, Workspace>();

function workspaceFor(model: Model): Workspace {
  let ws = workspaces.get(model);
  if (!ws) workspaces.set(model, (ws = new Workspace(model)));
  return ws;
}

/**
 * Feeds `tokens` through the model, appending them to `cache`, and returns float32 logits:
 * [vocab] for the last token (default) or [T, vocab] for every token (opts.logits = 'all').
 */
export function forward(model: Model, tokens: Int32Array | number[], cache: KVCache, opts: ForwardOptions = {}): Float32Array {
  const V = model.config.vocabSize;
  const T = tokens.length;
  const all = (opts.logits ?? 'last') === 'all';
  if (opts.logits !== undefined && opts.logits !== 'last' && opts.logits !== 'all') {
    throw new RangeError(`forward opts.logits: expected 'last' or 'all', got ${String(opts.logits)}`);
  }
  const size = all ? T * V : V;
  const out = opts.out ?? new Float32Array(size);
  if (out.length < size) throw new RangeError(`forward opts.out: expected at least ${size} elements, got ${out.length}`);
  const backend = opts.backend ?? getBackend();
  const c = model.config;
  const w = model.weights;
  runSteps(model, tokens, cache, backend, opts.maxStep, (ws, start, n) => {
    const d = c.hiddenSize;
    if (all) {
      backend.rmsnorm(ws.xb, ws.x, w.norm, n, d, c.rmsNormEps);
      linear(backend, out.subarray(start * V, (start + n) * V), ws.xb, w.lmHead, n, V, d);
    } else if (start + n === T) {
      const last = ws.x.subarray((n - 1) * d, n * d);
      backend.rmsnorm(ws.xb, last, w.norm, 1, d, c.rmsNormEps);
      backend.matvec(out, w.lmHead, ws.xb, V, d);
    }
  });
  return out.length === size ? out : out.subarray(0, size);
}

/**
 * Per-token negative log-likelihood (natural log) of a sequence: entry t is -log p(tokens[t+1] |
 * tokens[0..t]), T-1 entries. Computed step by step from every token's logits without holding
 * [T, vocab]; the tokens are appended to `cache` like forward() does.
 */
export function forwardNll(model: Model, tokens: Int32Array | number[], cache: KVCache, opts: Omit<ForwardOptions, 'logits' | 'out'> = {}): Float64Array {
  const T = tokens.length;
  const nll = new Float64Array(Math.max(0, T - 1));
  const backend = opts.backend ?? getBackend();
  const c = model.config;
  const V = c.vocabSize;
  const d = c.hiddenSize;
  runSteps(model, tokens, cache, backend, opts.maxStep, (ws, start, n) => {
    if (ws.logits.length < HEAD_ROWS * V) ws.logits = new Float32Array(HEAD_ROWS * V);
    backend.rmsnorm(ws.xb, ws.x, model.weights.norm, n, d, c.rmsNormEps);
    for (let r0 = 0; r0 < n; r0 += HEAD_ROWS) {
      const rows = Math.min(HEAD_ROWS, n - r0);
      linear(backend, ws.logits, ws.xb.subarray(r0 * d, (r0 + rows) * d), model.weights.lmHead, rows, V, d);
      for (let r = 0; r < rows; r++) {
        const t = start + r0 + r;
        if (t + 1 < T) nll[t] = logSumExp(ws.logits, r * V, V) - ws.logits[r * V + tokens[t + 1]];
      }
    }
  });
  return nll;
}

/** log(sum(exp(a[off .. off+n)))) in float64. */
function logSumExp(a: Float32Array, off: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (a[off + i] > m) m = a[off + i];
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(a[off + i] - m);
  return m + Math.log(s);
}

/**
 * Runs all tokens through the layers in steps; after each step ws.x holds the step's final
 * hidden states [n, d] (before the final norm) and onStep(ws, start, n) reads them.
 */
function runSteps(
  model: Model,
  tokens: Int32Array | number[],
  cache: KVCache,
  backend: Backend,
  maxStep: number | undefined,
  onStep: (ws: Workspace, start: number, n: number) => void,
): void {
  const c = model.config;
  const T = tokens.length;
  if (T === 0) throw new RangeError('forward tokens: expected at least one token');
  for (let i = 0; i < T; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) {
      throw new RangeError(`forward tokens[${i}]: expected a token id in [0, ${c.vocabSize - 1}], got ${t}`);
    }
  }
  const s = cache.shape;
  if (s.nLayers !== c.nLayers || s.nKVHeads !== c.nKVHeads || s.headDim !== c.headDim) {
    throw new Error(
      `forward cache: its shape (${s.nLayers} layers, ${s.nKVHeads} KV heads, headDim ${s.headDim}) does not match the model ` +
        `(${c.nLayers}, ${c.nKVHeads}, ${c.headDim})`,
    );
  }
  const cap = maxStep ?? Infinity;
  if (!(cap >= 1)) throw new RangeError(`forward opts.maxStep: expected a number >= 1, got ${cap}`);
  const ws = workspaceFor(model);
  for (let start = 0; start < T; ) {
    const room = cache.room();
    if (!(room >= 1)) throw new Error(`forward: cache "${cache.policy}" reported room() = ${room}; it must be at least 1`);
    const n = Math.floor(Math.min(T - start, room, cap));
    ws.ensure(n);
    const positions = cache.begin(n);
    step(model, ws, backend, tokens, start, n, positions, cache);
    cache.end();
    onStep(ws, start, n);
    start += n;
  }
}

/** One step of n tokens through every layer; leaves the hidden states [n, d] in ws.x. */
function step(
  model: Model,
  ws: Workspace,
  be: Backend,
  tokens: Int32Array | number[],
  start: number,
  n: number,
  positions: Int32Array,
  cache: KVCache,
): void {
  const c = model.config;
  const d = c.hiddenSize;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKVHeads * c.headDim;
  const ff = c.intermediateSize;
  const { embed, layers } = model.weights;
  for (let i = 0; i < n; i++) {
    const t = tokens[start + i];
    ws.x.set(embed.subarray(t * d, (t + 1) * d), i * d);
  }
  for (let l = 0; l < layers.length; l++) {
    const L = layers[l];
    // attention block
    be.rmsnorm(ws.xb, ws.x, L.attnNorm, n, d, c.rmsNormEps);
    linear(be, ws.q, ws.xb, L.wq, n, qDim, d);
    linear(be, ws.k, ws.xb, L.wk, n, kvDim, d);
    linear(be, ws.v, ws.xb, L.wv, n, kvDim, d);
    if (L.bq) addBias(ws.q, L.bq, n, qDim);
    if (L.bk) addBias(ws.k, L.bk, n, kvDim);
    if (L.bv) addBias(ws.v, L.bv, n, kvDim);
    be.rope(ws.q, n, c.nHeads, c.headDim, positions, cache.shape.invFreq, false);
    const view = cache.append(l, ws.k, ws.v);
    const args = ws.args;
    args.nQ = n;
    args.nKV = view.n;
    args.scores = view.scores ?? undefined;
    args.scoresFromQuery = view.scoresFromQuery;
    be.attention(ws.att, ws.q, view.k, view.v, args);
    cache.attended(l, view);
    linear(be, ws.x, ws.att, L.wo, n, d, qDim, ws.xb); // x += att·Woᵀ
    // MLP block, MLP_ROWS rows at a time (rows are independent here)
    for (let r0 = 0; r0 < n; r0 += MLP_ROWS) {
      const rows = Math.min(MLP_ROWS, n - r0);
      const x = rows === n ? ws.x : ws.x.subarray(r0 * d, (r0 + rows) * d);
      const xb = rows === n ? ws.xb : ws.xb.subarray(r0 * d, (r0 + rows) * d);
      be.rmsnorm(xb, x, L.mlpNorm, rows, d, c.rmsNormEps);
      linear(be, ws.hb, xb, L.wGate, rows, ff, d);
      linear(be, ws.hb2, xb, L.wUp, rows, ff, d);
      be.swiglu(ws.hb, ws.hb, ws.hb2, rows * ff);
      linear(be, x, ws.hb, L.wDown, rows, d, ff, xb); // x += h·Wdownᵀ
    }
  }
}

/**
 * out[rows, outDim] = x[rows, inDim] · W[outDim, inDim]ᵀ (a Hugging Face Linear). With `tmp`
 * ([rows, outDim] scratch) the product is ADDED to out instead (residual connections).
 */
function linear(be: Backend, out: Float32Array, x: Float32Array, w: Float32Array, rows: number, outDim: number, inDim: number, tmp?: Float32Array): void {
  if (rows > 1) {
    be.matmul(out, x, w, rows, outDim, inDim, { transB: true, accumulate: tmp !== undefined });
    return;
  }
  if (!tmp) {
    be.matvec(out, w, x, outDim, inDim);
    return;
  }
  be.matvec(tmp, w, x, outDim, inDim);
  for (let i = 0; i < outDim; i++) out[i] += tmp[i];
}

/** x[r, :] += bias for each of the rows. */
function addBias(x: Float32Array, bias: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    for (let i = 0; i < dim; i++) x[o + i] += bias[i];
  }
}
