// `freqkv eval ppl|passkey|niah|report|all`: the evaluation harness (src/eval/). Every run
// writes <out>/result.json (with the exact command line), <out>/report.md and SVG plots, keeps
// its finished work in <out>/state.json so --resume continues after an interrupt (Ctrl-C stops
// cleanly after the window or trial in progress), and prints progress with an ETA on stderr.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FlagSpec, type FlagValues, helpText, parseArgs, UsageError } from './args.js';
import { getBackend } from '../kernels/index.js';
import type { Backend } from '../kernels/backend.js';
import { concatDocuments, readTokenManifest, readTokenSplit, type TokenSplit } from '../data/tokens.js';
import { loadModel, modelSummary } from '../model/loader.js';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { SHIPPED_MODEL, findShippedModel, shippedModelDir } from '../model/shipped.js';
import type { Model } from '../model/types.js';
import type { PositionMode } from '../cache/evict.js';
import { checkPolicySpecs, policySpecs, type CacheFlags, type PolicySpec } from '../eval/policies.js';
import { EvalState, modelFingerprint, tokensFingerprint } from '../eval/state.js';
import { pplChart, pplReport, pplTable, runPpl, splitDocuments, type PplResult, type WindowScore } from '../eval/ppl.js';
import { gridCharts, gridReport, gridSummaryTable, runGrid, type GridResult, type TrialRecord } from '../eval/grid.js';
import { NIAH_TASKS, niahSample, passkeySample, type Codec, type Haystack, type NiahTask, type TaskName } from '../eval/tasks.js';
import { commandLine, RESULT_FILE, RESULT_FORMAT, RESULT_VERSION, STATE_FILE, toJson, writeOutputs, type ResultHeader, type ResultKind } from '../eval/output.js';
import { writeResultsPage } from '../eval/results-page.js';

export const DEFAULT_LENGTHS = [256, 512, 1024, 2048, 4096, 8192];
const QUICK_LENGTHS = [256, 512, 1024];
export const DEFAULT_POLICIES = ['full', 'window', 'freqkv', 'h2o'];
const DEFAULT_DEPTHS = [0, 0.25, 0.5, 0.75, 1];
const QUICK_DEPTHS = [0, 0.5, 1];

// ---- flags shared by the subcommands ----------------------------------------------------------

export const MODEL_FLAGS: Record<string, FlagSpec> = {
  model: { kind: 'string', help: `model folder in Hugging Face layout (default: the shipped ${SHIPPED_MODEL})` },
  policy: { kind: 'list', default: DEFAULT_POLICIES, help: 'cache policies, comma list; a variant takes options: freqkv:retain=0.25:sinks=0' },
  'cache-size': { kind: 'int', min: 1, help: 'entries a bounded policy holds: freqkv N, the eviction budget (default: the model window)' },
  sinks: { kind: 'int', min: 0, help: 'attention-sink tokens (freqkv and eviction policies; default 4)' },
  retain: { kind: 'number', min: 0, max: 1, help: 'freqkv retention ratio gamma (default 0.5)' },
  budget: { kind: 'int', min: 1, help: 'eviction policies only: token budget (overrides --cache-size for them)' },
  positions: { kind: 'string', choices: ['slot', 'original'], help: 'eviction policies: positions of held tokens (default slot)' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
};

const RUN_FLAGS: Record<string, FlagSpec> = {
  quick: { kind: 'bool', default: false, help: 'small subset for smoke tests (shorter lengths, fewer windows or trials)' },
  json: { kind: 'bool', default: false, help: 'print the result as one JSON object on stdout' },
  resume: { kind: 'bool', default: false, help: 'continue the run in --out from its state.json' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const DATA_FLAGS: Record<string, FlagSpec> = {
  data: { kind: 'string', default: 'data', help: 'token dataset folder written by `freqkv data`' },
  split: { kind: 'string', help: 'split of --data to use (default test)' },
  text: { kind: 'list', help: 'plain-text files instead of --data, one document each (repeat the flag or give a comma list)' },
};

const PPL_FLAGS: Record<string, FlagSpec> = {
  ...MODEL_FLAGS,
  lengths: { kind: 'list', help: `window lengths T (default ${DEFAULT_LENGTHS.join(',')}; --quick ${QUICK_LENGTHS.join(',')})` },
  stride: { kind: 'int', default: 256, min: 1, help: 'a new window every this many tokens of a document' },
  'max-windows': { kind: 'int', min: 1, help: 'at most this many windows per length, evenly spaced (default all; --quick 2)' },
  ...DATA_FLAGS,
  out: { kind: 'string', default: 'runs/ppl', help: 'output folder' },
  ...RUN_FLAGS,
};

const GRID_FLAGS: Record<string, FlagSpec> = {
  ...MODEL_FLAGS,
  lengths: { kind: 'list', help: `prompt lengths in tokens (default ${DEFAULT_LENGTHS.join(',')}; --quick ${QUICK_LENGTHS.join(',')})` },
  depths: { kind: 'list', help: `needle depths in [0, 1] (default ${DEFAULT_DEPTHS.join(',')}; --quick ${QUICK_DEPTHS.join(',')})` },
  trials: { kind: 'int', min: 1, help: 'samples per cell (default 5; --quick 2)' },
  seed: { kind: 'int', default: 1, min: 0, max: 2 ** 32 - 1, help: 'seed of the samples' },
  'max-new': { kind: 'int', min: 1, help: 'greedy tokens per answer (default: passkey 12; needle tasks 8 + 12 per expected value)' },
};

const PASSKEY_FLAGS: Record<string, FlagSpec> = { ...GRID_FLAGS, out: { kind: 'string', default: 'runs/passkey', help: 'output folder' }, ...RUN_FLAGS };

const NIAH_FLAGS: Record<string, FlagSpec> = {
  ...GRID_FLAGS,
  tasks: { kind: 'list', default: [...NIAH_TASKS], choices: [...NIAH_TASKS], help: 'RULER-style tasks' },
  needles: { kind: 'int', default: 4, min: 1, max: 64, help: 'needles (multikey, multivalue); vt chains needles+1 variables' },
  ...DATA_FLAGS,
  out: { kind: 'string', default: 'runs/niah', help: 'output folder' },
  ...RUN_FLAGS,
};

const REPORT_FLAGS: Record<string, FlagSpec> = {
  from: { kind: 'list', default: ['runs'], help: 'folders searched (recursively) for result.json files' },
  out: { kind: 'string', default: 'docs/results.md', help: 'the results page; its SVG plots go to <dir>/results/' },
  notes: { kind: 'string', help: 'markdown file of commentary placed at the top of the page' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const ALL_FLAGS: Record<string, FlagSpec> = {
  ...MODEL_FLAGS,
  lengths: { kind: 'list', help: `lengths for perplexity and passkey (default ${DEFAULT_LENGTHS.join(',')}; --quick ${QUICK_LENGTHS.join(',')})` },
  stride: { kind: 'int', default: 256, min: 1, help: 'perplexity: a new window every this many tokens' },
  'max-windows': { kind: 'int', min: 1, help: 'perplexity: windows per length, evenly spaced (default 16; --quick 2)' },
  depths: { kind: 'list', help: 'passkey depths (default 0,0.25,0.5,0.75,1)' },
  trials: { kind: 'int', min: 1, help: 'passkey trials per cell (default 5; --quick 2)' },
  data: DATA_FLAGS.data,
  split: DATA_FLAGS.split,
  extra: { kind: 'list', choices: ['niah', 'bench'], help: 'also run the needle tasks and/or the decode benchmark' },
  out: { kind: 'string', default: 'runs/all', help: 'output folder (one subfolder per evaluation)' },
  page: { kind: 'string', default: 'docs/results.md', help: 'results page regenerated at the end' },
  quick: RUN_FLAGS.quick,
  resume: RUN_FLAGS.resume,
  help: RUN_FLAGS.help,
};

const USAGE = `usage: freqkv eval <ppl|passkey|niah|kvdistill|report|all> [flags]     (freqkv eval <sub> --help)

  ppl      perplexity by the paper's protocol: windows of each length every --stride tokens of
           each test document, one grouped forward pass per window, several policies at once
  passkey  passkey retrieval accuracy over lengths x depths (greedy), heat map per policy
  niah     RULER-style needle tasks (single, multikey, multivalue, vt) in book haystacks
  kvdistill
           KV-Distill adaptors against H2O, SnapKV and FreqKV on held-out questions built from
           the test books: exact match and answer-token KL against the full context
  report   regenerate the results page (docs/results.md) from result.json files
  all      perplexity + passkey (+ --extra niah,bench) into --out, then the results page
`;

// ---- helpers ----------------------------------------------------------------------------------

/** Pulls every `--name V` / `--name=V` out of argv (the parser keeps only the last); values are comma-split. */
export function takeRepeated(argv: readonly string[], name: string): { rest: string[]; values: string[] | undefined } {
  const rest: string[] = [];
  let values: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    let v: string | undefined;
    if (a === `--${name}`) {
      if (i + 1 >= argv.length) throw new UsageError(`eval: --${name} expects a value`);
      v = argv[++i];
    } else if (a.startsWith(`--${name}=`)) {
      v = a.slice(name.length + 3);
    } else {
      rest.push(a);
      continue;
    }
    const items = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (items.length === 0) throw new UsageError(`eval: --${name} expects a value, got "${v}"`);
    values = [...(values ?? []), ...items];
  }
  return { rest, values };
}

/** Whole numbers >= min from a list flag, sorted and without repeats. */
export function parseIntList(cmd: string, flag: string, items: readonly string[], min: number): number[] {
  const out = items.map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`${cmd}: --${flag} expects whole numbers >= ${min}, got "${s}"`);
    return n;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

/** Numbers in [0, 1] from a list flag, sorted and without repeats. */
export function parseDepths(cmd: string, items: readonly string[]): number[] {
  const out = items.map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !(n >= 0 && n <= 1)) throw new UsageError(`${cmd}: --depths expects numbers in [0, 1], got "${s}"`);
    return n;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

function cacheFlags(f: FlagValues): CacheFlags {
  return {
    cacheSize: f['cache-size'] as number | undefined,
    sinks: f.sinks as number | undefined,
    retain: f.retain as number | undefined,
    budget: f.budget as number | undefined,
    positions: f.positions as PositionMode | undefined,
  };
}

export function specsFrom(cmd: string, f: FlagValues): PolicySpec[] {
  try {
    return policySpecs(f.policy as string[], cacheFlags(f));
  } catch (err) {
    throw new UsageError(`${cmd}: ${(err as Error).message}`);
  }
}

export interface LoadedModel {
  dir: string;
  model: Model;
  summary: string;
  fingerprint: string;
}

function modelDir(cmd: string, f: FlagValues): string {
  const dir = (f.model as string | undefined) ?? findShippedModel();
  if (dir === null) {
    throw new UsageError(
      `${cmd}: no --model given, and the shipped model is not installed (expected it in ${shippedModelDir()}); ` +
        'pass --model DIR, a Hugging Face model folder',
    );
  }
  return dir;
}

export async function loadEvalModel(cmd: string, f: FlagValues, specs: PolicySpec[]): Promise<LoadedModel> {
  const dir = modelDir(cmd, f);
  const model = await loadModel(dir);
  try {
    checkPolicySpecs(model.config, specs);
  } catch (err) {
    throw new UsageError(`${cmd}: ${(err as Error).message}`);
  }
  return { dir, model, summary: modelSummary(model).text, fingerprint: modelFingerprint(model) };
}

export function setupBackend(f: FlagValues): Backend {
  const backend = getBackend();
  if (f.threads !== undefined) backend.setThreads(f.threads as number);
  return backend;
}

export function header(kind: ResultKind, words: readonly string[], t0: number, backend: Backend, m: LoadedModel): ResultHeader {
  return {
    format: RESULT_FORMAT,
    version: RESULT_VERSION,
    kind,
    command: commandLine(words),
    createdAt: new Date().toISOString(),
    elapsedSeconds: (performance.now() - t0) / 1000,
    backend: backend.name,
    threads: backend.threads(),
    model: { path: m.dir, summary: m.summary, window: m.model.config.maxPositionEmbeddings, fingerprint: m.fingerprint },
  };
}

/** Ctrl-C stops the run after the unit in progress (state saved); a second Ctrl-C exits at once. */
export function interruptible(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onInt = () => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write('\nfreqkv eval: stopping after the current unit (Ctrl-C again to quit now)\n');
    ac.abort();
  };
  process.on('SIGINT', onInt);
  return { signal: ac.signal, dispose: () => process.removeListener('SIGINT', onInt) };
}

export function openState<V>(cmd: string, out: string, kind: string, fingerprint: Record<string, unknown>, resume: boolean): EvalState<V> {
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, STATE_FILE);
  if (resume && !fs.existsSync(file)) process.stderr.write(`freqkv ${cmd}: --resume: ${file} does not exist; starting a new run\n`);
  try {
    return EvalState.open<V>(file, kind, fingerprint, resume);
  } catch (err) {
    throw new UsageError(`${cmd}: ${(err as Error).message}`);
  }
}

function codecOf(tok: Tokenizer): Codec {
  return { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }) };
}

/** The evaluation documents: a split of a token dataset, or text files tokenized with the model's tokenizer. */
async function loadDocuments(cmd: string, f: FlagValues, texts: string[] | undefined, dir: string, vocabSize: number): Promise<{ split: TokenSplit; source: string }> {
  if (texts !== undefined) {
    const tok = await loadTokenizer(dir);
    const docs = texts.map((file) => {
      if (!fs.existsSync(file)) throw new UsageError(`${cmd}: --text ${file}: no such file`);
      const text = fs.readFileSync(file, 'utf8');
      return { name: path.basename(file), tokens: tok.encode(text), chars: [...text].length };
    });
    return { split: concatDocuments('text', docs, Math.max(vocabSize, tok.vocabSize)), source: `text files ${texts.join(', ')}` };
  }
  const dataDir = f.data as string;
  const splitName = (f.split as string | undefined) ?? 'test';
  const manifest = readTokenManifest(dataDir);
  const split = readTokenSplit(dataDir, splitName, manifest);
  if (manifest.vocabSize !== vocabSize) {
    process.stderr.write(`freqkv ${cmd}: note: ${dataDir} has vocabulary size ${manifest.vocabSize}, the model ${vocabSize}; was it tokenized with this model's tokenizer?\n`);
  }
  return { split, source: `${dataDir} (split ${splitName})` };
}

function checkVocab(cmd: string, split: TokenSplit, vocabSize: number, source: string): void {
  let max = -1;
  for (let i = 0; i < split.tokens.length; i++) if (split.tokens[i] > max) max = split.tokens[i];
  if (max >= vocabSize) throw new Error(`${cmd}: ${source} holds token id ${max}, outside the model's vocabulary of ${vocabSize}`);
}

/** Parses a subcommand's flags (it takes no positional arguments); null when --help was printed. */
export function parseSub(cmd: string, argv: string[], specs: Record<string, FlagSpec>, line: string): FlagValues | null {
  const { flags: f, positional } = parseArgs(argv, specs, cmd);
  if (f.help) {
    process.stdout.write(`usage: freqkv ${cmd} ${line}\n\n${helpText(specs)}\n`);
    return null;
  }
  if (positional.length > 0) throw new UsageError(`${cmd}: unexpected argument "${positional[0]}"`);
  return f;
}

// ---- eval ppl ---------------------------------------------------------------------------------

export async function runPplCommand(argv: string[]): Promise<number> {
  const cmd = 'eval ppl';
  const { rest, values: texts } = takeRepeated(argv, 'text');
  const f = parseSub(cmd, rest, PPL_FLAGS, '[--model DIR] [--policy full,window,freqkv,h2o] [--lengths 256,...,8192] [--split test | --text FILE ...]');
  if (!f) return 0;
  if (texts !== undefined && f.split !== undefined) throw new UsageError(`${cmd}: give either --text or --split, not both`);
  const quick = f.quick as boolean;
  const lengths = f.lengths ? parseIntList(cmd, 'lengths', f.lengths as string[], 2) : quick ? QUICK_LENGTHS : DEFAULT_LENGTHS;
  const maxWindows = (f['max-windows'] as number | undefined) ?? (quick ? 2 : undefined);
  const stride = f.stride as number;
  const specs = specsFrom(cmd, f);
  const out = f.out as string;
  const t0 = performance.now();
  const backend = setupBackend(f);
  const m = await loadEvalModel(cmd, f, specs);
  const { split, source } = await loadDocuments(cmd, f, texts, m.dir, m.model.config.vocabSize);
  checkVocab(cmd, split, m.model.config.vocabSize, source);
  const data = { source, documents: splitDocuments(split), fingerprint: tokensFingerprint(split.tokens, split.documents) };
  const protocol = { lengths, stride, maxWindows: maxWindows ?? null };
  const state = openState<WindowScore>(cmd, out, 'ppl', { model: m.fingerprint, data: data.fingerprint, protocol, policies: specs }, f.resume as boolean);
  const stop = interruptible();
  let run;
  try {
    run = await runPpl(m.model, split, { lengths, stride, maxWindows, policies: specs, backend, state, signal: stop.signal });
  } finally {
    stop.dispose();
  }
  const result: PplResult = { ...header('ppl', ['eval', 'ppl', ...argv], t0, backend, m), kind: 'ppl', data, protocol, policies: specs, rows: run.rows, complete: run.complete };
  const files: Record<string, string> = { [RESULT_FILE]: toJson(result), 'report.md': pplReport(result) };
  if (result.rows.some((r) => r.perplexity !== null)) files['ppl.svg'] = pplChart(result);
  await writeOutputs(out, files);
  if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(pplTable(result));
  process.stderr.write(`freqkv ${cmd}: wrote ${Object.keys(files).map((n) => path.join(out, n)).join(', ')}\n`);
  if (!run.complete) {
    process.stderr.write(`freqkv ${cmd}: stopped early; continue with the same command and --resume\n`);
    return 130;
  }
  return 0;
}

// ---- eval passkey / niah ----------------------------------------------------------------------

function defaultMaxNew(task: TaskName, needles: number): number {
  if (task === 'passkey') return 12;
  const expected = task === 'multivalue' ? needles : task === 'vt' ? needles + 1 : 1;
  return 8 + 12 * expected;
}

async function runGridCommand(kind: 'passkey' | 'niah', argv: string[]): Promise<number> {
  const cmd = `eval ${kind}`;
  const flagSpecs = kind === 'passkey' ? PASSKEY_FLAGS : NIAH_FLAGS;
  const { rest, values: texts } = kind === 'niah' ? takeRepeated(argv, 'text') : { rest: argv, values: undefined };
  const line = kind === 'passkey' ? '[--model DIR] [--policy ...] [--lengths ...] [--depths ...] [--trials K]' : '[--model DIR] [--tasks single,multikey,multivalue,vt] [--split test | --text FILE ...]';
  const f = parseSub(cmd, rest, flagSpecs, line);
  if (!f) return 0;
  if (texts !== undefined && f.split !== undefined) throw new UsageError(`${cmd}: give either --text or --split, not both`);
  const quick = f.quick as boolean;
  const lengths = f.lengths ? parseIntList(cmd, 'lengths', f.lengths as string[], 2) : quick ? QUICK_LENGTHS : DEFAULT_LENGTHS;
  const depths = f.depths ? parseDepths(cmd, f.depths as string[]) : quick ? QUICK_DEPTHS : DEFAULT_DEPTHS;
  const trials = (f.trials as number | undefined) ?? (quick ? 2 : 5);
  const seed = f.seed as number;
  const needles = kind === 'niah' ? (f.needles as number) : 0;
  const tasks: TaskName[] = kind === 'passkey' ? ['passkey'] : (f.tasks as NiahTask[]);
  const maxNew: Record<string, number> = {};
  for (const t of tasks) maxNew[t] = (f['max-new'] as number | undefined) ?? defaultMaxNew(t, needles);
  const specs = specsFrom(cmd, f);
  const out = f.out as string;
  const t0 = performance.now();
  const backend = setupBackend(f);
  const m = await loadEvalModel(cmd, f, specs);
  const tok = await loadTokenizer(m.dir);
  const codec = codecOf(tok);
  let haystack: Haystack | null = null;
  let data: { source: string } | null = null;
  if (kind === 'niah') {
    const docs = await loadDocuments(cmd, f, texts, m.dir, m.model.config.vocabSize);
    haystack = haystackOf(docs.split, codec, tok.bosId);
    data = { source: docs.source };
  }
  const protocol = { tasks, lengths, depths, trials, seed, maxNew, ...(kind === 'niah' ? { needles } : {}) };
  const fp = { model: m.fingerprint, data: data?.source ?? null, haystack: haystack ? tokensFingerprint(new TextEncoder().encode(haystack.text), []) : null, protocol, policies: specs };
  const state = openState<TrialRecord>(cmd, out, kind, fp, f.resume as boolean);
  const stop = interruptible();
  let run;
  try {
    run = await runGrid(m.model, {
      tasks, lengths, depths, trials, seed, policies: specs, codec, backend, state, signal: stop.signal,
      eosIds: [...m.model.config.eosTokenIds, ...tok.eosIds],
      maxNew: (t) => maxNew[t],
      makeSample: (task, length, depth, next) =>
        task === 'passkey' ? passkeySample(next, length, depth, codec) : niahSample(task, next, length, depth, haystack!, codec, needles),
    });
  } finally {
    stop.dispose();
  }
  const result: GridResult = {
    ...header(kind, ['eval', kind, ...argv], t0, backend, m), kind, data, protocol, policies: specs, cells: run.cells, trials: run.trials, complete: run.complete,
  };
  const files: Record<string, string> = { [RESULT_FILE]: toJson(result), 'report.md': gridReport(result), ...gridCharts(result) };
  await writeOutputs(out, files);
  if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
  else for (const t of tasks) process.stdout.write(`${t}:\n${gridSummaryTable(result, t)}`);
  process.stderr.write(`freqkv ${cmd}: wrote ${path.join(out, RESULT_FILE)}, report.md and ${Object.keys(files).length - 2} heat maps\n`);
  if (!run.complete) {
    process.stderr.write(`freqkv ${cmd}: stopped early; continue with the same command and --resume\n`);
    return 130;
  }
  return 0;
}

/** The haystack: every document decoded (BOS dropped), joined by blank lines. */
function haystackOf(split: TokenSplit, codec: Codec, bosId: number | null): Haystack {
  const texts = split.documents.map((d) => {
    const ids = Array.from(split.tokens.subarray(d.offset, d.offset + d.length)).filter((t) => t !== bosId);
    return codec.decode(ids).trim();
  });
  return { text: texts.join('\n\n') };
}

// ---- eval report ------------------------------------------------------------------------------

async function runReportCommand(argv: string[]): Promise<number> {
  const cmd = 'eval report';
  const f = parseSub(cmd, argv, REPORT_FLAGS, '[--from runs] [--out docs/results.md]');
  if (!f) return 0;
  const roots = f.from as string[];
  for (const r of roots) if (!fs.existsSync(r)) throw new UsageError(`${cmd}: --from ${r}: no such folder`);
  const notesFile = f.notes as string | undefined;
  if (notesFile !== undefined && !fs.existsSync(notesFile)) throw new UsageError(`${cmd}: --notes ${notesFile}: no such file`);
  const notes = notesFile === undefined ? undefined : fs.readFileSync(notesFile, 'utf8');
  const page = await writeResultsPage(roots, f.out as string, { generatedBy: [commandLine(['eval', 'report', ...argv])], notes });
  process.stderr.write(`freqkv ${cmd}: wrote ${f.out as string} from ${page.results} result(s), ${page.assets} plot(s)\n`);
  return 0;
}

// ---- eval all ---------------------------------------------------------------------------------

async function runAllCommand(argv: string[]): Promise<number> {
  const cmd = 'eval all';
  const f = parseSub(cmd, argv, ALL_FLAGS, '--model DIR --out runs/X [--quick]');
  if (!f) return 0;
  specsFrom(cmd, f); // flag errors before any work
  const out = f.out as string;
  const quick = f.quick as boolean;
  const common: string[] = [];
  if (f.model !== undefined) common.push('--model', f.model as string);
  common.push('--policy', (f.policy as string[]).join(','));
  for (const k of ['cache-size', 'sinks', 'retain', 'budget', 'positions', 'threads']) if (f[k] !== undefined) common.push(`--${k}`, String(f[k]));
  const lengths = f.lengths ? ['--lengths', (f.lengths as string[]).join(',')] : [];
  const tail = [...(quick ? ['--quick'] : []), ...(f.resume ? ['--resume'] : [])];
  const data = ['--data', f.data as string, ...(f.split !== undefined ? ['--split', f.split as string] : [])];

  const pplArgs = [...common, ...lengths, '--stride', String(f.stride), '--max-windows', String((f['max-windows'] as number | undefined) ?? (quick ? 2 : 16)), ...data, '--out', path.join(out, 'ppl'), ...tail];
  const gridArgs = [...common, ...lengths, ...(f.depths ? ['--depths', (f.depths as string[]).join(',')] : []), ...(f.trials !== undefined ? ['--trials', String(f.trials)] : [])];
  const steps: [string, () => Promise<number>][] = [
    ['ppl', () => runPplCommand(pplArgs)],
    ['passkey', () => runGridCommand('passkey', [...gridArgs, '--out', path.join(out, 'passkey'), ...tail])],
  ];
  const extra = (f.extra as string[] | undefined) ?? [];
  if (extra.includes('niah')) steps.push(['niah', () => runGridCommand('niah', [...gridArgs, ...data, '--out', path.join(out, 'niah'), ...tail])]);
  if (extra.includes('bench')) {
    const { runBenchDecode } = await import('./bench.js');
    steps.push(['bench', () => runBenchDecode([...common, ...lengths, ...(quick ? ['--steps', '16'] : []), '--out', path.join(out, 'bench-decode')])]);
  }
  for (const [name, step] of steps) {
    process.stderr.write(`freqkv ${cmd}: ${name}\n`);
    const code = await step();
    if (code !== 0) {
      process.stderr.write(`freqkv ${cmd}: ${name} exited with ${code}; continue with the same command and --resume\n`);
      return code;
    }
  }
  const page = await writeResultsPage([out], f.page as string, { generatedBy: [commandLine(['eval', 'all', ...argv])] });
  process.stderr.write(`freqkv ${cmd}: wrote ${f.page as string} from ${page.results} result(s)\n`);
  return 0;
}

// ---- entry ------------------------------------------------------------------------------------

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'ppl':
      return runPplCommand(rest);
    case 'passkey':
      return runGridCommand('passkey', rest);
    case 'niah':
      return runGridCommand('niah', rest);
    case 'report':
      return runReportCommand(rest);
    case 'all':
      return runAllCommand(rest);
    case 'kvdistill':
      return (await import('./eval-kvdistill.js')).run(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    default:
      throw new UsageError(`eval: unknown subcommand "${sub}" (expected ppl, passkey, niah, kvdistill, report or all)\n\n${USAGE}`);
  }
}
