// The KV-Distill training loop: AdamW on the adaptor and scorer, each example at its own
// retention drawn uniformly from [minRetain, maxRetain] (KVDISTILL.md: 0.1% to 80%; ours:
// uniform), a batch of examples per step with the gradient averaged, global-norm clipping.
import { AdamW } from '../train/adamw.js';
import { clipFactor, gradNorm, zeroGrads } from '../train/params.js';
import { learningRate, type Schedule } from '../train/schedule.js';
import type { Rand } from '../data/synthetic.js';
import type { DistillExample, KVDistill, ScorerGrad } from './distill.js';

export interface DistillTrainOptions {
  steps: number;
  /** Examples per optimiser step. */
  batch: number;
  schedule: Schedule;
  /** Global gradient-norm clip; <= 0 disables. */
  clip: number;
  lambda: number;
  minRetain: number;
  maxRetain: number;
  weightDecay?: number;
  scorerGrad?: ScorerGrad;
  /** Called after every step (progress, logs, saving). */
  onStep?: (rec: StepRecord) => void | Promise<void>;
}

export interface StepRecord {
  step: number;
  loss: number;
  klTS: number;
  klST: number;
  meanRetain: number;
  meanKept: number;
  gradNorm: number;
  lr: number;
}

/** Retention for one example. */
export function sampleRetention(next: Rand, min: number, max: number): number {
  if (!(min > 0 && max <= 1 && min <= max)) throw new RangeError(`kvdistill retention range: need 0 < min <= max <= 1, got ${min}, ${max}`);
  return min + next() * (max - min);
}

/** Trains kd in place; `example(step, i)` supplies example i of a step. Returns the step records. */
export async function trainKVDistill(kd: KVDistill, example: (step: number, i: number) => DistillExample, next: Rand, opts: DistillTrainOptions, opt?: AdamW): Promise<StepRecord[]> {
  const params = kd.params();
  const adam = opt ?? new AdamW(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: opts.weightDecay ?? 0 });
  const records: StepRecord[] = [];
  for (let step = 0; step < opts.steps; step++) {
    zeroGrads(params);
    let loss = 0, ts = 0, st = 0, ret = 0, kept = 0;
    for (let i = 0; i < opts.batch; i++) {
      const ex = example(step, i);
      const r = sampleRetention(next, opts.minRetain, opts.maxRetain);
      const res = kd.loss(ex, { retention: r, lambda: opts.lambda, grad: true, scorerGrad: opts.scorerGrad }, 1 / opts.batch);
      loss += res.loss / opts.batch;
      ts += res.klTS / opts.batch;
      st += res.klST / opts.batch;
      ret += r / opts.batch;
      kept += res.kept.length / opts.batch;
    }
    const norm = gradNorm(params);
    const lr = learningRate(opts.schedule, step);
    adam.step(lr, clipFactor(norm, opts.clip));
    const rec = { step: step + 1, loss, klTS: ts, klST: st, meanRetain: ret, meanKept: kept, gradNorm: norm, lr };
    records.push(rec);
    await opts.onStep?.(rec);
  }
  return records;
}
