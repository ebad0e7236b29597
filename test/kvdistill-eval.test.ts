// KV-Distill inference integration and evaluation: the baselines' compressed prefixes, FreqKV at
// equal bytes, `freqkv eval kvdistill` end to end (outputs, resume, results page), and
// `freqkv generate --policy kvdistill` with sessions and its flag checks. Tiny random models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomArray, randomModel, rng, tinyConfig } from '../src/model/random.js';
import type { Model } from '../src/model/types.js';
import { createCache, cacheShape } from '../src/cache/factory.js';
import { FreqKVCache } from '../src/cache/freqkv.js';
import { forward } from '../src/model/forward.js';
import { KVDistill, greedyDecode } from '../src/kvdistill/distill.js';
import { ContextScores, freqkvCacheSize, h2oStreaming, kvRowBytes } from '../src/kvdistill/baselines.js';
import { answerLogits, keepRows, runKVDistillEval, type EvalMethodSpec } from '../src/kvdistill/eval.js';
import type { KindedExample } from '../src/kvdistill/data.js';
import { cli, writeModelAndBooks } from './kvdistill-fixture.js';
import { writeResultsPage } from '../src/eval/results-page.js';

function tinyModel(seed: number, over: Parameters<typeof tinyConfig>[0] = {}): Model {
  return randomModel(tinyConfig({ vocabSize: 48, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2, maxPositionEmbeddings: 128, ...over }), seed);
}

function tokens(r: () => number, V: number, n: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function fullLogits(model: Model, ex: { context: Int32Array; question: Int32Array; answer: Int32Array }): Float32Array {
  const cache = createCache(model.config);
  forward(model, ex.context, cache);
  return answerLogits(model, cache, ex);
}

test('baselines keeping every row answer exactly as the full context (original positions, question at n)', () => {
  const model = tinyModel(5);
  const r = rng(9);
  const ex = { context: tokens(r, 48, 24), question: tokens(r, 48, 3), answer: tokens(r, 48, 4) };
  const ref = fullLogits(model, ex);
  const n = ex.context.length;
  const prefixes = [
    h2oStreaming(model, ex.context, n, 4),
    ContextScores.h2o(model, ex.context, null, 4).select(n),
    ContextScores.h2o(model, ex.context, ex.question, 4).select(n),
    ContextScores.snapkv(model, ex.context, ex.question, 4).select(n),
  ];
  for (const p of prefixes) {
    assert.equal(p.kept, n);
    assert.equal(p.cache.seen, n);
    const d = maxAbsDiff(answerLogits(model, p.cache, ex), ref);
    assert.ok(d < 1e-4, `${p.cache.policy}: logits differ from the full context by ${d}`);
  }
});

test('H2O question-independent chooses its rows from the context alone; question-aware H2O and SnapKV see the question', () => {
  const model = tinyModel(6);
  const r = rng(10);
  const context = tokens(r, 48, 40);
  const keep = keepRows(context.length, 0.25, 4);
  assert.equal(keep, 4 + 10);
  const q1 = tokens(r, 48, 5), q2 = tokens(r, 48, 5);
  const a = h2oStreaming(model, context, keep, 4);
  const b = h2oStreaming(model, context, keep, 4);
  const sets = (p: { keptSets: Int32Array[][] }) => JSON.stringify(p.keptSets.map((l) => l.map((h) => [...h])));
  assert.equal(sets(a), sets(b));
  for (const l of a.keptSets) for (const h of l) {
    assert.equal(h.length, keep);
    assert.deepEqual([...h.subarray(0, 4)], [0, 1, 2, 3]); // sinks
    assert.ok(h.every((t) => t < context.length));
  }
  // H2O's shape: sinks, heavy hitters, and its recent window (floor((keep - sinks) / 2) = 5 newest tokens)
  for (const l of a.keptSets) for (const h of l) assert.deepEqual([...h.subarray(keep - 5)], [35, 36, 37, 38, 39]);
  // decoding two different questions over the question-independent prefix starts from identical rows
  const one = ContextScores.h2o(model, context, null, 4);
  assert.equal(sets(one.select(keep)), sets(one.select(keep)));
  // the question-aware selections change with the question (so the test above can tell)
  const qa = (q: Int32Array) => sets(ContextScores.h2o(model, context, q, 4).select(keep));
  const snap = (q: Int32Array) => sets(ContextScores.snapkv(model, context, q, 4).select(keep));
  assert.notEqual(snap(q1), snap(q2), 'snapkv should follow the question');
  assert.ok([q1, q2].some((q) => qa(q) !== sets(one.select(keep))), 'h2o-qa should see the question');
});

test('FreqKV at equal bytes: its bytes held match the target within one row (the rotated copy counted)', () => {
  const model = tinyModel(7, { nLayers: 3 });
  const c = model.config;
  const kvDim = c.nKVHeads * c.headDim;
  for (const rows of [6, 9, 17, 40, 101]) {
    const target = rows * kvRowBytes(c);
    const s = freqkvCacheSize(c, target, 4, 0.5);
    assert.equal(s.perRow, c.nLayers * 3 * kvDim * 4 + 4); // K pre-RoPE, V, rotated K, and a slot index
    const real = new FreqKVCache(cacheShape(c), { cacheSize: s.cacheSize, sinks: 4, retain: 0.5 }).bytes().total;
    assert.equal(real, s.bytes);
    if (!s.clamped) assert.ok(Math.abs(real - target) <= s.perRow, `rows ${rows}: ${real} bytes held for a target of ${target}`);
    else assert.ok(real >= target);
  }
});

test('eval driver: at retention 1 a zero-B adaptor equals the full context (KL 0, same answers); units resume from the state', async () => {
  const model = tinyModel(8);
  const kdZero = new KVDistill(model, { rank: 2, alpha: 4, seed: 3 });
  const kdRand = new KVDistill(model, { rank: 2, alpha: 4, seed: 4 });
  const nx = rng(12);
  for (const a of kdRand.adapters) a.b.data.set(randomArray(a.b.data.length, 0.3, nx));
  const r = rng(11);
  const examples: KindedExample[] = Array.from({ length: 2 }, (_, i) => ({ kind: i ? 'fact' : 'passkey', context: tokens(r, 48, 20 + i), question: tokens(r, 48, 3), answer: tokens(r, 48, 3) }));
  const methods: EvalMethodSpec[] = [
    { label: 'full', method: 'full' }, { label: 'kvdistill:zero', method: 'kvdistill', adaptor: 'zero' }, { label: 'kvdistill:rand', method: 'kvdistill', adaptor: 'rand' },
    { label: 'h2o-qi', method: 'h2o-qi' }, { label: 'h2o-qa', method: 'h2o-qa' }, { label: 'snapkv', method: 'snapkv' }, { label: 'freqkv', method: 'freqkv' }, { label: 'h2o-qi-oneshot', method: 'h2o-qi-oneshot' },
  ];
  const adaptors = new Map([['zero', kdZero], ['rand', kdRand]]);
  const res = await runKVDistillEval(model, examples, { retentions: [0.2, 1], methods, adaptors, sinks: 4, freqkvRetain: 0.5, progress: null });
  assert.ok(res.complete);
  assert.equal(res.units.length, 2 * (1 + 7 * 2));
  for (let i = 0; i < 2; i++) {
    const full = res.units.find((u) => u.example === i && u.label === 'full')!;
    for (const label of ['kvdistill:zero', 'h2o-qi', 'h2o-qa', 'snapkv', 'h2o-qi-oneshot']) {
      const u = res.units.find((x) => x.example === i && x.label === label && x.retention === 1)!;
      assert.ok(u.klTS < 1e-6 && Math.abs(u.klST) < 1e-6, `${label} at retention 1: KL ${u.klTS}`);
      assert.equal(u.exact, full.exact);
      assert.deepEqual(u.greedy, full.greedy);
      assert.equal(u.kept, examples[i].context.length);
    }
    const rand = res.units.find((x) => x.example === i && x.label === 'kvdistill:rand' && x.retention === 1)!;
    assert.ok(rand.klTS > 1e-6, 'a non-zero adaptor changes the answer distribution');
    const low = res.units.find((x) => x.example === i && x.label === 'kvdistill:zero' && x.retention === 0.2)!;
    assert.equal(low.kept, keepRows(examples[i].context.length, 0.2, 4));
    assert.equal(low.bytes, (low.kept + 3) * kvRowBytes(model.config));
    const fq = res.units.find((x) => x.example === i && x.label === 'freqkv' && x.retention === 0.2)!;
    assert.ok(Math.abs(fq.bytes - low.bytes) <= model.config.nLayers * 3 * model.config.nKVHeads * model.config.headDim * 4 + 4, `freqkv ${fq.bytes} vs ${low.bytes}`);
  }
  // a state with every unit: nothing is recomputed
  const stored = new Map(res.units.map((u) => [`${u.example}|${u.label}|${u.retention}`, u]));
  let sets = 0;
  const state = { get: (k: string) => stored.get(k), set: () => { sets++; }, flush: () => {} };
  const again = await runKVDistillEval(model, examples, { retentions: [0.2, 1], methods, adaptors, sinks: 4, freqkvRetain: 0.5, progress: null, state: state as never });
  assert.equal(sets, 0);
  assert.deepEqual(again.units, res.units);
});

test('exact match from one teacher-forced pass equals greedy decoding over the compressed cache', async () => {
  const model = tinyModel(13);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 5 });
  const nx = rng(14);
  for (const a of kd.adapters) a.b.data.set(randomArray(a.b.data.length, 0.5, nx));
  const r = rng(15);
  // answers = the full model's greedy continuation, so the full context scores 1 and the others may not
  const examples: KindedExample[] = Array.from({ length: 4 }, () => {
    const context = tokens(r, 48, 30), question = tokens(r, 48, 3);
    const cache = createCache(model.config);
    forward(model, context, cache);
    return { kind: 'passkey', context, question, answer: Int32Array.from(greedyDecode(model, cache, question, 4)) };
  });
  const methods: EvalMethodSpec[] = [{ label: 'full', method: 'full' }, { label: 'kvdistill', method: 'kvdistill', adaptor: 'a' }, { label: 'h2o-qa', method: 'h2o-qa' }];
  const res = await runKVDistillEval(model, examples, { retentions: [0.1, 0.3], methods, adaptors: new Map([['a', kd]]), sinks: 4, freqkvRetain: 0.5, progress: null });
  let misses = 0;
  for (const u of res.units) {
    const ex = examples[u.example];
    if (u.label === 'full') {
      assert.ok(u.exact);
      continue;
    }
    const cache = u.label === 'kvdistill' ? kd.compress(ex.context, u.retention) : ContextScores.h2o(model, ex.context, ex.question, 4).select(keepRows(ex.context.length, u.retention, 4)).cache;
    const greedy = greedyDecode(model, cache, ex.question, ex.answer.length);
    assert.equal(u.exact, greedy.join(',') === [...ex.answer].join(','), `${u.label} r=${u.retention} example ${u.example}`);
    assert.deepEqual(u.greedy, greedy.slice(0, u.greedy.length));
    if (!u.exact) misses++;
  }
  assert.ok(misses > 0, 'some compressed answers should differ, or the comparison proves nothing');
});

/** A model folder (byte-level tokenizer), a dataset with a test split, a zero-B and a random adaptor. */
async function fixture(dir: string): Promise<{ modelDir: string; data: string; zero: string; rand: string; model: Model }> {
  const { modelDir, data, model } = await writeModelAndBooks(dir, {
    maxPositions: 256, modelSeed: 62, bookSeed: 5, books: [{ split: 'train', name: 'b1', tokens: 500 }, { split: 'test', name: 'b3', tokens: 600 }],
  });
  const zero = path.join(dir, 'zero.safetensors'), rand = path.join(dir, 'rand', 'adaptor.safetensors');
  await new KVDistill(model, { rank: 2, alpha: 4, seed: 1 }).save(zero);
  const kd = new KVDistill(model, { rank: 2, alpha: 4, seed: 2 });
  const nx = rng(3);
  for (const a of kd.adapters) a.b.data.set(randomArray(a.b.data.length, 0.3, nx));
  fs.mkdirSync(path.dirname(rand), { recursive: true });
  await kd.save(rand);
  return { modelDir, data, zero, rand, model };
}

test('CLI: eval kvdistill writes result.json, report.md and plots; resumes; the results page shows it; bad flags rejected', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvd-eval-'));
  try {
    const fx = await fixture(dir);
    const out = path.join(dir, 'out');
    const args = ['eval', 'kvdistill', '--model', fx.modelDir, '--data', fx.data, '--adaptor', fx.zero, '--adaptors', `rand=${fx.rand}`,
      '--retain', '0.1,1', '--examples', '3', '--min-context', '20', '--max-context', '30', '--out', out, '--threads', '1'];
    const res = await cli(args);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /eval kvdistill: \d+\/\d+ .*(ETA|done)/);
    for (const f of ['result.json', 'report.md', 'kvdistill-exact.svg', 'state.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
    const result = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8'));
    assert.equal(result.format, 'freqkv-eval');
    assert.equal(result.kind, 'kvdistill');
    assert.ok(result.command.startsWith('freqkv eval kvdistill --model'));
    assert.ok(result.complete);
    assert.deepEqual(result.protocol.methods.map((m: { label: string }) => m.label), ['full', 'kvdistill', 'kvdistill:rand', 'h2o-qi', 'h2o-qa', 'snapkv', 'freqkv']);
    assert.deepEqual(result.examples.map((e: { kind: string }) => e.kind), ['passkey', 'fact', 'quote']);
    assert.equal(result.units.length, 3 * (1 + 6 * 2));
    assert.equal(result.rows.length, 1 + 6 * 2);
    for (const u of result.units.filter((x: { label: string; retention: number }) => x.label === 'kvdistill' && x.retention === 1)) assert.ok(u.klTS < 1e-6, `zero-B adaptor at retention 1: KL ${u.klTS}`);
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(report, /Exact match/);
    assert.match(report, /kvdistill:rand/);
    assert.match(fs.readFileSync(path.join(out, 'kvdistill-exact.svg'), 'utf8'), /<svg/);
    // a second run refuses the folder, --resume finds every unit done
    assert.equal((await cli(args)).code, 2);
    const again = await cli([...args, '--resume']);
    assert.equal(again.code, 0, again.stderr);
    const result2 = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8'));
    assert.deepEqual(result2.units, result.units);
    // the results page renders the section with its plot
    const page = path.join(dir, 'docs', 'results.md');
    const w = await writeResultsPage([out], page);
    assert.equal(w.results, 1);
    const md = fs.readFileSync(page, 'utf8');
    assert.match(md, /## KV-Distill/);
    assert.match(md, /freqkv eval kvdistill/);
    assert.match(md, /kvdistill-exact\.svg\)/);
    const help = await cli(['eval', 'kvdistill', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--adaptors/);
    // bad flags
    const bad = async (extra: string[], pattern: RegExp) => {
      const r = await cli(['eval', 'kvdistill', '--model', fx.modelDir, '--data', fx.data, '--out', path.join(dir, 'bad'), ...extra]);
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    };
    await bad([], /--methods kvdistill needs --adaptor/);
    await bad(['--adaptor', fx.zero, '--retain', '0'], /--retain expects numbers in \(0, 1\]/);
    await bad(['--adaptor', fx.zero, '--methods', 'full,h2o-qi'], /--methods leaves out kvdistill/);
    await bad(['--adaptors', `a b=${fx.zero}`], /--adaptors label/);
    await bad(['--adaptor', path.join(dir, 'nope.safetensors')], /--adaptor .*no such file/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: generate --policy kvdistill compresses the context once; a saved session answers the same; bad flags are named', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvd-gen-'));
  try {
    const fx = await fixture(dir);
    const ctxFile = path.join(dir, 'doc.txt');
    fs.writeFileSync(ctxFile, 'The pass key is 48213. Remember it. The grass is green and the sky is blue, again and again.');
    const session = path.join(dir, 'ctx.session');
    const common = ['generate', '--model', fx.modelDir, '--temperature', '0', '--max-tokens', '6', '--json'];
    const a = await cli([...common, '--policy', 'kvdistill', '--adaptor', fx.rand, '--retain', '0.2', '--context-file', ctxFile, '--save-session', session, 'What is the pass key?']);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /context of \d+ tokens compressed to \d+ rows/);
    const ja = JSON.parse(a.stdout);
    assert.equal(ja.policy, 'kvdistill');
    assert.ok(ja.cacheRows < ja.contextTokens);
    const b = await cli([...common, '--session', session, 'What is the pass key?']);
    assert.equal(b.code, 0, b.stderr);
    const jb = JSON.parse(b.stdout);
    assert.deepEqual(jb.tokens, ja.tokens);
    assert.equal(jb.policy, 'kvdistill');
    assert.equal(jb.contextTokens, ja.contextTokens);
    // --context text equals --context-file; another policy takes a context and a session too
    const c = await cli([...common, '--policy', 'kvdistill', '--adaptor', fx.rand, '--retain', '0.2', '--context', fs.readFileSync(ctxFile, 'utf8'), 'What is the pass key?']);
    assert.deepEqual(JSON.parse(c.stdout).tokens, ja.tokens);
    const s2 = path.join(dir, 'h2o.session');
    const d = await cli([...common, '--policy', 'h2o', '--budget', '32', '--context-file', ctxFile, '--save-session', s2, 'Q?']);
    assert.equal(d.code, 0, d.stderr);
    const e = await cli([...common, '--session', s2, 'Q?']);
    assert.deepEqual(JSON.parse(e.stdout).tokens, JSON.parse(d.stdout).tokens);
    const bad = async (args: string[], pattern: RegExp) => {
      const r = await cli(['generate', '--model', fx.modelDir, ...args, 'q']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    };
    await bad(['--policy', 'kvdistill', '--retain', '0.2', '--context', 'x'], /--policy kvdistill needs --adaptor/);
    await bad(['--policy', 'kvdistill', '--adaptor', fx.rand, '--context', 'x'], /needs --retain/);
    await bad(['--policy', 'kvdistill', '--adaptor', fx.rand, '--retain', '0.2'], /needs --context/);
    await bad(['--policy', 'kvdistill', '--adaptor', fx.rand, '--retain', '0.2', '--context', 'x', '--budget', '8'], /--budget is not an option of --policy kvdistill/);
    await bad(['--adaptor', fx.rand, '--context', 'x'], /--adaptor needs --policy kvdistill/);
    await bad(['--session', session, '--context', 'x'], /--context cannot be combined with --session/);
    await bad(['--session', session, '--retain', '0.5'], /--retain cannot be combined with --session/);
    await bad(['--session', session, '--policy', 'h2o'], /holds a "kvdistill" cache; --policy h2o disagrees/);
    await bad(['--save-session', path.join(dir, 'x.session')], /--save-session needs --context/);
    await bad(['--context', 'x', '--context-file', ctxFile], /--context or --context-file, not both/);
    await bad(['--chat', '--context', 'x'], /--chat cannot be combined/);
    await bad(['--context', ' '], /--context is empty/);
    await bad(['--context-file', path.join(dir, 'missing.txt')], /--context-file .*missing\.txt/);
    await bad(['--policy', 'kvdistill', '--adaptor', path.join(dir, 'none.safetensors'), '--retain', '0.2', '--context', 'x'], /--adaptor/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
