// `freqkv tokenizer train`: trains the byte-level BPE on the training books and writes a
// Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json).
import { helpText, parseArgs, UsageError, type FlagSpec } from './args.js';
import { countChars, loadCorpus } from '../data/corpus.js';
import { loadTokenizer, saveTokenizer } from '../model/tokenizer.js';
import { countWords, toTokenizerConfig, toTokenizerJson, trainBpe } from '../train/bpe.js';

const TRAIN_FLAGS: Record<string, FlagSpec> = {
  'vocab-size': { kind: 'int', default: 4096, min: 258, max: 1 << 20, help: 'tokens in the vocabulary, special tokens and the 256 bytes included' },
  out: { kind: 'string', help: 'folder to write tokenizer.json and tokenizer_config.json to (required)' },
  'min-pair-count': { kind: 'int', default: 2, min: 1, help: 'stop merging when the best pair occurs fewer times' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const USAGE = `usage: freqkv tokenizer train --vocab-size 4096 --out models/freqkv-tiny

Trains a byte-level BPE (GPT-2 pre-tokenisation) on the train split of the book corpus.
Progress goes to stderr; a JSON summary to stdout.

${helpText(TRAIN_FLAGS)}
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (sub !== 'train') throw new UsageError(`tokenizer: unknown subcommand "${sub}" (known: train)`);
  const { flags, positional } = parseArgs(rest, TRAIN_FLAGS, 'tokenizer train');
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length > 0) throw new UsageError(`tokenizer train: unexpected argument "${positional[0]}"`);
  if (typeof flags.out !== 'string' || flags.out === '') throw new UsageError('tokenizer train: --out <folder> is required');
  const out = flags.out;
  const vocabSize = flags['vocab-size'] as number;

  const t0 = performance.now();
  const corpus = loadCorpus();
  const train = corpus.books.filter((b) => b.split === 'train');
  const counts = new Map<string, number>();
  let trainChars = 0;
  for (const b of train) {
    countWords(b.text, counts);
    trainChars += countChars(b.text);
  }
  process.stderr.write(`tokenizer: ${train.length} training books, ${trainChars} characters, ${counts.size} distinct words\n`);
  const t1 = performance.now();
  const model = trainBpe(counts, {
    vocabSize,
    minPairCount: flags['min-pair-count'] as number,
    progressEvery: 512,
    onProgress: (merges, vocab) => process.stderr.write(`tokenizer: ${merges} merges, vocab ${vocab}/${vocabSize}\n`),
  });
  const trainSeconds = (performance.now() - t1) / 1000;
  if (model.vocab.length < vocabSize) {
    process.stderr.write(`tokenizer: stopped at vocab ${model.vocab.length}: no pair occurs ${flags['min-pair-count']} or more times\n`);
  }

  await saveTokenizer(out, toTokenizerJson(model), toTokenizerConfig(model));

  // Load it back the way every user will, check exact round trips and measure compression on
  // the validation books.
  const tok = await loadTokenizer(out);
  let valChars = 0;
  let valTokens = 0;
  for (const b of corpus.books.filter((x) => x.split === 'val')) {
    const ids = tok.encode(b.text, { addSpecialTokens: false });
    if (tok.decode(ids) !== b.text) throw new Error(`tokenizer: ${b.id} does not round-trip through the written tokenizer`);
    valChars += countChars(b.text);
    valTokens += ids.length;
  }
  const summary = {
    out,
    vocabSize: model.vocab.length,
    merges: model.merges.length,
    specialTokens: model.specialTokens,
    trainBooks: train.map((b) => b.id),
    trainChars,
    distinctWords: counts.size,
    trainSeconds: Number(trainSeconds.toFixed(2)),
    totalSeconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
    valCharsPerToken: Number((valChars / valTokens).toFixed(3)),
  };
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  return 0;
}
