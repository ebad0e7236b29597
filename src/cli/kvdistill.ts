// `freqkv train kvdistill`: trains a KV-Distill adaptor (routed LoRA on q, k, v, o + token
// scorer) for a frozen model on examples built from the training books (src/kvdistill/data.ts),
// and writes it as its own safetensors file.
//
// <out>/adaptor.safetensors: the adaptor (written every --save-every steps, at the end and on Ctrl-C);
// <out>/checkpoint.safetensors: a training checkpoint written with it (adaptor, AdamW moments,
//   step, draws of the data streams, options) for --resume, which continues bit-exactly;
// <out>/log.jsonl: one JSON object per line (start, resume, step, val, checkpoint, end).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FlagSpec, type FlagValues, helpText, UsageError } from './args.js';
import { getBackend } from '../kernels/index.js';
import { forward } from '../model/forward.js';
import { loadModel } from '../model/loader.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { rng } from '../model/random.js';
import { readTokenManifest, readTokenSplit } from '../data/tokens.js';
import { readCheckpointMeta, type TrainState } from '../train/checkpoint.js';
import { formatDuration } from '../train/loop.js';
import { SCHEDULES, type ScheduleKind } from '../train/schedule.js';
import { countParams } from '../train/params.js';
import { KVDistill, SCORER_GRADS, type ScorerGrad } from '../kvdistill/distill.js';
import { DISTILL_KINDS, type DistillKind, distillExample, type KindedExample } from '../kvdistill/data.js';
import { CountedRng, distillFrozenChecksum, distillOptimizer, restoreDistillCheckpoint, saveDistillCheckpoint, trainKVDistill } from '../kvdistill/train.js';
import { parseExplicit, resumedFlags } from './train.js';

const SPECS: Record<string, FlagSpec> = {
  model: { kind: 'string', help: 'frozen model folder in Hugging Face layout (required)' },
  data: { kind: 'string', help: 'token dataset folder written by `freqkv data`, tokenised with the model\'s tokenizer (required)' },
  out: { kind: 'string', help: 'output folder: adaptor.safetensors, checkpoint.safetensors and log.jsonl (required)' },
  resume: { kind: 'bool', default: false, help: 'continue from <out>/checkpoint.safetensors with its options (bit-exactly)' },
  tokenizer: { kind: 'string', help: "tokenizer folder for the inserted facts and questions (default: the dataset's, else the model's)" },
  steps: { kind: 'int', min: 1, default: 200, help: 'optimiser steps' },
  batch: { kind: 'int', min: 1, default: 4, help: 'examples per step' },
  lr: { kind: 'number', min: 0, default: 5e-4, help: 'peak learning rate (paper: 5e-5 at 8B)' },
  warmup: { kind: 'int', min: 0, default: 20, help: 'linear warm-up steps' },
  schedule: { kind: 'string', choices: [...SCHEDULES], default: 'cosine', help: 'learning-rate schedule after warm-up' },
  clip: { kind: 'number', min: 0, default: 1, help: 'global gradient-norm clip; 0 = off' },
  rank: { kind: 'int', min: 1, default: 16, help: 'LoRA rank (paper: 128)' },
  alpha: { kind: 'number', min: 0, default: 16, help: 'LoRA alpha; the scale is alpha/sqrt(rank) (rank-stabilised)' },
  lambda: { kind: 'number', min: 0, max: 1, default: 0.6, help: 'weight of KL(teacher||student); 1 - lambda on KL(student||teacher)' },
  'min-retain': { kind: 'number', min: 1e-6, max: 1, default: 0.001, help: 'retention of an example is uniform in [min, max]' },
  'max-retain': { kind: 'number', min: 1e-6, max: 1, default: 0.8, help: 'see --min-retain' },
  'min-context': { kind: 'int', min: 1, help: "book tokens in a context, at least (default: a quarter of the model's window)" },
  'max-context': { kind: 'int', min: 1, help: "book tokens in a context, at most (default: 3/4 of the model's window)" },
  kinds: { kind: 'list', choices: [...DISTILL_KINDS], default: [...DISTILL_KINDS], help: 'example kinds, drawn uniformly' },
  'scorer-grad': { kind: 'string', choices: [...SCORER_GRADS], default: 'logsigmoid', help: "the scorer's gradient: log sigmoid(score) added to the student's logits (spec), the same gradient with the forward unchanged, or none" },
  routing: { kind: 'bool', default: true, help: 'Q and O adapters only on kept tokens (--no-routing: the ablation)' },
  'score-layer': { kind: 'int', min: 1, help: 'the scorer reads hidden states after this many layers (default: a fifth of the depth, at least 1)' },
  sinks: { kind: 'int', min: 0, default: 4, help: 'first tokens always kept' },
  'eval-examples': { kind: 'int', min: 0, default: 16, help: 'held-out examples (val split) scored at --eval-retain; 0 = none' },
  'eval-retain': { kind: 'number', min: 1e-6, max: 1, default: 0.2, help: 'retention of the held-out evaluation' },
  'eval-every': { kind: 'int', min: 0, default: 50, help: 'held-out evaluation every k steps (and at the end); 0 = only at the end' },
  'save-every': { kind: 'int', min: 0, default: 50, help: 'write the adaptor and a checkpoint every k steps (and at the end and on Ctrl-C); 0 = only then' },
  'log-every': { kind: 'int', min: 1, default: 10, help: 'progress line every k steps' },
  seed: { kind: 'int', min: 0, max: 2 ** 32 - 1, default: 1, help: 'seed of the adaptor and of the data' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

/** Flags that may change when resuming (none changes what is trained); every other one must match the checkpoint's. */
const RESUMABLE = new Set(['resume', 'steps', 'threads', 'save-every', 'eval-every', 'log-every', 'help', 'out']);
const COMMAND = 'train kvdistill';

function required(f: FlagValues, name: string): string {
  const v = f[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`${COMMAND}: --${name} is required`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  let { flags, explicit } = parseExplicit(argv, SPECS, COMMAND);
  if (flags.help) {
    process.stdout.write(`usage: freqkv train kvdistill --model DIR --data DIR --out DIR [flags]\n` +
      `       freqkv train kvdistill --out DIR --resume [--steps N]\n\n` +
      `Progress goes to stderr; a JSON summary to stdout at the end. Ctrl-C writes the adaptor and a\n` +
      `checkpoint, then exits (status 130); --resume continues bit-exactly (a cosine schedule is laid out\n` +
      `over --steps: keep it to get the run that was not interrupted).\n\n${helpText(SPECS)}\n`);
    return 0;
  }
  const out = required(flags, 'out');
  const adaptorFile = path.join(out, 'adaptor.safetensors');
  const ckptFile = path.join(out, 'checkpoint.safetensors');
  const logFile = path.join(out, 'log.jsonl');
  let resumeMeta = null;
  if (flags.resume) {
    if (!fs.existsSync(ckptFile)) throw new UsageError(`${COMMAND}: --resume but ${ckptFile} does not exist`);
    resumeMeta = await readCheckpointMeta(ckptFile);
    if (resumeMeta.run.kind !== 'kvdistill') throw new UsageError(`${COMMAND}: ${ckptFile} is a ${String(resumeMeta.run.kind)} checkpoint, not a kvdistill one`);
    ({ flags, explicit } = resumedFlags(COMMAND, ckptFile, resumeMeta.run.flags as FlagValues, flags, explicit, RESUMABLE));
  } else {
    for (const f of [adaptorFile, ckptFile]) {
      if (fs.existsSync(f)) throw new UsageError(`${COMMAND}: ${f} already exists; pass --resume to continue it, or choose another --out`);
    }
  }
  const modelDir = required(flags, 'model'), dataDir = required(flags, 'data');
  const be = getBackend();
  if (flags.threads !== undefined) be.setThreads(flags.threads as number);

  const model = await loadModel(modelDir);
  const c = model.config;
  const manifest = readTokenManifest(dataDir);
  if (manifest.vocabSize !== c.vocabSize) throw new Error(`${dataDir}: the dataset's vocabulary (${manifest.vocabSize}) differs from the model's (${c.vocabSize})`);
  const train = readTokenSplit(dataDir, 'train', manifest);
  const val = manifest.splits.val ? readTokenSplit(dataDir, 'val', manifest) : null;
  const manifestTok = (manifest.tokenizer as { dir?: unknown } | undefined)?.dir;
  const tokDir = (flags.tokenizer as string | undefined) ?? (typeof manifestTok === 'string' && fs.existsSync(manifestTok) ? manifestTok : modelDir);
  const tok = await loadTokenizer(tokDir);
  const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }) };

  const window = c.maxPositionEmbeddings;
  const minContext = (flags['min-context'] as number | undefined) ?? Math.max(8, Math.floor(window / 4));
  const maxContext = (flags['max-context'] as number | undefined) ?? Math.max(minContext, Math.floor((3 * window) / 4));
  if (maxContext < minContext) throw new UsageError(`${COMMAND}: --max-context ${maxContext} is below --min-context ${minContext}`);
  const minRetain = flags['min-retain'] as number, maxRetain = flags['max-retain'] as number;
  if (maxRetain < minRetain) throw new UsageError(`${COMMAND}: --max-retain ${maxRetain} is below --min-retain ${minRetain}`);
  // stored resolved, so that a resume compares (and rebuilds) the contexts actually used
  flags['min-context'] = minContext;
  flags['max-context'] = maxContext;
  const dataOpts = { minContext, maxContext, kinds: flags.kinds as DistillKind[], bos: c.bosTokenId ?? manifest.bosTokenId };

  const seed = flags.seed as number;
  const kd = new KVDistill(model, {
    rank: flags.rank as number, alpha: flags.alpha as number, scoreLayer: flags['score-layer'] as number | undefined,
    sinks: flags.sinks as number, routing: flags.routing as boolean, seed, backend: be,
  });
  const opt = distillOptimizer(kd);
  const frozen = distillFrozenChecksum(kd);
  const state: TrainState = { step: 0, tokens: 0, elapsedMs: 0 };
  let draws = { data: 0, retain: 0 };
  const steps = flags.steps as number;
  fs.mkdirSync(out, { recursive: true });
  const log = (rec: Record<string, unknown>) => fs.appendFileSync(logFile, JSON.stringify({ ...rec, time: new Date().toISOString() }) + '\n');
  if (resumeMeta) {
    const meta = await restoreDistillCheckpoint(ckptFile, kd, opt);
    Object.assign(state, meta.state);
    draws = readDraws(meta.run.draws, ckptFile);
    if (state.step >= steps) throw new UsageError(`${COMMAND}: --steps ${steps}: ${ckptFile} is already at step ${state.step}; give more steps to continue`);
    log({ type: 'resume', step: state.step, draws });
  }
  // the streams replayed to where the checkpoint left them
  const dataRng = new CountedRng(seed + 1, draws.data), retainRng = new CountedRng(seed + 2, draws.retain);
  const evalRng = rng(seed + 3);
  const evalSet: KindedExample[] = val ? Array.from({ length: flags['eval-examples'] as number }, () => distillExample(evalRng, val.tokens, codec, dataOpts)) : [];
  const evalTeachers = evalSet.map((ex) => kd.teacherLogits(ex));
  const evalRetain = flags['eval-retain'] as number;
  const evaluate = () => {
    if (evalSet.length === 0) return null;
    let loss = 0, exact = 0;
    for (let i = 0; i < evalSet.length; i++) {
      const ex = evalSet[i];
      const r = kd.loss(ex, { retention: evalRetain, lambda: flags.lambda as number, teacher: evalTeachers[i] }); // inference-time student
      loss += r.loss / evalSet.length;
      exact += greedyMatches(kd, ex, evalRetain) ? 1 / evalSet.length : 0;
    }
    return { loss, exactMatch: exact };
  };

  const counts = countParams(kd.params());
  if (!resumeMeta) log({ type: 'start', flags, trainable: counts.trainable, minContext, maxContext });
  process.stderr.write(`${COMMAND}: ${c.nLayers} layers, hidden ${c.hiddenSize}; adaptor rank ${flags.rank} + scorer = ${counts.trainable} parameters; ` +
    `contexts ${minContext}..${maxContext} book tokens; retention ${minRetain}..${maxRetain}; ${evalSet.length} held-out examples` +
    `${resumeMeta ? `; resumed at step ${state.step}` : ''}\n`);
  let lastVal = null;
  if (!resumeMeta) {
    lastVal = evaluate();
    if (lastVal) log({ type: 'val', step: 0, ...lastVal });
  }

  const runRecord = () => ({ kind: 'kvdistill', flags: { ...flags, resume: false }, draws: { data: dataRng.draws, retain: retainRng.draws } });
  const save = async () => {
    const t0 = Date.now();
    await kd.save(adaptorFile);
    await saveDistillCheckpoint(ckptFile, kd, opt, runRecord(), state, frozen);
    log({ type: 'checkpoint', step: state.step, file: ckptFile, ms: Date.now() - t0 });
  };
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    process.stderr.write(`${COMMAND}: interrupted, writing the adaptor and a checkpoint (press Ctrl-C again to abort without them)\n`);
  };
  process.once('SIGINT', onSigint);
  const started = Date.now();
  let windowStart = started, windowSteps = 0, stepStart = started;
  let last = { loss: NaN };
  const logEvery = flags['log-every'] as number, evalEvery = flags['eval-every'] as number, saveEvery = flags['save-every'] as number;
  try {
    await trainKVDistill(kd, () => {
      const ex = distillExample(dataRng.next, train.tokens, codec, dataOpts);
      state.tokens += ex.context.length + ex.question.length + ex.answer.length;
      return ex;
    }, retainRng.next, {
      steps, startStep: state.step, batch: flags.batch as number, clip: flags.clip as number, lambda: flags.lambda as number, minRetain, maxRetain,
      scorerGrad: flags['scorer-grad'] as ScorerGrad, schedule: { kind: flags.schedule as ScheduleKind, lr: flags.lr as number, warmup: flags.warmup as number, steps },
      onStep: async (rec) => {
        const now = Date.now();
        state.step = rec.step;
        state.elapsedMs += now - stepStart;
        last = rec;
        windowSteps++;
        const end = rec.step === steps;
        if (rec.step % logEvery === 0 || end) {
          const secPerStep = (now - windowStart) / 1000 / windowSteps;
          log({ type: 'step', ...rec, tokens: state.tokens, secPerStep, elapsedSec: state.elapsedMs / 1000 });
          process.stderr.write(`step ${rec.step}/${steps} loss ${rec.loss.toFixed(4)} (KL t||s ${rec.klTS.toFixed(4)}, s||t ${rec.klST.toFixed(4)}) kept ${rec.meanKept.toFixed(1)} ` +
            `|g| ${rec.gradNorm.toFixed(3)} lr ${rec.lr.toExponential(2)}  ${secPerStep.toPrecision(3)} s/step  ETA ${formatDuration(secPerStep * (steps - rec.step))}\n`);
          windowStart = now;
          windowSteps = 0;
        }
        if ((evalEvery > 0 && rec.step % evalEvery === 0) || end) {
          lastVal = evaluate();
          if (lastVal) {
            log({ type: 'val', step: rec.step, ...lastVal });
            process.stderr.write(`  held-out at retention ${evalRetain}: loss ${lastVal.loss.toFixed(4)}, exact match ${(100 * lastVal.exactMatch).toFixed(1)}%\n`);
          }
        }
        await new Promise<void>((resolve) => setImmediate(resolve)); // let a SIGINT in
        if ((saveEvery > 0 && rec.step % saveEvery === 0) || end || interrupted) await save();
        stepStart = Date.now();
        return interrupted ? 'stop' : undefined;
      },
    }, opt);
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  const stopped = interrupted && state.step < steps ? 'interrupted' : 'done';
  const summary = { out, adaptor: adaptorFile, stopped, step: state.step, steps, loss: last.loss, val: lastVal, seconds: Number(((Date.now() - started) / 1000).toFixed(1)), trainable: counts.trainable };
  log({ type: 'end', ...summary });
  process.stdout.write(JSON.stringify(summary) + '\n');
  return stopped === 'interrupted' ? 130 : 0;
}

/** The data streams' draw counts stored in a checkpoint's run record. */
function readDraws(v: unknown, file: string): { data: number; retain: number } {
  const d = v as { data?: unknown; retain?: unknown } | undefined;
  const ok = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  if (!d || !ok(d.data) || !ok(d.retain)) throw new Error(`${file}: field "run.draws" must be {data, retain}, whole numbers >= 0, got ${JSON.stringify(v)}`);
  return { data: d.data as number, retain: d.retain as number };
}

/** The greedy answer over the compressed context equals the reference, token for token. */
function greedyMatches(kd: KVDistill, ex: KindedExample, retention: number): boolean {
  const cache = kd.compress(ex.context, retention);
  let logits = forward(kd.model, ex.question, cache);
  for (let i = 0; i < ex.answer.length; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    if (best !== ex.answer[i]) return false;
    if (i + 1 < ex.answer.length) logits = forward(kd.model, [best], cache);
  }
  return true;
}
