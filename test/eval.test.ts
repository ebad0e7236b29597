// The evaluation harness on a tiny random model and token files the test writes: the perplexity
// protocol against a separate plain token-by-token loop, window enumeration, resume, the
// retrieval tasks and their scoring, the CLI outputs and its flag errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UsageError } from '../src/cli/args.js';
import { run as runEval } from '../src/cli/eval.js';
import { run as runBench } from '../src/cli/bench.js';
import { FullCache } from '../src/cache/full.js';
import { cacheShape } from '../src/cache/factory.js';
import { concatDocuments, writeTokenDataset, type DocumentSpan, type TokenSplit } from '../src/data/tokens.js';
import { forward } from '../src/model/forward.js';
import { randomModel, rng, tinyConfig } from '../src/model/random.js';
import { byteLevelTokenizerJson, loadTokenizer, saveTokenizer } from '../src/model/tokenizer.js';
import { saveModel } from '../src/model/writer.js';
import type { Model } from '../src/model/types.js';
import { enumerateWindows, evenlySpaced } from '../src/eval/windows.js';
import { policySpecs } from '../src/eval/policies.js';
import { runPpl, type WindowScore } from '../src/eval/ppl.js';
import { EvalState } from '../src/eval/state.js';
import { runGrid, sampleSeed, type TrialRecord } from '../src/eval/grid.js';
import { insertNeedles, makeNeedles, niahSample, passkeySample, scoreNeedles, scorePasskey, type Codec } from '../src/eval/tasks.js';
import { findResults } from '../src/eval/results-page.js';
import { TimedCache } from '../src/eval/bench.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-eval-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const WINDOW = 32;
const config = tinyConfig({ vocabSize: 259, maxPositionEmbeddings: WINDOW });
const model = randomModel(config, 7);

/** Two documents of random tokens (first token BOS) plus a short one no window fits in. */
function tinySplit(): TokenSplit {
  const next = rng(3);
  const doc = (name: string, n: number) => {
    const t = Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + Math.floor(next() * 256)));
    return { name, tokens: t, chars: n };
  };
  return concatDocuments('test', [doc('a', 90), doc('b', 57), doc('c', 12)], config.vocabSize);
}

/** The protocol written out plainly: each window fed one token at a time through a full cache. */
function plainPpl(m: Model, split: TokenSplit, T: number, stride: number): { ppl: number; windows: number } {
  const V = m.config.vocabSize;
  const means: number[] = [];
  for (const d of split.documents) {
    for (let s = 0; s + T <= d.length; s += stride) {
      const cache = new FullCache(cacheShape(m.config), {});
      let sum = 0;
      for (let t = 0; t < T - 1; t++) {
        const logits = forward(m, [split.tokens[d.offset + s + t]], cache);
        let mx = -Infinity;
        for (let i = 0; i < V; i++) mx = Math.max(mx, logits[i]);
        let z = 0;
        for (let i = 0; i < V; i++) z += Math.exp(logits[i] - mx);
        sum += mx + Math.log(z) - logits[split.tokens[d.offset + s + t + 1]];
      }
      means.push(sum / (T - 1));
    }
  }
  return { ppl: Math.exp(means.reduce((a, b) => a + b, 0) / means.length), windows: means.length };
}

test('windows: every stride inside each document, none crossing documents, evenly spaced cap', () => {
  const docs: DocumentSpan[] = [
    { name: 'a', offset: 0, length: 10, chars: 0 },
    { name: 'b', offset: 10, length: 7, chars: 0 },
    { name: 'c', offset: 17, length: 3, chars: 0 },
  ];
  const w = enumerateWindows(docs, 4, 3);
  assert.deepEqual(w.map((x) => [x.doc, x.start]), [[0, 0], [0, 3], [0, 6], [1, 10], [1, 13]]);
  for (const x of w) {
    const d = docs[x.doc];
    assert.ok(x.start >= d.offset && x.start + x.length <= d.offset + d.length);
  }
  assert.equal(enumerateWindows(docs, 7, 1).length, 4 + 1); // 4 in a, 1 in b (exactly its length)
  assert.equal(enumerateWindows(docs, 11, 1).length, 0);
  assert.deepEqual(evenlySpaced([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3), [1, 5, 8]);
  assert.deepEqual(evenlySpaced([0, 1, 2], 5), [0, 1, 2]);
  assert.deepEqual(evenlySpaced([0, 1, 2], undefined), [0, 1, 2]);
  assert.throws(() => enumerateWindows(docs, 1, 1), /length/);
  assert.throws(() => enumerateWindows(docs, 4, 0), /stride/);
});

test('ppl: every policy equals a plain token-by-token full-cache loop for T <= N', async () => {
  const split = tinySplit();
  const specs = policySpecs(['full', 'window', 'freqkv', 'h2o']);
  const lengths = [16, WINDOW];
  const res = await runPpl(model, split, { lengths, stride: 8, policies: specs, progress: null });
  assert.equal(res.complete, true);
  for (const T of lengths) {
    const ref = plainPpl(model, split, T, 8);
    for (const s of specs) {
      const row = res.rows.find((r) => r.policy === s.label && r.length === T)!;
      assert.equal(row.windows, ref.windows, `${s.label} T=${T} windows`);
      assert.equal(row.windowsAvailable, ref.windows);
      assert.equal(row.tokens, ref.windows * (T - 1));
      assert.ok(Math.abs(row.perplexity! - ref.ppl) / ref.ppl < 1e-4, `${s.label} T=${T}: ${row.perplexity} vs ${ref.ppl}`);
      assert.equal(row.entriesHeld, T);
      assert.equal(row.tokensPerEntry, 1);
    }
  }
});

test('ppl: beyond the window the bounded policies hold at most N entries; the cap picks evenly spaced windows', async () => {
  const split = tinySplit();
  const specs = policySpecs(['full', 'freqkv', 'window']);
  const res = await runPpl(model, split, { lengths: [64], stride: 4, maxWindows: 3, policies: specs, progress: null });
  const row = (p: string) => res.rows.find((r) => r.policy === p)!;
  assert.equal(row('full').windows, 3);
  assert.equal(row('full').windowsAvailable, enumerateWindows(split.documents, 64, 4).length);
  assert.equal(row('full').entriesHeld, 64);
  assert.ok(row('freqkv').entriesHeld <= WINDOW && row('window').entriesHeld <= WINDOW);
  assert.ok(row('freqkv').tokensPerEntry >= 2);
  for (const p of ['full', 'freqkv', 'window']) assert.ok(Number.isFinite(row(p).perplexity!));
  assert.notEqual(row('freqkv').perplexity, row('full').perplexity);
  // no window of 200 tokens fits: reported, not invented
  const none = await runPpl(model, split, { lengths: [200], stride: 8, policies: specs, progress: null });
  assert.equal(none.rows[0].windows, 0);
  assert.equal(none.rows[0].perplexity, null);
});

test('ppl: an interrupted run resumed from its state file gives the uninterrupted result', async () => {
  const split = tinySplit();
  const specs = policySpecs(['full', 'freqkv:retain=0.25']);
  const opts = { lengths: [16, 48], stride: 8, policies: specs, progress: null };
  const whole = await runPpl(model, split, opts);
  const fp = { model: 'm', lengths: opts.lengths };
  const file = path.join(tmp, 'ppl-state.json');
  const ac = new AbortController();
  const st1 = EvalState.open<WindowScore>(file, 'ppl', fp, false);
  const part = await runPpl(model, split, { ...opts, state: st1, signal: ac.signal, onComputed: (n) => n === 5 && ac.abort() });
  assert.equal(part.complete, false);
  assert.throws(() => EvalState.open(file, 'ppl', fp, false), /--resume/);
  assert.throws(() => EvalState.open(file, 'ppl', { ...fp, lengths: [16] }, true), /differs in lengths/);
  assert.throws(() => EvalState.open(file, 'passkey', fp, true), /"ppl" run/);
  const st2 = EvalState.open<WindowScore>(file, 'ppl', fp, true);
  assert.equal(st2.size, 5);
  let computed = 0;
  const resumed = await runPpl(model, split, { ...opts, state: st2, onComputed: (n) => (computed = n) });
  assert.equal(resumed.complete, true);
  const total = whole.rows.reduce((a, r) => a + r.windows, 0);
  assert.equal(computed, total - 5);
  assert.deepEqual(resumed.rows, whole.rows);
});

// ---- retrieval tasks ---------------------------------------------------------------------------

let codec: Codec;
const tokDir = path.join(tmp, 'model');

test('setup: a byte-level tokenizer and a tiny model folder', async () => {
  await saveModel(tokDir, model);
  await saveTokenizer(tokDir, byteLevelTokenizerJson(), { bos_token: '<s>', eos_token: '</s>' });
  const tok = await loadTokenizer(tokDir);
  codec = { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }) };
});

test('passkey: prompt fits the length, key at the depth, the classic filler in order; scoring', () => {
  for (const depth of [0, 0.5, 1]) {
    const s = passkeySample(rng(5), 400, depth, codec);
    const text = codec.decode(s.prompt);
    assert.ok(s.prompt.length <= 400 && s.prompt.length > 400 - 25, `length ${s.prompt.length}`);
    assert.match(s.expected[0], /^[1-9]\d{4}$/);
    const at = text.indexOf(`The pass key is ${s.expected[0]}. Remember it. ${s.expected[0]} is the pass key.`);
    assert.ok(at >= 0);
    assert.ok(text.endsWith('What is the pass key? The pass key is'));
    const rel = at / text.length;
    if (depth === 0) assert.equal(at, 0);
    if (depth === 1) assert.ok(text.slice(at).startsWith('The pass key') && text.indexOf('The grass', at) < 0);
    if (depth === 0.5) assert.ok(rel > 0.3 && rel < 0.6, `relative position ${rel}`);
    if (depth !== 0) assert.ok(text.startsWith('The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. The grass'));
  }
  // same seed, same sample; another seed, another key
  assert.deepEqual(passkeySample(rng(5), 300, 0.5, codec), passkeySample(rng(5), 300, 0.5, codec));
  assert.throws(() => passkeySample(rng(5), 50, 0.5, codec), /too short/);
  assert.equal(scorePasskey(' 48213.', '48213'), 1);
  assert.equal(scorePasskey(' is 48213', '48213'), 1);
  assert.equal(scorePasskey(' 482130', '48213'), 0);
  assert.equal(scorePasskey(' 4821', '48213'), 0);
  assert.equal(scorePasskey(' 12 then 48213', '48213'), 0);
  assert.equal(scorePasskey(' the key', '48213'), 0);
});

const HAY = Array.from({ length: 300 }, (_, i) => `Sentence number ${i} tells of the ${['quiet', 'old', 'red', 'long'][i % 4]} road to town.`).join(' ');

test('niah: the four tasks place their needles, fit the length, and score by whole-word matches', () => {
  for (const task of ['single', 'multikey', 'multivalue', 'vt'] as const) {
    const s = niahSample(task, rng(11), 900, 0.5, { text: HAY }, codec, 3);
    const text = codec.decode(s.prompt);
    assert.ok(s.prompt.length <= 900 && s.prompt.length > 850, `${task}: ${s.prompt.length} tokens`);
    const n = makeNeedles(task, rng(11), 0.5, 3);
    assert.deepEqual(s.expected, n.expected);
    for (const needle of n.needles) assert.ok(text.includes(needle.text), `${task}: needle "${needle.text}" missing`);
    assert.ok(text.endsWith(n.question));
    if (task === 'single' || task === 'multikey') assert.equal(s.expected.length, 1);
    if (task === 'multivalue') assert.equal(s.expected.length, 3);
    if (task === 'vt') {
      assert.equal(s.expected.length, 4);
      assert.ok(text.includes(`VAR ${s.expected[1]} = VAR ${s.expected[0]}.`));
    }
  }
  const mk = makeNeedles('multikey', rng(2), 0.25, 4);
  assert.equal(mk.needles.length, 4);
  assert.ok(mk.question.includes(mk.needles[0].text.split(' ')[6]));
  // needles go in at sentence boundaries, in depth order
  assert.equal(insertNeedles('A b. C d. E f.', [{ text: 'X.', depth: 0.4 }, { text: 'Y.', depth: 0 }, { text: 'Z.', depth: 1 }]), 'Y. A b. C d. X. E f. Z.');
  assert.equal(scoreNeedles(' 1234567 and 7654321.', ['1234567', '7654321']), 1);
  assert.equal(scoreNeedles(' 1234567 and 765432.', ['1234567', '7654321']), 0.5);
  assert.equal(scoreNeedles(' 12345678', ['1234567']), 0);
  assert.equal(scoreNeedles(' ABCDE, FGHIJ', ['ABCDE', 'FGHIJ', 'KLMNO']), 2 / 3);
  assert.throws(() => niahSample('single', rng(1), 900, 0.5, { text: 'Too short.' }, codec), /not enough filler/);
});

test('grid: same prompts for every policy, one cell per (length, depth), resumable', async () => {
  const specs = policySpecs(['full', 'freqkv']);
  const base = {
    tasks: ['passkey' as const], lengths: [160, 224], depths: [0, 1], trials: 2, seed: 3, policies: specs, codec,
    eosIds: [2], maxNew: () => 4, progress: null,
    makeSample: (_t: string, length: number, depth: number, next: () => number) => passkeySample(next, length, depth, codec),
  };
  const whole = await runGrid(model, base);
  assert.equal(whole.cells.length, 2 * 2 * 2);
  assert.equal(whole.trials.length, 2 * 2 * 2 * 2);
  for (const c of whole.cells) assert.equal(c.trials, 2);
  const byPolicy = (p: string) => whole.trials.filter((t) => t.policy === p).map((t) => [t.promptTokens, t.expected]);
  assert.deepEqual(byPolicy('full'), byPolicy('freqkv'));
  assert.notEqual(sampleSeed(3, 'passkey', 160, 0, 0), sampleSeed(3, 'passkey', 160, 0, 1));
  for (const t of whole.trials) assert.equal(t.score, scorePasskey(t.answer, t.expected[0]));
  // interrupted and resumed
  const file = path.join(tmp, 'grid-state.json');
  const ac = new AbortController();
  const part = await runGrid(model, { ...base, state: EvalState.open<TrialRecord>(file, 'passkey', {}, false), signal: ac.signal, onComputed: (n) => n === 3 && ac.abort() });
  assert.equal(part.complete, false);
  const resumed = await runGrid(model, { ...base, state: EvalState.open<TrialRecord>(file, 'passkey', {}, true) });
  assert.deepEqual(resumed.cells, whole.cells);
  assert.deepEqual(resumed.trials, whole.trials);
});

// ---- CLI ---------------------------------------------------------------------------------------

async function cli(fn: (argv: string[]) => Promise<number>, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  let out = '';
  let err = '';
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: await fn(argv), out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

test('cli: eval ppl, passkey, niah, bench decode and report write their outputs and commands', async () => {
  const dataDir = path.join(tmp, 'data');
  await writeTokenDataset(dataDir, [tinySplit()], config.vocabSize, 1);
  const textFile = path.join(tmp, 'hay.txt');
  fs.writeFileSync(textFile, HAY);
  const runs = path.join(tmp, 'runs');
  const pplOut = path.join(runs, 'ppl');
  const pplArgs = ['ppl', '--model', tokDir, '--data', dataDir, '--lengths', '32,16', '--stride', '8', '--policy', 'full,freqkv,h2o', '--out', pplOut, '--json'];
  const r = await cli(runEval, pplArgs);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(r.out);
  assert.equal(json.kind, 'ppl');
  assert.equal(json.command, `freqkv eval ppl --model ${tokDir} --data ${dataDir} --lengths 32,16 --stride 8 --policy full,freqkv,h2o --out ${pplOut} --json`);
  assert.deepEqual(json.protocol.lengths, [16, 32]);
  assert.equal(json.rows.length, 6);
  for (const row of json.rows) for (const k of ['policy', 'length', 'perplexity', 'windows', 'tokens', 'bytesPerEntry', 'tokensPerEntry']) assert.ok(k in row, k);
  const ref = plainPpl(model, tinySplit(), 16, 8).ppl;
  assert.ok(Math.abs(json.rows[0].perplexity - ref) / ref < 1e-4);
  for (const f of ['result.json', 'report.md', 'ppl.svg', 'state.json']) assert.ok(fs.existsSync(path.join(pplOut, f)), f);
  assert.match(fs.readFileSync(path.join(pplOut, 'report.md'), 'utf8'), /\| freqkv \|/);
  // rerunning into the same folder needs --resume; with it nothing is recomputed and the rows match
  await assert.rejects(runEval(pplArgs), (e: Error) => e instanceof UsageError && /--resume/.test(e.message));
  const again = await cli(runEval, [...pplArgs, '--resume']);
  assert.equal(again.code, 0, again.err);
  assert.deepEqual(JSON.parse(again.out).rows, json.rows);
  // the same protocol over a text file tokenized with the model's tokenizer
  const t = await cli(runEval, ['ppl', '--model', tokDir, '--text', textFile, '--lengths', '64', '--max-windows', '2', '--policy', 'full', '--out', path.join(runs, 'ppl-text'), '--json']);
  assert.equal(t.code, 0, t.err);
  assert.equal(JSON.parse(t.out).rows[0].windows, 2);

  const pk = await cli(runEval, ['passkey', '--model', tokDir, '--policy', 'full,window', '--lengths', '160', '--depths', '0,1', '--trials', '1', '--out', path.join(runs, 'passkey')]);
  assert.equal(pk.code, 0, pk.err);
  for (const f of ['result.json', 'report.md', 'passkey-full.svg', 'passkey-window.svg']) assert.ok(fs.existsSync(path.join(runs, 'passkey', f)), f);
  const nh = await cli(runEval, ['niah', '--model', tokDir, '--text', textFile, '--tasks', 'single,vt', '--needles', '2', '--policy', 'freqkv', '--lengths', '700', '--depths', '0.5', '--trials', '1', '--max-new', '4', '--out', path.join(runs, 'niah')]);
  assert.equal(nh.code, 0, nh.err);
  assert.ok(fs.existsSync(path.join(runs, 'niah', 'vt-freqkv.svg')));
  const bd = await cli(runBench, ['decode', '--model', tokDir, '--policy', 'full,freqkv', '--lengths', '8,40', '--steps', '3', '--out', path.join(runs, 'bench'), '--json']);
  assert.equal(bd.code, 0, bd.err);
  const bj = JSON.parse(bd.out);
  assert.equal(bj.rows.length, 4);
  assert.ok(bj.rows.every((x: { msPerToken: number; bytesHeld: number }) => x.msPerToken > 0 && x.bytesHeld > 0));
  assert.ok(bj.rows.find((x: { policy: string; context: number }) => x.policy === 'freqkv' && x.context === 40).entriesHeld <= WINDOW);

  const page = path.join(tmp, 'docs', 'results.md');
  const rep = await cli(runEval, ['report', '--from', runs, '--out', page]);
  assert.equal(rep.code, 0, rep.err);
  assert.equal(findResults([runs]).length, 5);
  const md = fs.readFileSync(page, 'utf8');
  assert.ok(md.includes(json.command), 'the ppl command is quoted');
  assert.ok(md.includes('freqkv bench decode'));
  const images = [...md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
  assert.ok(images.length >= 6);
  for (const img of images) assert.ok(fs.existsSync(path.join(tmp, 'docs', img)), img);
});

test('cli: bad flags are rejected with messages naming them', async () => {
  const bad: [string[], RegExp][] = [
    [['ppl', '--lengths', '256,abc'], /--lengths expects whole numbers >= 2, got "abc"/],
    [['ppl', '--lengths', '1'], /--lengths/],
    [['ppl', '--stride', '0'], /--stride/],
    [['ppl', '--policy', 'full,lru'], /policy "lru"/],
    [['ppl', '--policy', 'full,h2o', '--retain', '0.5'], /--retain is taken by none of the policies/],
    [['ppl', '--policy', 'freqkv:budget=9'], /freqkv does not take budget/],
    [['ppl', '--policy', 'freqkv,freqkv'], /listed twice/],
    [['ppl', '--text', 'a.txt', '--split', 'test'], /either --text or --split/],
    [['ppl', '--bogus'], /unknown flag --bogus/],
    [['passkey', '--depths', '0,1.5'], /--depths expects numbers in \[0, 1\], got "1.5"/],
    [['niah', '--tasks', 'single,haystack'], /--tasks/],
    [['frobnicate'], /unknown subcommand "frobnicate"/],
  ];
  for (const [argv, re] of bad) {
    await assert.rejects(runEval(argv), (e: Error) => e instanceof UsageError && re.test(e.message), argv.join(' '));
  }
  await assert.rejects(runBench(['decode', '--lengths', '0']), (e: Error) => e instanceof UsageError && /--lengths/.test(e.message));
  await assert.rejects(runBench(['speed']), /unknown subcommand/);
  await assert.rejects(runEval(['ppl', '--model', tokDir, '--policy', 'freqkv', '--cache-size', '8', '--sinks', '8', '--data', path.join(tmp, 'data')]), /policy "freqkv"/);
  await assert.rejects(runEval(['report', '--from', path.join(tmp, 'nowhere')]), /no such folder/);
});

test('TimedCache forwards the protocol and times begin()', () => {
  const inner = new FullCache(cacheShape(config), {});
  const c = new TimedCache(inner);
  forward(model, [1, 2, 3], c);
  assert.equal(c.length, 3);
  assert.equal(c.seen, 3);
  assert.ok(c.beginMs >= 0);
  assert.equal(c.bytes().total, inner.bytes().total);
});

test('results page: one combined perplexity table over runs on the same windows; commentary on top', async () => {
  const { combinedPplTable, renderResultsPage } = await import('../src/eval/results-page.js');
  const run = (model: string, fingerprint: string, cells: Record<string, Record<number, number>>) => ({
    format: 'freqkv-eval', version: 1, kind: 'ppl', command: `freqkv eval ppl --model ${model}`, createdAt: '2026-12-04T00:00:00Z', elapsedSeconds: 1,
    backend: 'reference', threads: 1, model: { path: model, summary: 'tiny', window: 16, fingerprint: model },
    data: { source: 'data/test', documents: [{ name: 'a', tokens: 100 }], fingerprint },
    protocol: { lengths: [16, 32], stride: 16, maxWindows: 2 },
    policies: Object.keys(cells).map((label) => ({ label, policy: label, options: { policy: label } })),
    rows: Object.entries(cells).flatMap(([policy, byT]) => Object.entries(byT).map(([T, ppl]) => ({
      policy, length: Number(T), perplexity: ppl, meanNll: Math.log(ppl), windows: 2, windowsAvailable: 4, bytesHeld: 1, tokensPerEntry: 1,
    }))),
    complete: true,
  });
  const base = run('base', 'F', { full: { 16: 10, 32: 12 }, freqkv: { 16: 10, 32: 11 } });
  const tuned = run('tuned', 'F', { freqkv: { 16: 9.5, 32: 9.75 } });
  const other = run('other', 'G', { full: { 16: 1, 32: 1 } });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const table = combinedPplTable([base, tuned, other] as any)!;
  assert.match(table, /\| base \+ full \| 10\.00 \| 12\.00 \|/);
  assert.match(table, /\| base \+ freqkv \| 10\.00 \| 11\.00 \|/);
  assert.match(table, /\| tuned \+ freqkv \| 9\.50 \| 9\.75 \|/);
  assert.doesNotMatch(table, /\| other \+/);
  assert.match(table, /1 run\(s\) on other data/);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  assert.equal(combinedPplTable([base] as any), null);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const page = renderResultsPage([{ dir: 'x', result: base as any }, { dir: 'y', result: tuned as any }], { notes: '## What we saw\n\nhonest words' });
  assert.ok(page.markdown.indexOf('honest words') < page.markdown.indexOf('## Perplexity'));
  assert.match(page.markdown, /tuned \+ freqkv/);
});
