// Token files: one flat array of token ids per split, plus a JSON manifest that says where each
// document (book, or synthetic sample) starts and ends, so evaluations can slide windows over
// each document separately.
//
// File layout, little-endian:
//   bytes  0..7   magic "FQKVTOK1"
//   bytes  8..11  uint32 bytes per token: 2 (vocab <= 65536) or 4
//   bytes 12..15  uint32 vocabulary size (every token id is below it)
//   bytes 16..23  uint64 token count n
//   bytes 24..    n tokens
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';

export type TokenArray = Uint16Array | Uint32Array;

const MAGIC = 'FQKVTOK1';
export const TOKEN_HEADER_BYTES = 24;
export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'freqkv-tokens';
export const MANIFEST_VERSION = 1;

/** An empty token array of the narrowest type that holds ids below vocabSize. */
export function tokenArray(vocabSize: number, n: number): TokenArray {
  return vocabSize <= 65536 ? new Uint16Array(n) : new Uint32Array(n);
}

/** Header + tokens as bytes. */
export function encodeTokenFile(tokens: TokenArray, vocabSize: number): Uint8Array {
  const width = vocabSize <= 65536 ? 2 : 4;
  if (tokens.BYTES_PER_ELEMENT !== width) {
    throw new Error(`encodeTokenFile: vocab size ${vocabSize} needs ${width}-byte tokens, got a ${tokens.BYTES_PER_ELEMENT}-byte array`);
  }
  const out = new Uint8Array(TOKEN_HEADER_BYTES + tokens.length * width);
  const view = new DataView(out.buffer);
  for (let i = 0; i < MAGIC.length; i++) out[i] = MAGIC.charCodeAt(i);
  view.setUint32(8, width, true);
  view.setUint32(12, vocabSize, true);
  view.setBigUint64(16, BigInt(tokens.length), true);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t >= vocabSize) throw new Error(`encodeTokenFile: token ${t} at position ${i} is not below the vocab size ${vocabSize}`);
    if (width === 2) view.setUint16(TOKEN_HEADER_BYTES + 2 * i, t, true);
    else view.setUint32(TOKEN_HEADER_BYTES + 4 * i, t, true);
  }
  return out;
}

/** Parses and validates a token file's bytes; `what` names the file in errors. */
export function decodeTokenFile(bytes: Uint8Array, what = 'token file'): { tokens: TokenArray; vocabSize: number } {
  if (bytes.length < TOKEN_HEADER_BYTES) {
    throw new Error(`${what}: ${bytes.length} bytes is shorter than the ${TOKEN_HEADER_BYTES}-byte header`);
  }
  const magic = String.fromCharCode(...bytes.subarray(0, MAGIC.length));
  if (magic !== MAGIC) throw new Error(`${what}: not a freqkv token file (magic "${magic}", expected "${MAGIC}")`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = view.getUint32(8, true);
  const vocabSize = view.getUint32(12, true);
  const count = view.getBigUint64(16, true);
  if (width !== 2 && width !== 4) throw new Error(`${what}: bytes per token must be 2 or 4, got ${width}`);
  if (vocabSize === 0 || (width === 2 && vocabSize > 65536)) throw new Error(`${what}: vocab size ${vocabSize} does not fit ${width}-byte tokens`);
  const expected = BigInt(TOKEN_HEADER_BYTES) + count * BigInt(width);
  if (BigInt(bytes.length) !== expected) {
    throw new Error(`${what}: header says ${count} tokens (${expected} bytes) but the file has ${bytes.length} bytes (truncated or corrupt)`);
  }
  const n = Number(count);
  const tokens = width === 2 ? new Uint16Array(n) : new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const t = width === 2 ? view.getUint16(TOKEN_HEADER_BYTES + 2 * i, true) : view.getUint32(TOKEN_HEADER_BYTES + 4 * i, true);
    if (t >= vocabSize) throw new Error(`${what}: token ${t} at position ${i} is not below the vocab size ${vocabSize}`);
    tokens[i] = t;
  }
  return { tokens, vocabSize };
}

export async function writeTokenFile(file: string, tokens: TokenArray, vocabSize: number): Promise<void> {
  await writeFileAtomic(file, encodeTokenFile(tokens, vocabSize));
}

export function readTokenFile(file: string): { tokens: TokenArray; vocabSize: number } {
  if (!fs.existsSync(file)) throw new Error(`token file not found: ${file}`);
  return decodeTokenFile(fs.readFileSync(file), file);
}

/** One document inside a split: tokens [offset, offset + length). */
export interface DocumentSpan {
  name: string;
  offset: number;
  length: number;
  /** Characters of the source text (code points), for chars/token. */
  chars: number;
}

export interface SplitEntry {
  file: string;
  tokens: number;
  chars: number;
  documents: DocumentSpan[];
}

export interface TokenManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  vocabSize: number;
  /** Each document starts with this token id (the tokenizer's BOS), or null if none. */
  bosTokenId: number | null;
  splits: Record<string, SplitEntry>;
  /** Anything else the writer wants to record (tokenizer, books, synthetic settings). */
  [extra: string]: unknown;
}

/** A split in memory: the documents are consecutive and tile `tokens`. */
export interface TokenSplit {
  name: string;
  tokens: TokenArray;
  documents: DocumentSpan[];
}

/** Concatenates documents into one split. */
export function concatDocuments(
  name: string,
  docs: { name: string; tokens: ArrayLike<number>; chars: number }[],
  vocabSize: number,
): TokenSplit {
  const total = docs.reduce((s, d) => s + d.tokens.length, 0);
  const tokens = tokenArray(vocabSize, total);
  const documents: DocumentSpan[] = [];
  let offset = 0;
  for (const d of docs) {
    tokens.set(d.tokens, offset);
    documents.push({ name: d.name, offset, length: d.tokens.length, chars: d.chars });
    offset += d.tokens.length;
  }
  return { name, tokens, documents };
}

/** The tokens of one document (a view, no copy). */
export function documentTokens(split: TokenSplit, doc: DocumentSpan): TokenArray {
  return split.tokens.subarray(doc.offset, doc.offset + doc.length);
}

/**
 * Writes `<split>.bin` for each split, then the manifest (last, so a complete manifest only ever
 * points at complete files). `extra` fields are copied into the manifest.
 */
export async function writeTokenDataset(
  dir: string,
  splits: TokenSplit[],
  vocabSize: number,
  bosTokenId: number | null,
  extra: Record<string, unknown> = {},
): Promise<TokenManifest> {
  fs.mkdirSync(dir, { recursive: true });
  const entries: Record<string, SplitEntry> = {};
  for (const s of splits) {
    if (!/^[A-Za-z0-9_-]+$/.test(s.name)) throw new Error(`writeTokenDataset: split name "${s.name}" must be letters, digits, _ or -`);
    checkDocuments(s.documents, s.tokens.length, `split ${s.name}`);
    const file = `${s.name}.bin`;
    await writeTokenFile(path.join(dir, file), s.tokens, vocabSize);
    const chars = s.documents.reduce((n, d) => n + d.chars, 0);
    entries[s.name] = { file, tokens: s.tokens.length, chars, documents: s.documents };
  }
  const manifest: TokenManifest = { ...extra, format: MANIFEST_FORMAT, version: MANIFEST_VERSION, vocabSize, bosTokenId, splits: entries };
  await writeJsonAtomic(path.join(dir, MANIFEST_FILE), manifest);
  return manifest;
}

/** Reads and checks `<dir>/manifest.json`. */
export function readTokenManifest(dir: string): TokenManifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(file)) throw new Error(`token dataset: ${file} not found (run freqkv data first)`);
  let m: TokenManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`token dataset: ${file} is not valid JSON (${(err as Error).message})`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new Error(`token dataset: ${file} field "format" must be "${MANIFEST_FORMAT}", got ${JSON.stringify(m.format)}`);
  if (m.version !== MANIFEST_VERSION) throw new Error(`token dataset: ${file} has version ${m.version}, this reader knows ${MANIFEST_VERSION}`);
  if (!Number.isInteger(m.vocabSize) || m.vocabSize <= 0) throw new Error(`token dataset: ${file} field "vocabSize" must be a positive whole number`);
  if (typeof m.splits !== 'object' || m.splits === null) throw new Error(`token dataset: ${file} field "splits" is missing`);
  return m;
}

/** Loads one split (tokens + documents), checking it against the manifest. */
export function readTokenSplit(dir: string, split: string, manifest: TokenManifest = readTokenManifest(dir)): TokenSplit {
  const entry = manifest.splits[split];
  if (!entry) throw new Error(`token dataset ${dir}: no split "${split}" (has ${Object.keys(manifest.splits).join(', ')})`);
  if (typeof entry.file !== 'string' || entry.file.includes('/') || entry.file.includes('\\')) {
    throw new Error(`token dataset ${dir}: split "${split}" field "file" must be a plain file name`);
  }
  const file = path.join(dir, entry.file);
  const { tokens, vocabSize } = readTokenFile(file);
  if (vocabSize !== manifest.vocabSize) throw new Error(`${file}: vocab size ${vocabSize} differs from the manifest's ${manifest.vocabSize}`);
  if (tokens.length !== entry.tokens) throw new Error(`${file}: has ${tokens.length} tokens, the manifest says ${entry.tokens}`);
  if (!Array.isArray(entry.documents)) throw new Error(`token dataset ${dir}: split "${split}" field "documents" must be an array`);
  checkDocuments(entry.documents, tokens.length, `${file}`);
  return { name: split, tokens, documents: entry.documents };
}

/** Documents must be consecutive, non-empty-named spans that exactly tile [0, total). */
function checkDocuments(docs: DocumentSpan[], total: number, what: string): void {
  let expect = 0;
  for (const [i, d] of docs.entries()) {
    if (typeof d.name !== 'string' || !Number.isInteger(d.offset) || !Number.isInteger(d.length) || d.length < 0) {
      throw new Error(`${what}: document ${i} needs a name and whole-number offset and length`);
    }
    if (d.offset !== expect) throw new Error(`${what}: document ${i} (${d.name}) starts at ${d.offset}, expected ${expect}`);
    expect += d.length;
  }
  if (expect !== total) throw new Error(`${what}: documents cover ${expect} tokens but the split has ${total}`);
}
