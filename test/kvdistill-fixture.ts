// Shared by the KV-Distill test files (no tests of its own): the CLI run in process with its
// output captured, and a model folder with a byte-level tokenizer plus a token dataset of random
// books for it.
import * as path from 'node:path';
import { main } from '../src/cli/main.js';
import { concatDocuments, writeTokenDataset } from '../src/data/tokens.js';
import { randomModel, rng, tinyConfig } from '../src/model/random.js';
import { byteLevelTokenizerJson, saveTokenizer } from '../src/model/tokenizer.js';
import type { Model } from '../src/model/types.js';
import { saveModel } from '../src/model/writer.js';

/**
 * Runs `freqkv <args>` in this process, capturing stdout and stderr. interruptAt: once stderr
 * matches, the SIGINT listeners the command added are called, as Ctrl-C would (only those: the
 * test runner may have its own).
 */
export async function cli(args: string[], opts: { interruptAt?: RegExp } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [], err: string[] = [];
  const ow = process.stdout.write, ew = process.stderr.write;
  const before = new Set(process.listeners('SIGINT'));
  let fired = false;
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => {
    err.push(String(s));
    if (opts.interruptAt && !fired && opts.interruptAt.test(err.join(''))) {
      fired = true;
      for (const l of process.listeners('SIGINT')) if (!before.has(l)) (l as () => void)();
    }
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await main(args), stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

export interface FixtureOptions {
  /** The model's context window and weights seed. */
  maxPositions: number;
  modelSeed: number;
  /** Seed of the books' tokens. */
  bookSeed: number;
  /** One book per split, in this order: its split, name and length in tokens. */
  books: { split: string; name: string; tokens: number }[];
}

/** <dir>/model (a random tiny model, BOS 1, byte-level tokenizer) and <dir>/data (books of random tokens >= 3). */
export async function writeModelAndBooks(dir: string, o: FixtureOptions): Promise<{ modelDir: string; data: string; model: Model }> {
  const modelDir = path.join(dir, 'model'), data = path.join(dir, 'data');
  const tokJson = byteLevelTokenizerJson();
  const V = Object.keys((tokJson.model as { vocab: Record<string, number> }).vocab).length;
  const model = randomModel(tinyConfig({ vocabSize: V, hiddenSize: 16, intermediateSize: 24, nHeads: 4, nKVHeads: 2, maxPositionEmbeddings: o.maxPositions, bosTokenId: 1 }), o.modelSeed);
  await saveModel(modelDir, model);
  await saveTokenizer(modelDir, tokJson, { bos_token: '<s>', eos_token: '</s>' });
  const r = rng(o.bookSeed);
  const book = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(r() * (V - 3)));
  await writeTokenDataset(data, o.books.map((b) => concatDocuments(b.split, [{ name: b.name, tokens: book(b.tokens), chars: b.tokens }], V)), V, 1);
  return { modelDir, data, model };
}
