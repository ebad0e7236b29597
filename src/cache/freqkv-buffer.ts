// FreqKVBuffer: the FreqKV cache rule of shared/spec/FREQKV.md section 2 for one stream of
// rows (one layer's pre-RoPE keys, or its values), usable without a model.
//
// Rows are held as [sinks | block | tail] in one preallocated [capacity, channels] array:
//   sinks: the first S rows ever appended, never touched again;
//   block: 0 or L compressed rows, L = floor((capacity - S) * retain);
//   tail:  raw rows appended since the last compression.
// Rule: before a row is appended, if the buffer holds `capacity` rows,
//   block <- freqCompress(concat(block, tail), L), tail <- []; then append.
// Every compression sees exactly n = capacity - S rows, so its operator never changes.
// A row's index in the buffer is its slot position (what RoPE uses in the FreqKV policy).
import type { Backend } from '../kernels/backend.js';
import { type FreqKeep, type FreqMethod, type FreqScaling, freqCompress } from '../dsp/freqkv-op.js';

export interface FreqKVBufferOptions {
  /** N: most rows ever held. */
  capacity: number;
  /** S: leading rows kept raw forever. */
  sinks: number;
  /** gamma in (0, 1): the block keeps L = floor((N - S) * gamma) rows. */
  retain: number;
  /** Values per row. */
  channels: number;
  /** Compression options (ablations); defaults are the method's: low frequencies, sqrt(L/n). */
  keep?: FreqKeep;
  scaling?: FreqScaling;
  method?: FreqMethod;
  backend?: Backend;
  /** Called right after each compression (e.g. a cache re-rotates its keys then). */
  onCompress?: (buffer: FreqKVBuffer) => void;
}

const MAGIC = 0x42564b46; // "FKVB" little-endian
const VERSION = 1;
const HEADER_BYTES = 56;
const KEEPS: FreqKeep[] = ['low', 'high'];
const SCALINGS: FreqScaling[] = ['amplitude', 'none', 'energy'];

export class FreqKVBuffer {
  readonly capacity: number;
  readonly sinks: number;
  readonly retain: number;
  readonly channels: number;
  /** L: rows in the block after a compression. */
  readonly blockSize: number;
  readonly keep: FreqKeep;
  readonly scaling: FreqScaling;
  onCompress: ((buffer: FreqKVBuffer) => void) | undefined;
  private readonly method: FreqMethod;
  private readonly backend: Backend | undefined;
  /** [capacity, channels]; rows [0, held) are live. */
  private readonly data: Float32Array;
  private held = 0;
  private block = 0;
  private count = 0;
  private total = 0;

  constructor(opts: FreqKVBufferOptions) {
    const { capacity, sinks, retain, channels } = opts;
    const int = (name: string, v: number, min: number) => {
      if (!Number.isInteger(v) || v < min) throw new RangeError(`FreqKVBuffer ${name}: expected an integer >= ${min}, got ${v}`);
    };
    int('capacity', capacity, 2);
    int('sinks', sinks, 0);
    int('channels', channels, 1);
    if (sinks >= capacity) throw new RangeError(`FreqKVBuffer sinks: expected fewer than capacity (${capacity}), got ${sinks}`);
    if (typeof retain !== 'number' || !(retain > 0 && retain < 1)) {
      throw new RangeError(`FreqKVBuffer retain: expected a number in (0, 1), got ${retain}`);
    }
    const L = Math.floor((capacity - sinks) * retain);
    if (L < 1) throw new RangeError(`FreqKVBuffer retain: floor((capacity - sinks) * retain) = ${L}; expected at least 1 row in the block`);
    // sinks + L < capacity holds by construction (retain < 1), so every compression frees room.
    const keep = opts.keep ?? 'low';
    const scaling = opts.scaling ?? 'amplitude';
    if (!KEEPS.includes(keep)) throw new RangeError(`FreqKVBuffer keep: expected "low" or "high", got "${keep}"`);
    if (!SCALINGS.includes(scaling)) throw new RangeError(`FreqKVBuffer scaling: expected "amplitude", "none" or "energy", got "${scaling}"`);
    this.capacity = capacity;
    this.sinks = sinks;
    this.retain = retain;
    this.channels = channels;
    this.blockSize = L;
    this.keep = keep;
    this.scaling = scaling;
    this.method = opts.method ?? 'auto';
    this.backend = opts.backend;
    this.onCompress = opts.onCompress;
    this.data = new Float32Array(capacity * channels);
  }

  /** Rows held now (never above capacity). */
  get length(): number {
    return this.held;
  }
  /** How many compressions have happened. */
  get compressions(): number {
    return this.count;
  }
  /** Rows appended since construction (the length of the stream). */
  get seen(): number {
    return this.total;
  }
  get sinkRows(): number {
    return Math.min(this.held, this.sinks);
  }
  get blockRows(): number {
    return this.block;
  }
  get tailRows(): number {
    return this.held - this.sinkRows - this.block;
  }
  /** True when the next append compresses first. */
  get full(): boolean {
    return this.held === this.capacity;
  }
  /** Bytes of the buffer actually allocated (fixed at construction). */
  get bytes(): number {
    return this.data.byteLength;
  }

  /** Rows the next appends can take before a compression falls between them (>= 1). */
  room(): number {
    return this.full ? this.capacity - this.sinks - this.blockSize : this.capacity - this.held;
  }

  /** Appends one row (`channels` values), compressing first when the buffer is full. */
  append(row: Float32Array): void {
    if (!(row instanceof Float32Array)) throw new TypeError('FreqKVBuffer.append row: expected a Float32Array');
    if (row.length !== this.channels) throw new RangeError(`FreqKVBuffer.append row: expected ${this.channels} values, got ${row.length}`);
    this.appendRows(row);
  }

  /**
   * Appends T rows (rows[T, channels], row after row), compressing whenever the buffer is full
   * before the next row, exactly as T single appends would.
   */
  appendRows(rows: Float32Array): void {
    if (!(rows instanceof Float32Array)) throw new TypeError('FreqKVBuffer.appendRows rows: expected a Float32Array');
    const C = this.channels;
    if (rows.length % C !== 0) throw new RangeError(`FreqKVBuffer.appendRows rows: expected a multiple of ${C} values (rows of ${C} channels), got ${rows.length}`);
    const T = rows.length / C;
    let done = 0;
    while (done < T) {
      if (this.full) this.compress();
      const take = Math.min(T - done, this.capacity - this.held);
      this.data.set(rows.subarray(done * C, (done + take) * C), this.held * C);
      this.held += take;
      this.total += take;
      done += take;
    }
  }

  /**
   * block <- freqCompress(concat(block, tail), L); tail <- []. Runs automatically when a row
   * arrives at a full buffer; callable earlier when block + tail hold more than L rows.
   */
  compress(): void {
    const S = this.sinks;
    const L = this.blockSize;
    const C = this.channels;
    const n = this.held - S;
    if (n <= L) throw new RangeError(`FreqKVBuffer.compress: block + tail hold ${Math.max(n, 0)} rows; expected more than L = ${L}`);
    const span = this.data.subarray(S * C, this.held * C);
    const y = freqCompress(span, n, C, L, { keep: this.keep, scaling: this.scaling, method: this.method, backend: this.backend });
    this.data.set(y, S * C);
    this.data.fill(0, (S + L) * C, this.held * C);
    this.block = L;
    this.held = S + L;
    this.count++;
    this.onCompress?.(this);
  }

  /** Rows [from, to) as a view into the buffer (no copy; valid until the next append or compression). */
  view(from = 0, to = this.held): Float32Array {
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from || to > this.held) {
      throw new RangeError(`FreqKVBuffer.view: expected 0 <= from <= to <= length (${this.held}), got from = ${from}, to = ${to}`);
    }
    return this.data.subarray(from * this.channels, to * this.channels);
  }

  /** A copy of the rows held, [length, channels], in order [sinks | block | tail]. */
  snapshot(): Float32Array {
    return this.view().slice();
  }

  /** Forgets every row and counter (the allocation stays). */
  reset(): void {
    this.data.fill(0);
    this.held = this.block = this.count = this.total = 0;
  }

  /** Serialises parameters, counters and rows (little-endian); restore() gives back a bit-identical buffer. */
  save(): Uint8Array {
    const C = this.channels;
    const out = new Uint8Array(HEADER_BYTES + this.held * C * 4);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, MAGIC, true);
    dv.setUint32(4, VERSION, true);
    dv.setUint32(8, this.capacity, true);
    dv.setUint32(12, this.sinks, true);
    dv.setUint32(16, C, true);
    dv.setFloat64(20, this.retain, true);
    dv.setUint8(28, KEEPS.indexOf(this.keep));
    dv.setUint8(29, SCALINGS.indexOf(this.scaling));
    dv.setUint32(32, this.held, true);
    dv.setUint32(36, this.block, true);
    dv.setFloat64(40, this.count, true);
    dv.setFloat64(48, this.total, true);
    out.set(new Uint8Array(this.data.buffer, this.data.byteOffset, this.held * C * 4), HEADER_BYTES);
    return out;
  }

  /** Rebuilds a buffer from save()'s bytes; `extra` supplies what is not serialised (method, backend, hook). */
  static restore(bytes: Uint8Array, extra: Pick<FreqKVBufferOptions, 'method' | 'backend' | 'onCompress'> = {}): FreqKVBuffer {
    const fail = (why: string): never => {
      throw new RangeError(`FreqKVBuffer.restore bytes: ${why}`);
    };
    if (!(bytes instanceof Uint8Array)) throw new TypeError('FreqKVBuffer.restore bytes: expected a Uint8Array');
    if (bytes.length < HEADER_BYTES) fail(`expected at least ${HEADER_BYTES} bytes, got ${bytes.length}`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) !== MAGIC) fail('not a FreqKVBuffer state (bad magic)');
    if (dv.getUint32(4, true) !== VERSION) fail(`unsupported version ${dv.getUint32(4, true)}, expected ${VERSION}`);
    const keep = KEEPS[dv.getUint8(28)] ?? fail(`bad keep code ${dv.getUint8(28)}`);
    const scaling = SCALINGS[dv.getUint8(29)] ?? fail(`bad scaling code ${dv.getUint8(29)}`);
    const b = new FreqKVBuffer({
      capacity: dv.getUint32(8, true),
      sinks: dv.getUint32(12, true),
      channels: dv.getUint32(16, true),
      retain: dv.getFloat64(20, true),
      keep,
      scaling,
      ...extra,
    });
    const held = dv.getUint32(32, true);
    const block = dv.getUint32(36, true);
    if (held > b.capacity) fail(`length ${held} exceeds capacity ${b.capacity}`);
    if (block !== 0 && (block !== b.blockSize || held < b.sinks + block)) fail(`inconsistent block of ${block} rows for length ${held}`);
    if (bytes.length !== HEADER_BYTES + held * b.channels * 4) fail(`expected ${HEADER_BYTES + held * b.channels * 4} bytes for ${held} rows, got ${bytes.length}`);
    // Copy through bytes: the payload may sit at an offset that is not a multiple of 4.
    new Uint8Array(b.data.buffer, b.data.byteOffset, held * b.channels * 4).set(bytes.subarray(HEADER_BYTES));
    b.held = held;
    b.block = block;
    b.count = dv.getFloat64(40, true);
    b.total = dv.getFloat64(48, true);
    return b;
  }
}
