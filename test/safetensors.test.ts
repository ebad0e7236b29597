import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SafetensorsFile, ShardedSafetensors, bf16ToF32, f16ToF32, f32BitsToBf16, f32BitsToF16, writeSafetensors, MAX_HEADER_BYTES,
} from '../src/model/safetensors.js';
import { rng } from '../src/model/random.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-st-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = (name = 'x.safetensors') => path.join(tmp, `${fileNo++}-${name}`);

const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
const f16 = (h: number) => {
  const out = new Float32Array(1);
  f16ToF32(new Uint16Array([h]), out);
  return out[0];
};

/** A raw file: 8-byte length prefix (overridable), header text, then `data` bytes. */
function rawFile(header: unknown, dataBytes: number, lengthOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  const file = tmpFile();
  fs.writeFileSync(file, Buffer.concat([prefix, h, Buffer.alloc(dataBytes)]));
  return file;
}

async function rejects(file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(SafetensorsFile.open(file), (err: Error) => {
    assert.ok(err.message.includes(file), `error should name the file: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test('f16 -> f32 decodes zeros, subnormals, normals, inf and NaN', () => {
  assert.equal(f16(0x3c00), 1);
  assert.equal(f16(0xc000), -2);
  assert.equal(f16(0x0001), 2 ** -24);
  assert.equal(f16(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16(0x0400), 2 ** -14);
  assert.equal(f16(0x7bff), 65504);
  assert.equal(f16(0x7c00), Infinity);
  assert.equal(f16(0xfc00), -Infinity);
  assert.ok(Object.is(f16(0x8000), -0));
  assert.ok(Number.isNaN(f16(0x7e00)));
});

test('f32 -> f16 round-trips every f16 value and rounds ties to even', () => {
  for (let h = 0; h < 65536; h++) {
    const back = f32BitsToF16(bitsOf(f16(h)));
    if (Number.isNaN(f16(h))) assert.ok(Number.isNaN(f16(back)), `NaN 0x${h.toString(16)} stays NaN`);
    else assert.equal(back, h, `0x${h.toString(16)}`);
  }
  assert.equal(f32BitsToF16(bitsOf(1 + 2 ** -11)), 0x3c00); // halfway: down to even
  assert.equal(f32BitsToF16(bitsOf(1 + 3 * 2 ** -11)), 0x3c02); // halfway: up to even
  assert.equal(f32BitsToF16(bitsOf(2 ** -25)), 0x0000); // halfway to the smallest subnormal: to even (0)
  assert.equal(f32BitsToF16(bitsOf(3 * 2 ** -25)), 0x0002);
  assert.equal(f32BitsToF16(bitsOf(65519)), 0x7bff);
  assert.equal(f32BitsToF16(bitsOf(65520)), 0x7c00); // rounds to inf
  assert.equal(f32BitsToF16(bitsOf(-1e10)), 0xfc00);
  assert.equal(f32BitsToF16(bitsOf(1e-10)), 0x0000);
});

test('f32 -> f16 picks the nearest f16 (checked against an exhaustive search)', () => {
  // Sorted non-negative finite f16 values, index = bit pattern.
  const values = Array.from({ length: 0x7c00 }, (_, h) => f16(h));
  const next = rng(7);
  for (let i = 0; i < 5000; i++) {
    const x = Math.fround(2 ** (next() * 42 - 26) * (1 + next()));
    let lo = 0;
    let hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= x) lo = mid;
      else hi = mid;
    }
    let want: number;
    if (x >= 65520) want = 0x7c00; // at or past the halfway point above 65504
    else if (x - values[lo] < values[hi] - x) want = lo;
    else if (x - values[lo] > values[hi] - x) want = hi;
    else want = lo % 2 === 0 ? lo : hi;
    assert.equal(f32BitsToF16(bitsOf(x)), want, `x = ${x}`);
  }
});

test('bf16 conversions: exact decode, round to nearest even, NaN and overflow', () => {
  const out = new Float32Array(3);
  bf16ToF32(new Uint16Array([0x3f80, 0xc040, 0x7f80]), out);
  assert.deepEqual([...out], [1, -3, Infinity]);
  assert.equal(f32BitsToBf16(bitsOf(1 + 2 ** -8)), 0x3f80);
  assert.equal(f32BitsToBf16(bitsOf(1 + 3 * 2 ** -8)), 0x3f82);
  assert.equal(f32BitsToBf16(0x7f7fffff), 0x7f80);
  assert.equal(f32BitsToBf16(0x7fc00000), 0x7fc0);
  assert.ok((f32BitsToBf16(0x7f800001) & 0x7f) !== 0, 'a NaN with a low payload stays NaN');
});

test('writes and reads back F32 bit-exact, F16/BF16 rounded, with metadata', async () => {
  const a = new Float32Array([1.5, -2.25, 3e-8, 65504, 1 / 3, -0]);
  const b = new Float32Array([0.1, 0.2, 0.3, 0.4]);
  const file = tmpFile();
  await writeSafetensors(file, [
    { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
    { name: 'b16', dtype: 'F16', shape: [4], data: b },
    { name: 'bbf', dtype: 'BF16', shape: [2, 2], data: b },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  ], { note: 'hello' });
  const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
  assert.equal(headerLen % 8, 0, 'header is padded to 8 bytes');
  const st = await SafetensorsFile.open(file);
  try {
    assert.deepEqual(st.metadata, { note: 'hello' });
    assert.deepEqual(st.info('a')?.shape, [2, 3]);
    assert.deepEqual(new Uint32Array((await st.read('a')).buffer), new Uint32Array(a.buffer));
    const h = await st.read('b16');
    const bf = await st.read('bbf');
    for (let i = 0; i < 4; i++) {
      assert.ok(Math.abs(h[i] - b[i]) <= Math.abs(b[i]) * 2 ** -11);
      assert.ok(Math.abs(bf[i] - b[i]) <= Math.abs(b[i]) * 2 ** -8);
    }
    assert.equal((await st.read('empty')).length, 0);
    await assert.rejects(st.read('nope'), /no tensor "nope"/);
    await assert.rejects(st.read('a', new Float32Array(5)), /destination/);
  } finally {
    await st.close();
  }
});

test('writer rejects a shape that does not match the data', async () => {
  await assert.rejects(
    writeSafetensors(tmpFile(), [{ name: 'w', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }]),
    /tensor "w": shape \[2, 2\] does not match 3 values/,
  );
});

test('rejects files shorter than the length prefix, huge and overlong header lengths', async () => {
  const tiny = tmpFile();
  fs.writeFileSync(tiny, Buffer.alloc(5));
  await rejects(tiny, /too short/);
  await rejects(rawFile('{}', 0, BigInt(MAX_HEADER_BYTES) + 1n), /exceeds the limit/);
  await rejects(rawFile('{}', 0, 2n ** 63n), /exceeds the limit/);
  await rejects(rawFile('{}', 0, 100n), /runs past the end/);
});

test('rejects headers that are not UTF-8 JSON objects', async () => {
  const bad = tmpFile();
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(4n);
  fs.writeFileSync(bad, Buffer.concat([prefix, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
  await rejects(bad, /not valid UTF-8/);
  await rejects(rawFile('{"a": ', 0), /not valid JSON/);
  await rejects(rawFile('[1, 2]', 0), /JSON object/);
  await rejects(rawFile({ __metadata__: { n: 3 } }, 0), /__metadata__/);
});

test('rejects an unknown dtype, bad shapes and offsets, each naming the tensor', async () => {
  const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  await rejects(rawFile({ w: t('Q9', [2], [0, 8]) }, 8), /tensor "w": unknown dtype "Q9"/);
  await rejects(rawFile({ w: t('F32', [2, -1], [0, 8]) }, 8), /tensor "w": shape/);
  await rejects(rawFile({ w: t('F32', [2], [0]) }, 8), /tensor "w": data_offsets/);
  await rejects(rawFile({ w: t('F32', [4], [0, 16]) }, 8), /tensor "w": data_offsets \[0, 16\] lie outside/);
  await rejects(rawFile({ w: t('F32', [2], [8, 0]) }, 8), /tensor "w": data_offsets \[8, 0\] end before/);
  await rejects(rawFile({ w: t('F32', [3], [0, 8]) }, 8), /tensor "w": .*needs 12/);
  await rejects(rawFile({ w: { ...t('F32', [2], [0, 8]), extra: 1 } }, 8), /tensor "w": unexpected field "extra"/);
});

test('rejects overlapping tensors, gaps and a truncated data section', async () => {
  const t = (shape: number[], offsets: number[]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  await rejects(rawFile({ a: t([2], [0, 8]), b: t([2], [4, 12]) }, 12), /tensor "b" overlaps tensor "a"/);
  await rejects(rawFile({ a: t([1], [0, 4]), b: t([1], [8, 12]) }, 12), /tensor "b" leaves a gap/);
  await rejects(rawFile({ a: t([2], [0, 8]) }, 12), /truncated or padded/);

  const good = tmpFile();
  await writeSafetensors(good, [{ name: 'w', dtype: 'F32', shape: [16], data: new Float32Array(16) }]);
  const bytes = fs.readFileSync(good);
  const cut = tmpFile();
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 4));
  await rejects(cut, /tensor "w": data_offsets \[0, 64\] lie outside the data section \(60 bytes\)/);
});

test('a valid tensor of a dtype that cannot be loaded is refused on read', async () => {
  const st = await SafetensorsFile.open(rawFile({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16));
  try {
    await assert.rejects(st.read('ids'), /tensor "ids" has dtype I64; only F32, F16, BF16/);
  } finally {
    await st.close();
  }
});

test('sharded checkpoints: weight_map is checked against the shards', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'shards-'));
  await writeSafetensors(path.join(dir, 's1.safetensors'), [{ name: 'a', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
  await writeSafetensors(path.join(dir, 's2.safetensors'), [
    { name: 'b', dtype: 'BF16', shape: [1], data: new Float32Array([3]) },
    { name: 'c', dtype: 'F32', shape: [1], data: new Float32Array([4]) },
  ]);
  const index = path.join(dir, 'model.safetensors.index.json');
  const writeIndex = (map: unknown) => fs.writeFileSync(index, JSON.stringify({ metadata: {}, weight_map: map }));

  writeIndex({ a: 's1.safetensors', b: 's2.safetensors', c: 's2.safetensors' });
  const sh = await ShardedSafetensors.open(index);
  assert.deepEqual(sh.names().sort(), ['a', 'b', 'c']);
  assert.deepEqual([...(await sh.read('a'))], [1, 2]);
  assert.deepEqual([...(await sh.read('b'))], [3]);
  assert.ok(sh.info('c')?.file.endsWith('s2.safetensors'));
  await sh.close();

  writeIndex({ a: 's1.safetensors', b: 's2.safetensors' });
  await assert.rejects(ShardedSafetensors.open(index), /s2\.safetensors: tensor "c" is not mapped/);
  writeIndex({ a: 's2.safetensors', b: 's2.safetensors', c: 's2.safetensors' });
  await assert.rejects(ShardedSafetensors.open(index), /tensor "a" is mapped to .*s2\.safetensors, which does not hold it/);
  writeIndex({ a: '../s1.safetensors' });
  await assert.rejects(ShardedSafetensors.open(index), /weight_map entry for "a"/);
  fs.writeFileSync(index, '{"weight_map": 3}');
  await assert.rejects(ShardedSafetensors.open(index), /weight_map/);
});
