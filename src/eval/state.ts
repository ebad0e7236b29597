// Resumable evaluation state: one JSON file holding every finished unit of work (a window's NLL,
// a trial's answer) under a string key, plus a fingerprint of what is being evaluated (model,
// data, protocol, policies). --resume continues only when the fingerprint matches, so a state
// file is never mixed into a different run. Writes are atomic (temp + rename) and throttled.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { writeFileAtomicSync } from '../util/atomic.js';
import type { Model } from '../model/types.js';

const FORMAT = 'freqkv-eval-state';
const VERSION = 1;

export class EvalState<V = unknown> {
  private readonly done = new Map<string, V>();
  private dirty = false;
  private lastWrite = 0;

  private constructor(
    readonly file: string,
    readonly kind: string,
    readonly fingerprint: Record<string, unknown>,
    /** Least milliseconds between two writes of set(); flush() always writes. */
    readonly minIntervalMs: number,
  ) {}

  /**
   * Opens `file` for a run of `kind`. Without resume an existing file is an error (it holds
   * another run's work); with resume it must carry the same kind and fingerprint.
   */
  static open<V>(file: string, kind: string, fingerprint: Record<string, unknown>, resume: boolean, minIntervalMs = 2000): EvalState<V> {
    const st = new EvalState<V>(file, kind, fingerprint, minIntervalMs);
    if (!fs.existsSync(file)) return st;
    if (!resume) {
      throw new Error(`${file} already holds an evaluation run; pass --resume to continue it, or choose another --out`);
    }
    let json: { format?: unknown; version?: unknown; kind?: unknown; fingerprint?: Record<string, unknown>; done?: Record<string, V> };
    try {
      json = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`${file}: not valid JSON (${(err as Error).message}); remove it to start over`);
    }
    if (json.format !== FORMAT || json.version !== VERSION) throw new Error(`${file}: not a ${FORMAT} version ${VERSION} file`);
    if (json.kind !== kind) throw new Error(`${file}: holds a "${String(json.kind)}" run, cannot resume it as "${kind}"`);
    const differ = fingerprintDiff(json.fingerprint ?? {}, fingerprint);
    if (differ.length > 0) {
      throw new Error(`${file}: cannot resume, the run differs in ${differ.join(', ')}; use the same flags, model and data, or another --out`);
    }
    for (const [k, v] of Object.entries(json.done ?? {})) st.done.set(k, v);
    return st;
  }

  get size(): number {
    return this.done.size;
  }

  get(key: string): V | undefined {
    return this.done.get(key);
  }

  /** Records a finished unit; written to disk when minIntervalMs has passed since the last write. */
  set(key: string, value: V): void {
    this.done.set(key, value);
    this.dirty = true;
    if (Date.now() - this.lastWrite >= this.minIntervalMs) this.flush();
  }

  flush(): void {
    if (!this.dirty && fs.existsSync(this.file)) return;
    const json = { format: FORMAT, version: VERSION, kind: this.kind, fingerprint: this.fingerprint, done: Object.fromEntries(this.done) };
    writeFileAtomicSync(this.file, JSON.stringify(json) + '\n');
    this.dirty = false;
    this.lastWrite = Date.now();
  }
}

/** Top-level fields whose JSON differs. */
export function fingerprintDiff(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

/** sha256 of bytes, hex, first 16 characters (enough to tell runs apart). */
export function shortHash(...parts: (Uint8Array | string)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A model fingerprint: its config plus, for every weight tensor, its length and up to 4096
 * values spread over it. Cheap for big models; any retraining changes it.
 */
export function modelFingerprint(model: Model): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(model.config));
  const w = model.weights;
  const tensors: Float32Array[] = [w.embed, w.norm, w.lmHead];
  for (const L of w.layers) {
    for (const t of [L.attnNorm, L.wq, L.wk, L.wv, L.wo, L.bq, L.bk, L.bv, L.mlpNorm, L.wGate, L.wUp, L.wDown]) if (t) tensors.push(t);
  }
  const sample = new Float32Array(4096);
  for (const t of tensors) {
    h.update(String(t.length));
    if (t.length <= sample.length) {
      h.update(bytesOf(t));
      continue;
    }
    for (let i = 0; i < sample.length; i++) sample[i] = t[Math.floor((i * t.length) / sample.length)];
    h.update(bytesOf(sample));
  }
  return h.digest('hex').slice(0, 16);
}

/** A fingerprint of token data: every token and the document names and lengths. */
export function tokensFingerprint(tokens: ArrayBufferView, docs: readonly { name: string; length: number }[]): string {
  return shortHash(bytesOf(tokens), JSON.stringify(docs.map((d) => [d.name, d.length])));
}
