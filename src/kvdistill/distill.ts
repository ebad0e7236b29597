// KV-Distill (KVDISTILL.md): a scorer picks the tokens of a context to keep, a routed LoRA
// adaptor encodes the context, and the frozen model answers from the kept K/V rows. This file
// ties the parts together: compression (inference), the training loss and its gradient
// (student vs teacher), and the adaptor file.
//
// One training example (context c [n], question q [mq >= 1], answer a [ma >= 1]):
//   scores  = scorer(frozen hidden states of c after scoreLayer layers)
//   kept    = sinks ∪ top-k(scores) of the rest, k = min(ceil(r·n), n − sinks)
//   K_l, V_l = encode(c; adapters, Q/O routed to kept) rows `kept`, keys rotated at their positions
//   student = frozen decoder over [K, V; q; a[0..ma-2]] at positions n.., logit bias
//             log σ(score_j) on kept non-sink columns (training only)
//   teacher = frozen model over [c; q; a[0..ma-2]]
//   loss    = λ·KL(T‖S) + (1−λ)·KL(S‖T) averaged over the ma answer-predicting rows
import { cacheShape, createCache } from '../cache/factory.js';
import type { Backend } from '../kernels/backend.js';
import type { KVCache } from '../cache/types.js';
import { getBackend } from '../kernels/index.js';
import { forward } from '../model/forward.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../model/safetensors.js';
import type { Model } from '../model/types.js';
import { createLora, type LoraAdapter } from '../train/lora.js';
import type { Param } from '../train/params.js';
import { KVDistillCache, type CompressedContext } from './cache.js';
import { ContextPass } from './encode.js';
import { gatherRows, scatterAddRows } from './layers.js';
import { DEFAULT_LAMBDA, type KlParts, mixedKl } from './loss.js';
import { createScorer, defaultScoreLayer, DEFAULT_SINKS, type Scorer, scorerBackward, scorerForward, scorerParams, selectTokens } from './scorer.js';
import { StudentPass } from './student.js';

export const ADAPTOR_FORMAT = 'freqkv-kvdistill-adaptor';

/**
 * How the scorer gets a gradient while training:
 *   'logsigmoid':       log σ(s_j) is added to the student's logits of kept column j (the forward changes);
 *   'straight-through': the same gradient, forward unchanged (the term log σ(s) − stopgrad(log σ(s)) is 0),
 *                       so the adaptor trains against the student it meets at inference;
 *   'none':             the scorer is not trained.
 */
export const SCORER_GRADS = ['logsigmoid', 'straight-through', 'none'] as const;
export type ScorerGrad = (typeof SCORER_GRADS)[number];

export interface KVDistillOptions {
  /** LoRA rank (paper 128) and alpha; the scale is alpha/sqrt(rank) (rank-stabilised). */
  rank: number;
  alpha: number;
  /** Hidden states after this many layers feed the scorer (default defaultScoreLayer). */
  scoreLayer?: number;
  /** Tokens always kept at the start (default 4). */
  sinks?: number;
  /** Q and O adapters only on kept tokens (default true; false is the no-routing ablation). */
  routing?: boolean;
  /** Seeds the LoRA A matrices and the scorer. */
  seed?: number;
  backend?: Backend;
}

export interface DistillExample {
  context: Int32Array;
  question: Int32Array;
  answer: Int32Array;
}

export interface LossOptions {
  /** Retention r in (0, 1]. */
  retention: number;
  /** Weight of KL(teacher‖student) (default 0.6). */
  lambda?: number;
  /** Add ∂loss/∂θ into the trainable gradients (default false). */
  grad?: boolean;
  /** Student as in training (logit bias from the scorer, default: as grad) or as at inference (no bias). */
  training?: boolean;
  /** Scorer gradient path while training (default 'logsigmoid'). */
  scorerGrad?: ScorerGrad;
  /** Kept indices to use instead of the scorer's choice (tests: a fixed selection). */
  kept?: Int32Array;
  /** Teacher logits [ma, vocab] computed before (teacherLogits()); computed when absent. */
  teacher?: Float32Array;
}

export interface LossResult extends KlParts {
  kept: Int32Array;
}

/** The trainable adaptor (LoRA on q, k, v, o of every layer but the last, k and v there) and scorer for one frozen model. */
export class KVDistill {
  readonly adapters: LoraAdapter[];
  readonly scorer: Scorer;
  readonly scoreLayer: number;
  readonly sinks: number;
  readonly routing: boolean;
  readonly rank: number;
  readonly alpha: number;
  private readonly be: Backend;

  constructor(readonly model: Model, opts: KVDistillOptions, loaded?: { adapters: LoraAdapter[]; scorer: Scorer }) {
    const c = model.config;
    this.be = opts.backend ?? getBackend();
    this.rank = opts.rank;
    this.alpha = opts.alpha;
    this.scoreLayer = opts.scoreLayer ?? defaultScoreLayer(c.nLayers);
    if (!Number.isInteger(this.scoreLayer) || this.scoreLayer < 1 || this.scoreLayer > c.nLayers) throw new RangeError(`kvdistill scoreLayer: expected an integer in [1, ${c.nLayers}], got ${this.scoreLayer}`);
    this.sinks = opts.sinks ?? DEFAULT_SINKS;
    if (!Number.isInteger(this.sinks) || this.sinks < 0) throw new RangeError(`kvdistill sinks: expected a non-negative integer, got ${this.sinks}`);
    this.routing = opts.routing ?? true;
    const seed = opts.seed ?? 1;
    // The last layer's cache is its K and V: its Q and O never reach the loss, so they get no adapter.
    const last = c.nLayers - 1;
    this.adapters = loaded?.adapters ?? createLora(model, { rank: opts.rank, alpha: opts.alpha, targets: ['q', 'k', 'v', 'o'] }, seed)
      .filter((a) => !(a.layer === last && (a.target === 'q' || a.target === 'o')));
    for (const a of this.adapters) a.scale = opts.alpha / Math.sqrt(opts.rank); // rsLoRA
    this.scorer = loaded?.scorer ?? createScorer(c.hiddenSize, seed + 7919);
  }

  /** Every trainable parameter: adapters (layer, then q, k, v, o; A then B; the last layer has k, v only), then the scorer. */
  params(): Param[] {
    return [...this.adapters.flatMap((a) => [a.a, a.b]), ...scorerParams(this.scorer)];
  }

  /** Scorer activations over the context (frozen hidden states after scoreLayer layers). */
  private score(context: Int32Array) {
    const pass = new ContextPass(this.model, context, { adapters: null, route: null, fullLayers: this.scoreLayer, kvOfNext: false }, this.be);
    pass.forward();
    return scorerForward(this.be, this.scorer, pass.hidden, context.length);
  }

  /** Scores [n] of the context tokens. */
  scores(context: Int32Array): Float32Array {
    return this.score(context).scores;
  }

  /** Kept indices for retention r (sinks + top-k of the rest), ascending. */
  select(context: Int32Array, retention: number): Int32Array {
    return selectTokens(this.scores(context), context.length, retention, this.sinks);
  }

  private encoder(context: Int32Array, kept: Int32Array): ContextPass {
    const n = context.length;
    let route: Float32Array | null = null;
    if (this.routing) {
      route = new Float32Array(n);
      for (const j of kept) route[j] = 1;
    }
    return new ContextPass(this.model, context, { adapters: this.adapters, route, fullLayers: this.model.config.nLayers - 1, kvOfNext: true }, this.be);
  }

  /** Compresses a context once: the kept rows of the adapted encoding, as a CompressedContext. */
  compressRows(context: Int32Array, retention: number, kept?: Int32Array): CompressedContext {
    const sel = kept ?? this.select(context, retention);
    const kvDim = this.model.config.nKVHeads * this.model.config.headDim;
    const { k, v } = this.encoder(context, sel).forward();
    return { n: context.length, kept: sel, k: k.map((x) => gatherRows(x, sel, kvDim)), v: v.map((x) => gatherRows(x, sel, kvDim)) };
  }

  /** A cache holding the compressed context; decode the question over it with forward(). */
  compress(context: Int32Array, retention: number, kept?: Int32Array): KVDistillCache {
    return new KVDistillCache(cacheShape(this.model.config), this.compressRows(context, retention, kept), { backend: this.be });
  }

  /** The teacher's logits [ma, vocab] predicting the answer: the frozen model over [c; q; a[..ma-1]]. */
  teacherLogits(ex: DistillExample): Float32Array {
    checkExample(ex);
    const cache = createCache(this.model.config, { backend: this.be });
    forward(this.model, ex.context, cache, { backend: this.be });
    const tail = studentTokens(ex);
    const all = forward(this.model, tail, cache, { logits: 'all', backend: this.be });
    const V = this.model.config.vocabSize;
    return all.slice((tail.length - ex.answer.length) * V);
  }

  /**
   * The distillation loss of one example at retention r; with grad, ADDS lossScale·∂loss/∂θ into
   * the adapters' and the scorer's gradients.
   */
  loss(ex: DistillExample, opts: LossOptions, lossScale = 1): LossResult {
    checkExample(ex);
    const c = this.model.config;
    const V = c.vocabSize;
    const kvDim = c.nKVHeads * c.headDim;
    const n = ex.context.length;
    const grad = opts.grad ?? false;
    const training = opts.training ?? grad;
    const scorerGrad = opts.scorerGrad ?? 'logsigmoid';
    const teacher = opts.teacher ?? this.teacherLogits(ex);
    const sActs = this.score(ex.context);
    const kept = opts.kept ?? selectTokens(sActs.scores, n, opts.retention, this.sinks);
    const nc = kept.length;
    const s0 = Math.min(this.sinks, n);
    // bias_j = log σ(s_j) on kept non-sink tokens (sinks are kept by rule, not by score)
    let bias: Float32Array | null = null;
    const trainScorer = training && scorerGrad !== 'none';
    if (training && scorerGrad === 'logsigmoid') {
      bias = new Float32Array(nc);
      for (let j = 0; j < nc; j++) if (kept[j] >= s0) bias[j] = logSigmoid(sActs.scores[kept[j]]);
    }
    const enc = this.encoder(ex.context, kept);
    const full = enc.forward();
    const pk = full.k.map((x) => gatherRows(x, kept, kvDim));
    const pv = full.v.map((x) => gatherRows(x, kept, kvDim));
    const student = new StudentPass(this.model, studentTokens(ex), n, pk, pv, nc, bias, ex.answer.length, this.be);
    const zS = student.forward();
    const dz = grad ? new Float32Array(zS.length) : null;
    const parts = mixedKl(zS, teacher, ex.answer.length, V, opts.lambda ?? DEFAULT_LAMBDA, dz);
    if (!grad) return { ...parts, kept };
    for (let i = 0; i < dz!.length; i++) dz![i] *= lossScale;
    const g = student.backward(dz!);
    const dK = full.k.map(() => new Float32Array(n * kvDim));
    const dV = full.v.map(() => new Float32Array(n * kvDim));
    for (let l = 0; l < c.nLayers; l++) {
      scatterAddRows(dK[l], g.dK[l], kept, kvDim);
      scatterAddRows(dV[l], g.dV[l], kept, kvDim);
    }
    enc.backward(dK, dV);
    if (trainScorer) {
      const dScores = new Float32Array(n);
      for (let j = 0; j < nc; j++) {
        const t = kept[j];
        if (t >= s0) dScores[t] = g.dBias[j] * (1 - sigmoid(sActs.scores[t])); // d log σ(s)/ds = 1 − σ(s)
      }
      scorerBackward(this.be, this.scorer, sActs, dScores);
    }
    return { ...parts, kept };
  }

  /** Writes the adaptor and scorer as one safetensors file (F32), with the options in the metadata. */
  async save(file: string): Promise<void> {
    const tensors: TensorToWrite[] = this.params().map((p) => ({ name: p.name, dtype: 'F32', shape: p.shape, data: p.data }));
    await writeSafetensors(file, tensors, {
      format: ADAPTOR_FORMAT, rank: String(this.rank), alpha: String(this.alpha), score_layer: String(this.scoreLayer),
      sinks: String(this.sinks), routing: String(this.routing), scaling: 'rslora', targets: 'q,k,v,o',
    });
  }

  /** Reads an adaptor file written by save() for this model. */
  static async load(file: string, model: Model, backend?: Backend): Promise<KVDistill> {
    const st = await SafetensorsFile.open(file);
    try {
      const meta = st.metadata ?? {};
      if (meta.format !== ADAPTOR_FORMAT) throw new Error(`${file}: not a KV-Distill adaptor (metadata format ${JSON.stringify(meta.format)}, expected "${ADAPTOR_FORMAT}")`);
      const num = (k: string) => {
        const v = Number(meta[k]);
        if (!Number.isFinite(v)) throw new Error(`${file}: metadata "${k}" must be a number, got ${JSON.stringify(meta[k])}`);
        return v;
      };
      const opts: KVDistillOptions = { rank: num('rank'), alpha: num('alpha'), scoreLayer: num('score_layer'), sinks: num('sinks'), routing: meta.routing !== 'false', backend };
      const kd = new KVDistill(model, opts); // fresh tensors of the right shapes, then filled from the file
      for (const p of kd.params()) {
        const info = st.info(p.name);
        if (!info) throw new Error(`${file}: missing tensor "${p.name}"`);
        if (info.shape.join(',') !== p.shape.join(',')) throw new Error(`${file}: tensor "${p.name}" has shape [${info.shape.join(', ')}], this model needs [${p.shape.join(', ')}]`);
        await st.read(p.name, p.data);
      }
      return kd;
    } finally {
      await st.close();
    }
  }
}

/** The student's (and the teacher's after the context) input: q then a without its last token. */
function studentTokens(ex: DistillExample): Int32Array {
  const out = new Int32Array(ex.question.length + ex.answer.length - 1);
  out.set(ex.question);
  out.set(ex.answer.subarray(0, ex.answer.length - 1), ex.question.length);
  return out;
}

function checkExample(ex: DistillExample): void {
  if (ex.context.length < 1) throw new RangeError('kvdistill example: the context is empty');
  if (ex.question.length < 1) throw new RangeError('kvdistill example: the question is empty (the first answer token needs a query at position n)');
  if (ex.answer.length < 1) throw new RangeError('kvdistill example: the answer is empty');
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** log σ(x) = −log(1 + e^−x), stable for either sign. */
function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/** Greedy decoding of up to maxTokens after `prompt` over a cache (the compressed context). */
export function greedyDecode(model: Model, cache: KVCache, prompt: Int32Array, maxTokens: number, stopIds: readonly number[] = [], backend?: Backend): number[] {
  const out: number[] = [];
  let logits = forward(model, prompt, cache, { backend });
  for (let t = 0; t < maxTokens; t++) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    if (stopIds.includes(best)) break;
    out.push(best);
    if (t + 1 < maxTokens) logits = forward(model, [best], cache, { backend });
  }
  return out;
}
