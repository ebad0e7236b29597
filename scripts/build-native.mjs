// Builds the C++ kernel addon with node-gyp at `npm ci`. Never downloads Node headers: the
// headers are taken from the installed Node (`--nodedir` derived from process.execPath).
// A failed build is not fatal: the library then runs on the TypeScript reference kernels and
// says so once on stderr at run time.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const prefix = dirname(dirname(process.execPath));
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
const candidates = [
  process.env.npm_config_node_gyp,
  join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter((p) => p && existsSync(p));

if (process.env.FREQKV_NO_NATIVE === '1') {
  console.error('freqkv: FREQKV_NO_NATIVE=1, skipping the native kernel build');
  process.exit(0);
}
if (candidates.length === 0 || !nodedir) {
  console.error(`freqkv: cannot build native kernels (node-gyp ${candidates.length ? 'found' : 'not found'}, ` +
    `Node headers ${nodedir ? 'found' : `not found under ${prefix}/include/node`}); using TypeScript kernels`);
  process.exit(0);
}
const args = [candidates[0], 'rebuild', `--nodedir=${nodedir}`, '--release'];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('freqkv: native kernel build failed; the TypeScript reference kernels will be used');
}
process.exit(0);
