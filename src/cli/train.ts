// `freqkv train pretrain|finetune`: the training loop of src/train/ driven from the command line.
//
//   pretrain: a fresh model (a preset or a config.json) on a token dataset written by `freqkv data`
//             (books plus the synthetic retrieval share recorded in its manifest).
//   finetune: a Hugging Face model folder, fully or with LoRA (+ chosen trainable groups); the
//             exported model has LoRA merged, so any loader of the format reads it.
//
// <out> receives the model (config.json, model.safetensors, tokenizer files) at the end, after an
// interrupt and at a time limit; <out>/train/ holds checkpoint.safetensors (for --resume) and
// log.jsonl (one JSON object per line: start, step, val, checkpoint, end).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FlagSpec, type FlagValues, helpText, parseArgs, UsageError } from './args.js';
import { getBackend } from '../kernels/index.js';
import { configToJson, parseConfig } from '../model/config.js';
import { loadModel } from '../model/loader.js';
import { copyTokenizerFiles, saveModel } from '../model/writer.js';
import type { LlamaConfig, Model } from '../model/types.js';
import { readTokenManifest, readTokenSplit, type TokenManifest, type TokenSplit } from '../data/tokens.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { AdamW } from '../train/adamw.js';
import type { AttentionFactory } from '../train/attention.js';
import { causalAttention } from '../train/attention.js';
import { freqkvAttention } from '../train/freqkv-attention.js';
import { evenWindows, MixedWindowBatcher } from '../train/batcher.js';
import { frozenChecksum, readCheckpointMeta, restoreCheckpoint, type TrainState } from '../train/checkpoint.js';
import { initModel } from '../train/init.js';
import { LORA_TARGETS, type LoraTarget, mergeLora } from '../train/lora.js';
import { trainLoop } from '../train/loop.js';
import { TrainableModel } from '../train/model.js';
import { countParams, PARAM_GROUPS, type ParamGroup } from '../train/params.js';
import { SCHEDULES, type ScheduleKind } from '../train/schedule.js';
import { tinyConfig } from '../model/random.js';

/**
 * Fine-tuning methods: how one training sequence attends. The hook runs before the training
 * model is built and may adjust the config it is given (the model's own): the exported model
 * carries that config, so inference uses what training used.
 *   full:     plain causal attention over the whole sequence (full cache).
 *   freqkv:   the FreqKV grouped schedule (FREQKV.md sections 2-3), compression in the gradient path.
 *   longlora: full cache with positions interpolated into the window (LongLoRA's recipe): linear
 *             RoPE scaling by T/N, set on the config so that invFreq and the exported
 *             config.json's rope_scaling both carry it.
 */
export const FINETUNE_METHODS: Record<string, { summary: string; attention: (config: LlamaConfig, flags: FlagValues) => AttentionFactory }> = {
  full: { summary: 'plain causal attention over the whole sequence (full cache)', attention: () => causalAttention },
  freqkv: {
    summary: 'FreqKV grouped schedule: sequences longer than --cache-size are compressed in the frequency domain inside the forward (and backward)',
    attention: (config, flags) => {
      const opts = { cacheSize: (flags['cache-size'] as number | undefined) ?? config.maxPositionEmbeddings, sinks: flags.sinks as number, retain: flags.retain as number };
      try {
        return freqkvAttention(opts);
      } catch (err) {
        throw new UsageError(`train finetune: ${(err as Error).message}`);
      }
    },
  },
  longlora: {
    summary: "full cache, positions scaled by N/T (linear rope_scaling, factor T/N with N the model's context window) and written to the exported config",
    attention: (config, flags) => {
      const T = (flags['seq-len'] as number | undefined) ?? config.maxPositionEmbeddings;
      const N = config.maxPositionEmbeddings;
      if (T <= N) return causalAttention; // nothing to interpolate
      const prior = config.ropeScaling;
      if (prior && prior.type !== 'linear') throw new UsageError(`train finetune: --method longlora composes with linear rope_scaling only; the model has "${prior.type}"`);
      config.ropeScaling = { type: 'linear', factor: (prior?.factor ?? 1) * (T / N) };
      return causalAttention;
    },
  },
};

/** Model shapes for pretraining; vocabSize and bos/eos come from the dataset. */
export const PRESETS: Record<string, { summary: string; config: Partial<LlamaConfig> }> = {
  tiny: {
    summary: 'hidden 64, 2 layers, 4 heads (2 KV), context 64: for tests',
    config: { hiddenSize: 64, intermediateSize: 176, nLayers: 2, nHeads: 4, nKVHeads: 2, maxPositionEmbeddings: 64, tieWordEmbeddings: true },
  },
  small: {
    summary: 'hidden 256, 6 layers, 8 heads (2 KV, GQA), ff 704, context 256, tied: ~5.2M parameters; the shipped model',
    config: { hiddenSize: 256, intermediateSize: 704, nLayers: 6, nHeads: 8, nKVHeads: 2, maxPositionEmbeddings: 256, tieWordEmbeddings: true },
  },
  'bench-4m': {
    summary: 'hidden 256, 4 layers, 4 heads, ff 688, context 128, tied: ~4.2M parameters with a 4096 vocabulary',
    config: { hiddenSize: 256, intermediateSize: 688, nLayers: 4, nHeads: 4, nKVHeads: 4, maxPositionEmbeddings: 128, tieWordEmbeddings: true },
  },
};

const COMMON: Record<string, FlagSpec> = {
  data: { kind: 'string', help: 'token dataset folder written by `freqkv data` (required)' },
  out: { kind: 'string', help: 'output folder: the model, and train/ with checkpoint and log (required)' },
  resume: { kind: 'bool', default: false, help: 'continue from <out>/train/checkpoint.safetensors with its options' },
  steps: { kind: 'int', min: 1, help: 'optimiser steps in total' },
  batch: { kind: 'int', min: 1, default: 8, help: 'sequences per micro-batch' },
  'seq-len': { kind: 'int', min: 2, help: "tokens per training sequence (default: the model's context window)" },
  accum: { kind: 'int', min: 1, default: 1, help: 'micro-batches accumulated per optimiser step' },
  lr: { kind: 'number', min: 0, help: 'peak learning rate' },
  warmup: { kind: 'int', min: 0, help: 'linear warm-up steps' },
  schedule: { kind: 'string', choices: [...SCHEDULES], help: 'learning-rate schedule after warm-up' },
  'min-lr-ratio': { kind: 'number', min: 0, max: 1, default: 0.1, help: 'cosine floor as a fraction of --lr' },
  'weight-decay': { kind: 'number', min: 0, help: 'AdamW decoupled weight decay (matrices only)' },
  beta1: { kind: 'number', min: 0, max: 0.999999, default: 0.9, help: 'AdamW beta1' },
  beta2: { kind: 'number', min: 0, max: 0.999999, default: 0.95, help: 'AdamW beta2' },
  clip: { kind: 'number', min: 0, default: 1, help: 'global gradient-norm clip; 0 = off' },
  seed: { kind: 'int', min: 0, max: 2 ** 32 - 1, default: 1, help: 'seed of the initial weights / LoRA and of the data order' },
  'eval-every': { kind: 'int', min: 0, default: 200, help: 'validation every k steps (and at the end); 0 = never' },
  'eval-windows': { kind: 'int', min: 1, default: 64, help: 'validation windows (rounded up to a multiple of --batch)' },
  'save-every': { kind: 'int', min: 0, default: 200, help: 'checkpoint every k steps (and at the end and on Ctrl-C); 0 = only then' },
  'log-every': { kind: 'int', min: 1, default: 10, help: 'progress line and log record every k steps' },
  'time-limit': { kind: 'number', min: 0, default: 0, help: 'stop with a checkpoint after this many seconds; 0 = none' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  'save-dtype': { kind: 'string', choices: ['F32', 'BF16', 'F16'], default: 'F32', help: 'dtype of the exported model.safetensors' },
  tokenizer: { kind: 'string', help: "tokenizer folder copied next to the model (default: the dataset's, from its manifest)" },
  'synthetic-share': { kind: 'number', min: 0, max: 1, help: "share of windows from the dataset's synthetic retrieval split (default: the manifest's)" },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

/** COMMON with some defaults replaced (pretraining and fine-tuning want different ones). */
function withDefaults(defaults: Record<string, string | number>): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const [k, spec] of Object.entries(COMMON)) out[k] = k in defaults ? { ...spec, default: defaults[k] } : spec;
  return out;
}

const PRETRAIN: Record<string, FlagSpec> = {
  ...withDefaults({ steps: 2000, lr: 1e-3, warmup: 100, schedule: 'cosine', 'weight-decay': 0.1 }),
  config: { kind: 'string', default: 'tiny', help: `a preset (${Object.keys(PRESETS).join(', ')}) or a config.json file` },
  'init-std': { kind: 'number', min: 0, default: 0.02, help: 'standard deviation of the initial weights' },
};

const FINETUNE: Record<string, FlagSpec> = {
  ...withDefaults({ steps: 200, lr: 2e-5, warmup: 20, schedule: 'constant', 'weight-decay': 0 }),
  model: { kind: 'string', help: 'model folder in Hugging Face layout to fine-tune (required)' },
  method: { kind: 'string', default: 'full', choices: Object.keys(FINETUNE_METHODS), help: 'how a training sequence attends: full (causal, full cache), freqkv (FreqKV grouped compression), longlora (full cache, positions interpolated by N/T)' },
  'lora-rank': { kind: 'int', min: 0, default: 0, help: 'LoRA rank; 0 = no LoRA' },
  'lora-alpha': { kind: 'number', min: 0, help: 'LoRA alpha (default: 2 x rank)' },
  'lora-targets': { kind: 'list', choices: [...LORA_TARGETS], default: ['q', 'k', 'v', 'o'], help: 'projections that get LoRA adapters' },
  train: { kind: 'list', choices: [...PARAM_GROUPS, 'none'], help: 'fully trainable groups (default: all without LoRA, none with it)' },
  'cache-size': { kind: 'int', min: 2, help: "--method freqkv: N, rows of a key set; longer sequences are compressed (default: the model's context window)" },
  sinks: { kind: 'int', min: 0, default: 4, help: '--method freqkv: first tokens never compressed' },
  retain: { kind: 'number', min: 0, max: 1, default: 0.5, help: '--method freqkv: gamma in (0, 1); each compression keeps floor((N - sinks) x gamma) rows' },
};

/** Flags that may change when resuming; every other one must match the checkpoint's. */
const RESUMABLE = new Set(['resume', 'steps', 'eval-every', 'save-every', 'log-every', 'time-limit', 'threads', 'save-dtype', 'help', 'out']);

function usage(kind: string, specs: Record<string, FlagSpec>): string {
  const head = kind === 'pretrain'
    ? 'usage: freqkv train pretrain --data DIR --out DIR [--config PRESET|config.json] [flags]'
    : 'usage: freqkv train finetune --model DIR --data DIR --out DIR [--lora-rank 8 --train embed,norm] [flags]';
  const presets = kind === 'pretrain' ? `\npresets:\n${Object.entries(PRESETS).map(([k, p]) => `  ${k.padEnd(10)} ${p.summary}`).join('\n')}\n` : '';
  return `${head}\n\nProgress goes to stderr; a JSON summary to stdout at the end. Ctrl-C writes a checkpoint and\nthe model, then exits (status 130); --resume continues bit-exactly.\n${presets}\n${helpText(specs)}\n`;
}

/** Parses flags, noting which were given explicitly (the rest take the spec's defaults). No positional arguments. */
export function parseExplicit(argv: string[], specs: Record<string, FlagSpec>, command: string): { flags: FlagValues; explicit: Set<string> } {
  const bare: Record<string, FlagSpec> = {};
  for (const [k, s] of Object.entries(specs)) bare[k] = { ...s, default: undefined };
  const { flags, positional } = parseArgs(argv, bare, command);
  if (positional.length > 0) throw new UsageError(`${command}: unexpected argument "${positional[0]}"`);
  const explicit = new Set(Object.keys(flags).filter((k) => flags[k] !== undefined));
  const out: FlagValues = {};
  for (const [k, s] of Object.entries(specs)) out[k] = s.default;
  for (const k of explicit) out[k] = flags[k];
  return { flags: out, explicit };
}

/**
 * The flags of a resumed run: the checkpoint's (`saved`), with the `resumable` ones given now on
 * top. A UsageError names any other flag given now with a value that differs from the saved one.
 */
export function resumedFlags(command: string, file: string, saved: FlagValues, flags: FlagValues, explicit: ReadonlySet<string>,
  resumable: ReadonlySet<string>): { flags: FlagValues; explicit: Set<string> } {
  for (const k of explicit) {
    if (resumable.has(k)) continue;
    if (JSON.stringify(saved[k]) !== JSON.stringify(flags[k])) {
      throw new UsageError(`${command}: --${k} ${JSON.stringify(flags[k])} differs from the checkpoint's ${JSON.stringify(saved[k])} (${file}); a resumed run keeps its options (only ${[...resumable].filter((x) => x !== 'help' && x !== 'resume').map((x) => '--' + x).join(', ')} may change)`);
    }
  }
  const keep: FlagValues = {};
  for (const k of resumable) if (explicit.has(k)) keep[k] = flags[k];
  return { flags: { ...saved, ...keep, resume: true }, explicit: new Set([...explicit, ...Object.keys(saved)]) };
}

function requireString(f: FlagValues, name: string, kind: string): string {
  const v = f[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`train ${kind}: --${name} is required`);
  return v;
}

/** The pretraining config: a preset completed from the dataset, or a config.json checked against it. */
async function pretrainConfig(spec: string, manifest: TokenManifest, tokenizerDir: string | null): Promise<LlamaConfig> {
  if (PRESETS[spec]) {
    let eos: number[] = manifest.bosTokenId === null ? [] : [manifest.bosTokenId];
    if (tokenizerDir && fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
      const t = await loadTokenizer(tokenizerDir);
      if (t.eosIds.length > 0) eos = t.eosIds;
    }
    return tinyConfig({ ...PRESETS[spec].config, vocabSize: manifest.vocabSize, bosTokenId: manifest.bosTokenId, eosTokenIds: eos });
  }
  if (!fs.existsSync(spec)) throw new UsageError(`train pretrain: --config expects a preset (${Object.keys(PRESETS).join(', ')}) or a config.json file, got "${spec}"`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(spec, 'utf8'));
  } catch (err) {
    throw new Error(`${spec}: not valid JSON (${(err as Error).message})`);
  }
  const c = parseConfig(json, spec);
  if (c.vocabSize !== manifest.vocabSize) throw new Error(`${spec}: vocab_size ${c.vocabSize} differs from the dataset's ${manifest.vocabSize}`);
  return c;
}

interface Data {
  manifest: TokenManifest;
  train: TokenSplit;
  val: TokenSplit | null;
  synthetic: TokenSplit | null;
  share: number;
}

function readData(dir: string, shareFlag: number | undefined): Data {
  const manifest = readTokenManifest(dir);
  const train = readTokenSplit(dir, 'train', manifest);
  const val = manifest.splits.val ? readTokenSplit(dir, 'val', manifest) : null;
  const syn = manifest.synthetic as { split?: unknown; share?: unknown } | undefined;
  const share = shareFlag ?? (typeof syn?.share === 'number' ? syn.share : 0);
  const synName = typeof syn?.split === 'string' ? syn.split : 'synthetic';
  const synthetic = share > 0 && manifest.splits[synName] ? readTokenSplit(dir, synName, manifest) : null;
  if (share > 0 && !synthetic) throw new Error(`${dir}: the manifest asks for a synthetic share of ${share} but has no split "${synName}"`);
  return { manifest, train, val, synthetic, share };
}

export async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === 'kvdistill') return (await import('./kvdistill.js')).run(rest); // KV-Distill adaptor: its own loop
  if (kind !== 'pretrain' && kind !== 'finetune') {
    if (kind === undefined || kind === '--help' || kind === '-h') {
      process.stdout.write(`usage: freqkv train pretrain|finetune|kvdistill [flags]   (freqkv train pretrain --help)\n`);
      return kind === undefined ? 2 : 0;
    }
    throw new UsageError(`train: expected "pretrain", "finetune" or "kvdistill", got "${kind}"`);
  }
  const specs = kind === 'pretrain' ? PRETRAIN : FINETUNE;
  let { flags, explicit } = parseExplicit(rest, specs, `train ${kind}`);
  if (flags.help) {
    process.stdout.write(usage(kind, specs));
    return 0;
  }
  const out = requireString(flags, 'out', kind);
  const trainDir = path.join(out, 'train');
  const ckptFile = path.join(trainDir, 'checkpoint.safetensors');
  const logFile = path.join(trainDir, 'log.jsonl');

  let resumeMeta = null;
  if (flags.resume) {
    if (!fs.existsSync(ckptFile)) throw new UsageError(`train ${kind}: --resume but ${ckptFile} does not exist`);
    resumeMeta = await readCheckpointMeta(ckptFile);
    if (resumeMeta.run.kind !== kind) throw new UsageError(`train ${kind}: ${ckptFile} is a ${String(resumeMeta.run.kind)} checkpoint`);
    ({ flags, explicit } = resumedFlags(`train ${kind}`, ckptFile, resumeMeta.run.flags as FlagValues, flags, explicit, RESUMABLE));
  }

  const dataDir = requireString(flags, 'data', kind);
  const data = readData(dataDir, flags['synthetic-share'] as number | undefined);
  const manifestTok = (data.manifest.tokenizer as { dir?: unknown } | undefined)?.dir;
  const tokenizerDir = (flags.tokenizer as string | undefined) ?? (typeof manifestTok === 'string' ? manifestTok : null);

  const be = getBackend();
  if (flags.threads !== undefined) be.setThreads(flags.threads as number);

  // ---- the model and what trains
  let model: Model;
  let groups: ParamGroup[] = ['all'];
  let lora = null;
  let attention: AttentionFactory = causalAttention;
  if (kind === 'pretrain') {
    const config = await pretrainConfig(flags.config as string, data.manifest, tokenizerDir);
    model = initModel(config, flags.seed as number, flags['init-std'] as number);
  } else {
    const modelDir = requireString(flags, 'model', kind);
    model = await loadModel(modelDir);
    if (model.config.vocabSize !== data.manifest.vocabSize) {
      throw new Error(`${dataDir}: the dataset's vocabulary (${data.manifest.vocabSize}) differs from the model's (${model.config.vocabSize}); tokenize the data with the model's tokenizer`);
    }
    const rank = flags['lora-rank'] as number;
    const train = (flags.train as string[] | undefined) ?? (rank > 0 ? ['none'] : ['all']);
    if (train.includes('none') && train.length > 1) throw new UsageError('train finetune: --train none cannot be combined with other groups');
    groups = train.filter((g) => g !== 'none') as ParamGroup[];
    if (rank > 0) lora = { rank, alpha: (flags['lora-alpha'] as number | undefined) ?? 2 * rank, targets: flags['lora-targets'] as LoraTarget[] };
    if (rank === 0 && groups.length === 0) throw new UsageError('train finetune: nothing to train (give --lora-rank or --train)');
    attention = FINETUNE_METHODS[flags.method as string].attention(model.config, flags);
  }
  const seqLen = (flags['seq-len'] as number | undefined) ?? model.config.maxPositionEmbeddings;
  flags['seq-len'] = seqLen;
  const batch = flags.batch as number;
  const tm = new TrainableModel(model, { batch, seqLen, train: groups, lora, loraSeed: flags.seed as number, attention, backend: be });
  const opt = new AdamW(tm.trainable(), {
    beta1: flags.beta1 as number, beta2: flags.beta2 as number, eps: 1e-8, weightDecay: flags['weight-decay'] as number,
  });
  const state: TrainState = { step: 0, tokens: 0, elapsedMs: 0 };
  fs.mkdirSync(trainDir, { recursive: true });
  if (resumeMeta) {
    const meta = await restoreCheckpoint(ckptFile, tm.params, opt);
    Object.assign(state, meta.state);
    fs.appendFileSync(logFile, JSON.stringify({ type: 'resume', step: state.step, time: new Date().toISOString() }) + '\n');
  } else if (fs.existsSync(ckptFile)) {
    throw new UsageError(`train ${kind}: ${ckptFile} already exists; pass --resume to continue it, or choose another --out`);
  }

  const counts = countParams(tm.params);
  const evalCount = Math.ceil((flags['eval-windows'] as number) / batch) * batch;
  const evalWin = data.val && data.val.tokens.length > seqLen ? evenWindows(data.val.tokens, evalCount, seqLen) : null;
  if (!evalWin) process.stderr.write(`train ${kind}: no validation split long enough in ${dataDir}; validation is off\n`);
  process.stderr.write(`train ${kind}: ${model.config.nLayers} layers, hidden ${model.config.hiddenSize}, vocab ${model.config.vocabSize}; ` +
    `${counts.total} parameters, ${counts.trainable} trainable; batch ${batch} x ${seqLen} tokens x ${flags.accum} accum; ` +
    `backend ${be.name} (${be.threads()} threads)${data.synthetic ? `; synthetic share ${data.share}` : ''}\n`);

  const runRecord = { kind, flags: { ...flags, resume: false } };
  const steps = flags.steps as number;
  const result = await trainLoop(tm, new MixedWindowBatcher(data.train, data.synthetic, data.share, batch, seqLen, flags.seed as number), opt, state, {
    steps,
    accum: flags.accum as number,
    schedule: { kind: flags.schedule as ScheduleKind, lr: flags.lr as number, warmup: flags.warmup as number, steps, minRatio: flags['min-lr-ratio'] as number },
    clip: flags.clip as number,
    evalEvery: flags['eval-every'] as number,
    evalWindows: evalWin,
    saveEvery: flags['save-every'] as number,
    logEvery: flags['log-every'] as number,
    timeLimitSec: flags['time-limit'] as number,
  }, {
    checkpointFile: ckptFile,
    logFile,
    checkpointMeta: () => ({ config: configToJson(model.config), run: runRecord }),
    frozenChecksum: frozenChecksum(tm.params),
  });

  const exported = tm.lora.length > 0 ? mergeLora(model, tm.lora, be) : model;
  const tokPerSec = result.state.tokens / Math.max(1e-9, result.state.elapsedMs / 1000);
  await saveModel(out, exported, {
    dtype: flags['save-dtype'] as 'F32' | 'BF16' | 'F16',
    extra: { freqkv_training: { kind, step: result.state.step, tokens: result.state.tokens, seconds: Math.round(result.state.elapsedMs / 1000), valLoss: result.valLoss } },
  });
  if (tokenizerDir && fs.existsSync(tokenizerDir)) await copyTokenizerFiles(tokenizerDir, out);
  else if (kind === 'finetune') await copyTokenizerFiles(flags.model as string, out);
  const summary = {
    out, kind, stopped: result.stopped, step: result.state.step, steps, loss: result.lastLoss, valLoss: result.valLoss,
    valPpl: Math.exp(result.valLoss), tokens: result.state.tokens, seconds: Number((result.state.elapsedMs / 1000).toFixed(1)),
    tokPerSec: Math.round(tokPerSec), parameters: counts.total, trainable: counts.trainable,
  };
  process.stdout.write(JSON.stringify(summary) + '\n');
  return result.stopped === 'interrupted' ? 130 : 0;
}
