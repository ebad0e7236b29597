import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, UsageError } from '../src/cli/args.js';

const specs = {
  'cache-size': { kind: 'int' as const, min: 8, default: 256 },
  retain: { kind: 'number' as const, min: 0, max: 1 },
  policy: { kind: 'string' as const, choices: ['full', 'freqkv'] },
  json: { kind: 'bool' as const },
  lengths: { kind: 'list' as const },
};

test('parses typed flags, defaults and positionals', () => {
  const p = parseArgs(['--retain', '0.5', 'hello', '--policy=freqkv', '--json', '--lengths', '256,512'], specs, 'generate');
  assert.deepEqual(p.flags, { 'cache-size': 256, retain: 0.5, policy: 'freqkv', json: true, lengths: ['256', '512'] });
  assert.deepEqual(p.positional, ['hello']);
});

test('rejects bad values with a message naming the flag', () => {
  assert.throws(() => parseArgs(['--cache-size', '3'], specs, 'generate'), (e: Error) => e instanceof UsageError && /--cache-size/.test(e.message));
  assert.throws(() => parseArgs(['--cache-size', '12.5'], specs, 'generate'), /--cache-size expects a whole number/);
  assert.throws(() => parseArgs(['--retain', 'x'], specs, 'generate'), /--retain expects a number in \[0, 1\]/);
  assert.throws(() => parseArgs(['--policy', 'lru'], specs, 'generate'), /--policy expects one of full, freqkv/);
  assert.throws(() => parseArgs(['--bogus'], specs, 'generate'), /unknown flag --bogus/);
  assert.throws(() => parseArgs(['--retain'], specs, 'generate'), /--retain expects a number/);
});
