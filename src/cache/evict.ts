// Shared machinery of the eviction policies (window, H2O, SnapKV, TOVA), in the spirit of
// kvpress: this base stores rows, evicts, moves and re-rotates them; a policy is a small class
// that says which rows to drop (victims) and how it scores them (observe).
//
// Budget: at most `budget` rows are held between steps, and a query never attends over more
// than `budget` rows (its own included): when a step of T tokens would overflow the budget,
// T rows per KV head are evicted in begin(), before the new tokens are stored, using the
// scores gathered up to the previous step. The first `sinks` tokens are never evicted.
//
// Chunked prefill: room() is budget - length while the cache is filling, so a prompt goes in
// one step up to the budget; from then on room() is 1 and every token is its own step that
// evicts one row per KV head, exactly as token-by-token decoding would (H2O/TOVA scores change
// after every token, so a bigger step would change the result). SnapKV overrides this.
//
// Per KV head: every KV head keeps its own tokens (row j of head h is the j-th oldest token that
// head still holds), as H2O, SnapKV and TOVA do. Every head holds the same number of rows, so
// the attention kernel sees one [n, nKVHeads*headDim] matrix.
//
// Positions: 'slot' (default, as FreqKV): the row index is the position, so positions stay in
// [0, budget-1]; keys are kept pre-RoPE and re-rotated from the first moved row whenever rows
// move (an eviction shifts every later token down one position: up to budget x kvDim rotations
// per step, the price of slot positions). 'original': each key is rotated once, at its index in
// the stream, and never again (positions grow without bound; no pre-RoPE copy is kept).
import type { Backend } from '../kernels/backend.js';
import { getBackend } from '../kernels/index.js';
import type { BytesHeld, CacheShape, KVCache, LayerView } from './types.js';
import { type CacheState, encodeState, stateChoice, stateF32, stateI32, stateNumber, stateShape } from './session.js';

export type PositionMode = 'slot' | 'original';
export const POSITION_MODES: readonly PositionMode[] = ['slot', 'original'];

export interface EvictionOptions {
  /** Most rows held (per layer and KV head). */
  budget: number;
  /** First tokens never evicted (default 4). */
  sinks?: number;
  /** How held tokens are positioned (default 'slot'). */
  positions?: PositionMode;
  /** Kernels for RoPE at original positions (default getBackend()); slot positions use rotateRows. */
  backend?: Backend;
}

/** One layer's rows. */
export interface EvictLayer {
  /** [cap, kvDim] pre-RoPE keys; slot positions only (re-rotated when rows move). */
  kRaw: Float32Array | null;
  /** [cap, kvDim] keys rotated to their positions: what attention reads. */
  kRot: Float32Array;
  /** [cap, kvDim] values. */
  v: Float32Array;
  /** [cap, nKVHeads] index in the stream of the token each row holds, per head. */
  origin: Int32Array;
  /** [cap, nKVHeads] the policy's score of each row, per head; null for policies without scores. */
  score: Float32Array | null;
}

type Rows = Float32Array | Int32Array;

/** buf when it already holds `rows` rows of rowLen values, else a bigger copy (doubling, at most maxRows rows). */
export function ensureRows<A extends Rows>(buf: A, rowLen: number, rows: number, maxRows: number): A {
  if (buf.length >= rows * rowLen) return buf;
  let cap = Math.max(16, buf.length / rowLen);
  while (cap < rows) cap *= 2;
  cap = Math.max(rows, Math.min(cap, maxRows));
  const out = new (buf.constructor as new (n: number) => A)(cap * rowLen);
  out.set(buf);
  return out;
}

/** A scratch of at least `size` (at most `max`) values: buf itself, or a new zeroed one (old contents are not kept). */
function scratchOf<A extends Rows>(buf: A, size: number, max = Infinity): A {
  if (buf.length >= size) return buf;
  return new (buf.constructor as new (n: number) => A)(Math.max(size, Math.min(2 * buf.length, max)));
}

/** A copy of the first `rows` rows of buf, sized exactly (storage given back after an overflow). */
export function fitRows<A extends Rows>(buf: A, rowLen: number, rows: number): A {
  if (buf.length === rows * rowLen) return buf;
  const out = new (buf.constructor as new (n: number) => A)(rows * rowLen);
  out.set(buf.subarray(0, Math.min(buf.length, rows * rowLen)));
  return out;
}

/**
 * Removes rows drop[0..count) (ascending) from columns [col, col+width) of buf[n, rowLen],
 * moving the later rows of those columns up so that the kept rows stay in order. Each run of
 * kept rows between two victims moves as a block (one memmove per row, or per run when the
 * columns are whole rows).
 */
export function dropRows(buf: Rows, rowLen: number, col: number, width: number, n: number, drop: Int32Array, count: number): void {
  for (let d = 0; d < count; d++) {
    const start = drop[d] + 1;
    const end = d + 1 < count ? drop[d + 1] : n;
    const up = (d + 1) * rowLen; // kept rows after the d-th victim move up by d+1 rows
    if (width === rowLen) {
      buf.copyWithin(start * rowLen - up, start * rowLen, end * rowLen);
    } else {
      for (let r = start; r < end; r++) {
        const src = r * rowLen + col;
        buf.copyWithin(src - up, src, src + width);
      }
    }
  }
}

/**
 * dropRows for every head at once on buf[n, heads*headDim] (keys, values), where head h drops
 * rows drop[h*count .. (h+1)*count) (ascending): one pass over the rows, each head's slice
 * moving up by the number of that head's victims above it. Runs of rows that every head moves
 * by the same amount move as one block.
 */
export function dropRowsPerHead(buf: Float32Array, n: number, heads: number, headDim: number, drop: Int32Array, count: number): void {
  const rowLen = heads * headDim;
  const passed = new Int32Array(heads); // victims of head h at or above the current row
  let first = n;
  for (let h = 0; h < heads; h++) first = Math.min(first, drop[h * count]);
  let runStart = -1; // rows [runStart, r) move up by runShift whole rows
  let runShift = 0;
  const flush = (end: number) => {
    if (runStart >= 0) buf.copyWithin((runStart - runShift) * rowLen, runStart * rowLen, end * rowLen);
    runStart = -1;
  };
  for (let r = first; r < n; r++) {
    let victimHere = false;
    let uniform = true;
    for (let h = 0; h < heads; h++) {
      if (passed[h] < count && drop[h * count + passed[h]] === r) victimHere = true;
      if (passed[h] !== passed[0]) uniform = false;
    }
    if (uniform && !victimHere) {
      if (runStart < 0 || runShift !== passed[0]) {
        flush(r);
        runStart = r;
        runShift = passed[0];
      }
      continue;
    }
    flush(r);
    for (let h = 0; h < heads; h++) {
      const k = passed[h];
      if (k < count && drop[h * count + k] === r) {
        passed[h] = k + 1;
        continue;
      }
      if (k === 0) continue;
      const src = r * rowLen + h * headDim;
      buf.copyWithin(src - k * rowLen, src, src + headDim);
    }
  }
  flush(n);
}

/**
 * Writes into out[0..count) the rows j in [from, to) with the lowest score[j*stride + col],
 * the older row first on ties; returns them in ascending order.
 */
export function lowestRows(score: Float32Array, stride: number, col: number, from: number, to: number, count: number, out: Int32Array): void {
  if (count > to - from) throw new RangeError(`lowestRows: asked for ${count} rows among ${to - from}`);
  if (count === 1) {
    let best = from;
    for (let j = from + 1; j < to; j++) if (score[j * stride + col] < score[best * stride + col]) best = j;
    out[0] = best;
    return;
  }
  const idx = Array.from({ length: to - from }, (_, i) => from + i);
  idx.sort((a, b) => score[a * stride + col] - score[b * stride + col] || a - b);
  const picked = idx.slice(0, count).sort((a, b) => a - b);
  for (let i = 0; i < count; i++) out[i] = picked[i];
}

/** cos and sin of p * invFreq[i] for slots p in [0, rows): [rows, headDim/2] each, in float64. */
export interface RopeTable {
  rows: number;
  cos: Float64Array;
  sin: Float64Array;
}

export function ropeTable(invFreq: Float32Array, rows: number): RopeTable {
  const half = invFreq.length;
  const cos = new Float64Array(rows * half);
  const sin = new Float64Array(rows * half);
  for (let p = 0; p < rows; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i];
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { rows, cos, sin };
}

/**
 * dst rows [0, rows) = src rows rotated to positions first, first+1, ... (rotate_half RoPE, as
 * Backend.rope), both [rows, heads*headDim]; dst may alias src; only heads [headFrom, headTo). Slot-mode keys are re-rotated
 * after every eviction, so this uses a table instead of a sine per element; the arithmetic is
 * the reference kernel's (float64 angles and products), so the results are bit-identical to it.
 */
export function rotateRows(dst: Float32Array, src: Float32Array, rows: number, heads: number, headDim: number, first: number, table: RopeTable, headFrom = 0, headTo = heads): void {
  const half = headDim / 2;
  if (first < 0 || first + rows > table.rows) throw new RangeError(`rotateRows: positions [${first}, ${first + rows}) outside the table's [0, ${table.rows})`);
  const { cos, sin } = table;
  const width = heads * headDim;
  for (let r = 0; r < rows; r++) {
    const t = (first + r) * half;
    for (let h = headFrom; h < headTo; h++) {
      const o = r * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const c = cos[t + i];
        const s = sin[t + i];
        const x0 = src[o + i];
        const x1 = src[o + i + half];
        dst[o + i] = x0 * c - x1 * s;
        dst[o + i + half] = x1 * c + x0 * s;
      }
    }
  }
}

function checkInt(policy: string, name: string, v: number, min: number, max: number, why: string): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${policy}: ${name} must be an integer in [${min}, ${max}]${why ? ` (${why})` : ''}, got ${v}`);
  }
}

export abstract class EvictionCache implements KVCache {
  abstract readonly policy: string;
  readonly shape: CacheShape;
  readonly budget: number;
  readonly sinks: number;
  readonly positions: PositionMode;
  private seenCount = 0;
  private rowCount = 0;
  protected readonly layers: EvictLayer[] = [];
  protected readonly nKVHeads: number;
  protected readonly kvDim: number;
  protected readonly backend: Backend;
  /** T of the step in progress; 0 between steps. */
  protected stepT = 0;
  private stepPos = new Int32Array(0);
  /** Zeroed [nKVHeads, n] scratch handed to the attention kernel (shared by the layers, used one at a time). */
  private scratch = new Float32Array(0);
  /** cos/sin of the slot positions (slot mode), grown as rows are. */
  private table: RopeTable = { rows: 0, cos: new Float64Array(0), sin: new Float64Array(0) };
  private victimsBuf = new Int32Array(0);

  /** `minBudget` is the smallest budget the policy accepts (above the sinks and any protected rows). */
  protected constructor(policy: string, shape: CacheShape, opts: EvictionOptions, withScores: boolean, minBudget = 0) {
    const sinks = opts.sinks ?? 4;
    const positions = opts.positions ?? 'slot';
    checkInt(policy, 'sinks', sinks, 0, 1 << 30, '');
    checkInt(policy, 'budget', opts.budget, Math.max(sinks + 1, minBudget), 1 << 30, 'more than the sinks and protected rows');
    if (!POSITION_MODES.includes(positions)) throw new RangeError(`${policy}: positions must be slot or original, got ${String(positions)}`);
    this.shape = shape;
    this.budget = opts.budget;
    this.sinks = sinks;
    this.positions = positions;
    this.nKVHeads = shape.nKVHeads;
    this.kvDim = shape.nKVHeads * shape.headDim;
    this.backend = opts.backend ?? getBackend();
    for (let l = 0; l < shape.nLayers; l++) {
      this.layers.push({
        kRaw: positions === 'slot' ? new Float32Array(0) : null,
        kRot: new Float32Array(0),
        v: new Float32Array(0),
        origin: new Int32Array(0),
        score: withScores ? new Float32Array(0) : null,
      });
    }
  }

  /** Tokens seen so far (the stream's length). */
  get seen(): number {
    return this.seenCount;
  }

  /** Rows held per layer and KV head. */
  get length(): number {
    return this.rowCount;
  }

  // ---- what a policy says -------------------------------------------------------------------

  /** scoresFromQuery for a step of T tokens, or null when this step needs no attention scores. */
  protected abstract scoresFrom(T: number): number | null;
  /** Folds one layer's attention scores ([nKVHeads, n], n rows incl. the step's T new ones) into layer.score. */
  protected observe(_layer: EvictLayer, _scores: Float32Array, _n: number, _T: number): void {}
  /** Rows of KV head `head` to drop: `count` distinct rows in [sinks, n), ascending, into out. */
  protected abstract victims(layer: EvictLayer, head: number, n: number, count: number, out: Int32Array): void;
  /** Most rows a layer may ever hold (buffer growth stops there). */
  protected maxRows(): number {
    return this.budget;
  }
  /** Policy parameters beyond budget, sinks and positions (saved with the session). */
  protected extraParams(): Record<string, number> {
    return {};
  }

  // ---- the KVCache protocol -------------------------------------------------------------------

  room(): number {
    return this.length < this.budget ? this.budget - this.length : 1;
  }

  begin(T: number): Int32Array {
    if (this.stepT !== 0) throw new Error(`${this.policy}: begin() called twice without end()`);
    const room = this.room();
    if (!Number.isInteger(T) || T < 1 || T > room) throw new RangeError(`${this.policy}: begin T must be an integer in [1, room() = ${room}], got ${T}`);
    const over = this.evictBefore(T);
    if (over > 0) this.evict(over);
    this.stepT = T;
    this.stepPos = new Int32Array(T);
    const first = this.positions === 'slot' ? this.length : this.seen;
    for (let i = 0; i < T; i++) this.stepPos[i] = first + i;
    return this.stepPos.slice();
  }

  append(layer: number, k: Float32Array, v: Float32Array): LayerView {
    const T = this.stepT;
    if (T === 0) throw new Error(`${this.policy}: append() outside a step (call begin() first)`);
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers.length) throw new RangeError(`${this.policy}: layer must be in [0, ${this.layers.length - 1}], got ${layer}`);
    const D = this.kvDim;
    const H = this.nKVHeads;
    if (k.length < T * D) throw new RangeError(`${this.policy}: append k: expected [${T}, ${D}], got ${k.length} values`);
    if (v.length < T * D) throw new RangeError(`${this.policy}: append v: expected [${T}, ${D}], got ${v.length} values`);
    const L = this.layers[layer];
    const n0 = this.length;
    const n = n0 + T;
    this.grow(L, n);
    L.v.set(v.subarray(0, T * D), n0 * D);
    if (L.kRaw) {
      L.kRaw.set(k.subarray(0, T * D), n0 * D);
      this.rotateSlots(L, n0, n);
    } else {
      L.kRot.set(k.subarray(0, T * D), n0 * D);
      this.backend.rope(L.kRot.subarray(n0 * D, n * D), T, H, this.shape.headDim, this.stepPos, this.shape.invFreq, false);
    }
    for (let i = 0; i < T; i++) for (let h = 0; h < H; h++) L.origin[(n0 + i) * H + h] = this.seen + i;
    if (L.score) L.score.fill(0, n0 * H, n * H);
    const from = this.scoresFrom(T);
    let scores: Float32Array | null = null;
    if (from !== null) {
      this.scratch = scratchOf(this.scratch, H * n, H * this.maxRows());
      scores = this.scratch.subarray(0, H * n);
      scores.fill(0);
    }
    return { k: L.kRot.subarray(0, n * D), v: L.v.subarray(0, n * D), n, scores, scoresFromQuery: from ?? 0 };
  }

  attended(layer: number, view: LayerView): void {
    if (this.stepT === 0) throw new Error(`${this.policy}: attended() outside a step`);
    if (view.scores) this.observe(this.layers[layer], view.scores, view.n, this.stepT);
  }

  end(): void {
    if (this.stepT === 0) throw new Error(`${this.policy}: end() without begin()`);
    this.seenCount += this.stepT;
    this.rowCount += this.stepT;
    this.stepT = 0;
    this.afterStep();
  }

  /** Rows per KV head to evict before a step of T tokens is stored. */
  protected evictBefore(T: number): number {
    return Math.max(0, this.length + T - this.budget);
  }

  /** Hook run after every step (SnapKV compresses an overflowing prompt here). */
  protected afterStep(): void {}

  bytes(): BytesHeld {
    const perLayer = this.layers.map((L) => L.kRot.byteLength + L.v.byteLength + L.origin.byteLength + (L.kRaw?.byteLength ?? 0) + (L.score?.byteLength ?? 0));
    const shared = this.scratch.byteLength + this.table.cos.byteLength + this.table.sin.byteLength + this.victimsBuf.byteLength;
    return { perLayer, total: perLayer.reduce((a, b) => a + b, 0) + shared };
  }

  // ---- eviction ---------------------------------------------------------------------------------

  /** Drops `count` rows per KV head in every layer (policy's victims), keeps order, re-rotates moved rows. */
  protected evict(count: number): void {
    const n = this.length;
    const H = this.nKVHeads;
    const hd = this.shape.headDim;
    const D = this.kvDim;
    if (count > n - this.sinks) throw new Error(`${this.policy}: cannot evict ${count} of ${n} rows with ${this.sinks} sinks`);
    const drop = (this.victimsBuf = scratchOf(this.victimsBuf, H * count)); // [H, count]
    for (const L of this.layers) {
      let sameForAll = true;
      for (let h = 0; h < H; h++) {
        const dh = drop.subarray(h * count, (h + 1) * count);
        this.victims(L, h, n, count, dh);
        for (let i = 0; i < count; i++) {
          if (dh[i] < this.sinks || dh[i] >= n || (i > 0 && dh[i] <= dh[i - 1])) {
            throw new Error(`${this.policy}: internal error, bad victim row ${dh[i]}`);
          }
          if (dh[i] !== drop[i]) sameForAll = false;
        }
      }
      // slot mode re-rotates every moved row from its pre-RoPE copy, so kRot need not move
      const moved = [L.kRaw ?? L.kRot, L.v];
      if (sameForAll) {
        for (const buf of moved) dropRows(buf, D, 0, D, n, drop, count);
        dropRows(L.origin, H, 0, H, n, drop, count);
        if (L.score) dropRows(L.score, H, 0, H, n, drop, count);
      } else {
        for (const buf of moved) dropRowsPerHead(buf, n, H, hd, drop, count);
        for (let h = 0; h < H; h++) {
          const dh = drop.subarray(h * count, (h + 1) * count);
          dropRows(L.origin, H, h, 1, n, dh, count);
          if (L.score) dropRows(L.score, H, h, 1, n, dh, count);
        }
      }
      // slot positions: each head's rows from its first victim on moved up; rotate them again
      if (L.kRaw && sameForAll) this.rotateSlots(L, drop[0], n - count);
      else if (L.kRaw) for (let h = 0; h < H; h++) this.rotateSlots(L, drop[h * count], n - count, h);
    }
    this.rowCount = n - count;
  }

  /** Slot positions: rows [from, to) of kRot = their pre-RoPE copy rotated to positions from..to-1. */
  private rotateSlots(L: EvictLayer, from: number, to: number, head?: number): void {
    if (from >= to || !L.kRaw) return;
    if (this.table.rows < to) this.table = ropeTable(this.shape.invFreq, Math.max(to, Math.min(2 * this.table.rows, this.maxRows())));
    const D = this.kvDim;
    const [h0, h1] = head === undefined ? [0, this.nKVHeads] : [head, head + 1];
    rotateRows(L.kRot.subarray(from * D, to * D), L.kRaw.subarray(from * D, to * D), to - from, this.nKVHeads, this.shape.headDim, from, this.table, h0, h1);
  }

  private grow(L: EvictLayer, rows: number): void {
    const max = this.maxRows();
    if (rows > max) throw new Error(`${this.policy}: ${rows} rows exceed the most this cache holds (${max})`);
    L.kRot = ensureRows(L.kRot, this.kvDim, rows, max);
    if (L.kRaw) L.kRaw = ensureRows(L.kRaw, this.kvDim, rows, max);
    L.v = ensureRows(L.v, this.kvDim, rows, max);
    L.origin = ensureRows(L.origin, this.nKVHeads, rows, max);
    if (L.score) L.score = ensureRows(L.score, this.nKVHeads, rows, max);
  }

  /** Reallocates every layer's buffers to exactly `rows` rows (gives memory back after an overflow). */
  protected fitStorage(rows: number): void {
    for (const L of this.layers) {
      L.kRot = fitRows(L.kRot, this.kvDim, rows);
      if (L.kRaw) L.kRaw = fitRows(L.kRaw, this.kvDim, rows);
      L.v = fitRows(L.v, this.kvDim, rows);
      L.origin = fitRows(L.origin, this.nKVHeads, rows);
      if (L.score) L.score = fitRows(L.score, this.nKVHeads, rows);
    }
    this.scratch = new Float32Array(0);
    if (this.table.rows > rows) this.table = ropeTable(this.shape.invFreq, rows);
  }

  // ---- inspection (tests, tools) ------------------------------------------------------------------

  /** Stream index of the token in each held row of (layer, head), oldest first. */
  heldTokens(layer: number, head: number): Int32Array {
    const L = this.layers[layer];
    const out = new Int32Array(this.length);
    for (let j = 0; j < this.length; j++) out[j] = L.origin[j * this.nKVHeads + head];
    return out;
  }

  /** Position each held row of (layer, head) is attended at. */
  heldPositions(layer: number, head: number): Int32Array {
    if (this.positions === 'original') return this.heldTokens(layer, head);
    return Int32Array.from({ length: this.length }, (_, j) => j);
  }

  /** Pre-RoPE keys [length, kvDim] of a layer (slot positions only; null otherwise). */
  rawKeys(layer: number): Float32Array | null {
    return this.layers[layer].kRaw?.subarray(0, this.length * this.kvDim) ?? null;
  }

  /** Keys rotated to their positions [length, kvDim] (what attention reads). */
  rotatedKeys(layer: number): Float32Array {
    return this.layers[layer].kRot.subarray(0, this.length * this.kvDim);
  }

  /** Values [length, kvDim] of a layer. */
  values(layer: number): Float32Array {
    return this.layers[layer].v.subarray(0, this.length * this.kvDim);
  }

  // ---- sessions -----------------------------------------------------------------------------------

  save(): Uint8Array {
    if (this.stepT !== 0) throw new Error(`${this.policy}: save() during a step`);
    const D = this.kvDim;
    const H = this.nKVHeads;
    const n = this.length;
    const arrays: CacheState['arrays'] = {};
    this.layers.forEach((L, l) => {
      if (L.kRaw) arrays[`${l}.kRaw`] = L.kRaw.slice(0, n * D);
      arrays[`${l}.kRot`] = L.kRot.slice(0, n * D);
      arrays[`${l}.v`] = L.v.slice(0, n * D);
      arrays[`${l}.origin`] = L.origin.slice(0, n * H);
      if (L.score) arrays[`${l}.score`] = L.score.slice(0, n * H);
    });
    return encodeState({
      policy: this.policy,
      params: { budget: this.budget, sinks: this.sinks, positions: this.positions, ...this.extraParams() },
      counters: { seen: this.seen, length: this.length },
      shape: stateShape(this.shape),
      arrays,
    });
  }

  /** Reads the options every eviction policy has from a saved state. */
  static baseOptions(state: CacheState, source: string): EvictionOptions {
    return {
      budget: stateNumber(state, 'params', 'budget', source, 1),
      sinks: stateNumber(state, 'params', 'sinks', source, 0),
      positions: stateChoice(state, 'positions', POSITION_MODES, source),
    };
  }

  /** Fills a freshly built cache with the rows and counters of a saved state (strictly checked). */
  protected loadState(state: CacheState, source: string): this {
    const seen = stateNumber(state, 'counters', 'seen', source, 0);
    const n = stateNumber(state, 'counters', 'length', source, 0, Math.min(seen, this.maxRows()));
    const D = this.kvDim;
    const H = this.nKVHeads;
    this.fitStorage(n); // exactly the rows held (a full cache then holds what the saved one did)
    this.layers.forEach((L, l) => {
      L.kRot.set(stateF32(state, `${l}.kRot`, n * D, source));
      if (L.kRaw) L.kRaw.set(stateF32(state, `${l}.kRaw`, n * D, source));
      L.v.set(stateF32(state, `${l}.v`, n * D, source));
      const origin = stateI32(state, `${l}.origin`, n * H, source);
      for (let i = 0; i < origin.length; i++) {
        if (origin[i] < 0 || origin[i] >= seen) throw new Error(`${source}: array "${l}.origin" holds ${origin[i]}, outside [0, ${seen - 1}]`);
      }
      L.origin.set(origin);
      if (L.score) L.score.set(stateF32(state, `${l}.score`, n * H, source));
    });
    this.seenCount = seen;
    this.rowCount = n;
    return this;
  }
}
