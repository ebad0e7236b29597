#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`freqkv: ${err && err.message ? err.message : err}\n`);
    if (process.env.FREQKV_DEBUG) console.error(err);
    process.exit(1);
  },
);
