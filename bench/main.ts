// `npm run bench -- <suite> [flags]`: runs one benchmark suite. Each suite is a module
// bench/<suite>.ts exporting `async function run(args: string[]): Promise<void>`; a suite whose
// module has not been written (or compiled) yet is reported as missing, not as a crash.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const suites: Record<string, string> = {
  kernels: 'native kernels next to the reference: matmul GFLOP/s, matvec and copy GB/s, per-call overhead, compression',
  runtime: 'prefill and decode speed of a 100M-parameter Llama with random weights',
  cache: 'KV-cache policies: time and memory per token',
  train: 'fine-tuning step time',
  dsp: 'DCT and FreqKV compression timings',
};

function suitePath(name: string): string {
  return fileURLToPath(new URL(`./${name}.js`, import.meta.url));
}

function usage(): string {
  const rows = Object.entries(suites).map(
    ([name, what]) => `  ${name.padEnd(8)} ${what}${existsSync(suitePath(name)) ? '' : ' (not available yet)'}`,
  );
  return ['usage: npm run bench -- <suite> [flags]   (<suite> --help for its flags)', '', 'suites:', ...rows, ''].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (!(name in suites)) {
    process.stderr.write(`bench: unknown suite "${name}"\n\n${usage()}`);
    return 2;
  }
  const path = suitePath(name);
  if (!existsSync(path)) {
    process.stderr.write(`bench: suite "${name}" is not available (no ${path}; run \`npm run build\`?)\n`);
    return 2;
  }
  const mod = (await import(pathToFileURL(path).href)) as { run?: (args: string[]) => Promise<void> };
  if (typeof mod.run !== 'function') {
    process.stderr.write(`bench: ${path} does not export run(args)\n`);
    return 2;
  }
  await mod.run(rest);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : err}\n`);
    process.exit(1);
  },
);
