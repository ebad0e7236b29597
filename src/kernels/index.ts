// Backend selection: the native addon when it was built and FREQKV_BACKEND is not
// "reference"; otherwise the TypeScript reference, announced once on stderr.
import type { Backend } from './backend.js';
import { referenceBackend } from './reference.js';
import { loadNativeBackend } from './native.js';

export type { Backend, AttentionArgs, MatmulOptions } from './backend.js';

let current: Backend | null = null;

export function getBackend(): Backend {
  if (current) return current;
  const wanted = process.env.FREQKV_BACKEND ?? 'auto';
  if (wanted !== 'auto' && wanted !== 'native' && wanted !== 'reference') {
    throw new Error(`FREQKV_BACKEND: expected auto, native or reference, got "${wanted}"`);
  }
  if (wanted !== 'reference') {
    const native = loadNativeBackend();
    if (native) return (current = native);
    if (wanted === 'native') throw new Error('FREQKV_BACKEND=native but the native addon is not built (run `npm ci` or `npm rebuild`)');
    process.stderr.write('freqkv: native kernels not available, using the TypeScript reference kernels (slow)\n');
  }
  return (current = referenceBackend);
}

/** Replace the process-wide backend (tests and benchmarks compare backends side by side). */
export function setBackend(b: Backend): void {
  current = b;
}
