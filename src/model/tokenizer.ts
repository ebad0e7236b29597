// Tokenizer from a model folder: tokenizer.json run by @huggingface/tokenizers, special tokens
// and the chat template from tokenizer_config.json (or chat_template.jinja), extra EOS ids from
// generation_config.json. Also a writer for tiny byte-level BPE tokenizers that tests and
// random models use (no download).
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { writeJsonAtomic } from '../util/atomic.js';
import { readJsonFile } from './config.js';

export interface Tokenizer {
  /** Largest token id + 1, added tokens included. */
  vocabSize: number;
  bosId: number | null;
  /** Every id that ends generation (tokenizer_config eos_token, then generation_config eos_token_id). */
  eosIds: number[];
  /** addSpecialTokens (default true) runs the post-processor, e.g. prepends BOS. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  chatTemplate: string | null;
  /** Texts of the BOS/EOS tokens, for chat templates ({{ bos_token }}). */
  bosToken: string | null;
  eosToken: string | null;
}

type Json = Record<string, unknown>;

/** The part of @huggingface/tokenizers' Tokenizer used here (its bundled .d.ts files do not resolve under NodeNext). */
interface HfTokenizerApi {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: (number | undefined)[]; tokens: string[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A special token in tokenizer_config.json: a string or an AddedToken object {content}. */
function tokenText(v: unknown, file: string, field: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  throw new Error(`${file}: field "${field}" expected a string or {"content": string}, got ${JSON.stringify(v)}`);
}

/** chat_template: a string, or a list of {name, template} (the "default" one, else the first). */
function templateFrom(v: unknown, file: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length > 0 && v.every((t) => isObject(t) && typeof t.name === 'string' && typeof t.template === 'string')) {
    const list = v as { name: string; template: string }[];
    return (list.find((t) => t.name === 'default') ?? list[0]).template;
  }
  throw new Error(`${file}: field "chat_template" expected a string or a list of {name, template}`);
}

function idsField(v: unknown, file: string, field: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && x >= 0)) throw new Error(`${file}: field "${field}" expected a token id or a list of them`);
  return list as number[];
}

/** Loads dir/tokenizer.json (required) with tokenizer_config.json, chat_template.jinja and generation_config.json when present. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokFile = path.join(dir, 'tokenizer.json');
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const genFile = path.join(dir, 'generation_config.json');
  const tokJson = (await readJsonFile(tokFile, true))!;
  const cfg = (await readJsonFile(cfgFile, false)) ?? {};
  const gen = (await readJsonFile(genFile, false)) ?? {};
  if (!Array.isArray(tokJson.added_tokens)) tokJson.added_tokens = [];

  let hf: HfTokenizerApi;
  try {
    hf = new HfTokenizer(tokJson, cfg) as unknown as HfTokenizerApi;
  } catch (err) {
    throw new Error(`${tokFile}: unsupported or invalid tokenizer (${(err as Error).message})`);
  }

  const idOf = (text: string | null, field: string): number | null => {
    if (text === null) return null;
    const id = hf.token_to_id(text);
    if (id === undefined) throw new Error(`${cfgFile}: field "${field}" names "${text}", which is not in ${tokFile}`);
    return id;
  };
  const bosToken = tokenText(cfg.bos_token, cfgFile, 'bos_token');
  const eosToken = tokenText(cfg.eos_token, cfgFile, 'eos_token');
  let bosId = idOf(bosToken, 'bos_token');
  if (bosId === null) bosId = idsField(gen.bos_token_id, genFile, 'bos_token_id')[0] ?? null;
  const eosIds: number[] = [];
  const eos = idOf(eosToken, 'eos_token');
  for (const id of [...(eos === null ? [] : [eos]), ...idsField(gen.eos_token_id, genFile, 'eos_token_id')]) {
    if (!eosIds.includes(id)) eosIds.push(id);
  }

  let chatTemplate = templateFrom(cfg.chat_template, cfgFile);
  if (chatTemplate === null) chatTemplate = await fsp.readFile(path.join(dir, 'chat_template.jinja'), 'utf8').catch(() => null);

  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  return {
    vocabSize,
    bosId,
    eosIds,
    chatTemplate,
    bosToken,
    eosToken,
    encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
      const enc = hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
      const bad = enc.ids.findIndex((id) => id === undefined || id === null);
      if (bad >= 0) throw new Error(`${tokFile}: piece ${JSON.stringify(enc.tokens[bad])} is not in the vocabulary and there is no unk_token`);
      return enc.ids as number[];
    },
    decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
      if (ids.length === 0) return '';
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`decode: token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
      return hf.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false });
    },
  };
}

// ---- writing a tiny byte-level BPE tokenizer ------------------------------------------------

/** GPT-2's byte -> printable character map used by byte-level BPE (bytes that print map to themselves). */
export function byteToUnicode(): string[] {
  const map: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return map;
}

function toByteLevel(text: string, map: string[]): string {
  return Array.from(new TextEncoder().encode(text), (b) => map[b]).join('');
}

export interface ByteLevelOptions {
  /** Special tokens, given the first ids in order (default <unk>, <s>, </s>: ids 0, 1, 2). */
  specialTokens?: string[];
  /** Merges as plain-text pairs, e.g. [['h', 'e'], ['he', 'llo']]; each adds one token. */
  merges?: [string, string][];
  /** Prepend this special token when encoding with special tokens (default the second special, "<s>"); null for none. */
  bosToken?: string | null;
}

/**
 * A tokenizer.json for a byte-level BPE: the special tokens, then the 256 bytes, then one token
 * per merge. Vocabulary size = specials + 256 + merges; every string encodes losslessly.
 */
export function byteLevelTokenizerJson(opts: ByteLevelOptions = {}): Record<string, unknown> {
  const specials = opts.specialTokens ?? ['<unk>', '<s>', '</s>'];
  const map = byteToUnicode();
  const vocab: Record<string, number> = {};
  const add = (tok: string) => {
    if (vocab[tok] === undefined) vocab[tok] = Object.keys(vocab).length;
  };
  specials.forEach(add);
  map.forEach(add);
  const merges = (opts.merges ?? []).map(([a, b]) => [toByteLevel(a, map), toByteLevel(b, map)] as [string, string]);
  for (const [a, b] of merges) {
    if (vocab[a] === undefined || vocab[b] === undefined) throw new Error(`byteLevelTokenizerJson: merge "${a}" + "${b}" uses a token no earlier merge made`);
    add(a + b);
  }
  const bos = opts.bosToken === undefined ? specials[1] ?? null : opts.bosToken;
  if (bos !== null && vocab[bos] === undefined) throw new Error(`byteLevelTokenizerJson: bosToken "${bos}" is not one of the special tokens`);
  const seqA = { Sequence: { id: 'A', type_id: 0 } };
  const seqB = { Sequence: { id: 'B', type_id: 1 } };
  const bosItem = bos === null ? [] : [{ SpecialToken: { id: bos, type_id: 0 } }];
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {
      type: 'TemplateProcessing',
      single: [...bosItem, seqA],
      pair: [...bosItem, seqA, ...bosItem, seqB],
      special_tokens: bos === null ? {} : { [bos]: { id: bos, ids: [vocab[bos]], tokens: [bos] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
}

/** Writes tokenizer.json and tokenizer_config.json into dir atomically. */
export async function saveTokenizer(dir: string, tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await writeJsonAtomic(path.join(dir, 'tokenizer.json'), tokenizerJson);
  await writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), tokenizerConfig);
}
