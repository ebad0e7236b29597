// Loads the C++ addon (build/Release/freqkv_native.node) and wraps it as a Backend.
// Placeholder until the addon lands: reports "not built".
import type { Backend } from './backend.js';

export function loadNativeBackend(): Backend | null {
  return null;
}
