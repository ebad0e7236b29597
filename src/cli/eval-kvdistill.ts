// `freqkv eval kvdistill`: held-out questions built from the TEST books (passkeys, facts, quotes;
// src/kvdistill/data.ts), answered from contexts compressed at several retentions by KV-Distill
// adaptors and the baselines (src/kvdistill/eval.ts, baselines.ts); exact match and answer-token
// KL against the full context. Writes <out>/result.json, report.md and two SVG plots; resumable
// with --resume (state.json); progress with an ETA on stderr.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FlagSpec, UsageError } from './args.js';
import { header, interruptible, loadEvalModel, openState, parseSub, setupBackend } from './eval.js';
import { readTokenManifest, readTokenSplit } from '../data/tokens.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { rng } from '../model/random.js';
import { RESULT_FILE, toJson, writeOutputs } from '../eval/output.js';
import { shortHash, tokensFingerprint } from '../eval/state.js';
import { KVDistill } from '../kvdistill/distill.js';
import { DISTILL_KINDS, type DistillKind, distillExample, type KindedExample } from '../kvdistill/data.js';
import {
  DEFAULT_EVAL_METHODS, DEFAULT_RETENTIONS, EVAL_METHODS, type AdaptorInfo, type EvalMethodName, type EvalMethodSpec, type KVDistillEvalResult,
  kvdCharts, kvdExactTable, kvdReport, METHOD_NOTES, runKVDistillEval, summarize, type UnitRecord,
} from '../kvdistill/eval.js';

const CMD = 'eval kvdistill';
const QUICK_RETENTIONS = [0.05, 0.2];
const EVAL_KINDS: DistillKind[] = ['passkey', 'fact', 'quote'];

export const FLAGS: Record<string, FlagSpec> = {
  model: { kind: 'string', help: 'frozen model folder in Hugging Face layout (default: the shipped model)' },
  adaptor: { kind: 'string', help: 'a KV-Distill adaptor file (freqkv train kvdistill); its method is labelled "kvdistill"' },
  adaptors: { kind: 'list', help: 'more adaptors for ablations, LABEL=FILE comma list (e.g. lambda1=runs/l1/adaptor.safetensors); methods "kvdistill:LABEL"' },
  retain: { kind: 'list', help: `retentions in (0, 1] (default ${DEFAULT_RETENTIONS.join(',')}; --quick ${QUICK_RETENTIONS.join(',')})` },
  methods: { kind: 'list', choices: [...EVAL_METHODS], default: [...DEFAULT_EVAL_METHODS], help: 'methods; kvdistill stands for every adaptor given' },
  data: { kind: 'string', default: 'data', help: 'token dataset folder written by `freqkv data`, tokenised with the model\'s tokenizer' },
  split: { kind: 'string', default: 'test', help: 'split of --data the contexts come from (held-out books)' },
  tokenizer: { kind: 'string', help: "tokenizer folder for the inserted facts and questions (default: the dataset's, else the model's)" },
  examples: { kind: 'int', min: 1, help: 'questions (default 60; --quick 3); kinds in turn' },
  kinds: { kind: 'list', choices: [...DISTILL_KINDS], default: [...EVAL_KINDS], help: 'question kinds' },
  'min-context': { kind: 'int', min: 1, help: "book tokens in a context, at least (default: a quarter of the model's window; --quick at most 96)" },
  'max-context': { kind: 'int', min: 1, help: "book tokens in a context, at most (default: 3/4 of the model's window; --quick at most 128)" },
  sinks: { kind: 'int', min: 0, help: "first tokens every baseline always keeps (default: the first adaptor's, else 4)" },
  'freqkv-retain': { kind: 'number', min: 0, max: 1, default: 0.5, help: 'FreqKV gamma of the equal-bytes baseline' },
  seed: { kind: 'int', min: 0, max: 2 ** 32 - 1, default: 1, help: 'seed of the questions' },
  out: { kind: 'string', default: 'runs/kvdistill', help: 'output folder' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  quick: { kind: 'bool', default: false, help: 'small subset for smoke tests (3 questions, 2 retentions, short contexts)' },
  json: { kind: 'bool', default: false, help: 'print the result as one JSON object on stdout' },
  resume: { kind: 'bool', default: false, help: 'continue the run in --out from its state.json' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

/** Retentions in (0, 1], sorted, without repeats. */
export function parseRetentions(items: readonly string[]): number[] {
  const out = items.map((s) => {
    const r = Number(s);
    if (s.trim() === '' || !(r > 0 && r <= 1)) throw new UsageError(`${CMD}: --retain expects numbers in (0, 1], got "${s}"`);
    return r;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

/** --adaptors items: LABEL=FILE, or FILE (labelled by its folder when it is adaptor.safetensors, else its name). */
export function parseAdaptors(items: readonly string[]): { label: string; file: string }[] {
  return items.map((it) => {
    const eq = it.indexOf('=');
    const file = eq >= 0 ? it.slice(eq + 1) : it;
    let label = eq >= 0 ? it.slice(0, eq) : path.basename(file) === 'adaptor.safetensors' ? path.basename(path.dirname(file)) : path.basename(file).replace(/\.safetensors$/, '');
    label = label.trim();
    if (!/^[A-Za-z0-9_.+-]+$/.test(label)) throw new UsageError(`${CMD}: --adaptors label "${label}" must be letters, digits or _ . + -`);
    if (file === '') throw new UsageError(`${CMD}: --adaptors item "${it}" names no file`);
    return { label, file };
  });
}

export async function run(argv: string[]): Promise<number> {
  const f = parseSub(CMD, argv, FLAGS, '--model DIR --adaptor FILE [--adaptors L=FILE,...] [--retain 0.01,...] [--methods ...] [--data data --split test] [--examples K] [--quick] --out DIR');
  if (!f) return 0;
  const quick = f.quick as boolean;
  const retentions = f.retain ? parseRetentions(f.retain as string[]) : quick ? QUICK_RETENTIONS : DEFAULT_RETENTIONS;
  const methodNames = [...new Set(f.methods as EvalMethodName[])];
  const adaptorList: { label: string; file: string }[] = [];
  if (f.adaptor !== undefined) adaptorList.push({ label: 'kvdistill', file: f.adaptor as string });
  if (f.adaptors !== undefined) adaptorList.push(...parseAdaptors(f.adaptors as string[]).map((a) => ({ label: `kvdistill:${a.label}`, file: a.file })));
  if (new Set(adaptorList.map((a) => a.label)).size !== adaptorList.length) throw new UsageError(`${CMD}: --adaptors: two adaptors have the same label`);
  if (methodNames.includes('kvdistill') && adaptorList.length === 0) throw new UsageError(`${CMD}: --methods kvdistill needs --adaptor FILE (or --adaptors LABEL=FILE,...); or leave kvdistill out of --methods`);
  if (!methodNames.includes('kvdistill') && adaptorList.length > 0) throw new UsageError(`${CMD}: --adaptor/--adaptors given but --methods leaves out kvdistill`);
  for (const a of adaptorList) if (!fs.existsSync(a.file)) throw new UsageError(`${CMD}: --adaptor${a.label === 'kvdistill' ? '' : 's'} ${a.file}: no such file`);
  const methods: EvalMethodSpec[] = methodNames.flatMap((m): EvalMethodSpec[] => (m === 'kvdistill' ? adaptorList.map((a) => ({ label: a.label, method: m, adaptor: a.label })) : [{ label: m, method: m }]));
  const out = f.out as string;
  const t0 = performance.now();
  const backend = setupBackend(f);
  const m = await loadEvalModel(CMD, f, []);
  const c = m.model.config;

  const adaptors = new Map<string, KVDistill>();
  const adaptorInfo: AdaptorInfo[] = [];
  for (const a of adaptorList) {
    let kd: KVDistill;
    try {
      kd = await KVDistill.load(a.file, m.model, backend);
    } catch (err) {
      throw new UsageError(`${CMD}: --adaptor ${a.file}: ${(err as Error).message}`);
    }
    adaptors.set(a.label, kd);
    adaptorInfo.push({ label: a.label, file: a.file, fingerprint: shortHash(fs.readFileSync(a.file)), rank: kd.rank, alpha: kd.alpha, sinks: kd.sinks, routing: kd.routing, scoreLayer: kd.scoreLayer });
  }
  const sinks = (f.sinks as number | undefined) ?? adaptorInfo[0]?.sinks ?? 4;
  for (const a of adaptorInfo) if (a.sinks !== sinks) process.stderr.write(`freqkv ${CMD}: note: adaptor ${a.label} keeps ${a.sinks} sinks, the baselines ${sinks}\n`);

  const dataDir = f.data as string, splitName = f.split as string;
  let manifest, split;
  try {
    manifest = readTokenManifest(dataDir);
    split = readTokenSplit(dataDir, splitName, manifest);
  } catch (err) {
    throw new UsageError(`${CMD}: --data ${dataDir} --split ${splitName}: ${(err as Error).message}`);
  }
  if (manifest.vocabSize !== c.vocabSize) throw new UsageError(`${CMD}: ${dataDir} has vocabulary size ${manifest.vocabSize}, the model ${c.vocabSize}; tokenise the data with the model's tokenizer`);
  const manifestTok = (manifest.tokenizer as { dir?: unknown } | undefined)?.dir;
  const tokDir = (f.tokenizer as string | undefined) ?? (typeof manifestTok === 'string' && fs.existsSync(manifestTok) ? manifestTok : m.dir);
  const tok = await loadTokenizer(tokDir);
  const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }) };

  const window = c.maxPositionEmbeddings;
  let minContext = (f['min-context'] as number | undefined) ?? Math.max(8, Math.floor(window / 4));
  let maxContext = (f['max-context'] as number | undefined) ?? Math.max(minContext, Math.floor((3 * window) / 4));
  if (quick) {
    if (f['max-context'] === undefined) maxContext = Math.min(maxContext, 128);
    if (f['min-context'] === undefined) minContext = Math.min(minContext, 96, maxContext);
  }
  if (maxContext < minContext) throw new UsageError(`${CMD}: --max-context ${maxContext} is below --min-context ${minContext}`);
  const kinds = f.kinds as DistillKind[];
  const count = (f.examples as number | undefined) ?? (quick ? 3 : 60);
  const seed = f.seed as number;
  const next = rng(seed);
  const dataOpts = { minContext, maxContext, kinds, bos: c.bosTokenId ?? manifest.bosTokenId };
  let examples: KindedExample[];
  try {
    examples = Array.from({ length: count }, (_, i) => distillExample(next, split.tokens, codec, dataOpts, kinds[i % kinds.length]));
  } catch (err) {
    throw new UsageError(`${CMD}: ${(err as Error).message}`);
  }
  const longest = Math.max(...examples.map((e) => e.context.length + e.question.length + e.answer.length));
  if (longest > window) process.stderr.write(`freqkv ${CMD}: note: the longest example (${longest} tokens) exceeds the model's trained window (${window})\n`);

  const freqkvRetain = f['freqkv-retain'] as number;
  const data = { source: `${dataDir} (split ${splitName})`, fingerprint: tokensFingerprint(split.tokens, split.documents) };
  const protocol: KVDistillEvalResult['protocol'] = {
    retentions, methods, examples: count, kinds, minContext, maxContext, seed, sinks, freqkvRetain, notes: { ...METHOD_NOTES },
  };
  const fp = { model: m.fingerprint, data: data.fingerprint, protocol: { ...protocol, notes: undefined }, adaptors: adaptorInfo.map((a) => [a.label, a.fingerprint]) };
  const state = openState<UnitRecord>(CMD, out, 'kvdistill', fp, f.resume as boolean);
  process.stderr.write(`freqkv ${CMD}: ${count} questions, contexts ${minContext}..${maxContext} book tokens, retentions ${retentions.join(', ')}, methods ${methods.map((x) => x.label).join(', ')}\n`);
  const stop = interruptible();
  let res;
  try {
    res = await runKVDistillEval(m.model, examples, { retentions, methods, adaptors, sinks, freqkvRetain, backend, state, signal: stop.signal });
  } finally {
    stop.dispose();
  }
  const exampleInfo = examples.map((e) => ({
    kind: e.kind, context: e.context.length, question: e.question.length, answer: e.answer.length, answerText: tok.decode(Array.from(e.answer), { skipSpecialTokens: true }),
  }));
  const result: KVDistillEvalResult = {
    ...header('kvdistill', ['eval', 'kvdistill', ...argv], t0, backend, m), kind: 'kvdistill', data, protocol, adaptors: adaptorInfo,
    examples: exampleInfo, rows: summarize(res.units, exampleInfo, methods, retentions), units: res.units, complete: res.complete,
  };
  const files: Record<string, string> = { [RESULT_FILE]: toJson(result), 'report.md': kvdReport(result), ...kvdCharts(result) };
  await writeOutputs(out, files);
  if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(kvdExactTable(result));
  process.stderr.write(`freqkv ${CMD}: wrote ${Object.keys(files).map((x) => path.join(out, x)).join(', ')}\n`);
  if (!res.complete) {
    process.stderr.write(`freqkv ${CMD}: stopped early; continue with the same command and --resume\n`);
    return 130;
  }
  return 0;
}
