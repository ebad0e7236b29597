// The training loop shared by pretraining and fine-tuning: gradient accumulation, global-norm
// clipping, AdamW with a schedule, periodic validation and checkpoints, progress on stderr,
// one JSON object per line in a log, and a checkpoint on SIGINT (or a time limit) before it
// returns. It yields to the event loop after every step so that the signal is seen.
import * as fs from 'node:fs';
import type { AdamW } from './adamw.js';
import type { Batcher } from './batcher.js';
import { saveCheckpoint, type TrainState } from './checkpoint.js';
import type { TrainableModel } from './model.js';
import { clipFactor, gradNorm, type Param, zeroGrads } from './params.js';
import { learningRate, type Schedule } from './schedule.js';

export interface LoopOptions {
  /** Stop when state.step reaches this. */
  steps: number;
  /** Micro-batches per optimiser step. */
  accum: number;
  schedule: Schedule;
  /** Global gradient-norm clip; <= 0 disables. */
  clip: number;
  /** Validation every k steps (and at the end); 0 = never. */
  evalEvery: number;
  /** Validation windows [n, seqLen+1], n a multiple of the batch. */
  evalWindows: Int32Array | null;
  /** Checkpoint every k steps (and at the end or on interrupt); 0 = only then. */
  saveEvery: number;
  /** Progress line and log record every k steps. */
  logEvery: number;
  /** Stop (with a checkpoint) once this session has trained this long; 0 = no limit. */
  timeLimitSec?: number;
}

export interface LoopIO {
  /** Where checkpoints go (null: never written). */
  checkpointFile: string | null;
  /** JSON-lines log (null: none). */
  logFile: string | null;
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  /** The config and run options stored in every checkpoint. */
  checkpointMeta: () => { config: Record<string, unknown>; run: Record<string, unknown> };
  /** Precomputed checksum of the frozen weights (they never change). */
  frozenChecksum?: string;
  /** Handle SIGINT by checkpointing and returning (default true). */
  handleSignals?: boolean;
}

export interface LoopResult {
  state: TrainState;
  /** Why it returned. */
  stopped: 'done' | 'interrupted' | 'time-limit';
  /** Mean loss of the last step, and the last validation loss (NaN when none ran). */
  lastLoss: number;
  valLoss: number;
}

/** Mean loss over validation windows [n, seqLen+1], in micro-batches of the model's batch. */
export function evaluate(tm: TrainableModel, windows: Int32Array): number {
  const W = tm.seqLen + 1;
  const per = tm.batch * W;
  const n = windows.length / W;
  if (!Number.isInteger(n) || n % tm.batch !== 0) throw new RangeError(`evaluate windows: expected a multiple of ${tm.batch} windows of ${W} tokens, got ${windows.length} tokens`);
  let total = 0;
  let count = 0;
  for (let o = 0; o < windows.length; o += per) {
    const loss = tm.loss(windows.subarray(o, o + per));
    const c = tm.lastCount();
    if (c > 0) {
      total += loss * c;
      count += c;
    }
  }
  return count > 0 ? total / count : NaN;
}

/** One optimiser step on the batches of `state.step`: accumulate, clip, update. Returns loss and the pre-clip gradient norm. */
export function trainStep(tm: TrainableModel, batcher: Batcher, opt: AdamW, trainable: Param[], windows: Int32Array,
  step: number, accum: number, schedule: Schedule, clip: number): { loss: number; gradNorm: number; lr: number } {
  zeroGrads(trainable);
  let loss = 0;
  for (let micro = 0; micro < accum; micro++) {
    batcher.fill(windows, step, micro);
    loss += tm.forwardBackward(windows, 1 / accum) / accum;
  }
  if (!Number.isFinite(loss)) throw new Error(`training diverged: loss is ${loss} at step ${step} (try a lower --lr or --clip)`);
  const norm = gradNorm(trainable);
  const lr = learningRate(schedule, step);
  opt.step(lr, clipFactor(norm, clip));
  return { loss, gradNorm: norm, lr };
}

/** Seconds as "1h05m" or "3m07s" ("?" when not finite): progress lines' ETA. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

export async function trainLoop(tm: TrainableModel, batcher: Batcher, opt: AdamW, state: TrainState, o: LoopOptions, io: LoopIO): Promise<LoopResult> {
  if (batcher.batch !== tm.batch || batcher.seqLen !== tm.seqLen) {
    throw new RangeError(`trainLoop batcher: yields [${batcher.batch}, ${batcher.seqLen}+1], the model is built for [${tm.batch}, ${tm.seqLen}+1]`);
  }
  if (!Number.isInteger(o.accum) || o.accum < 1) throw new RangeError(`trainLoop accum: expected a positive integer, got ${o.accum}`);
  const progress = io.progress ?? ((line: string) => process.stderr.write(line + '\n'));
  const log = (rec: Record<string, unknown>) => {
    if (io.logFile) fs.appendFileSync(io.logFile, JSON.stringify(rec) + '\n');
  };
  const trainable = tm.trainable();
  const windows = new Int32Array(tm.batch * (tm.seqLen + 1));
  const tokensPerStep = tm.batch * tm.seqLen * o.accum;
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    progress('freqkv train: interrupted, writing a checkpoint (press Ctrl-C again to abort without one)');
  };
  if (io.handleSignals !== false) process.once('SIGINT', onSigint);

  const save = async () => {
    if (!io.checkpointFile) return;
    const t0 = Date.now();
    await saveCheckpoint(io.checkpointFile, tm.params, opt, { ...io.checkpointMeta(), state: { ...state }, frozenChecksum: io.frozenChecksum });
    log({ type: 'checkpoint', step: state.step, file: io.checkpointFile, ms: Date.now() - t0 });
  };
  const validate = () => {
    if (!o.evalWindows) return NaN;
    const t0 = Date.now();
    const v = evaluate(tm, o.evalWindows);
    log({ type: 'val', step: state.step, valLoss: v, valPpl: Math.exp(v), ms: Date.now() - t0 });
    progress(`step ${state.step}: validation loss ${v.toFixed(4)} (ppl ${Math.exp(v).toFixed(2)})`);
    return v;
  };

  log({ type: 'start', step: state.step, steps: o.steps, tokensPerStep, params: tm.params.length, time: new Date().toISOString() });
  const sessionStart = Date.now();
  let windowStart = Date.now();
  let windowSteps = 0;
  let lastLoss = NaN;
  let valLoss = NaN;
  let stopped: LoopResult['stopped'] = 'done';
  try {
    while (state.step < o.steps) {
      const t0 = Date.now();
      const r = trainStep(tm, batcher, opt, trainable, windows, state.step, o.accum, o.schedule, o.clip);
      state.step++;
      state.tokens += tokensPerStep;
      state.elapsedMs += Date.now() - t0;
      lastLoss = r.loss;
      windowSteps++;
      const last = state.step === o.steps;
      if (state.step % o.logEvery === 0 || last) {
        const now = Date.now();
        const secPerStep = (now - windowStart) / 1000 / windowSteps;
        const tokPerSec = tokensPerStep / secPerStep;
        const eta = secPerStep * (o.steps - state.step);
        progress(`step ${state.step}/${o.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ` +
          `${Math.round(tokPerSec)} tok/s  ETA ${formatDuration(eta)}`);
        log({ type: 'step', step: state.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokens: state.tokens, tokPerSec, elapsedSec: state.elapsedMs / 1000 });
        windowStart = now;
        windowSteps = 0;
      }
      if (o.evalEvery > 0 && (state.step % o.evalEvery === 0 || last)) valLoss = validate();
      if (o.saveEvery > 0 && state.step % o.saveEvery === 0 && !last) await save();
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (interrupted) {
        stopped = 'interrupted';
        break;
      }
      if (o.timeLimitSec && (Date.now() - sessionStart) / 1000 >= o.timeLimitSec && state.step < o.steps) {
        progress(`freqkv train: time limit of ${o.timeLimitSec} s reached at step ${state.step}, writing a checkpoint`);
        stopped = 'time-limit';
        break;
      }
    }
    await save();
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  log({ type: 'end', step: state.step, stopped, loss: lastLoss, valLoss, elapsedSec: state.elapsedMs / 1000 });
  return { state, stopped, lastLoss, valLoss };
}
