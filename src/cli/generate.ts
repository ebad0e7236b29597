// `freqkv generate`: load a Hugging Face model folder (or the shipped model), generate a
// continuation of the prompt, stream it to stdout and report prefill and decode speed on stderr.
// With --context/--context-file the context goes into the cache first (--policy kvdistill:
// compressed once by a KV-Distill adaptor), optionally saved as a session (--save-session), and
// the prompt (the question) is decoded after it; --session continues a saved cache instead.
import * as fs from 'node:fs';
import { type FlagSpec, type FlagValues, UsageError, helpText, parseArgs } from './args.js';
import { CACHE_POLICIES, type CacheOptions, cacheShape, createCache } from '../cache/factory.js';
import { getBackend } from '../kernels/index.js';
import { loadModel } from '../model/loader.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_TEMPLATE_NAME, type ChatMessage, renderChat } from '../model/chat.js';
import { generate } from '../model/generate.js';
import { SHIPPED_MODEL, findShippedModel, shippedModelDir } from '../model/shipped.js';
import { loadSession, saveSession } from '../cache/session.js';
import type { KVCache } from '../cache/types.js';
import { forward } from '../model/forward.js';
import { KVDistill } from '../kvdistill/distill.js';

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
  policy: { kind: 'string', choices: [...CACHE_POLICIES, 'kvdistill'], help: 'KV cache policy (default full; kvdistill needs --adaptor, --retain and a context)' },
  'cache-size': { kind: 'int', min: 1, help: 'entries the cache may hold (bounded policies)' },
  sinks: { kind: 'int', min: 0, help: 'attention-sink tokens never compressed or evicted (bounded policies)' },
  retain: { kind: 'number', min: 0, max: 1, help: 'retention ratio gamma (freqkv); kvdistill: the fraction of the context kept, in (0, 1]' },
  budget: { kind: 'int', min: 1, help: 'token budget (eviction policies; window also takes --cache-size)' },
  positions: { kind: 'string', choices: ['slot', 'original'], help: 'positions of held tokens after eviction: slot (0..budget-1) or original (eviction policies; default slot)' },
  adaptor: { kind: 'string', help: 'KV-Distill adaptor file (with --policy kvdistill)' },
  context: { kind: 'string', help: 'text put into the cache before the prompt (kvdistill: compressed once); the prompt is then the question' },
  'context-file': { kind: 'string', help: 'as --context, read from a file' },
  'save-session': { kind: 'string', help: 'save the cache holding the (compressed) context to FILE, before the prompt' },
  session: { kind: 'string', help: 'continue a cache saved with --save-session (it holds the context and its policy)' },
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
  const policy = (f.policy as string | undefined) ?? 'full';
  const contextText = readContext(f);
  checkContextFlags(f, policy, contextText);
  const cacheOpts: CacheOptions = {
    policy,
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
  let cache: KVCache;
  if (f.session !== undefined) {
    try {
      cache = await loadSession(f.session as string, cacheShape(model.config));
    } catch (err) {
      throw new UsageError(`${COMMAND}: --session: ${(err as Error).message}`);
    }
    if (f.policy !== undefined && f.policy !== cache.policy) throw new UsageError(`${COMMAND}: --session ${f.session as string} holds a "${cache.policy}" cache; --policy ${policy} disagrees`);
  } else if (policy === 'kvdistill') {
    let kd: KVDistill;
    try {
      kd = await KVDistill.load(f.adaptor as string, model, backend);
    } catch (err) {
      throw new UsageError(`${COMMAND}: --adaptor: ${(err as Error).message}`);
    }
    const ctx = Int32Array.from(tokenizer.encode(contextText!));
    const t0 = performance.now();
    cache = kd.compress(ctx, f.retain as number);
    process.stderr.write(`kvdistill: context of ${ctx.length} tokens compressed to ${cache.length} rows per layer in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
  } else {
    try {
      cache = createCache(model.config, { ...cacheOpts, backend });
    } catch (err) {
      throw new UsageError(`${COMMAND}: ${(err as Error).message}`);
    }
    if (contextText !== undefined) forward(model, tokenizer.encode(contextText), cache, { backend });
  }
  const contextTokens = cache.seen;
  if (f['save-session'] !== undefined) {
    await saveSession(f['save-session'] as string, cache);
    process.stderr.write(`saved the ${cache.policy} cache of ${contextTokens} context tokens (${cache.length} rows) to ${f['save-session'] as string}\n`);
  }

  let input: number[];
  if (contextTokens > 0) {
    // the question after a context: no BOS, and a space before it unless it starts with one (as mid-text words are tokenised)
    input = tokenizer.encode(/^\s/.test(prompt) ? prompt : ' ' + prompt, { addSpecialTokens: false });
    if (input.length === 0) throw new UsageError(`${COMMAND}: the prompt is empty`);
  } else if (!f.chat) {
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
  if (contextTokens + input.length + maxTokens > model.config.maxPositionEmbeddings && (cache.policy === 'full' || cache.policy === 'kvdistill')) {
    process.stderr.write(
      `freqkv ${COMMAND}: note: ${contextTokens > 0 ? `${contextTokens} context tokens + ` : ''}${input.length} prompt tokens + --max-tokens ${maxTokens} exceed the model's trained context ` +
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
      ...(contextTokens > 0 ? { contextTokens, cacheRows: cache.length } : {}),
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

/** The --context text, or --context-file read; undefined when neither is given. */
function readContext(f: FlagValues): string | undefined {
  if (f.context !== undefined && f['context-file'] !== undefined) throw new UsageError(`${COMMAND}: give --context or --context-file, not both`);
  const file = f['context-file'] as string | undefined;
  if (f.context === undefined && file === undefined) return undefined;
  let text: string;
  try {
    text = f.context !== undefined ? (f.context as string) : fs.readFileSync(file!, 'utf8');
  } catch (err) {
    throw new UsageError(`${COMMAND}: --context-file ${file}: ${(err as Error).message}`);
  }
  if (text.trim() === '') throw new UsageError(`${COMMAND}: --${f.context !== undefined ? 'context' : 'context-file'} is empty`);
  return text;
}

/** Rejects flag combinations around --context, --session and --policy kvdistill, naming the flag. */
export function checkContextFlags(f: FlagValues, policy: string, contextText: string | undefined): void {
  const given = (k: string) => f[k] !== undefined;
  if (given('session')) {
    for (const k of ['context', 'context-file', 'adaptor', 'retain', 'cache-size', 'sinks', 'budget', 'positions', 'save-session']) {
      if (given(k)) throw new UsageError(`${COMMAND}: --${k} cannot be combined with --session (the session already holds the context and its cache policy)`);
    }
  }
  if (f.chat && (contextText !== undefined || given('session'))) throw new UsageError(`${COMMAND}: --chat cannot be combined with --context, --context-file or --session`);
  if (given('save-session') && contextText === undefined) throw new UsageError(`${COMMAND}: --save-session needs --context or --context-file (it saves the cache holding the context, before the prompt)`);
  if (policy === 'kvdistill') {
    if (given('session')) return;
    if (!given('adaptor')) throw new UsageError(`${COMMAND}: --policy kvdistill needs --adaptor FILE`);
    if (contextText === undefined) throw new UsageError(`${COMMAND}: --policy kvdistill needs --context TEXT or --context-file FILE (or --session FILE)`);
    const r = f.retain as number | undefined;
    if (r === undefined || !(r > 0)) throw new UsageError(`${COMMAND}: --policy kvdistill needs --retain R, the fraction of the context kept, in (0, 1]`);
    for (const k of ['cache-size', 'sinks', 'budget', 'positions']) if (given(k)) throw new UsageError(`${COMMAND}: --${k} is not an option of --policy kvdistill (the adaptor fixes its sinks; --retain sets the size)`);
  } else if (given('adaptor')) {
    throw new UsageError(`${COMMAND}: --adaptor needs --policy kvdistill`);
  }
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
