// GGUF (v2/v3, little-endian) as written by llama.cpp, for the llama and qwen2 architectures:
//   header: "GGUF", u32 version, u64 tensor count, u64 metadata count
//   metadata: (string key, u32 value type, value)*     strings are u64 length + UTF-8 bytes
//   tensor infos: (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset)*
//   padding to general.alignment (default 32), then the tensor data (offsets relative to it).
// dims list the fastest-varying axis first, so a Hugging Face [out, in] weight has dims [in, out].
//
// llama.cpp's converter permutes the rows of Llama's q/k projections so that its RoPE can rotate
// adjacent pairs (2i, 2i+1); Hugging Face's rotate-half pairs (i, i + headDim/2). We undo that
// permutation on read, so the weights are exactly the Hugging Face ones. (qwen2 is not permuted.)
//
// Weights come out as float32: F32, F16 and BF16 exactly, Q8_0 and Q4_0 dequantised the way
// ggml does. The reader exposes the tensors under Hugging Face names, so the checks and the
// assembly are shared with the safetensors loader.
import * as fsp from 'node:fs/promises';
import { writeFileAtomicWith } from '../util/atomic.js';
import { hfTensorSlots, weightAt, weightsFromSource } from './loader.js';
import { ropeInvFreq } from './rope.js';
import { bf16ToF32, f16BitsToF32, f16ToF32, f32BitsToBf16, f32BitsToF16, readExactly, writeAll, type TensorInfo, type TensorSource } from './safetensors.js';
import type { LlamaConfig, Model, RopeScaling } from './types.js';

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;
const MAX_DIMS = 4;
const CHUNK_BYTES = 1 << 22;

// ---- ggml tensor types -------------------------------------------------------------------------

/** ggml type id -> [name, elements per block, bytes per block] (0 bytes: known but unsupported). */
const GGML_TYPES: Record<number, [string, number, number]> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 2: ['Q4_0', 32, 18], 3: ['Q4_1', 32, 20], 6: ['Q5_0', 32, 22], 7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34], 9: ['Q8_1', 32, 36], 10: ['Q2_K', 256, 84], 11: ['Q3_K', 256, 110], 12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176], 14: ['Q6_K', 256, 210], 15: ['Q8_K', 256, 292], 16: ['IQ2_XXS', 256, 0], 17: ['IQ2_XS', 256, 0],
  18: ['IQ3_XXS', 256, 0], 19: ['IQ1_S', 256, 0], 20: ['IQ4_NL', 32, 0], 21: ['IQ3_S', 256, 0], 22: ['IQ2_S', 256, 0],
  23: ['IQ4_XS', 256, 0], 24: ['I8', 1, 1], 25: ['I16', 1, 2], 26: ['I32', 1, 4], 27: ['I64', 1, 8], 28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 0], 30: ['BF16', 1, 2], 34: ['TQ1_0', 256, 0], 35: ['TQ2_0', 256, 0], 39: ['MXFP4', 32, 0],
};
export type GgmlWriteType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';
const DECODABLE = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0'];
const TYPE_ID: Record<GgmlWriteType, number> = { F32: 0, F16: 1, BF16: 30, Q8_0: 8, Q4_0: 2 };

// ---- metadata values ---------------------------------------------------------------------------

export type GgufValue = number | bigint | boolean | string | GgufValue[];
/** gguf_metadata_value_type ids. */
export const GGUF_TYPE = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
const VALUE_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8 };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the contiguous axis. */
  dims: number[];
  type: number;
  typeName: string;
  /** Elements and bytes. */
  size: number;
  byteLength: number;
  /** Absolute offset in the file. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  /** The value type each key was stored with. */
  metadataTypes: Map<string, number>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
}

/** Thrown when the bytes read so far end before the header does (the caller reads more). */
class NeedMore extends Error {}

/** Sequential little-endian reads over the header bytes. */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly buf: Uint8Array, private readonly fileSize: number, private readonly file: string) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(n: number, what: string): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos + n > this.fileSize) throw new Error(`${this.file}: file ends inside ${what} (byte ${this.pos} + ${n} > ${this.fileSize})`);
    throw new NeedMore();
  }

  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }

  /** A u64 that must fit a JS number (counts, lengths, dims, offsets). */
  u64n(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${this.file}: ${what} is ${v}, too large`);
    return Number(v);
  }

  str(what: string): string {
    const n = this.u64n(`${what} length`);
    this.need(n, what);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return this.utf8.decode(bytes);
    } catch {
      throw new Error(`${this.file}: ${what} is not valid UTF-8`);
    }
  }

  value(type: number, what: string): GgufValue {
    const v = this.view;
    const size = VALUE_BYTES[type];
    if (size === undefined) throw new Error(`${this.file}: ${what} has unknown value type ${type}`);
    if (type === GGUF_TYPE.STRING) return this.str(what);
    if (type === GGUF_TYPE.ARRAY) {
      const itemType = this.u32(`${what} item type`);
      const n = this.u64n(`${what} length`);
      const itemBytes = VALUE_BYTES[itemType];
      if (itemBytes === undefined) throw new Error(`${this.file}: ${what} has unknown item type ${itemType}`);
      if (n * itemBytes > this.fileSize - this.pos) throw new Error(`${this.file}: ${what} claims ${n} items, more than the file holds`);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = this.value(itemType, `${what}[${i}]`);
      return out;
    }
    this.need(size, what);
    const p = this.pos;
    this.pos += size;
    switch (type) {
      case GGUF_TYPE.U8: return v.getUint8(p);
      case GGUF_TYPE.I8: return v.getInt8(p);
      case GGUF_TYPE.U16: return v.getUint16(p, true);
      case GGUF_TYPE.I16: return v.getInt16(p, true);
      case GGUF_TYPE.U32: return v.getUint32(p, true);
      case GGUF_TYPE.I32: return v.getInt32(p, true);
      case GGUF_TYPE.F32: return v.getFloat32(p, true);
      case GGUF_TYPE.F64: return v.getFloat64(p, true);
      case GGUF_TYPE.BOOL: {
        const b = v.getUint8(p);
        if (b > 1) throw new Error(`${this.file}: ${what} is a bool stored as ${b} (expected 0 or 1)`);
        return b === 1;
      }
      default: {
        const big = type === GGUF_TYPE.U64 ? v.getBigUint64(p, true) : v.getBigInt64(p, true);
        return big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(big) : big;
      }
    }
  }
}

/**
 * Parses and validates everything before the tensor data. `buf` holds the first bytes of a file
 * of `fileSize` bytes; throws NeedMore when the header continues past buf.
 */
function parseHeader(buf: Uint8Array, fileSize: number, file: string): GgufHeader {
  const c = new Cursor(buf, fileSize, file);
  const magic = c.u32('the magic number');
  if (magic !== MAGIC) throw new Error(`${file}: not a GGUF file (magic bytes ${Array.from(buf.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ')})`);
  const version = c.u32('the version');
  if (version === 1) throw new Error(`${file}: GGUF version 1 is not supported (re-convert it with a recent llama.cpp)`);
  if (version !== 2 && version !== 3) {
    const hint = version >= 1 << 16 ? ' (a big-endian file?)' : '';
    throw new Error(`${file}: GGUF version ${version} is not supported, expected 2 or 3${hint}`);
  }
  const nTensors = c.u64n('the tensor count');
  const nKV = c.u64n('the metadata count');
  // Each tensor info takes >= 24 bytes and each key/value >= 13: bound the counts by the file size.
  if (nTensors * 24 + nKV * 13 > fileSize) throw new Error(`${file}: ${nTensors} tensors and ${nKV} metadata entries cannot fit in ${fileSize} bytes`);

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, number>();
  for (let i = 0; i < nKV; i++) {
    const key = c.str(`metadata key #${i}`);
    if (key.length === 0 || key.length > 65535 || !/^[\x20-\x7e]+$/.test(key)) throw new Error(`${file}: metadata key #${i} ${JSON.stringify(key)} must be 1-65535 printable ASCII characters`);
    if (metadata.has(key)) throw new Error(`${file}: metadata key "${key}" appears twice`);
    const type = c.u32(`metadata "${key}" type`);
    metadata.set(key, c.value(type, `metadata "${key}"`));
    metadataTypes.set(key, type);
  }

  let alignment = DEFAULT_ALIGNMENT;
  if (metadata.has('general.alignment')) {
    const a = metadata.get('general.alignment');
    if (metadataTypes.get('general.alignment') !== GGUF_TYPE.U32 || typeof a !== 'number' || a === 0 || a % 8 !== 0) {
      throw new Error(`${file}: metadata "general.alignment" must be a u32 multiple of 8, got ${String(a)}`);
    }
    alignment = a;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`tensor name #${i}`);
    const where = `${file}: tensor "${name}"`;
    if (names.has(name)) throw new Error(`${where} appears twice`);
    names.add(name);
    const nDims = c.u32(`tensor "${name}" dimension count`);
    if (nDims < 1 || nDims > MAX_DIMS) throw new Error(`${where}: ${nDims} dimensions, expected 1 to ${MAX_DIMS}`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64n(`tensor "${name}" dimension ${d}`));
    const type = c.u32(`tensor "${name}" type`);
    const relOffset = c.u64n(`tensor "${name}" offset`);
    const t = GGML_TYPES[type];
    if (!t) throw new Error(`${where}: unknown ggml type ${type}`);
    const [typeName, block, blockBytes] = t;
    if (!DECODABLE.includes(typeName) || blockBytes === 0) {
      throw new Error(`${where}: type ${typeName} is not supported (supported: ${DECODABLE.join(', ')})`);
    }
    if (dims[0] % block !== 0) throw new Error(`${where}: first dimension ${dims[0]} is not a multiple of the ${typeName} block size ${block}`);
    if (relOffset % alignment !== 0) throw new Error(`${where}: offset ${relOffset} is not a multiple of the alignment ${alignment}`);
    const size = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(size * blockBytes)) throw new Error(`${where}: dims [${dims.join(', ')}] are too large`);
    tensors.push({ name, dims, type, typeName, size, byteLength: (size / block) * blockBytes, offset: relOffset });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataBytes = fileSize - dataOffset;
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  let prev = '';
  for (const t of sorted) {
    if (t.offset < end) throw new Error(`${file}: tensor "${t.name}" (offset ${t.offset}) overlaps tensor "${prev}" (ends at ${end})`);
    if (t.offset + t.byteLength > dataBytes) {
      throw new Error(`${file}: tensor "${t.name}" [${t.offset}, ${t.offset + t.byteLength}) lies outside the data section (${Math.max(0, dataBytes)} bytes; truncated file?)`);
    }
    end = t.offset + t.byteLength;
    prev = t.name;
  }
  for (const t of tensors) t.offset += dataOffset;
  return { version, metadata, metadataTypes, tensors, alignment, dataOffset };
}

// ---- dequantisation ----------------------------------------------------------------------------

/** Q8_0 blocks: f16 scale d, then 32 int8 q; x = d * q. `bytes` holds whole blocks. */
export function dequantQ8_0(bytes: Uint8Array, out: Float32Array, outOffset: number): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nBlocks = bytes.length / 34;
  for (let b = 0; b < nBlocks; b++) {
    const d = f16BitsToF32(v.getUint16(b * 34, true));
    const o = outOffset + b * 32;
    for (let j = 0; j < 32; j++) out[o + j] = d * v.getInt8(b * 34 + 2 + j);
  }
}

/** Q4_0 blocks: f16 scale d, then 16 bytes; byte j holds q_j (low nibble) and q_{j+16} (high); x = d * (q - 8). */
export function dequantQ4_0(bytes: Uint8Array, out: Float32Array, outOffset: number): void {
  const nBlocks = bytes.length / 18;
  for (let b = 0; b < nBlocks; b++) {
    const p = b * 18;
    const d = f16BitsToF32(bytes[p] | (bytes[p + 1] << 8));
    const o = outOffset + b * 32;
    for (let j = 0; j < 16; j++) {
      const q = bytes[p + 2 + j];
      out[o + j] = d * ((q & 0x0f) - 8);
      out[o + j + 16] = d * ((q >> 4) - 8);
    }
  }
}

/** Q8_0 encoding of x (length a multiple of 32): d = max|x| / 127, q = round(x / d). */
export function quantQ8_0(x: Float32Array): Uint8Array {
  const nBlocks = x.length / 32;
  const out = new Uint8Array(nBlocks * 34);
  const v = new DataView(out.buffer);
  for (let b = 0; b < nBlocks; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : 1 / d;
    v.setUint16(b * 34, f32BitsToF16(new Uint32Array(new Float32Array([d]).buffer)[0]), true);
    for (let j = 0; j < 32; j++) v.setInt8(b * 34 + 2 + j, Math.round(x[b * 32 + j] * id));
  }
  return out;
}

/** Q4_0 encoding: the value of largest magnitude m maps to q = 0 (d = m / -8); q = clamp(round(x/d) + 8, 0, 15). */
export function quantQ4_0(x: Float32Array): Uint8Array {
  const nBlocks = x.length / 32;
  const out = new Uint8Array(nBlocks * 18);
  for (let b = 0; b < nBlocks; b++) {
    let m = 0;
    for (let j = 0; j < 32; j++) if (Math.abs(x[b * 32 + j]) > Math.abs(m)) m = x[b * 32 + j];
    const d = Math.fround(m / -8);
    const id = d === 0 ? 0 : 1 / d;
    const h = f32BitsToF16(new Uint32Array(new Float32Array([d]).buffer)[0]);
    out[b * 18] = h & 0xff;
    out[b * 18 + 1] = h >> 8;
    const q = (j: number) => Math.min(15, Math.max(0, Math.floor(x[b * 32 + j] * id + 8.5)));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q(j) | (q(j + 16) << 4);
  }
  return out;
}

/** Reads one tensor's data and converts it to float32. */
async function readGgufTensor(fh: fsp.FileHandle, t: GgufTensorInfo, out: Float32Array, file: string): Promise<void> {
  if (t.typeName === 'F32') {
    await readExactly(fh, new Uint8Array(out.buffer, out.byteOffset, t.byteLength), t.offset, file);
    return;
  }
  const [, block, blockBytes] = GGML_TYPES[t.type];
  const chunkBytes = Math.max(1, Math.floor(CHUNK_BYTES / blockBytes)) * blockBytes;
  const scratch = new Uint8Array(Math.min(chunkBytes, t.byteLength));
  for (let done = 0; done < t.byteLength; done += scratch.length) {
    const n = Math.min(scratch.length, t.byteLength - done);
    const bytes = scratch.subarray(0, n);
    await readExactly(fh, bytes, t.offset + done, file);
    const at = (done / blockBytes) * block;
    if (t.typeName === 'F16') f16ToF32(new Uint16Array(bytes.buffer, 0, n / 2), out, at);
    else if (t.typeName === 'BF16') bf16ToF32(new Uint16Array(bytes.buffer, 0, n / 2), out, at);
    else if (t.typeName === 'Q8_0') dequantQ8_0(bytes, out, at);
    else dequantQ4_0(bytes, out, at);
  }
}

// ---- Q/K row permutation -------------------------------------------------------------------------

/**
 * llama.cpp's converter order for q/k rows: within each head, HF row j*(headDim/2) + i moves to
 * row 2i + j (j = 0, 1), so RoPE pairs become adjacent. x is [heads*headDim, cols].
 */
export function permuteQK(x: Float32Array, heads: number, cols: number): Float32Array {
  return reorderQK(x, heads, cols, false);
}

/** The inverse of permuteQK: llama.cpp row order back to Hugging Face (rotate-half) order. */
export function unpermuteQK(x: Float32Array, heads: number, cols: number): Float32Array {
  return reorderQK(x, heads, cols, true);
}

function reorderQK(x: Float32Array, heads: number, cols: number, inverse: boolean): Float32Array {
  const rows = x.length / cols;
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new RangeError(`q/k permutation: ${rows} rows do not split into ${heads} heads of even size`);
  const half = headDim / 2;
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const hf = h * headDim + j * half + i;
        const gg = h * headDim + 2 * i + j;
        const [from, to] = inverse ? [gg, hf] : [hf, gg];
        out.set(x.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

// ---- names ---------------------------------------------------------------------------------------

const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm', attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj', ffn_norm: 'post_attention_layernorm', ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};
const GLOBAL_NAMES: Record<string, string> = { 'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight' };

/** llama.cpp tensor name -> Hugging Face name; unknown names are kept as they are. */
export function ggufToHfName(name: string): string {
  if (GLOBAL_NAMES[name]) return GLOBAL_NAMES[name];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  if (m && LAYER_NAMES[m[2]]) return `model.layers.${m[1]}.${LAYER_NAMES[m[2]]}.${m[3]}`;
  return name;
}

/** Hugging Face name -> llama.cpp name (the inverse of ggufToHfName for model tensors). */
export function hfToGgufName(name: string): string {
  for (const [g, h] of Object.entries(GLOBAL_NAMES)) if (h === name) return g;
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  const short = m && Object.keys(LAYER_NAMES).find((k) => LAYER_NAMES[k] === m[2]);
  if (!m || !short) throw new Error(`GGUF: no llama.cpp name for tensor "${name}"`);
  return `blk.${m[1]}.${short}.${m[3]}`;
}

// ---- reading -------------------------------------------------------------------------------------

const ARCHITECTURES: Record<string, LlamaConfig['architecture']> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** An open GGUF file whose tensors are seen under Hugging Face names, in Hugging Face layout. */
export class GgufFile implements TensorSource {
  private readonly byHf = new Map<string, GgufTensorInfo>();
  /** Heads to un-permute by for q/k rows (llama only), keyed by HF name. */
  private readonly permuteHeads = new Map<string, number>();

  private constructor(readonly path: string, private readonly fh: fsp.FileHandle, readonly header: GgufHeader) {
    for (const t of header.tensors) this.byHf.set(ggufToHfName(t.name), t);
  }

  /** Opens a file and validates its header, metadata and tensor layout. */
  static async open(file: string): Promise<GgufFile> {
    const fh = await fsp.open(file, 'r').catch((err: Error) => {
      throw new Error(`${file}: cannot open (${err.message})`);
    });
    try {
      const size = (await fh.stat()).size;
      let want = Math.min(size, 1 << 20);
      for (;;) {
        const buf = new Uint8Array(want);
        await readExactly(fh, buf, 0, file);
        try {
          return new GgufFile(file, fh, parseHeader(buf, size, file));
        } catch (err) {
          if (!(err instanceof NeedMore)) throw err;
          want = Math.min(size, want * 4); // the header (e.g. a large vocabulary) continues: read more
        }
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get metadata(): Map<string, GgufValue> {
    return this.header.metadata;
  }

  /** Marks which q/k tensors are stored permuted (called once the head counts are known). */
  setPermutation(config: LlamaConfig): void {
    for (let l = 0; l < config.nLayers; l++) {
      this.permuteHeads.set(`model.layers.${l}.self_attn.q_proj.weight`, config.nHeads);
      this.permuteHeads.set(`model.layers.${l}.self_attn.k_proj.weight`, config.nKVHeads);
    }
  }

  names(): string[] {
    return [...this.byHf.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const t = this.byHf.get(name);
    if (!t) return undefined;
    return { name, dtype: t.typeName, shape: [...t.dims].reverse(), size: t.size, offset: t.offset, byteLength: t.byteLength, file: this.path };
  }

  async read(name: string, out?: Float32Array): Promise<Float32Array> {
    const t = this.byHf.get(name);
    if (!t) throw new Error(`${this.path}: no tensor "${name}"`);
    const dst = out ?? new Float32Array(t.size);
    if (dst.length !== t.size) throw new Error(`${this.path}: tensor "${t.name}" has ${t.size} elements, destination holds ${dst.length}`);
    const heads = this.permuteHeads.get(name);
    if (heads === undefined) {
      await readGgufTensor(this.fh, t, dst, this.path);
      return dst;
    }
    const raw = new Float32Array(t.size);
    await readGgufTensor(this.fh, t, raw, this.path);
    dst.set(unpermuteQK(raw, heads, t.dims[0]));
    return dst;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Typed metadata lookups whose errors name the file and the key. */
class Meta {
  constructor(private readonly m: Map<string, GgufValue>, private readonly file: string) {}

  has(key: string): boolean {
    return this.m.has(key);
  }

  private fail(key: string, expected: string): never {
    const v = this.m.get(key);
    throw new Error(`${this.file}: metadata "${key}" expected ${expected}, got ${v === undefined ? 'nothing' : JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x))}`);
  }

  int(key: string, fallback?: number, min = 1): number {
    if (!this.m.has(key) && fallback !== undefined) return fallback;
    const v = this.m.get(key);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`);
    return v;
  }

  /** A float metadata value; float32 values come back as the shortest decimal that rounds to them. */
  float(key: string, fallback?: number): number {
    if (!this.m.has(key) && fallback !== undefined) return fallback;
    const v = this.m.get(key);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a positive number');
    return shortestF32(v);
  }

  string(key: string): string | null {
    if (!this.m.has(key)) return null;
    const v = this.m.get(key);
    if (typeof v !== 'string') this.fail(key, 'a string');
    return v;
  }

  length(key: string): number | null {
    const v = this.m.get(key);
    return Array.isArray(v) ? v.length : null;
  }
}

/** The shortest decimal that rounds to the same float32 (1e-5 rather than 9.99999974e-6). */
function shortestF32(v: number): number {
  const f = Math.fround(v);
  if (f !== v) return v; // not a float32 value (f64 metadata): keep it
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === f) return d;
  }
  return v;
}

/**
 * Recovers Llama 3 rope scaling from llama.cpp's per-frequency divisors (rope_freqs.weight):
 * the divisor is 1 for short wavelengths, `factor` for long ones, and in between
 * 1/divisor = (1 - s)/factor + s with s linear in 1/wavelength. Only that line matters, so
 * low_freq_factor = 1 is chosen unless the file names the original context length.
 */
function llama3FromFactors(divisors: Float32Array, base: LlamaConfig, origCtx: number | null, file: string): RopeScaling {
  const fail = (why: string): never => {
    throw new Error(`${file}: tensor "rope_freqs.weight" does not describe Llama 3 rope scaling (${why})`);
  };
  const invFreq = ropeInvFreq({ ...base, ropeScaling: null });
  const factor = Math.max(...divisors);
  if (!(factor > 1)) fail('every divisor is <= 1');
  const xs: number[] = [];
  const ss: number[] = [];
  for (let i = 0; i < divisors.length; i++) {
    const g = 1 / divisors[i];
    const s = (g - 1 / factor) / (1 - 1 / factor);
    if (s > 1e-4 && s < 1 - 1e-4) {
      xs.push(invFreq[i] / (2 * Math.PI));
      ss.push(s);
    }
  }
  if (xs.length < 2) fail('fewer than two interpolated frequencies');
  // Least-squares line s = A x + B.
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const ms = ss.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxs = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxs += (xs[i] - mx) * (ss[i] - ms);
  }
  const A = sxs / sxx;
  const B = ms - A * mx;
  if (!(A > 0 && B < 0)) fail('the interpolation band has the wrong direction');
  // A = orig / (high - low), B = -low / (high - low).
  const orig = origCtx ?? Math.round(-A / B);
  const span = orig / A;
  const scaling: RopeScaling = {
    type: 'llama3', factor: shortestF32(Math.fround(factor)), lowFreqFactor: -B * span, highFreqFactor: -B * span + span, originalMaxPositionEmbeddings: orig,
  };
  // Prefer round numbers when they describe the same divisors.
  const rounded = { ...scaling, lowFreqFactor: Number(scaling.lowFreqFactor.toFixed(3)), highFreqFactor: Number(scaling.highFreqFactor.toFixed(3)) };
  const matches = (s: RopeScaling) => {
    const scaled = ropeInvFreq({ ...base, ropeScaling: s });
    return invFreq.every((f, i) => Math.abs(f / scaled[i] - divisors[i]) <= 1e-4 * divisors[i]);
  };
  if (matches(rounded)) return rounded;
  if (matches(scaling)) return scaling;
  return fail('the divisors do not follow the Llama 3 formula');
}

/** Builds the LlamaConfig from llama.* / qwen2.* metadata (and rope_freqs.weight when present). */
export async function ggufConfig(g: GgufFile): Promise<LlamaConfig> {
  const file = g.path;
  const m = new Meta(g.metadata, file);
  const arch = m.string('general.architecture');
  if (arch === null) throw new Error(`${file}: metadata "general.architecture" is missing`);
  const architecture = ARCHITECTURES[arch];
  if (!architecture) throw new Error(`${file}: metadata "general.architecture" is "${arch}", expected one of ${Object.keys(ARCHITECTURES).join(', ')}`);
  const k = (name: string) => `${arch}.${name}`;

  const hiddenSize = m.int(k('embedding_length'));
  const nHeads = m.int(k('attention.head_count'));
  const nKVHeads = m.int(k('attention.head_count_kv'), nHeads);
  if (nHeads % nKVHeads !== 0) throw new Error(`${file}: metadata "${k('attention.head_count_kv')}" (${nKVHeads}) must divide the head count ${nHeads}`);
  const headDim = m.int(k('attention.key_length'), hiddenSize / nHeads);
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`${file}: head size ${headDim} must be an even integer`);
  if (m.int(k('attention.value_length'), headDim) !== headDim) throw new Error(`${file}: metadata "${k('attention.value_length')}" must equal the key length ${headDim}`);
  if (m.int(k('rope.dimension_count'), headDim) !== headDim) throw new Error(`${file}: metadata "${k('rope.dimension_count')}" must equal the head size ${headDim} (partial RoPE is not supported)`);
  const embd = g.info('model.embed_tokens.weight');
  const vocabSize = m.int(k('vocab_size'), m.length('tokenizer.ggml.tokens') ?? embd?.shape[0] ?? 0);

  const eosIds: number[] = [];
  for (const key of ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
    if (m.has(key)) {
      const id = m.int(key, undefined, 0);
      if (!eosIds.includes(id)) eosIds.push(id);
    }
  }
  const config: LlamaConfig = {
    architecture,
    vocabSize,
    hiddenSize,
    intermediateSize: m.int(k('feed_forward_length')),
    nLayers: m.int(k('block_count')),
    nHeads,
    nKVHeads,
    headDim,
    rmsNormEps: m.float(k('attention.layer_norm_rms_epsilon')),
    ropeTheta: m.float(k('rope.freq_base'), 10000),
    ropeScaling: null,
    maxPositionEmbeddings: m.int(k('context_length')),
    tieWordEmbeddings: g.info('lm_head.weight') === undefined,
    attentionBias: architecture === 'Qwen2ForCausalLM',
    bosTokenId: m.has('tokenizer.ggml.bos_token_id') ? m.int('tokenizer.ggml.bos_token_id', undefined, 0) : null,
    eosTokenIds: eosIds,
  };

  const scalingType = m.string(k('rope.scaling.type'));
  if (scalingType === 'linear') config.ropeScaling = { type: 'linear', factor: m.float(k('rope.scaling.factor')) };
  else if (scalingType !== null && scalingType !== 'none') throw new Error(`${file}: metadata "${k('rope.scaling.type')}" is "${scalingType}", expected none or linear`);
  else if (m.has(k('rope.scale_linear'))) config.ropeScaling = { type: 'linear', factor: m.float(k('rope.scale_linear')) };
  if (g.info('rope_freqs.weight')) {
    if (config.ropeScaling) throw new Error(`${file}: both rope_freqs.weight and ${k('rope.scaling.type')} describe RoPE scaling`);
    const divisors = await g.read('rope_freqs.weight');
    if (divisors.length !== headDim / 2) throw new Error(`${file}: tensor "rope_freqs.weight" has ${divisors.length} values, expected ${headDim / 2}`);
    const orig = m.has(k('rope.scaling.original_context_length')) ? m.int(k('rope.scaling.original_context_length')) : null;
    config.ropeScaling = llama3FromFactors(divisors, config, orig, file);
  }
  return config;
}

/** Loads a llama/qwen2 GGUF file as a float32 model in Hugging Face layout. */
export async function loadGguf(file: string): Promise<Model> {
  const g = await GgufFile.open(file);
  try {
    const config = await ggufConfig(g);
    if (config.architecture === 'LlamaForCausalLM') g.setPermutation(config);
    const source: TensorSource = {
      path: g.path,
      names: () => g.names().filter((n) => n !== 'rope_freqs.weight'),
      info: (n) => g.info(n),
      read: (n, out) => g.read(n, out),
      close: () => g.close(),
    };
    return { config, weights: await weightsFromSource(config, source, `${file} metadata`) };
  } finally {
    await g.close();
  }
}

// ---- writing (tests, exports) -------------------------------------------------------------------

/** Little-endian byte builder for the header. */
class Bytes {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private grow(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void { this.grow(1); this.view.setUint8(this.length, v); this.length += 1; }
  u32(v: number): void { this.grow(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.grow(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.grow(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  u64(v: number | bigint): void { this.grow(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }

  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.grow(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** A metadata entry to write: [value type, value]; arrays are [ARRAY, [item type, values]]. */
export type GgufEntry = [number, GgufValue] | [typeof GGUF_TYPE.ARRAY, [number, GgufValue[]]];

function writeValue(b: Bytes, type: number, v: GgufValue | [number, GgufValue[]]): void {
  switch (type) {
    case GGUF_TYPE.U8: case GGUF_TYPE.BOOL: b.u8(Number(v)); break;
    case GGUF_TYPE.U32: b.u32(v as number); break;
    case GGUF_TYPE.I32: b.i32(v as number); break;
    case GGUF_TYPE.F32: b.f32(v as number); break;
    case GGUF_TYPE.U64: b.u64(v as number | bigint); break;
    case GGUF_TYPE.STRING: b.str(v as string); break;
    case GGUF_TYPE.ARRAY: {
      const [itemType, items] = v as [number, GgufValue[]];
      b.u32(itemType);
      b.u64(items.length);
      for (const it of items) writeValue(b, itemType, it);
      break;
    }
    default: throw new Error(`writeGguf: value type ${type} is not written by this writer`);
  }
}

export interface GgufWriteOptions {
  /** Type of the 2-D weights (norms, biases and rope factors stay F32). Default F32. */
  type?: GgmlWriteType;
  alignment?: number;
  version?: 2 | 3;
  /** Extra metadata entries (override the generated ones). */
  metadata?: Record<string, GgufEntry>;
}

/** The metadata entries llama.cpp's converter writes for this config. */
function configMetadata(c: LlamaConfig, alignment: number, quantized: boolean): Record<string, GgufEntry> {
  const arch = c.architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama';
  if (c.ropeScaling?.type === 'llama3' && arch !== 'llama') throw new Error('writeGguf: llama3 rope scaling is written only for the llama architecture');
  const U32 = GGUF_TYPE.U32;
  const F32 = GGUF_TYPE.F32;
  const md: Record<string, GgufEntry> = {
    'general.architecture': [GGUF_TYPE.STRING, arch],
    'general.name': [GGUF_TYPE.STRING, 'freqkv export'],
    [`${arch}.context_length`]: [U32, c.maxPositionEmbeddings],
    [`${arch}.embedding_length`]: [U32, c.hiddenSize],
    [`${arch}.block_count`]: [U32, c.nLayers],
    [`${arch}.feed_forward_length`]: [U32, c.intermediateSize],
    [`${arch}.attention.head_count`]: [U32, c.nHeads],
    [`${arch}.attention.head_count_kv`]: [U32, c.nKVHeads],
    [`${arch}.attention.key_length`]: [U32, c.headDim],
    [`${arch}.attention.value_length`]: [U32, c.headDim],
    [`${arch}.rope.dimension_count`]: [U32, c.headDim],
    [`${arch}.attention.layer_norm_rms_epsilon`]: [F32, c.rmsNormEps],
    [`${arch}.rope.freq_base`]: [F32, c.ropeTheta],
    [`${arch}.vocab_size`]: [U32, c.vocabSize],
  };
  if (alignment !== DEFAULT_ALIGNMENT) md['general.alignment'] = [U32, alignment];
  if (quantized) md['general.quantization_version'] = [U32, 2];
  if (c.ropeScaling?.type === 'linear') {
    md[`${arch}.rope.scaling.type`] = [GGUF_TYPE.STRING, 'linear'];
    md[`${arch}.rope.scaling.factor`] = [F32, c.ropeScaling.factor];
  }
  if (c.bosTokenId !== null) md['tokenizer.ggml.bos_token_id'] = [U32, c.bosTokenId];
  if (c.eosTokenIds.length > 0) md['tokenizer.ggml.eos_token_id'] = [U32, c.eosTokenIds[0]];
  if (c.eosTokenIds.length > 1) md['tokenizer.ggml.eot_token_id'] = [U32, c.eosTokenIds[1]];
  return md;
}

interface TensorOut {
  name: string;
  dims: number[];
  type: GgmlWriteType;
  data: Float32Array;
}

/** Writes `model` as a GGUF file the way llama.cpp's converter lays it out (q/k permuted for llama). */
export async function writeGguf(file: string, model: Model, opts: GgufWriteOptions = {}): Promise<void> {
  const c = model.config;
  const type = opts.type ?? 'F32';
  const alignment = opts.alignment ?? DEFAULT_ALIGNMENT;
  if (!(type in TYPE_ID)) throw new Error(`writeGguf: opts.type expected one of ${Object.keys(TYPE_ID).join(', ')}, got ${type}`);
  if (!(Number.isInteger(alignment) && alignment > 0 && alignment % 8 === 0)) throw new Error(`writeGguf: opts.alignment must be a positive multiple of 8, got ${alignment}`);
  const llama = c.architecture !== 'Qwen2ForCausalLM';

  const tensors: TensorOut[] = [];
  for (const s of hfTensorSlots(c)) {
    let data = weightAt(model.weights, s.key)!;
    if (llama && /self_attn\.q_proj\.weight$/.test(s.name)) data = permuteQK(data, c.nHeads, c.hiddenSize);
    if (llama && /self_attn\.k_proj\.weight$/.test(s.name)) data = permuteQK(data, c.nKVHeads, c.hiddenSize);
    const is2d = s.shape.length === 2;
    const blockOk = type === 'F32' || type === 'F16' || type === 'BF16' || s.shape[s.shape.length - 1] % 32 === 0;
    tensors.push({ name: hfToGgufName(s.name), dims: [...s.shape].reverse(), type: is2d && blockOk ? type : 'F32', data });
  }
  if (c.ropeScaling?.type === 'llama3') {
    const plain = ropeInvFreq({ ...c, ropeScaling: null });
    const scaled = ropeInvFreq(c);
    tensors.push({ name: 'rope_freqs.weight', dims: [c.headDim / 2], type: 'F32', data: plain.map((f, i) => f / scaled[i]) });
  }
  const quantized = tensors.some((t) => t.type === 'Q8_0' || t.type === 'Q4_0');
  const metadata = { ...configMetadata(c, alignment, quantized), ...(opts.metadata ?? {}) };

  const encoded = tensors.map((t) => encodeTensor(t));
  const b = new Bytes();
  b.u32(MAGIC);
  b.u32(opts.version ?? 3);
  b.u64(tensors.length);
  b.u64(Object.keys(metadata).length);
  for (const [key, [vt, v]] of Object.entries(metadata)) {
    b.str(key);
    b.u32(vt);
    writeValue(b, vt, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (let i = 0; i < tensors.length; i++) {
    b.str(tensors[i].name);
    b.u32(tensors[i].dims.length);
    for (const d of tensors[i].dims) b.u64(d);
    b.u32(TYPE_ID[tensors[i].type]);
    b.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(encoded[i].length / alignment) * alignment;
  }
  const headerBytes = b.bytes();
  const dataStart = Math.ceil(headerBytes.length / alignment) * alignment;
  await writeFileAtomicWith(file, async (fh) => {
    await writeAll(fh, headerBytes);
    await writeAll(fh, new Uint8Array(dataStart - headerBytes.length));
    for (let i = 0; i < tensors.length; i++) {
      await writeAll(fh, encoded[i]);
      const end = i + 1 < tensors.length ? offsets[i + 1] : offsets[i] + encoded[i].length;
      await writeAll(fh, new Uint8Array(end - offsets[i] - encoded[i].length));
    }
  });
}

function encodeTensor(t: TensorOut): Uint8Array {
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  switch (t.type) {
    case 'F32': return new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    case 'F16': return new Uint8Array(Uint16Array.from(bits, f32BitsToF16).buffer);
    case 'BF16': return new Uint8Array(Uint16Array.from(bits, f32BitsToBf16).buffer);
    case 'Q8_0': return quantQ8_0(t.data);
    case 'Q4_0': return quantQ4_0(t.data);
  }
}
