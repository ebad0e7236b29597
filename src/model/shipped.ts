// Where the model the package ships lives: models/freqkv-tiny/ at the package root, in Hugging
// Face layout. `freqkv generate` without --model runs it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SHIPPED_MODEL = 'freqkv-tiny';

/** The package root: the nearest folder above this file whose package.json is named "freqkv". */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'freqkv') return dir;
      } catch {
        // an unreadable package.json above us is not ours; keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the freqkv package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** models/freqkv-tiny under the package root (it may not exist). */
export function shippedModelDir(): string {
  return path.join(packageRoot(), 'models', SHIPPED_MODEL);
}

/** The shipped model's folder when it is there (has a config.json), otherwise null. */
export function findShippedModel(): string | null {
  const dir = shippedModelDir();
  return fs.existsSync(path.join(dir, 'config.json')) ? dir : null;
}
