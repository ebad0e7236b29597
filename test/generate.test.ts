// Sampling, incremental detokenizing, stop strings, EOS, limits and `freqkv generate` end to end
// on a tiny random model written to disk with a byte-level tokenizer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sampler, argmax } from '../src/model/sampler.js';
import { generate, TextStream, type TextCodec } from '../src/model/generate.js';
import { forward } from '../src/model/forward.js';
import { createCache } from '../src/cache/factory.js';
import { randomModel, tinyConfig } from '../src/model/random.js';
import { byteLevelTokenizerJson, loadTokenizer, saveTokenizer } from '../src/model/tokenizer.js';
import { saveModel } from '../src/model/writer.js';
import { takeStops } from '../src/cli/generate.js';
import { findShippedModel } from '../src/model/shipped.js';

/** Empirical frequencies of n samples. */
function frequencies(s: Sampler, logits: Float32Array, n: number): number[] {
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[s.sample(logits)]++;
  return counts.map((c) => c / n);
}

function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function assertClose(actual: number[], expected: number[], tol: number, what: string): void {
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

// probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1
const probs = [0.5, 0.3, 0.15, 0.05];
const logits = new Float32Array(probs.map(Math.log));

test('greedy and top-k = 1 pick the argmax', () => {
  const l = new Float32Array([0.1, 3, -1, 3, 2]);
  assert.equal(argmax(l), 1);
  assert.equal(new Sampler(5, { temperature: 0 }).sample(l), 1);
  assert.equal(new Sampler(5, { temperature: 1.5, topK: 1, seed: 3 }).sample(l), 1);
});

test('temperature sampling follows softmax(logits / T); a seed reproduces the draws', () => {
  const n = 40000;
  assertClose(frequencies(new Sampler(4, { temperature: 1, seed: 1 }), logits, n), probs, 0.01, 'T=1');
  const t2 = softmax(Array.from(logits, (z) => z / 2));
  assertClose(frequencies(new Sampler(4, { temperature: 2, seed: 2 }), logits, n), t2, 0.01, 'T=2');
  const draw = (seed: number) => Array.from({ length: 50 }, function (this: Sampler) { return this.sample(logits); }, new Sampler(4, { temperature: 1, seed }));
  assert.deepEqual(draw(7), draw(7));
  assert.notDeepEqual(draw(7), draw(8));
});

test('top-k keeps the k most likely tokens, renormalised', () => {
  const f = frequencies(new Sampler(4, { temperature: 1, topK: 2, seed: 4 }), logits, 40000);
  assertClose(f, [0.5 / 0.8, 0.3 / 0.8, 0, 0], 0.01, 'top-2');
  // the heap selection on a larger vocabulary: only the 5 largest logits ever come out
  const big = new Float32Array(1000).map((_, i) => Math.sin(i * 12.9898) * 4);
  const top5 = Array.from(big.keys()).sort((a, b) => big[b] - big[a]).slice(0, 5);
  const s = new Sampler(1000, { temperature: 3, topK: 5, seed: 5 });
  for (let i = 0; i < 2000; i++) assert.ok(top5.includes(s.sample(big)));
});

test('top-p keeps the smallest most-likely set reaching p; after top-k when both are set', () => {
  // 0.5 < 0.75 <= 0.5 + 0.3: the nucleus is {0, 1}
  assertClose(frequencies(new Sampler(4, { temperature: 1, topP: 0.75, seed: 6 }), logits, 40000), [0.625, 0.375, 0, 0], 0.01, 'top-p 0.75');
  // 0.95 needs three tokens
  assertClose(frequencies(new Sampler(4, { temperature: 1, topP: 0.95, seed: 7 }), logits, 40000), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], 0.01, 'top-p 0.95');
  // top-k 3 renormalises to 0.526, 0.316, 0.158; then p = 0.8 keeps {0, 1}
  assertClose(frequencies(new Sampler(4, { temperature: 1, topK: 3, topP: 0.8, seed: 8 }), logits, 40000), [0.625, 0.375, 0, 0], 0.01, 'top-k + top-p');
  assert.equal(new Sampler(4, { temperature: 1, topP: 0.01, seed: 9 }).sample(logits), 0);
});

test('sampler options are validated', () => {
  assert.throws(() => new Sampler(4, { temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler(4, { topK: 1.5 }), /topK/);
  assert.throws(() => new Sampler(4, { topP: 0 }), /topP/);
  assert.throws(() => new Sampler(4, { seed: -2 }), /seed/);
  assert.throws(() => new Sampler(4).sample(new Float32Array(3)), /4 entries/);
});

// ---------- a tiny model and byte-level tokenizer on disk ----------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-generate-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const modelDir = path.join(tmp, 'model');
const config = tinyConfig({ vocabSize: 259, nLayers: 2, hiddenSize: 32, maxPositionEmbeddings: 128 }); // 3 specials + 256 bytes
const model = randomModel(config, 21);
const ready = (async () => {
  await saveModel(modelDir, model);
  await saveTokenizer(modelDir, byteLevelTokenizerJson(), { bos_token: '<s>', eos_token: '</s>' });
  return loadTokenizer(modelDir);
})();

test('TextStream emits multi-byte characters whole and reproduces the decoded text', async () => {
  const tok = await ready;
  const text = 'héllo wörld 👋 ok';
  const ids = tok.encode(text, { addSpecialTokens: false });
  assert.ok(ids.length > Array.from(text).length, 'some characters span several byte tokens');
  const stream = new TextStream(tok, tok.encode('say:'));
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `piece ${JSON.stringify(p)} splits a character`);
  assert.equal(pieces.join(''), text);
  assert.ok(pieces.includes('👋'), 'the 4-byte emoji comes out in one piece');
});

test('greedy generate equals a hand-written prefill + decode loop; counts and timings', async () => {
  const tok = await ready;
  const prompt = 'Once upon';
  const res = await generate(model, tok, prompt, { temperature: 0, maxTokens: 12, eosIds: [] });
  const ids = tok.encode(prompt);
  assert.deepEqual(res.promptTokens, ids);
  assert.equal(ids[0], 1, 'the tokenizer prepends BOS');
  const cache = createCache(config);
  const expected: number[] = [];
  let l = forward(model, ids, cache);
  for (let i = 0; i < 12; i++) {
    expected.push(argmax(l));
    l = forward(model, [expected[i]], cache);
  }
  assert.deepEqual(res.tokens, expected);
  assert.equal(res.finishReason, 'length');
  assert.equal(res.text, tok.decode(expected));
  assert.equal(res.timings.prefillTokens, ids.length);
  assert.equal(res.timings.decodeTokens, 11, 'the last token is sampled, not fed');
  assert.ok(res.timings.prefillTokensPerSecond > 0 && res.timings.decodeTokensPerSecond > 0);

  const fed = createCache(config);
  await generate(model, tok, prompt, { temperature: 0, maxTokens: 12, eosIds: [], cache: fed, feedLast: true });
  assert.equal(fed.seen, ids.length + 12, 'feedLast leaves the whole exchange in the cache');
});

/** Token i decodes to a short printable piece ('a', 'bb', 'c ', ...), so text and stop strings span tokens. */
const words: TextCodec = {
  encode: (text) => Array.from(text, (ch) => ch.charCodeAt(0) % config.vocabSize),
  decode: (ids) => ids.map((i) => String.fromCharCode(97 + (i % 26)).repeat(1 + (i % 2)) + (i % 3 === 0 ? ' ' : '')).join(''),
};

test('EOS ends generation without being included; stop strings cut the text and the stream', async () => {
  const prompt = [1, 40, 41, 42];
  const free = await generate(model, words, prompt, { temperature: 0, maxTokens: 40, eosIds: [] });
  assert.equal(free.tokens.length, 40);
  // EOS: pretend the 6th generated token ends the sequence
  const eosId = free.tokens[5];
  const withEos = await generate(model, words, prompt, { temperature: 0, maxTokens: 40, eosIds: [eosId] });
  assert.equal(withEos.finishReason, 'eos');
  assert.deepEqual(withEos.tokens, free.tokens.slice(0, free.tokens.indexOf(eosId)));
  // by default the config's EOS ids end it (here token 2, if the model ever picks it)
  const defaults = await generate(model, words, prompt, { temperature: 0, maxTokens: 40 });
  const at = free.tokens.indexOf(2);
  assert.deepEqual(defaults.tokens, at < 0 ? free.tokens : free.tokens.slice(0, at));

  // stop string: a piece of the free-running text spanning several tokens, cut where it first appears
  const stop = free.text.slice(9, 14);
  const cut = free.text.indexOf(stop);
  const pieces: string[] = [];
  const stopped = await generate(model, words, prompt, { temperature: 0, maxTokens: 40, eosIds: [], stop: ['never-there', stop] }, (p) => pieces.push(p));
  assert.equal(stopped.finishReason, 'stop');
  assert.equal(stopped.text, free.text.slice(0, cut));
  assert.equal(pieces.join(''), stopped.text, 'no part of the stop string reached the stream');
  assert.ok(stopped.tokens.length < free.tokens.length);
  // without a hit the stream is the whole text, even while a prefix of a stop string was held back
  const all: string[] = [];
  const none = await generate(model, words, prompt, { temperature: 0, maxTokens: 40, eosIds: [], stop: [free.text.slice(-2) + '#'] }, (p) => all.push(p));
  assert.equal(none.text, free.text);
  assert.equal(all.join(''), free.text);
});

test('a seeded sampled run is reproducible and max tokens 0 only prefills', async () => {
  const tok = await ready;
  const opts = { temperature: 1, topK: 20, topP: 0.9, seed: 42, maxTokens: 10, eosIds: [] };
  const a = await generate(model, tok, 'x', opts);
  const b = await generate(model, tok, 'x', opts);
  assert.deepEqual(a.tokens, b.tokens);
  assert.equal(a.seed, 42);
  const zero = await generate(model, tok, 'x', { maxTokens: 0 });
  assert.deepEqual(zero.tokens, []);
  assert.equal(zero.text, '');
  const codec: TextCodec = { encode: () => [], decode: () => '' };
  const fromBos = await generate(model, codec, '', { temperature: 0, maxTokens: 1 });
  assert.deepEqual(fromBos.promptTokens, [config.bosTokenId]);
});

test('--stop values: repeatable, comma lists and escapes', () => {
  const { rest, stops } = takeStops(['--stop', 'a,b', '--json', '--stop=\\n\\n', '--stop', 'x\\,y', 'prompt', '--', '--stop']);
  assert.deepEqual(stops, ['a', 'b', '\n\n', 'x,y']);
  assert.deepEqual(rest, ['--json', 'prompt', '--', '--stop']);
  assert.throws(() => takeStops(['--stop']), /--stop expects/);
  assert.throws(() => takeStops(['--stop', ',']), /non-empty/);
});

// ---------- the CLI ----------

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/freqkv.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, FREQKV_BACKEND: 'reference' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('freqkv generate streams text, reports speeds, and --json matches it', async () => {
  const tok = await ready;
  const common = ['--model', modelDir, '--temperature', '0', '--max-tokens', '8'];
  const j = cli('generate', ...common, '--json', 'Hello');
  assert.equal(j.code, 0, j.stderr);
  const out = JSON.parse(j.stdout);
  assert.deepEqual(out.promptTokens, tok.encode('Hello'));
  assert.ok(out.tokens.length <= 8);
  assert.equal(out.text, tok.decode(out.tokens));
  for (const k of ['prefillTokensPerSecond', 'decodeTokensPerSecond', 'prefillMs', 'decodeMs']) assert.equal(typeof out.timings[k], 'number');
  const s = cli('generate', ...common, 'Hello');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, out.text);
  assert.match(s.stderr, /prefill: \d+ tokens, [\d.]+ tokens\/s \| decode: \d+ tokens, [\d.]+ tokens\/s/);
});

test('freqkv generate --chat renders the chat template', async () => {
  const tok = await ready;
  const r = cli('generate', '--model', modelDir, '--chat', '--system', 'Be brief.', '--temperature', '0', '--max-tokens', '2', '--json', 'Hi');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /no chat template; using ChatML/);
  const expected = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
  assert.deepEqual(JSON.parse(r.stdout).promptTokens, tok.encode(expected, { addSpecialTokens: false }));
});

test('freqkv generate: bad flags exit 2, a missing model is a clear message', () => {
  for (const [args, re] of [
    [['--top-p', '2', 'x'], /--top-p expects a number in \[0, 1\]/],
    [['--top-p', '0', 'x'], /--top-p expects a number in \(0, 1\]/],
    [['--temperature', 'hot', 'x'], /--temperature/],
    [['--policy', 'nope', 'x'], /--policy expects one of/],
    [['--frobnicate', 'x'], /unknown flag --frobnicate/],
    [[], /expects exactly one prompt/],
    [['--system', 'be nice', 'x'], /--system needs --chat/],
    [['--model', modelDir, '--cache-size', '8', 'x'], /does not take the option cacheSize/],
  ] as [string[], RegExp][]) {
    const r = cli('generate', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const missing = cli('generate', '--model', path.join(tmp, 'nope'), 'x');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope: no such model folder/);
  if (findShippedModel() === null) {
    const r = cli('generate', 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /shipped model is not installed.*\n.*--model DIR/);
  }
});
