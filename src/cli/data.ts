// `freqkv data`: builds the book corpus, tokenises it with a trained tokenizer and writes one token
// file per split (train, val, test) plus a synthetic retrieval split for the pretraining mix.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { helpText, parseArgs, UsageError, type FlagSpec } from './args.js';
import { countChars, loadCorpus, SPLITS } from '../data/corpus.js';
import { retrievalSample } from '../data/synthetic.js';
import { concatDocuments, writeTokenDataset, type TokenSplit } from '../data/tokens.js';
import { rng } from '../model/random.js';
import { loadTokenizer } from '../model/tokenizer.js';

const FLAGS: Record<string, FlagSpec> = {
  tokenizer: { kind: 'string', help: 'tokenizer folder (tokenizer.json + tokenizer_config.json) (required)' },
  out: { kind: 'string', default: 'data', help: 'output folder' },
  'synthetic-share': { kind: 'number', default: 0.05, min: 0, max: 1, help: 'share of pretraining tokens drawn from the synthetic split (recorded in the manifest)' },
  'synthetic-samples': { kind: 'int', default: 10000, min: 0, help: 'synthetic retrieval samples to write' },
  window: { kind: 'int', default: 256, min: 16, help: 'each synthetic sample (BOS included) fits in this many tokens' },
  seed: { kind: 'int', default: 1, min: 0, help: 'seed of the synthetic samples' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const USAGE = `usage: freqkv data --tokenizer models/freqkv-tiny --out data

Writes <out>/{train,val,test,synthetic}.bin and <out>/manifest.json (books, splits, document
boundaries). Every document starts with the tokenizer's BOS token. Progress goes to stderr, a JSON
summary to stdout.

${helpText(FLAGS)}
`;

export async function run(argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, FLAGS, 'data');
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length > 0) throw new UsageError(`data: unexpected argument "${positional[0]}"`);
  if (typeof flags.tokenizer !== 'string' || flags.tokenizer === '') throw new UsageError('data: --tokenizer <folder> is required');
  const out = flags.out as string;
  const t0 = performance.now();

  const tok = await loadTokenizer(flags.tokenizer);
  const bos = tok.bosId;
  // Every document starts with BOS, added here rather than by the tokenizer's post-processor.
  const encodeDoc = (text: string) => {
    const ids = tok.encode(text, { addSpecialTokens: false });
    return bos === null ? ids : [bos, ...ids];
  };
  const corpus = loadCorpus();
  for (const d of corpus.dropped) process.stderr.write(`data: dropped ${d.source}: ${d.reason}\n`);

  const splits: TokenSplit[] = [];
  const books: { id: string; title: string; source: string; split: string; chars: number; tokens: number }[] = [];
  for (const split of SPLITS) {
    const docs = [];
    for (const b of corpus.books.filter((x) => x.split === split)) {
      const tokens = encodeDoc(b.text);
      const chars = countChars(b.text);
      docs.push({ name: b.id, tokens, chars });
      books.push({ id: b.id, title: b.title, source: b.source, split, chars, tokens: tokens.length });
      process.stderr.write(`data: ${split} ${b.id}: ${chars} characters, ${tokens.length} tokens\n`);
    }
    splits.push(concatDocuments(split, docs, tok.vocabSize));
  }

  const synth = syntheticSplit(encodeDoc, tok.vocabSize, flags['synthetic-samples'] as number, flags.window as number, flags.seed as number);
  splits.push(synth.split);
  process.stderr.write(`data: synthetic: ${synth.split.documents.length} samples, ${synth.split.tokens.length} tokens (${synth.rejected} redrawn for not fitting the window)\n`);

  const tokenizerJson = fs.readFileSync(path.join(flags.tokenizer, 'tokenizer.json'));
  const manifest = await writeTokenDataset(out, splits, tok.vocabSize, bos, {
    tokenizer: { dir: flags.tokenizer, sha256: createHash('sha256').update(tokenizerJson).digest('hex') },
    books,
    dropped: corpus.dropped,
    synthetic: {
      split: 'synthetic',
      share: flags['synthetic-share'],
      samples: synth.split.documents.length,
      window: flags.window,
      seed: flags.seed,
      rejected: synth.rejected,
      generator: 'retrievalSample (src/data/synthetic.ts), passkey and facts, half each',
    },
  });

  const summary: Record<string, unknown> = { out, vocabSize: tok.vocabSize, bosTokenId: bos, splits: {} };
  for (const [name, e] of Object.entries(manifest.splits)) {
    // chars/token leaves out the BOS tokens (one per document).
    (summary.splits as Record<string, unknown>)[name] = {
      documents: e.documents.length,
      tokens: e.tokens,
      chars: e.chars,
      charsPerToken: Number((e.chars / Math.max(1, e.tokens - (bos === null ? 0 : e.documents.length))).toFixed(3)),
    };
  }
  summary.syntheticShare = flags['synthetic-share'];
  summary.seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  return 0;
}

/**
 * `count` retrieval samples, each (with its BOS) at most `window` tokens. Filler length is drawn
 * up to 3 characters per token of the window; a sample that still comes out too long is
 * redrawn (counted in `rejected`).
 */
function syntheticSplit(
  encodeDoc: (text: string) => number[],
  vocabSize: number,
  count: number,
  window: number,
  seed: number,
): { split: TokenSplit; rejected: number } {
  const next = rng(seed);
  const docs = [];
  let rejected = 0;
  const maxFillerChars = window * 3;
  while (docs.length < count) {
    const s = retrievalSample(next, { minFillerChars: 0, maxFillerChars });
    const tokens = encodeDoc(s.text);
    if (tokens.length > window) {
      rejected++;
      if (rejected > 10 * count + 100) throw new Error(`data: synthetic samples keep overflowing the ${window}-token window`);
      continue;
    }
    docs.push({ name: `${s.kind}-${docs.length}`, tokens, chars: countChars(s.text) });
  }
  return { split: concatDocuments('synthetic', docs, vocabSize), rejected };
}
