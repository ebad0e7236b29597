// The `freqkv` command: a table of subcommands, each in its own module under src/cli/,
// loaded only when it runs so that `freqkv --help` stays instant.
import { UsageError } from './args.js';

interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

const commands: Record<string, Command> = {
  generate: { summary: 'generate text from a prompt (streams to stdout)', load: () => import('./generate.js') },
  tokenizer: { summary: 'train the byte-level BPE tokenizer on the book corpus', load: () => import('./tokenizer.js') },
  data: { summary: 'build the book corpus and write train/val/test token files', load: () => import('./data.js') },
  train: { summary: 'pretrain or fine-tune (LoRA, parameter groups) with checkpoints and --resume', load: () => import('./train.js') },
  eval: { summary: 'evaluate policies: perplexity protocol, passkey and needle grids, results page', load: () => import('./eval.js') },
  bench: { summary: 'benchmark decode time per token and cache bytes against context, per policy', load: () => import('./bench.js') },
  inspect: { summary: "inspect a model's KV cache (spectrum: energy in the low DCT frequencies)", load: () => import('./inspect.js') },
};

function usage(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return [
    'freqkv: Llama-family models on the CPU with a bounded, frequency-compressed KV cache',
    '',
    'usage: freqkv <command> [flags]    (freqkv <command> --help for its flags)',
    '',
    'commands:',
    ...(rows.length ? rows : ['  (none yet)']),
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`freqkv: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await cmd.load()).run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`freqkv ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
