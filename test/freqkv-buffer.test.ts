// FreqKVBuffer: the FreqKV cache rule (shared/spec/FREQKV.md section 2) on streams of rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FreqKVBuffer } from '../src/cache/freqkv-buffer.js';
import { freqCompress } from '../src/dsp/freqkv-op.js';
import { randomArray, rng } from '../src/model/random.js';

/** Row t of a deterministic random stream of `channels` values. */
function stream(total: number, channels: number, seed: number): Float32Array {
  return randomArray(total * channels, 1, rng(seed));
}

function rowsOf(s: Float32Array, from: number, to: number, C: number): Float32Array {
  return s.slice(from * C, to * C);
}

test('lengths and counts over a long stream: never above capacity, compressions when full', () => {
  const N = 20, S = 3, C = 4;
  const b = new FreqKVBuffer({ capacity: N, sinks: S, retain: 0.5, channels: C });
  const L = Math.floor((N - S) * 0.5);
  assert.equal(b.blockSize, L);
  const bytes = b.bytes;
  assert.equal(bytes, N * C * 4);
  const s = stream(500, C, 1);
  let compressions = 0;
  let expectLen = 0;
  for (let t = 0; t < 500; t++) {
    if (expectLen === N) {
      compressions++;
      expectLen = S + L;
    }
    b.append(s.subarray(t * C, (t + 1) * C));
    expectLen++;
    assert.equal(b.length, expectLen, `length after row ${t}`);
    assert.ok(b.length <= N);
    assert.equal(b.compressions, compressions);
    assert.equal(b.seen, t + 1);
    assert.equal(b.sinkRows + b.blockRows + b.tailRows, b.length);
    assert.equal(b.bytes, bytes, 'never grows');
  }
  // First compression after N rows, then one every N - S - L rows.
  assert.equal(compressions, 1 + Math.floor((500 - N - 1) / (N - S - L)));
});

test('sinks stay bit-identical forever', () => {
  const N = 16, S = 4, C = 3;
  const b = new FreqKVBuffer({ capacity: N, sinks: S, retain: 0.25, channels: C });
  const s = stream(300, C, 2);
  for (let t = 0; t < 300; t++) {
    b.append(s.subarray(t * C, (t + 1) * C));
    const snap = b.snapshot();
    assert.deepEqual(snap.subarray(0, Math.min(t + 1, S) * C), s.subarray(0, Math.min(t + 1, S) * C));
  }
  assert.ok(b.compressions > 10);
});

test('first compression = freqCompress(rows S..N-1); second = compress(concat(block, tail))', () => {
  const N = 24, S = 4, C = 5, gamma = 0.5;
  const L = Math.floor((N - S) * gamma);
  const s = stream(3 * N, C, 3);
  const b = new FreqKVBuffer({ capacity: N, sinks: S, retain: gamma, channels: C });
  for (let t = 0; t < N; t++) b.append(s.subarray(t * C, (t + 1) * C));
  assert.equal(b.compressions, 0);
  assert.deepEqual(b.snapshot(), rowsOf(s, 0, N, C));
  b.append(s.subarray(N * C, (N + 1) * C));
  assert.equal(b.compressions, 1);
  const block1 = freqCompress(rowsOf(s, S, N, C), N - S, C, L);
  const want1 = new Float32Array((S + L + 1) * C);
  want1.set(rowsOf(s, 0, S, C));
  want1.set(block1, S * C);
  want1.set(rowsOf(s, N, N + 1, C), (S + L) * C);
  assert.deepEqual(b.snapshot(), want1);
  assert.deepEqual([b.sinkRows, b.blockRows, b.tailRows], [S, L, 1]);
  // Fill up again: the tail holds rows N .. N + (N - S - L) - 1; one more row compresses.
  const tailEnd = N + (N - S - L);
  for (let t = N + 1; t < tailEnd; t++) b.append(s.subarray(t * C, (t + 1) * C));
  assert.equal(b.length, N);
  assert.equal(b.compressions, 1);
  b.append(s.subarray(tailEnd * C, (tailEnd + 1) * C));
  assert.equal(b.compressions, 2);
  const span = new Float32Array((N - S) * C);
  span.set(block1);
  span.set(rowsOf(s, N, tailEnd, C), L * C);
  const block2 = freqCompress(span, N - S, C, L);
  assert.deepEqual(b.view(S, S + L), block2);
  assert.deepEqual(b.view(S + L), rowsOf(s, tailEnd, tailEnd + 1, C));
});

test('appendRows of any chunking equals row-by-row appends, and room() marks compression points', () => {
  const N = 30, S = 2, C = 3;
  const opts = { capacity: N, sinks: S, retain: 0.4, channels: C };
  const s = stream(200, C, 4);
  const one = new FreqKVBuffer(opts);
  for (let t = 0; t < 200; t++) one.append(s.subarray(t * C, (t + 1) * C));
  const next = rng(5);
  const chunked = new FreqKVBuffer(opts);
  const stepped = new FreqKVBuffer(opts);
  for (let t = 0; t < 200;) {
    const T = Math.min(200 - t, 1 + Math.floor(next() * 40));
    chunked.appendRows(s.subarray(t * C, (t + T) * C));
    // A cache steps by at most room() rows so that no compression falls inside a step.
    const R = Math.min(T, stepped.room());
    const before = stepped.compressions;
    const wasFull = stepped.full;
    stepped.appendRows(s.subarray(t * C, (t + R) * C));
    assert.equal(stepped.compressions, before + (wasFull ? 1 : 0));
    t += T;
    if (R < T) {
      stepped.appendRows(s.subarray((t - T + R) * C, t * C));
    }
  }
  assert.deepEqual(chunked.snapshot(), one.snapshot());
  assert.deepEqual(stepped.snapshot(), one.snapshot());
  assert.equal(chunked.compressions, one.compressions);
  assert.equal(chunked.seen, 200);
});

test('a constant stream stays constant; the hook runs once per compression', () => {
  const C = 2;
  let calls = 0;
  const b = new FreqKVBuffer({ capacity: 40, sinks: 4, retain: 0.5, channels: C, onCompress: (buf) => { calls++; assert.equal(buf.length, 4 + 18); } });
  const row = new Float32Array([1.5, -0.25]);
  for (let t = 0; t < 1000; t++) b.append(row);
  assert.equal(calls, b.compressions);
  assert.ok(calls > 40);
  const snap = b.snapshot();
  for (let r = 0; r < b.length; r++) {
    assert.ok(Math.abs(snap[r * C] - 1.5) < 1e-5 && Math.abs(snap[r * C + 1] + 0.25) < 1e-5, `row ${r}: ${snap[r * C]}, ${snap[r * C + 1]}`);
  }
});

test('save/restore is bit-exact and continues identically', () => {
  const opts = { capacity: 17, sinks: 1, retain: 0.6, channels: 6 };
  const s = stream(150, 6, 6);
  const a = new FreqKVBuffer(opts);
  a.appendRows(s.subarray(0, 70 * 6));
  const bytes = a.save();
  // Restore from an unaligned copy (the payload then starts at an odd byte offset).
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const b = FreqKVBuffer.restore(shifted.subarray(1));
  assert.deepEqual(b.snapshot(), a.snapshot());
  assert.deepEqual([b.length, b.blockRows, b.tailRows, b.compressions, b.seen], [a.length, a.blockRows, a.tailRows, a.compressions, a.seen]);
  a.appendRows(s.subarray(70 * 6));
  b.appendRows(s.subarray(70 * 6));
  assert.deepEqual(b.snapshot(), a.snapshot());
  assert.deepEqual(b.save(), a.save());
  assert.throws(() => FreqKVBuffer.restore(bytes.subarray(0, 20)), /restore bytes: expected at least 56 bytes/);
  assert.throws(() => FreqKVBuffer.restore(bytes.subarray(0, bytes.length - 4)), /restore bytes: expected \d+ bytes for \d+ rows/);
  const bad = bytes.slice();
  bad[0] ^= 1;
  assert.throws(() => FreqKVBuffer.restore(bad), /bad magic/);
});

test('options are validated with clear errors; rows of the wrong length are rejected', () => {
  const ok = { capacity: 10, sinks: 2, retain: 0.5, channels: 4 };
  assert.throws(() => new FreqKVBuffer({ ...ok, capacity: 2.5 }), /capacity: expected an integer >= 2/);
  assert.throws(() => new FreqKVBuffer({ ...ok, sinks: 10 }), /sinks: expected fewer than capacity \(10\)/);
  assert.throws(() => new FreqKVBuffer({ ...ok, sinks: -1 }), /sinks: expected an integer >= 0/);
  assert.throws(() => new FreqKVBuffer({ ...ok, retain: 1 }), /retain: expected a number in \(0, 1\), got 1/);
  assert.throws(() => new FreqKVBuffer({ ...ok, retain: 0 }), /retain: expected a number in \(0, 1\)/);
  assert.throws(() => new FreqKVBuffer({ ...ok, retain: 0.1 }), /retain: floor\(\(capacity - sinks\) \* retain\) = 0/);
  // The smallest valid buffer: one sink, a block of one row, one tail row.
  const tiny = new FreqKVBuffer({ capacity: 3, sinks: 1, retain: 0.5, channels: 1 });
  for (let t = 0; t < 10; t++) tiny.append(new Float32Array([t]));
  // n = 2 -> L = 1 is the mean of block and tail: b <- (b + previous row) / 2.
  let block = 1.5;
  for (let t = 4; t < 10; t++) block = (block + t - 1) / 2;
  const got = tiny.snapshot();
  assert.equal(got[0], 0);
  assert.ok(Math.abs(got[1] - block) < 1e-5, `block ${got[1]}, want ${block}`);
  assert.equal(got[2], 9);
  assert.throws(() => new FreqKVBuffer({ ...ok, channels: 0 }), /channels: expected an integer >= 1/);
  assert.throws(() => new FreqKVBuffer({ ...ok, keep: 'mid' as 'low' }), /keep/);
  const b = new FreqKVBuffer(ok);
  assert.throws(() => b.append(new Float32Array(3)), /append row: expected 4 values, got 3/);
  assert.throws(() => b.appendRows(new Float32Array(6)), /appendRows rows: expected a multiple of 4 values/);
  assert.throws(() => b.view(0, 1), /view: expected 0 <= from <= to <= length \(0\)/);
  assert.throws(() => b.compress(), /compress: block \+ tail hold 0 rows; expected more than L = 4/);
  assert.equal(b.length, 0);
});

test('reference configuration sizes (N = 4096, S = 4, gamma = 0.5) and a non-default operator', () => {
  const b = new FreqKVBuffer({ capacity: 4096, sinks: 4, retain: 0.5, channels: 1 });
  assert.equal(b.blockSize, 2046);
  assert.equal(b.room(), 4096);
  // keep "high" is passed through to the operator.
  const N = 12, S = 2, C = 2;
  const s = stream(N + 1, C, 7);
  const h = new FreqKVBuffer({ capacity: N, sinks: S, retain: 0.5, channels: C, keep: 'high' });
  h.appendRows(s);
  assert.deepEqual(h.view(S, S + 5), freqCompress(rowsOf(s, S, N, C), N - S, C, 5, { keep: 'high' }));
  assert.equal(h.room(), N - S - 5 - 1);
});
