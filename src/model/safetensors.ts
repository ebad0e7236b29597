// The safetensors format, read and written strictly:
//   [8 bytes: header length N, u64 little-endian][N bytes: UTF-8 JSON header][data section]
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative
// to the data section) plus an optional "__metadata__" of string values. Like the reference
// implementation we require the tensors to tile the data section exactly: sorted by offset, no
// gap, no overlap, each byte length = product(shape) * dtype size, nothing left over.
//
// Tensors are read one at a time with positional reads from a file handle, straight into the
// destination Float32Array (F32) or through a small scratch buffer (F16/BF16), so a multi-GB
// checkpoint is never held in one buffer.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomicWith } from '../util/atomic.js';

/** Byte size of every dtype the format defines; only F32, F16 and BF16 can be loaded. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

export type FloatDtype = 'F32' | 'F16' | 'BF16';
const LOADABLE: FloatDtype[] = ['F32', 'F16', 'BF16'];

/** Largest header we accept (the reference's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Scratch size for converting F16/BF16 reads (bytes, even). */
const CHUNK_BYTES = 1 << 22;

if (os.endianness() !== 'LE') throw new Error('safetensors: a little-endian host is required');

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Elements: product(shape) (1 for a scalar). */
  size: number;
  /** Absolute byte offset in `file` and byte length. */
  offset: number;
  byteLength: number;
  /** The file holding the tensor (a shard for sharded checkpoints). */
  file: string;
}

export interface SafetensorsHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string> | null;
  /** Absolute offset of the data section: 8 + N. */
  dataOffset: number;
}

/** A set of named tensors on disk: one safetensors file, shards, or a GGUF file. */
export interface TensorSource {
  /** The file to name in errors (the index file for shards). */
  readonly path: string;
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /** Reads one tensor converted to float32 into `out` (allocated when absent). */
  read(name: string, out?: Float32Array): Promise<Float32Array>;
  close(): Promise<void>;
}

function product(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates the JSON header (the N bytes after the length prefix) of a file of `fileSize` bytes.
 * Pure: no I/O. Every error starts with `file` and names the tensor at fault.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const dataOffset = 8 + headerBytes.length;
  const dataBytes = fileSize - dataOffset;
  if (dataBytes < 0) throw new Error(`${file}: header of ${headerBytes.length} bytes runs past the end of the file (${fileSize} bytes)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${file}: header is not valid UTF-8`);
  }
  if (!text.startsWith('{')) throw new Error(`${file}: header must be a JSON object starting with "{"`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: header is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) throw new Error(`${file}: header must be a JSON object`);

  let metadata: Record<string, string> | null = null;
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (entry === null) continue;
      if (!isObject(entry)) throw new Error(`${file}: "__metadata__" must be an object of strings`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new Error(`${file}: "__metadata__" value for "${k}" must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    tensors.push(parseEntry(name, entry, dataOffset, dataBytes, file));
  }

  // Sorted by offset, each tensor must start where the previous one ended.
  tensors.sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let end = dataOffset;
  let prev = '';
  for (const t of tensors) {
    if (t.offset < end) throw new Error(`${file}: tensor "${t.name}" overlaps tensor "${prev}" (data_offsets start ${t.offset - dataOffset} < ${end - dataOffset})`);
    if (t.offset > end) throw new Error(`${file}: tensor "${t.name}" leaves a gap after ${prev ? `tensor "${prev}"` : 'the header'} (data_offsets start ${t.offset - dataOffset}, expected ${end - dataOffset})`);
    end = t.offset + t.byteLength;
    prev = t.name;
  }
  if (end !== fileSize) {
    throw new Error(`${file}: tensors cover ${end - dataOffset} bytes but the data section holds ${dataBytes} (truncated or padded file)`);
  }
  return { tensors, metadata, dataOffset };
}

function parseEntry(name: string, entry: unknown, dataOffset: number, dataBytes: number, file: string): TensorInfo {
  const where = `${file}: tensor "${name}"`;
  if (!isObject(entry)) throw new Error(`${where}: expected {dtype, shape, data_offsets}`);
  for (const k of Object.keys(entry)) {
    if (k !== 'dtype' && k !== 'shape' && k !== 'data_offsets') throw new Error(`${where}: unexpected field "${k}"`);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || DTYPE_BYTES[dtype] === undefined) {
    throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${where}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new Error(`${where}: data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as number[];
  if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataBytes) throw new Error(`${where}: data_offsets [${begin}, ${end}] lie outside the data section (${dataBytes} bytes)`);
  const size = product(shape as number[]);
  const byteLength = size * DTYPE_BYTES[dtype];
  if (end - begin !== byteLength) {
    throw new Error(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${byteLength}`);
  }
  return { name, dtype, shape: shape as number[], size, offset: dataOffset + begin, byteLength, file };
}

/** Fills buf from `position`, looping over short reads; a short file is an error naming it. */
export async function readExactly(fh: fsp.FileHandle, buf: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

// ---- F16 / BF16 <-> F32 --------------------------------------------------------------------

let f16Table: Float32Array | null = null;

/** float32 value of every f16 bit pattern (65536 entries, built once; exact incl. NaN payloads). */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  const vals = new Float32Array(bits.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) vals[h] = (sign ? -1 : 1) * mant * 2 ** -24; // zero or subnormal, exact in f32
    else if (exp === 31) bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN
    else bits[h] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  }
  return (f16Table = vals);
}

/** float32 value of one f16 bit pattern. */
export function f16BitsToF32(h: number): number {
  return f16ToF32Table()[h & 0xffff];
}

/** out[i] = float32 of the f16 bit pattern src[i]. */
export function f16ToF32(src: Uint16Array, out: Float32Array, outOffset = 0): void {
  const t = f16ToF32Table();
  for (let i = 0; i < src.length; i++) out[outOffset + i] = t[src[i]];
}

/** out[i] = float32 of the bf16 bit pattern src[i] (bf16 is the top half of an f32). */
export function bf16ToF32(src: Uint16Array, out: Float32Array, outOffset = 0): void {
  const o = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, src.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i] << 16;
}

/** f32 bit pattern -> f16 bit pattern, rounding to nearest even; overflow -> inf, NaN stays NaN. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // f16 subnormal: value / 2^-24 = M * 2^(e-14) with M the 24-bit significand.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is still right
  return sign | h;
}

/** f32 bit pattern -> bf16 bit pattern, rounding to nearest even; NaN stays NaN. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) >>> 0 > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encodes src[from, from+n) as `dtype` little-endian bytes into out (4 or 2 bytes per value). */
function encode(src: Float32Array, from: number, n: number, dtype: FloatDtype, out: Uint8Array): void {
  if (dtype === 'F32') {
    out.set(new Uint8Array(src.buffer, src.byteOffset + from * 4, n * 4));
    return;
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset + from * 4, n);
  const o = new Uint16Array(out.buffer, out.byteOffset, n);
  const conv = dtype === 'F16' ? f32BitsToF16 : f32BitsToBf16;
  for (let i = 0; i < n; i++) o[i] = conv(bits[i]);
}

/** Reads `info` (F32/F16/BF16) from an open handle into out, converting to float32. */
async function readFloatTensor(fh: fsp.FileHandle, info: TensorInfo, out: Float32Array): Promise<void> {
  if (info.dtype === 'F32') {
    await readExactly(fh, new Uint8Array(out.buffer, out.byteOffset, info.byteLength), info.offset, info.file);
    return;
  }
  const scratch = new Uint8Array(Math.min(CHUNK_BYTES, info.byteLength));
  const convert = info.dtype === 'F16' ? f16ToF32 : bf16ToF32;
  for (let done = 0; done < info.byteLength; done += scratch.length) {
    const n = Math.min(scratch.length, info.byteLength - done);
    const chunk = scratch.subarray(0, n);
    await readExactly(fh, chunk, info.offset + done, info.file);
    convert(new Uint16Array(chunk.buffer, 0, n / 2), out, done / 2);
  }
}

// ---- reading --------------------------------------------------------------------------------

/** One open .safetensors file. */
export class SafetensorsFile implements TensorSource {
  private readonly byName = new Map<string, TensorInfo>();

  private constructor(readonly path: string, private readonly fh: fsp.FileHandle, readonly header: SafetensorsHeader) {
    for (const t of header.tensors) this.byName.set(t.name, t);
  }

  /** Opens and validates a file; only the header is read. */
  static async open(file: string): Promise<SafetensorsFile> {
    const fh = await fsp.open(file, 'r').catch((err: Error) => {
      throw new Error(`${file}: cannot open (${err.message})`);
    });
    try {
      const size = (await fh.stat()).size;
      if (size < 8) throw new Error(`${file}: ${size} bytes is too short for the 8-byte header length`);
      const prefix = new Uint8Array(8);
      await readExactly(fh, prefix, 0, file);
      const n = new DataView(prefix.buffer).getBigUint64(0, true);
      if (n > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
      if (n > BigInt(size - 8)) throw new Error(`${file}: header length ${n} runs past the end of the file (${size} bytes)`);
      const headerBytes = new Uint8Array(Number(n));
      await readExactly(fh, headerBytes, 8, file);
      return new SafetensorsFile(file, fh, parseSafetensorsHeader(headerBytes, size, file));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get metadata(): Record<string, string> | null {
    return this.header.metadata;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  async read(name: string, out?: Float32Array): Promise<Float32Array> {
    const info = this.byName.get(name);
    if (!info) throw new Error(`${this.path}: no tensor "${name}"`);
    if (!(LOADABLE as string[]).includes(info.dtype)) {
      throw new Error(`${this.path}: tensor "${name}" has dtype ${info.dtype}; only ${LOADABLE.join(', ')} can be loaded`);
    }
    const dst = out ?? new Float32Array(info.size);
    if (dst.length !== info.size) throw new Error(`${this.path}: tensor "${name}" has ${info.size} elements, destination holds ${dst.length}`);
    await readFloatTensor(this.fh, info, dst);
    return dst;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Several shards named by model.safetensors.index.json ({"weight_map": {tensor: file}}). */
export class ShardedSafetensors implements TensorSource {
  private constructor(readonly path: string, private readonly shardOf: Map<string, SafetensorsFile>, private readonly shards: SafetensorsFile[]) {}

  static async open(indexFile: string): Promise<ShardedSafetensors> {
    let json: unknown;
    try {
      json = JSON.parse(await fsp.readFile(indexFile, 'utf8'));
    } catch (err) {
      throw new Error(`${indexFile}: cannot read the shard index (${(err as Error).message})`);
    }
    const map = isObject(json) ? json.weight_map : undefined;
    if (!isObject(map)) throw new Error(`${indexFile}: field "weight_map" expected an object {tensor name: shard file}`);
    const dir = path.dirname(indexFile);
    const files = new Map<string, SafetensorsFile>();
    const shardOf = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(map)) {
        if (typeof shard !== 'string' || shard !== path.basename(shard) || shard === '..' || !shard.endsWith('.safetensors')) {
          throw new Error(`${indexFile}: weight_map entry for "${name}" must be a .safetensors file name in the same folder, got ${JSON.stringify(shard)}`);
        }
        let f = files.get(shard);
        if (!f) {
          f = await SafetensorsFile.open(path.join(dir, shard));
          files.set(shard, f);
        }
        if (!f.info(name)) throw new Error(`${indexFile}: tensor "${name}" is mapped to ${f.path}, which does not hold it`);
        shardOf.set(name, f);
      }
      for (const f of files.values()) {
        for (const name of f.names()) {
          if (shardOf.get(name) !== f) throw new Error(`${f.path}: tensor "${name}" is not mapped to this shard in ${indexFile}`);
        }
      }
    } catch (err) {
      for (const f of files.values()) await f.close();
      throw err;
    }
    return new ShardedSafetensors(indexFile, shardOf, [...files.values()]);
  }

  names(): string[] {
    return [...this.shardOf.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.shardOf.get(name)?.info(name);
  }

  async read(name: string, out?: Float32Array): Promise<Float32Array> {
    const f = this.shardOf.get(name);
    if (!f) throw new Error(`${this.path}: no tensor "${name}"`);
    return f.read(name, out);
  }

  async close(): Promise<void> {
    for (const f of this.shards) await f.close();
  }
}

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

/** Opens a folder's weights: the shard index when present, otherwise model.safetensors. */
export async function openSafetensorsDir(dir: string): Promise<TensorSource> {
  const index = path.join(dir, INDEX_FILE);
  const single = path.join(dir, SINGLE_FILE);
  const exists = async (p: string) => fsp.stat(p).then(() => true, () => false);
  if (await exists(index)) return ShardedSafetensors.open(index);
  if (await exists(single)) return SafetensorsFile.open(single);
  throw new Error(`${dir}: no weights found (expected ${SINGLE_FILE} or ${INDEX_FILE})`);
}

// ---- writing --------------------------------------------------------------------------------

export interface TensorToWrite {
  name: string;
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array;
}

/** Bytes a tensor takes on disk. */
export function tensorBytes(t: { dtype: FloatDtype; shape: number[] }): number {
  return product(t.shape) * DTYPE_BYTES[t.dtype];
}

/** Writes a .safetensors file atomically (temporary file + rename), in the order given. */
export async function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`${file}: metadata value for "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || header[t.name] !== undefined) throw new Error(`${file}: duplicate or reserved tensor name "${t.name}"`);
    if (!(LOADABLE as string[]).includes(t.dtype)) throw new Error(`${file}: tensor "${t.name}": dtype must be one of ${LOADABLE.join(', ')}, got ${t.dtype}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || product(t.shape) !== t.data.length) {
      throw new Error(`${file}: tensor "${t.name}": shape [${t.shape.join(', ')}] does not match ${t.data.length} values`);
    }
    const n = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  // Pad the header with spaces to a multiple of 8 so the data section stays aligned.
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));

  await writeFileAtomicWith(file, async (fh) => {
    await writeAll(fh, prefix);
    await writeAll(fh, json);
    const chunk = new Uint8Array(CHUNK_BYTES);
    for (const t of tensors) {
      const bytesPer = DTYPE_BYTES[t.dtype];
      const perChunk = CHUNK_BYTES / 4; // values per chunk (4 bytes is the widest dtype)
      for (let from = 0; from < t.data.length; from += perChunk) {
        const n = Math.min(perChunk, t.data.length - from);
        encode(t.data, from, n, t.dtype, chunk);
        await writeAll(fh, chunk.subarray(0, n * bytesPer));
      }
    }
  });
}

/** Writes all of buf at the handle's current position. */
export async function writeAll(fh: fsp.FileHandle, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done);
    done += bytesWritten;
  }
}
