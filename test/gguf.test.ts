import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GGUF_TYPE, GgufFile, dequantQ4_0, dequantQ8_0, ggufToHfName, hfToGgufName, loadGguf, permuteQK, quantQ4_0, quantQ8_0, unpermuteQK, writeGguf,
  type GgufWriteOptions,
} from '../src/model/gguf.js';
import { hfTensorSlots, loadModel, weightAt } from '../src/model/loader.js';
import { randomArray, randomModel, rng, tinyConfig } from '../src/model/random.js';
import { ropeInvFreq } from '../src/model/rope.js';
import type { LlamaConfig, Model } from '../src/model/types.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-gguf-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = () => path.join(tmp, `m${fileNo++}.gguf`);

async function exportModel(m: Model, opts: GgufWriteOptions = {}): Promise<string> {
  const file = tmpFile();
  await writeGguf(file, m, opts);
  return file;
}

/** Compares all weights; tol(name, i) is the allowed |difference| (0: bit-exact). */
function assertClose(a: Model, b: Model, tol: (name: string, x: Float32Array, i: number) => number): void {
  for (const s of hfTensorSlots(a.config)) {
    const x = weightAt(a.weights, s.key)!;
    const y = weightAt(b.weights, s.key)!;
    assert.equal(y.length, x.length, s.name);
    for (let i = 0; i < x.length; i++) {
      const t = tol(s.name, x, i);
      assert.ok(t === 0 ? Object.is(x[i], y[i]) : Math.abs(x[i] - y[i]) <= t, `${s.name}[${i}]: ${x[i]} vs ${y[i]} (tol ${t})`);
    }
  }
}

/** Largest |x| in the 32-value block holding element i. */
function blockMax(x: Float32Array, i: number): number {
  const start = i - (i % 32);
  let m = 0;
  for (let j = start; j < start + 32; j++) m = Math.max(m, Math.abs(x[j]));
  return m;
}

test('q/k permutation: llama.cpp order within each head, and its inverse', () => {
  // One head of size 4, one column: HF rows [r0, r1, r2, r3] pair (r0, r2) and (r1, r3).
  assert.deepEqual([...permuteQK(new Float32Array([0, 1, 2, 3]), 1, 1)], [0, 2, 1, 3]);
  assert.deepEqual([...permuteQK(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]), 2, 1)], [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.deepEqual([...permuteQK(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]), 1, 2)], [0, 1, 4, 5, 2, 3, 6, 7]);
  const x = randomArray(6 * 8 * 5, 1, rng(3));
  assert.deepEqual(unpermuteQK(permuteQK(x, 6, 5), 6, 5), x);
  assert.throws(() => permuteQK(new Float32Array(6), 2, 1), /do not split into 2 heads of even size/);
});

test('names map between llama.cpp and Hugging Face', () => {
  assert.equal(ggufToHfName('blk.3.attn_q.weight'), 'model.layers.3.self_attn.q_proj.weight');
  assert.equal(ggufToHfName('blk.0.attn_k.bias'), 'model.layers.0.self_attn.k_proj.bias');
  assert.equal(ggufToHfName('blk.1.ffn_down.weight'), 'model.layers.1.mlp.down_proj.weight');
  assert.equal(ggufToHfName('token_embd.weight'), 'model.embed_tokens.weight');
  assert.equal(ggufToHfName('output.weight'), 'lm_head.weight');
  assert.equal(ggufToHfName('blk.0.mystery.weight'), 'blk.0.mystery.weight');
  for (const s of hfTensorSlots(tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true }))) assert.equal(ggufToHfName(hfToGgufName(s.name)), s.name);
});

test('Q8_0 and Q4_0 blocks decode as ggml defines them', () => {
  // Q8_0: d = 0.5 (f16 0x3800), q = -128..., x = d*q.
  const q8 = new Uint8Array(34);
  q8[0] = 0x00; q8[1] = 0x38;
  for (let j = 0; j < 32; j++) q8[2 + j] = (j * 9 - 100) & 0xff;
  const out8 = new Float32Array(32);
  dequantQ8_0(q8, out8, 0);
  for (let j = 0; j < 32; j++) assert.equal(out8[j], 0.5 * (((j * 9 - 100) << 24) >> 24));
  // Q4_0: d = 2 (f16 0x4000); byte j holds q_j low and q_{j+16} high; x = d*(q-8).
  const q4 = new Uint8Array(18);
  q4[0] = 0x00; q4[1] = 0x40;
  for (let j = 0; j < 16; j++) q4[2 + j] = j | ((15 - j) << 4);
  const out4 = new Float32Array(32);
  dequantQ4_0(q4, out4, 0);
  for (let j = 0; j < 16; j++) {
    assert.equal(out4[j], 2 * (j - 8));
    assert.equal(out4[j + 16], 2 * (7 - j));
  }
  // Quantise then dequantise stays within the block step.
  const x = randomArray(64, 3, rng(5));
  const back8 = new Float32Array(64);
  const back4 = new Float32Array(64);
  dequantQ8_0(quantQ8_0(x), back8, 0);
  dequantQ4_0(quantQ4_0(x), back4, 0);
  for (let i = 0; i < 64; i++) {
    assert.ok(Math.abs(back8[i] - x[i]) <= 0.6 * blockMax(x, i) / 127);
    assert.ok(Math.abs(back4[i] - x[i]) <= 1.01 * blockMax(x, i) / 8);
  }
});

test('F32 GGUF round trip is bit-exact (Llama, GQA, untied), also through loadModel', async () => {
  const m = randomModel(tinyConfig(), 21);
  for (const version of [2, 3] as const) {
    const file = await exportModel(m, { version, alignment: 64 });
    const back = await loadModel(file);
    assert.deepEqual(back.config, m.config);
    assertClose(m, back, () => 0);
  }
});

test('F16, BF16, Q8_0 and Q4_0 GGUF weights read back within their rounding', async () => {
  const m = randomModel(tinyConfig({ intermediateSize: 64 }), 22);
  const bounds: Record<string, (x: Float32Array, i: number) => number> = {
    F16: (x, i) => Math.abs(x[i]) * 2 ** -11 + 2 ** -25,
    BF16: (x, i) => Math.abs(x[i]) * 2 ** -8,
    Q8_0: (x, i) => (0.6 * blockMax(x, i)) / 127,
    Q4_0: (x, i) => (1.01 * blockMax(x, i)) / 8,
  };
  for (const [type, bound] of Object.entries(bounds)) {
    const back = await loadGguf(await exportModel(m, { type: type as GgufWriteOptions['type'] }));
    // Norms stay F32 (bit-exact); 2-D weights carry the type's rounding.
    assertClose(m, back, (name, x, i) => (name.endsWith('norm.weight') ? 0 : bound(x, i)));
  }
});

test('Qwen2: biases, tied embeddings (no output tensor) and no q/k permutation', async () => {
  const m = randomModel(tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true, nKVHeads: 1 }), 23);
  const file = await exportModel(m);
  const g = await GgufFile.open(file);
  try {
    assert.equal(g.metadata.get('general.architecture'), 'qwen2');
    assert.equal(g.info('lm_head.weight'), undefined);
    assert.deepEqual(await g.read('model.layers.0.self_attn.q_proj.weight'), m.weights.layers[0].wq);
  } finally {
    await g.close();
  }
  const back = await loadGguf(file);
  assert.deepEqual(back.config, m.config);
  assert.equal(back.weights.lmHead, back.weights.embed);
  assertClose(m, back, () => 0);
});

/** llama.cpp's RoPE: rotates adjacent pairs (2i, 2i+1) of each head. */
function ropeInterleaved(x: Float32Array, heads: number, hd: number, pos: number, inv: Float32Array): Float32Array {
  const y = Float32Array.from(x);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = h * hd + 2 * i;
      const [c, s] = [Math.cos(pos * inv[i]), Math.sin(pos * inv[i])];
      y[a] = x[a] * c - x[a + 1] * s;
      y[a + 1] = x[a] * s + x[a + 1] * c;
    }
  }
  return y;
}

/** Hugging Face's RoPE: rotates pairs (i, i + headDim/2) of each head. */
function ropeHalf(x: Float32Array, heads: number, hd: number, pos: number, inv: Float32Array): Float32Array {
  const y = Float32Array.from(x);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = h * hd + i;
      const b = a + hd / 2;
      const [c, s] = [Math.cos(pos * inv[i]), Math.sin(pos * inv[i])];
      y[a] = x[a] * c - x[b] * s;
      y[b] = x[b] * c + x[a] * s;
    }
  }
  return y;
}

function matvec(w: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) y[r] += w[r * cols + c] * x[c];
  return y;
}

test('undoing the permutation makes rotate-half attention scores equal llama.cpp interleaved ones', async () => {
  const c: LlamaConfig = tinyConfig({ nHeads: 4, nKVHeads: 2, headDim: 8 });
  const m = randomModel(c, 24);
  const file = await exportModel(m);
  const g = await GgufFile.open(file); // no setPermutation: rows as llama.cpp stores them
  const wqFile = await g.read('model.layers.0.self_attn.q_proj.weight');
  const wkFile = await g.read('model.layers.0.self_attn.k_proj.weight');
  await g.close();
  const back = await loadGguf(file);
  const { wq, wk } = back.weights.layers[0];
  const inv = ropeInvFreq(c);
  const x = randomArray(c.hiddenSize, 1, rng(8));
  const y = randomArray(c.hiddenSize, 1, rng(9));
  const hd = c.headDim;
  const group = c.nHeads / c.nKVHeads;
  for (const [pq, pk] of [[5, 2], [17, 17], [40, 3]]) {
    const qF = ropeInterleaved(matvec(wqFile, x, c.nHeads * hd, c.hiddenSize), c.nHeads, hd, pq, inv);
    const kF = ropeInterleaved(matvec(wkFile, y, c.nKVHeads * hd, c.hiddenSize), c.nKVHeads, hd, pk, inv);
    const qH = ropeHalf(matvec(wq, x, c.nHeads * hd, c.hiddenSize), c.nHeads, hd, pq, inv);
    const kH = ropeHalf(matvec(wk, y, c.nKVHeads * hd, c.hiddenSize), c.nKVHeads, hd, pk, inv);
    for (let h = 0; h < c.nHeads; h++) {
      const kv = Math.floor(h / group);
      let sF = 0;
      let sH = 0;
      for (let i = 0; i < hd; i++) {
        sF += qF[h * hd + i] * kF[kv * hd + i];
        sH += qH[h * hd + i] * kH[kv * hd + i];
      }
      assert.ok(Math.abs(sF - sH) <= 1e-4 * (1 + Math.abs(sF)), `head ${h}: ${sF} vs ${sH}`);
    }
  }
});

test('rope scaling: linear from metadata, llama3 recovered from rope_freqs.weight', async () => {
  const linear = randomModel(tinyConfig({ ropeScaling: { type: 'linear', factor: 4 } }), 25);
  assert.deepEqual((await loadGguf(await exportModel(linear))).config, linear.config);

  const c = tinyConfig({ nHeads: 1, nKVHeads: 1, headDim: 32, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } });
  const file = await exportModel(randomModel(c, 26));
  const back = await loadGguf(file);
  assert.deepEqual(back.config, c);
  // With low_freq_factor 2 only the band's line is stored; the frequencies still match.
  const c2 = { ...c, ropeScaling: { type: 'llama3' as const, factor: 4, lowFreqFactor: 2, highFreqFactor: 6, originalMaxPositionEmbeddings: 128 } };
  const back2 = await loadGguf(await exportModel(randomModel(c2, 27)));
  const want = ropeInvFreq(c2);
  const got = ropeInvFreq(back2.config);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * want[i], `invFreq[${i}]`);
});

// ---- malformed files ----------------------------------------------------------------------------

/** Byte offset of the u32 type field of tensor `name` in a GGUF file's bytes. */
function tensorTypeOffset(bytes: Buffer, name: string): number {
  const nameBytes = Buffer.from(name);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(nameBytes.length));
  const at = bytes.indexOf(Buffer.concat([len, nameBytes]));
  assert.ok(at > 0, `tensor info ${name} found`);
  const nDims = bytes.readUInt32LE(at + 8 + nameBytes.length);
  return at + 8 + nameBytes.length + 4 + 8 * nDims;
}

async function rejects(file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadGguf(file), (err: Error) => {
    assert.ok(err.message.includes(file), `error names the file: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

function patched(file: string, edit: (b: Buffer) => Buffer | void): string {
  const b = fs.readFileSync(file);
  const out = edit(b) ?? b;
  const f = tmpFile();
  fs.writeFileSync(f, out);
  return f;
}

test('rejects bad magic, versions, truncation and counts', async () => {
  const good = await exportModel(randomModel(tinyConfig(), 30));
  await rejects(patched(good, (b) => void b.write('GGUX', 0)), /not a GGUF file/);
  await rejects(patched(good, (b) => void b.writeUInt32LE(1, 4)), /GGUF version 1 is not supported/);
  await rejects(patched(good, (b) => void b.writeUInt32BE(3, 4)), /version 50331648 is not supported.*big-endian/);
  await rejects(patched(good, (b) => b.subarray(0, b.length - 100)), /tensor "output\.weight" .* lies outside the data section .*truncated/);
  await rejects(patched(good, (b) => b.subarray(0, 1000)), /file ends inside/);
  await rejects(patched(good, (b) => b.subarray(0, 200)), /21 tensors and 16 metadata entries cannot fit in 200 bytes/);
  await rejects(patched(good, (b) => void b.writeBigUInt64LE(1n << 40n, 8)), /cannot fit in/);
});

test('rejects unknown and unsupported tensor types, misaligned and overlapping offsets', async () => {
  const good = await exportModel(randomModel(tinyConfig(), 31));
  const name = 'blk.1.ffn_up.weight';
  await rejects(patched(good, (b) => void b.writeUInt32LE(77, tensorTypeOffset(b, name))), /tensor "blk\.1\.ffn_up\.weight": unknown ggml type 77/);
  await rejects(patched(good, (b) => void b.writeUInt32LE(12, tensorTypeOffset(b, name))), /tensor "blk\.1\.ffn_up\.weight": type Q4_K is not supported/);
  await rejects(patched(good, (b) => {
    const at = tensorTypeOffset(b, name) + 4;
    b.writeBigUInt64LE(b.readBigUInt64LE(at) + 4n, at);
  }), /tensor "blk\.1\.ffn_up\.weight": offset \d+ is not a multiple of the alignment 32/);
  await rejects(patched(good, (b) => {
    const at = tensorTypeOffset(b, name) + 4;
    b.writeBigUInt64LE(b.readBigUInt64LE(at) + 32n, at);
  }), /overlaps tensor/);
});

test('rejects bad metadata: alignment, duplicate keys, bools, wrong types, other architectures', async () => {
  const m = randomModel(tinyConfig(), 32);
  await rejects(await exportModel(m, { metadata: { 'general.alignment': [GGUF_TYPE.U32, 12] } }), /"general\.alignment" must be a u32 multiple of 8/);
  const dup = await exportModel(m, { metadata: { 'general.namX': [GGUF_TYPE.STRING, 'x'] } });
  await rejects(patched(dup, (b) => void b.write('general.name', b.indexOf('general.namX'))), /metadata key "general\.name" appears twice/);
  const flag = await exportModel(m, { metadata: { 'test.flag': [GGUF_TYPE.BOOL, true] } });
  await rejects(patched(flag, (b) => void b.writeUInt8(2, b.indexOf('test.flag') + 9 + 4)), /"test\.flag" is a bool stored as 2/);
  await rejects(await exportModel(m, { metadata: { 'llama.block_count': [GGUF_TYPE.STRING, 'two'] } }), /metadata "llama\.block_count" expected an integer/);
  await rejects(await exportModel(m, { metadata: { 'general.architecture': [GGUF_TYPE.STRING, 'gpt2'] } }), /"general\.architecture" is "gpt2"/);
  await rejects(await exportModel(m, { metadata: { 'llama.rope.scaling.type': [GGUF_TYPE.STRING, 'yarn'] } }), /"llama\.rope\.scaling\.type" is "yarn"/);
});

test('rejects tensors that do not match the metadata', async () => {
  const m = randomModel(tinyConfig(), 33);
  await rejects(await exportModel(m, { metadata: { 'llama.block_count': [GGUF_TYPE.U32, 3] } }), /missing tensors "model\.layers\.2\./);
  await rejects(await exportModel(m, { metadata: { 'llama.feed_forward_length': [GGUF_TYPE.U32, 40] } }), /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[48, 32\]/);
  const tooFew = await exportModel(randomModel(tinyConfig({ nLayers: 3 }), 34), { metadata: { 'llama.block_count': [GGUF_TYPE.U32, 2] } });
  await rejects(tooFew, /unexpected tensors "model\.layers\.2\./);
});
