// Set-up shared by the training tests (grad, train, freqkv-train): seeded random data, the
// finite-difference gradient check, token windows and batchers for tiny models, training-loop
// options, and the CLI run in process with its output captured.
// Not a test file: `npm test` runs dist/test/*.test.js only.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomArray, rng } from '../src/model/random.js';
import type { LlamaConfig } from '../src/model/types.js';
import type { AttentionDims } from '../src/train/attention.js';
import type { Batcher } from '../src/train/batcher.js';
import type { LoopIO, LoopOptions } from '../src/train/loop.js';
import { main } from '../src/cli/main.js';

/** rnd(n, scale): n values uniform in [-scale, scale), one stream per seed (each call continues it). */
export function randomSource(seed: number): (n: number, scale?: number) => Float32Array {
  const next = rng(seed);
  return (n, scale = 1) => randomArray(n, scale, next);
}

/** Σ a·b in float64. */
export function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export interface GradTolerance {
  /** Finite-difference step (default 1e-2). */
  eps?: number;
  /** Relative to |g[j]| (default 1e-3). */
  rtol?: number;
  /** Relative to max |g| (default 2e-4). */
  atol?: number;
}

/**
 * Central differences of f on every element of x, against the analytic gradient g. The step is
 * taken in float32, so the divisor is the difference actually stored. Tolerance:
 * |fd − g| <= atol·max|g| + rtol·|g|. Fails if g is all zero.
 */
export function checkGrad(name: string, x: Float32Array, g: Float32Array, f: () => number, tol: GradTolerance = {}): void {
  const { eps = 1e-2, rtol = 1e-3, atol = 2e-4 } = tol;
  let scale = 0;
  for (let i = 0; i < g.length; i++) scale = Math.max(scale, Math.abs(g[i]));
  assert.ok(scale > 0, `${name}: analytic gradient is all zero`);
  for (let j = 0; j < x.length; j++) {
    const x0 = x[j];
    x[j] = x0 + eps;
    const xp = x[j];
    const fp = f();
    x[j] = x0 - eps;
    const xm = x[j];
    const fm = f();
    x[j] = x0;
    const fd = (fp - fm) / (xp - xm);
    const err = Math.abs(fd - g[j]);
    assert.ok(err <= atol * scale + rtol * Math.abs(g[j]), `${name}[${j}]: finite difference ${fd}, analytic ${g[j]} (max |g| ${scale})`);
  }
}

/** The attention shape of one sequence through one layer. */
export function oneLayerDims(T: number, nHeads: number, nKVHeads: number, headDim = 4): AttentionDims {
  return { nLayers: 1, batch: 1, seqLen: T, nHeads, nKVHeads, headDim };
}

/** B training windows of T + 1 uniformly random tokens of c's vocabulary, from a seed. */
export function randomWindows(c: LlamaConfig, B: number, T: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: B * (T + 1) }, () => Math.floor(r() * c.vocabSize));
}

/** A learnable token stream: the cycle 3 + (7i mod 23), with a 10% chance per token of a random token in [3, 63). */
export function learnableTokens(r: () => number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (r() < 0.1 ? 3 + Math.floor(r() * 60) : 3 + ((i * 7) % 23)));
}

/** Always the same batch: for memorisation. */
export class FixedBatcher implements Batcher {
  constructor(readonly batch: number, readonly seqLen: number, private readonly windows: Int32Array) {}
  fill(out: Int32Array): void {
    out.set(this.windows);
  }
}

/** Loop IO that prints nothing, writes nothing and leaves SIGINT alone. */
export const quiet: LoopIO = { progress: () => {}, handleSignals: false, checkpointFile: null, logFile: null, checkpointMeta: () => ({ config: {}, run: {} }) };

/** `steps` steps at a constant lr 1e-2 (2 warm-up), clip 1, no accumulation, evaluation or periodic saves. */
export function loopOpts(steps: number, over: Partial<LoopOptions> = {}): LoopOptions {
  return {
    steps, accum: 1, schedule: { kind: 'constant', lr: 1e-2, warmup: 2, steps }, clip: 1, evalEvery: 0, evalWindows: null,
    saveEvery: 0, logEvery: 1000, ...over,
  };
}

/** A fresh folder under the system temp dir. */
export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The CLI's main(args) in this process, with stdout and stderr captured. */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [], err: string[] = [];
  const ow = process.stdout.write, ew = process.stderr.write;
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}
