// The KV-Distill training loop: AdamW on the adaptor and scorer, each example at its own
// retention drawn uniformly from [minRetain, maxRetain] (KVDISTILL.md: 0.1% to 80%; ours:
// uniform), a batch of examples per step with the gradient averaged, global-norm clipping.
//
// Resuming: the examples and retentions come from seeded streams drawn in order, so a run is
// continued bit-exactly from its adaptor, AdamW state, step and the number of draws taken from
// each stream (CountedRng replays them); the CLI stores those in a training checkpoint.
import { configToJson } from '../model/config.js';
import { rng } from '../model/random.js';
import { AdamW } from '../train/adamw.js';
import { type CheckpointMeta, frozenChecksum, restoreCheckpoint, saveCheckpoint, type TrainState } from '../train/checkpoint.js';
import { baseParams, clipFactor, gradNorm, type Param, zeroGrads } from '../train/params.js';
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
  /** Steps already taken (a resumed run): the loop and the schedule go on from here (default 0). */
  startStep?: number;
  /** Called after every step (progress, logs, saving); 'stop' ends the loop there (an interrupt). */
  onStep?: (rec: StepRecord) => void | 'stop' | Promise<void | 'stop'>;
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

/** A seeded stream (rng of model/random.ts) that counts its draws, so a resumed run can replay it to where it stopped. */
export class CountedRng {
  private readonly r: Rand;
  /** Values drawn so far (the skipped ones included). */
  draws = 0;
  readonly next: Rand = () => {
    this.draws++;
    return this.r();
  };

  constructor(readonly seed: number, skip = 0) {
    if (!(Number.isSafeInteger(skip) && skip >= 0)) throw new RangeError(`CountedRng skip: expected a whole number >= 0, got ${skip}`);
    this.r = rng(seed);
    for (let i = 0; i < skip; i++) this.next();
  }
}

/** The optimiser of trainKVDistill (build it to restore a checkpoint into, then pass it in). */
export function distillOptimizer(kd: KVDistill, weightDecay = 0): AdamW {
  return new AdamW(kd.params(), { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay });
}

/** The run's parameters for a checkpoint: the adaptor's (trainable), then the frozen model's, whose checksum refuses a resume on another model. */
function runParams(kd: KVDistill): Param[] {
  return [...kd.params(), ...baseParams(kd.model, [])];
}

/** Checksum of the frozen model (compute it once; it is stored in every checkpoint). */
export function distillFrozenChecksum(kd: KVDistill): string {
  return frozenChecksum(runParams(kd));
}

/**
 * Writes a training checkpoint (src/train/checkpoint.ts, atomically): the adaptor, AdamW's
 * moments and counter, `state`, the model's config and `run` (what rebuilds the run: options, draws).
 */
export async function saveDistillCheckpoint(file: string, kd: KVDistill, opt: AdamW, run: Record<string, unknown>, state: TrainState, frozen?: string): Promise<void> {
  await saveCheckpoint(file, runParams(kd), opt, { config: configToJson(kd.model.config), run, state: { ...state }, frozenChecksum: frozen });
}

/** Loads a checkpoint of saveDistillCheckpoint into kd and opt (built with the checkpoint's options); returns its header. */
export async function restoreDistillCheckpoint(file: string, kd: KVDistill, opt: AdamW): Promise<CheckpointMeta> {
  return restoreCheckpoint(file, runParams(kd), opt);
}

/** Retention for one example. */
export function sampleRetention(next: Rand, min: number, max: number): number {
  if (!(min > 0 && max <= 1 && min <= max)) throw new RangeError(`kvdistill retention range: need 0 < min <= max <= 1, got ${min}, ${max}`);
  return min + next() * (max - min);
}

/** Trains kd in place from step startStep to steps; `example(step, i)` supplies example i of a step. Returns the step records. */
export async function trainKVDistill(kd: KVDistill, example: (step: number, i: number) => DistillExample, next: Rand, opts: DistillTrainOptions, opt?: AdamW): Promise<StepRecord[]> {
  const params = kd.params();
  const adam = opt ?? distillOptimizer(kd, opts.weightDecay);
  const records: StepRecord[] = [];
  const start = opts.startStep ?? 0;
  if (!(Number.isInteger(start) && start >= 0)) throw new RangeError(`trainKVDistill startStep: expected a whole number >= 0, got ${start}`);
  for (let step = start; step < opts.steps; step++) {
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
    if ((await opts.onStep?.(rec)) === 'stop') break;
  }
  return records;
}
