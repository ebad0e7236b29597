// Atomic file writes: write everything to a temporary file in the same folder, flush it, then
// rename it over the target. A reader never sees a half-written file, and a crash leaves the
// old file (or none) plus at most a stray temporary.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

let counter = 0;

/** A temporary name next to `file` (same folder, so the final rename stays on one filesystem). */
export function tempPathFor(file: string): string {
  const dir = path.dirname(file);
  const base = path.basename(file);
  return path.join(dir, `.${base}.${process.pid}.${Date.now()}.${counter++}.tmp`);
}

/**
 * Writes `file` atomically by calling `write(handle)` on a temporary file, fsync-ing it and
 * renaming it into place. The temporary is removed when anything fails.
 */
export async function writeFileAtomicWith(file: string, write: (fh: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPathFor(file);
  const fh = await fsp.open(tmp, 'wx');
  try {
    await write(fh);
    await fh.sync();
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/** Writes `data` (bytes or text, UTF-8) to `file` atomically. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  await writeFileAtomicWith(file, async (fh) => {
    await fh.writeFile(data);
  });
}

/** Synchronous variant of writeFileAtomic, for exit paths and small files. */
export function writeFileAtomicSync(file: string, data: Uint8Array | string): void {
  const tmp = tempPathFor(file);
  try {
    const fd = fs.openSync(tmp, 'wx');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** JSON with two-space indentation and a final newline, written atomically. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}
