// Saving a cache to a file and restoring it bit-exact, so that a conversation can stop and go on
// later (or elsewhere) exactly where it was.
//
// File layout (little-endian):
//   bytes 0..7   magic "FQKVSESS"
//   u32          format version (1)
//   u32          header length H in bytes
//   H bytes      header, UTF-8 JSON: { policy, params, counters, shape, arrays: [{ name, dtype, length }] }
//   zero padding to a multiple of 8
//   the arrays, in header order (dtype f32, i32 or u8; host byte order, little-endian on every
//   platform Node supports), each padded with zeros to a multiple of 8 bytes
// The file must end exactly after the last array; anything else is rejected with an error that
// names the file and the field. A policy's save() produces these bytes (encodeState) and its
// static restore() reads them back (decodeState + the strict readers below).
import * as fs from 'node:fs';
import type { CacheShape, KVCache } from './types.js';
import { writeFileAtomic } from '../util/atomic.js';

const MAGIC = 'FQKVSESS';
const VERSION = 1;

export type StateArray = Float32Array | Int32Array | Uint8Array;

export interface StateShape {
  nLayers: number;
  nKVHeads: number;
  headDim: number;
  /** RoPE inverse frequencies the rotated keys were made with (a restore must use the same). */
  invFreq: number[];
}

export interface CacheState {
  policy: string;
  /** Policy parameters (budget, sinks, ...). */
  params: Record<string, number | string>;
  /** Position state and counters (seen, length, compressions, ...). */
  counters: Record<string, number>;
  shape: StateShape;
  arrays: Record<string, StateArray>;
}

export function stateShape(shape: CacheShape): StateShape {
  return { nLayers: shape.nLayers, nKVHeads: shape.nKVHeads, headDim: shape.headDim, invFreq: Array.from(shape.invFreq) };
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

export function encodeState(state: CacheState): Uint8Array {
  const names = Object.keys(state.arrays);
  const arrays = names.map((name) => {
    const a = state.arrays[name];
    return { name, dtype: a instanceof Float32Array ? 'f32' : a instanceof Int32Array ? 'i32' : 'u8', length: a.length };
  });
  const header = { policy: state.policy, params: state.params, counters: state.counters, shape: state.shape, arrays };
  const json = new TextEncoder().encode(JSON.stringify(header));
  let size = pad8(16 + json.length);
  for (const name of names) size += pad8(state.arrays[name].byteLength);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = MAGIC.charCodeAt(i);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, json.length, true);
  out.set(json, 16);
  let off = pad8(16 + json.length);
  for (const name of names) {
    const a = state.arrays[name];
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += pad8(a.byteLength);
  }
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Parses and checks the container; every array is copied into a fresh, aligned typed array. */
export function decodeState(bytes: Uint8Array, source: string): CacheState {
  const fail = (what: string): never => {
    throw new Error(`${source}: not a valid freqkv session: ${what}`);
  };
  if (bytes.length < 16) fail(`file too short (${bytes.length} bytes)`);
  let magic = '';
  for (let i = 0; i < 8; i++) magic += String.fromCharCode(bytes[i]);
  if (magic !== MAGIC) fail(`expected magic "${MAGIC}" at the start`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== VERSION) fail(`format version ${version} is not supported (expected ${VERSION})`);
  const hLen = dv.getUint32(12, true);
  if (16 + hLen > bytes.length) fail(`header length ${hLen} runs past the end of the file`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(16, 16 + hLen)));
  } catch (err) {
    fail(`header is not UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isRecord(header)) return fail('header is not a JSON object');
  const { policy, params, counters, shape, arrays } = header;
  if (typeof policy !== 'string' || policy === '') fail('field "policy" must be a non-empty string');
  if (!isRecord(params) || !Object.values(params).every((v) => typeof v === 'number' || typeof v === 'string')) {
    fail('field "params" must be an object of numbers and strings');
  }
  if (!isRecord(counters) || !Object.values(counters).every((v) => typeof v === 'number' && Number.isFinite(v))) {
    fail('field "counters" must be an object of finite numbers');
  }
  if (!isRecord(shape)) return fail('field "shape" must be an object');
  for (const f of ['nLayers', 'nKVHeads', 'headDim'] as const) {
    const v = shape[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(`field "shape.${f}" must be a positive integer`);
  }
  if (!Array.isArray(shape.invFreq) || !shape.invFreq.every((x) => typeof x === 'number')) fail('field "shape.invFreq" must be an array of numbers');
  if (!Array.isArray(arrays)) return fail('field "arrays" must be an array');
  const out: Record<string, StateArray> = {};
  let off = pad8(16 + hLen);
  for (const [i, a] of arrays.entries()) {
    if (!isRecord(a) || typeof a.name !== 'string' || !(a.dtype === 'f32' || a.dtype === 'i32' || a.dtype === 'u8') || typeof a.length !== 'number' || !Number.isInteger(a.length) || a.length < 0) {
      return fail(`arrays[${i}] must be { name: string, dtype: "f32" | "i32" | "u8", length: non-negative integer }`);
    }
    if (a.name in out) fail(`array "${a.name}" appears twice`);
    const nBytes = a.dtype === 'u8' ? a.length : a.length * 4;
    if (off + nBytes > bytes.length) fail(`array "${a.name}" (${nBytes} bytes) runs past the end of the file`);
    // a copy in its own buffer (aligned; note Buffer.slice would share memory, so not slice())
    const copy = new Uint8Array(bytes.subarray(off, off + nBytes));
    out[a.name] = a.dtype === 'f32' ? new Float32Array(copy.buffer) : a.dtype === 'i32' ? new Int32Array(copy.buffer) : copy;
    off += pad8(nBytes);
  }
  if (off !== bytes.length) fail(`expected ${off} bytes, the file has ${bytes.length}`);
  return {
    policy: policy as string,
    params: params as Record<string, number | string>,
    counters: counters as Record<string, number>,
    shape: shape as unknown as StateShape,
    arrays: out,
  };
}

/** Throws unless the saved cache was made for a model of this shape (same RoPE frequencies, bit for bit). */
export function checkStateShape(state: CacheState, shape: CacheShape, source: string): void {
  for (const f of ['nLayers', 'nKVHeads', 'headDim'] as const) {
    if (state.shape[f] !== shape[f]) throw new Error(`${source}: session was saved for ${f} = ${state.shape[f]}, this model has ${shape[f]}`);
  }
  const inv = state.shape.invFreq;
  const same = inv.length === shape.invFreq.length && inv.every((x, i) => Math.fround(x) === shape.invFreq[i]);
  if (!same) throw new Error(`${source}: session was saved with different RoPE frequencies (rope_theta or rope_scaling differ)`);
}

/** A parameter or counter as a number within [min, max] (integer unless told). */
export function stateNumber(state: CacheState, group: 'params' | 'counters', name: string, source: string, min: number, max = Infinity, integer = true): number {
  const v = state[group][name];
  if (typeof v !== 'number' || !(v >= min && v <= max) || (integer && !Number.isInteger(v))) {
    throw new Error(`${source}: field "${group}.${name}" must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A parameter as one of the allowed strings. */
export function stateChoice<T extends string>(state: CacheState, name: string, choices: readonly T[], source: string): T {
  const v = state.params[name];
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) {
    throw new Error(`${source}: field "params.${name}" must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

/** A stored array of the given type and exact length (any length when `length` is null). */
export function stateArray(state: CacheState, name: string, dtype: 'f32' | 'i32' | 'u8', length: number | null, source: string): StateArray {
  const a = state.arrays[name];
  if (!a) throw new Error(`${source}: array "${name}" is missing`);
  const actual = a instanceof Float32Array ? 'f32' : a instanceof Int32Array ? 'i32' : 'u8';
  if (actual !== dtype) throw new Error(`${source}: array "${name}" must be ${dtype}, it is ${actual}`);
  if (length !== null && a.length !== length) throw new Error(`${source}: array "${name}" must hold ${length} values, it holds ${a.length}`);
  return a;
}

export function stateF32(state: CacheState, name: string, length: number, source: string): Float32Array {
  return stateArray(state, name, 'f32', length, source) as Float32Array;
}

export function stateI32(state: CacheState, name: string, length: number, source: string): Int32Array {
  return stateArray(state, name, 'i32', length, source) as Int32Array;
}

export function stateBytes(state: CacheState, name: string, source: string): Uint8Array {
  return stateArray(state, name, 'u8', null, source) as Uint8Array;
}

/** Policy name -> module and static restore(). Loaded lazily: the policies import this file. */
type Restore = (state: CacheState, shape: CacheShape, source: string) => KVCache;
const restorers: Record<string, () => Promise<Restore>> = {
  full: async () => (await import('./full.js')).FullCache.restore,
  window: async () => (await import('./window.js')).WindowCache.restore,
  h2o: async () => (await import('./h2o.js')).H2OCache.restore,
  snapkv: async () => (await import('./snapkv.js')).SnapKVCache.restore,
  tova: async () => (await import('./tova.js')).TOVACache.restore,
  freqkv: async () => (await import('./freqkv.js')).FreqKVCache.restore,
  kvdistill: async () => (await import('../kvdistill/cache.js')).KVDistillCache.restore,
};

/** Registers a restore function for a policy defined elsewhere (e.g. the full cache). */
export function registerRestore(policy: string, restore: Restore): void {
  restorers[policy] = async () => restore;
}

/** Rebuilds a cache from bytes written by save(); the model shape must match. */
export async function restoreCache(bytes: Uint8Array, shape: CacheShape, source = 'session'): Promise<KVCache> {
  const state = decodeState(bytes, source);
  const load = restorers[state.policy];
  if (!load) throw new Error(`${source}: unknown policy "${state.policy}" (known: ${Object.keys(restorers).join(', ')})`);
  checkStateShape(state, shape, source);
  const restore = await load();
  try {
    return restore(state, shape, source);
  } catch (err) {
    // option errors from the policy's constructor: say which file they came from
    const msg = (err as Error).message;
    throw new Error(msg.startsWith(`${source}:`) ? msg : `${source}: ${msg}`);
  }
}

/** Writes the cache (rows, positions, counters, parameters) to `file` atomically. */
export async function saveSession(file: string, cache: KVCache): Promise<void> {
  await writeFileAtomic(file, cache.save());
}

/** Reads a session file written by saveSession and rebuilds the cache for a model of this shape. */
export async function loadSession(file: string, shape: CacheShape): Promise<KVCache> {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new Error(`${file}: cannot read session file (${(err as Error).message})`);
  }
  return restoreCache(bytes, shape, file);
}
