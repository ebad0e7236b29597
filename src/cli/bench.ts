// `freqkv bench decode`: decode time per token, bytes held and the share of time spent
// compressing or evicting, against context length, per policy (src/eval/bench.ts).
import * as path from 'node:path';
import { type FlagSpec, UsageError } from './args.js';
import { header, loadEvalModel, MODEL_FLAGS, parseIntList, parseSub, setupBackend, specsFrom } from './eval.js';
import { benchCharts, benchDecode, benchReport, benchTables, type BenchResult, type DecodeBenchRow } from '../eval/bench.js';
import { RESULT_FILE, toJson, writeOutputs } from '../eval/output.js';
import { Progress } from '../eval/progress.js';

const DEFAULT_CONTEXTS = [256, 512, 1024, 2048, 4096, 8192];

const DECODE_FLAGS: Record<string, FlagSpec> = {
  ...MODEL_FLAGS,
  lengths: { kind: 'list', help: `context lengths prefilled before timing (default ${DEFAULT_CONTEXTS.join(',')})` },
  steps: { kind: 'int', default: 128, min: 1, help: 'decode steps timed per cell (at least one FreqKV compression period for a fair average)' },
  seed: { kind: 'int', default: 1, min: 0, max: 2 ** 32 - 1, help: 'seed of the random context tokens' },
  out: { kind: 'string', default: 'runs/bench-decode', help: 'output folder (result.json, report.md, SVG plots)' },
  json: { kind: 'bool', default: false, help: 'print the result as one JSON object on stdout' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

export async function runBenchDecode(argv: string[]): Promise<number> {
  const cmd = 'bench decode';
  const f = parseSub(cmd, argv, DECODE_FLAGS, '[--model DIR] [--policy ...] [--lengths 256,...,8192] [--steps K]');
  if (!f) return 0;
  const contexts = f.lengths ? parseIntList(cmd, 'lengths', f.lengths as string[], 1) : DEFAULT_CONTEXTS;
  const specs = specsFrom(cmd, f);
  const t0 = performance.now();
  const backend = setupBackend(f);
  const m = await loadEvalModel(cmd, f, specs);
  const model = m.model;
  const steps = f.steps as number;
  const seed = f.seed as number;
  const total = contexts.reduce((a, b) => a + b + steps, 0) * specs.length;
  const progress = new Progress(cmd, contexts.length * specs.length, total);
  const rows: DecodeBenchRow[] = [];
  for (const n of contexts) {
    for (const spec of specs) {
      rows.push(benchDecode(model, spec, n, steps, { backend, seed }));
      progress.step(n + steps, `${spec.label}, context ${n}`);
    }
  }
  const result: BenchResult = {
    ...header('bench-decode', ['bench', 'decode', ...argv], t0, backend, m),
    kind: 'bench-decode',
    protocol: { contexts, steps, seed },
    policies: specs,
    rows,
  };
  const out = f.out as string;
  const files = { [RESULT_FILE]: toJson(result), 'report.md': benchReport(result), ...benchCharts(result) };
  await writeOutputs(out, files);
  if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(`ms per decoded token:\n${benchTables(result).time}`);
  process.stderr.write(`freqkv ${cmd}: wrote ${Object.keys(files).map((n) => path.join(out, n)).join(', ')}\n`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'decode') return runBenchDecode(rest);
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(`usage: freqkv bench decode [flags]     decode time per token and cache bytes against context, per policy\n`);
    return 0;
  }
  throw new UsageError(`bench: unknown subcommand "${sub}" (expected decode)`);
}
