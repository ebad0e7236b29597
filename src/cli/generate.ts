// `freqkv generate`: load a Hugging Face model folder (or the shipped model), generate a
// continuation of the prompt, stream it to stdout and report prefill and decode speed on stderr.
import * as fs from 'node:fs';
import { type FlagSpec, UsageError, helpText, parseArgs } from './args.js';
import { CACHE_POLICIES, type CacheOptions, createCache } from '../cache/factory.js';
import { getBackend } from '../kernels/index.js';
import { loadModel } from '../model/loader.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_TEMPLATE_NAME, type ChatMessage, renderChat } from '../model/chat.js';
import { generate } from '../model/generate.js';
import { SHIPPED_MODEL, findShippedModel, shippedModelDir } from '../model/shipped.js';

const COMMAND = 'generate';

export const flags: Record<string, FlagSpec> = {
  model: { kind: 'string', help: `model folder in Hugging Face layout (default: the shipped ${SHIPPED_MODEL})` },
  chat: { kind: 'bool', default: false, help: "wrap the prompt as a user message in the model's chat template" },
  system: { kind: 'string', help: 'system message (with --chat)' },
  json: { kind: 'bool', default: false, help: 'print one JSON object (text, token ids, timings) instead of streaming' },
  temperature: { kind: 'number', default: 0.8, min: 0, help: 'sampling temperature; 0 = greedy' },
  'top-k': { kind: 'int', default: 40, min: 0, help: 'sample from the k most likely tokens; 0 = off' },
  'top-p': { kind: 'number', default: 0.95, min: 0, max: 1, help: 'nucleus sampling mass in (0, 1]; 1 = off' },
  seed: { kind: 'int', min: 0, max: 2 ** 32 - 1, help: 'random seed (default: from the clock; printed at the end)' },
  stop: { kind: 'list', help: 'stop when the text contains STR; repeatable or comma list; \\n \\t \\, \\\\ escapes' },
  'max-tokens': { kind: 'int', default: 256, min: 0, help: 'most new tokens' },
  threads: { kind: 'int', min: 1, help: 'kernel threads (default: the backend chooses)' },
  policy: { kind: 'string', default: 'full', choices: [...CACHE_POLICIES], help: 'KV cache policy' },
  'cache-size': { kind: 'int', min: 1, help: 'entries the cache may hold (bounded policies)' },
  sinks: { kind: 'int', min: 0, help: 'attention-sink tokens never compressed or evicted (bounded policies)' },
  retain: { kind: 'number', min: 0, max: 1, help: 'retention ratio gamma (freqkv)' },
  budget: { kind: 'int', min: 1, help: 'token budget (eviction policies; window also takes --cache-size)' },
  positions: { kind: 'string', choices: ['slot', 'original'], help: 'positions of held tokens after eviction: slot (0..budget-1) or original (eviction policies; default slot)' },
  help: { kind: 'bool', default: false, help: 'show this help' },
};

const USAGE = `usage: freqkv generate [--model DIR] [flags] "prompt"     (prompt "-" reads stdin)\n\n${helpText(flags)}\n`;

export async function run(argv: string[]): Promise<number> {
  const { rest, stops } = takeStops(argv);
  const { flags: f, positional } = parseArgs(rest, flags, COMMAND);
  if (f.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length !== 1) {
    throw new UsageError(`${COMMAND}: expects exactly one prompt argument (quote it), got ${positional.length}\n\n${USAGE}`);
  }
  if (f['top-p'] === 0) throw new UsageError(`${COMMAND}: --top-p expects a number in (0, 1], got 0`);
  if (f.system !== undefined && !f.chat) throw new UsageError(`${COMMAND}: --system needs --chat`);
  const prompt = positional[0] === '-' ? fs.readFileSync(0, 'utf8') : positional[0];
  const cacheOpts: CacheOptions = {
    policy: f.policy as string,
    cacheSize: f['cache-size'] as number | undefined,
    sinks: f.sinks as number | undefined,
    retain: f.retain as number | undefined,
    budget: f.budget as number | undefined,
    positions: f.positions as CacheOptions['positions'],
  };

  const dir = (f.model as string | undefined) ?? findShippedModel();
  if (dir === null) {
    process.stderr.write(
      `freqkv ${COMMAND}: no --model given, and the shipped model is not installed (expected it in ${shippedModelDir()}).\n` +
        `Pass --model DIR: a Hugging Face model folder with config.json, model.safetensors and tokenizer.json.\n`,
    );
    return 1;
  }
  const backend = getBackend();
  if (f.threads !== undefined) backend.setThreads(f.threads as number);
  const [model, tokenizer] = await Promise.all([loadModel(dir), loadTokenizer(dir)]);
  let cache;
  try {
    cache = createCache(model.config, { ...cacheOpts, backend });
  } catch (err) {
    throw new UsageError(`${COMMAND}: ${(err as Error).message}`);
  }

  let input: number[];
  if (!f.chat) {
    input = tokenizer.encode(prompt); // with the tokenizer's special tokens (BOS)
  } else {
    let template = tokenizer.chatTemplate;
    if (template === null) {
      process.stderr.write(`freqkv ${COMMAND}: ${dir} has no chat template; using ${DEFAULT_CHAT_TEMPLATE_NAME}\n`);
      template = DEFAULT_CHAT_TEMPLATE;
    }
    const messages: ChatMessage[] = [];
    if (f.system !== undefined) messages.push({ role: 'system', content: f.system as string });
    messages.push({ role: 'user', content: prompt });
    const text = renderChat(template, messages, {
      addGenerationPrompt: true,
      bosToken: tokenizer.bosToken ?? undefined,
      eosToken: tokenizer.eosToken ?? undefined,
    });
    // the template writes the special tokens itself (as transformers' apply_chat_template does)
    input = tokenizer.encode(text, { addSpecialTokens: false });
  }

  const maxTokens = f['max-tokens'] as number;
  const json = f.json as boolean;
  if (input.length + maxTokens > model.config.maxPositionEmbeddings && cache.policy === 'full') {
    process.stderr.write(
      `freqkv ${COMMAND}: note: ${input.length} prompt tokens + --max-tokens ${maxTokens} exceed the model's trained context ` +
        `(${model.config.maxPositionEmbeddings}); a full cache then uses positions it was not trained on\n`,
    );
  }
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once('SIGINT', onInterrupt);
  let result;
  try {
    result = await generate(
      model,
      tokenizer,
      input,
      {
        temperature: f.temperature as number,
        topK: f['top-k'] as number,
        topP: f['top-p'] as number,
        seed: f.seed as number | undefined,
        stop: stops,
        maxTokens,
        cache,
        backend,
        signal: abort.signal,
      },
      json ? undefined : (piece) => process.stdout.write(piece),
    );
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }

  const t = result.timings;
  if (json) {
    const out = {
      model: dir,
      policy: cache.policy,
      text: result.text,
      tokens: result.tokens,
      promptTokens: result.promptTokens,
      finishReason: result.finishReason,
      seed: result.seed,
      timings: t,
      cacheBytes: cache.bytes().total,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } else {
    if (process.stdout.isTTY) process.stdout.write('\n');
    process.stderr.write(
      `prefill: ${t.prefillTokens} tokens, ${t.prefillTokensPerSecond.toFixed(1)} tokens/s | ` +
        `decode: ${t.decodeTokens} tokens, ${t.decodeTokensPerSecond.toFixed(1)} tokens/s | ` +
        `finish: ${result.finishReason}, seed ${result.seed}, backend ${backend.name}\n`,
    );
  }
  return 0;
}

/**
 * Pulls every --stop value out of argv (the flag parser keeps only the last value of a flag)
 * and splits each on unescaped commas, with \n, \t, \, and \\ escapes, untrimmed.
 */
export function takeStops(argv: string[]): { rest: string[]; stops: string[] } {
  const rest: string[] = [];
  const stops: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    let value: string | undefined;
    if (a === '--stop') {
      if (i + 1 >= argv.length) throw new UsageError(`${COMMAND}: --stop expects a string (or a comma list)`);
      value = argv[++i];
    } else if (a.startsWith('--stop=')) {
      value = a.slice('--stop='.length);
    } else {
      rest.push(a);
      continue;
    }
    const items = splitEscaped(value).filter((s) => s.length > 0);
    if (items.length === 0) throw new UsageError(`${COMMAND}: --stop expects a non-empty string, got "${value}"`);
    stops.push(...items);
  }
  return { rest, stops };
}

function splitEscaped(value: string): string[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === ',') {
      items.push(cur);
      cur = '';
    } else if (ch === '\\' && i + 1 < value.length) {
      const e = value[++i];
      cur += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e === ',' || e === '\\' ? e : '\\' + e;
    } else {
      cur += ch;
    }
  }
  items.push(cur);
  return items;
}
