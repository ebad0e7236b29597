import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { configToJson, parseConfig } from '../src/model/config.js';
import { hfTensorSlots, loadModel, modelSummary, weightAt } from '../src/model/loader.js';
import { copyTokenizerFiles, modelTensors, saveModel } from '../src/model/writer.js';
import { writeSafetensors } from '../src/model/safetensors.js';
import { randomModel, tinyConfig } from '../src/model/random.js';
import type { LlamaConfig, Model } from '../src/model/types.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-load-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirNo = 0;
const tmpDir = () => path.join(tmp, `m${dirNo++}`);

const qwen = () => tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true, nHeads: 4, nKVHeads: 1 });

/** Compares every weight of two models; `tol(a)` is the allowed |a - b| (0: bit-exact). */
function assertSameWeights(a: Model, b: Model, tol: (x: number) => number): void {
  for (const s of hfTensorSlots(a.config)) {
    const x = weightAt(a.weights, s.key)!;
    const y = weightAt(b.weights, s.key)!;
    assert.equal(y.length, x.length, s.name);
    for (let i = 0; i < x.length; i++) {
      const t = tol(x[i]);
      if (t === 0) assert.ok(Object.is(x[i], y[i]), `${s.name}[${i}]: ${x[i]} vs ${y[i]}`);
      else assert.ok(Math.abs(x[i] - y[i]) <= t, `${s.name}[${i}]: ${x[i]} vs ${y[i]}`);
    }
  }
}

const hfConfig = (over: Record<string, unknown> = {}) => ({ ...configToJson(tinyConfig()), ...over });

test('config: HF fields parse, defaults apply, configToJson round-trips', () => {
  for (const c of [tinyConfig(), qwen(), tinyConfig({ architecture: 'MistralForCausalLM', eosTokenIds: [2, 5], bosTokenId: null })]) {
    assert.deepEqual(parseConfig(configToJson(c), 'config.json'), c);
  }
  const minimal = {
    architectures: ['LlamaForCausalLM'], vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 8, rms_norm_eps: 1e-6, max_position_embeddings: 256,
  };
  const c = parseConfig(minimal, 'config.json');
  assert.equal(c.nKVHeads, 8);
  assert.equal(c.headDim, 8);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.ropeScaling, null);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.attentionBias, false);
  assert.deepEqual(c.eosTokenIds, []);
  assert.equal(parseConfig({ ...minimal, architectures: undefined, model_type: 'qwen2' }, 'c').attentionBias, true);
  assert.equal(parseConfig({ ...minimal, head_dim: null }, 'c').headDim, 8);
});

test('config: rope_scaling linear and llama3 under "type" or "rope_type"; others rejected', () => {
  const llama3 = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  assert.deepEqual(parseConfig(hfConfig({ rope_scaling: { type: 'linear', factor: 2 } }), 'c').ropeScaling, { type: 'linear', factor: 2 });
  assert.deepEqual(parseConfig(hfConfig({ rope_scaling: { rope_type: 'llama3', ...llama3 } }), 'c').ropeScaling, {
    type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192,
  });
  const scaled = tinyConfig({ ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 } });
  assert.deepEqual(parseConfig(configToJson(scaled), 'c'), scaled);
  assert.throws(() => parseConfig(hfConfig({ rope_scaling: { type: 'yarn', factor: 4 } }), 'cfg.json'), /cfg\.json: field "rope_scaling": field "rope_type" .*"yarn"/);
  assert.throws(() => parseConfig(hfConfig({ rope_scaling: { rope_type: 'llama3', factor: 8 } }), 'cfg.json'), /field "low_freq_factor"/);
});

test('config: missing and ill-typed fields are errors naming file and field', () => {
  const bad = (over: Record<string, unknown>, field: RegExp) => assert.throws(() => parseConfig(hfConfig(over), '/m/config.json'), (e: Error) => {
    assert.match(e.message, /^\/m\/config\.json/);
    assert.match(e.message, field);
    return true;
  });
  bad({ hidden_size: undefined }, /field "hidden_size" expected an integer/);
  bad({ num_hidden_layers: '2' }, /field "num_hidden_layers"/);
  bad({ rms_norm_eps: -1 }, /field "rms_norm_eps" expected a positive number/);
  bad({ num_key_value_heads: 3 }, /field "num_key_value_heads" expected a divisor/);
  bad({ tie_word_embeddings: 'yes' }, /field "tie_word_embeddings" expected true or false/);
  bad({ eos_token_id: [2, 'x'] }, /field "eos_token_id"/);
  bad({ eos_token_id: 999 }, /outside vocab_size/);
  bad({ architectures: ['GPT2LMHeadModel'] }, /field "architectures" names GPT2LMHeadModel/);
  bad({ hidden_act: 'gelu' }, /field "hidden_act" expected "silu"/);
  bad({ attention_bias: true }, /field "attention_bias"/);
  bad({ head_dim: 7 }, /field "head_dim" expected an even number/);
  assert.throws(() => parseConfig([1], 'c.json'), /c\.json: expected a JSON object/);
});

test('F32 checkpoint: written and read back bit-exact', async () => {
  const m = randomModel(tinyConfig(), 11);
  const dir = tmpDir();
  await saveModel(dir, m, { extra: { freqkv_note: 'test' } });
  const back = await loadModel(dir);
  assert.deepEqual(back.config, m.config);
  assertSameWeights(m, back, () => 0);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).freqkv_note, 'test');
  assert.notEqual(back.weights.lmHead, back.weights.embed);
});

test('F16 and BF16 checkpoints: read back within rounding', async () => {
  const m = randomModel(tinyConfig(), 12);
  for (const [dtype, rel] of [['F16', 2 ** -11], ['BF16', 2 ** -8]] as const) {
    const dir = tmpDir();
    await saveModel(dir, m, { dtype });
    // Relative error of round-to-nearest, plus half the smallest f16 subnormal for tiny values.
    assertSameWeights(m, await loadModel(dir), (x) => Math.abs(x) * rel + 2 ** -25);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).torch_dtype, dtype === 'F16' ? 'float16' : 'bfloat16');
  }
});

test('Qwen2 biases, GQA (one KV head) and tied embeddings round-trip, sharded', async () => {
  const m = randomModel(qwen(), 13);
  const dir = tmpDir();
  const written = await saveModel(dir, m, { maxShardBytes: 4096 });
  assert.ok(written.some((f) => f.endsWith('model.safetensors.index.json')));
  assert.ok(written.filter((f) => /model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length > 1);
  assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors')));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  assert.ok(!('lm_head.weight' in index.weight_map), 'a tied head is not stored');
  assert.ok('model.layers.1.self_attn.k_proj.bias' in index.weight_map);

  const back = await loadModel(dir);
  assert.deepEqual(back.config, m.config);
  assert.equal(back.weights.lmHead, back.weights.embed);
  assert.equal(back.weights.layers[1].bk!.length, m.config.headDim);
  assertSameWeights(m, back, () => 0);

  // Saving single-file into the same folder removes the stale index.
  await saveModel(dir, m);
  assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors.index.json')));
  assertSameWeights(m, await loadModel(dir), () => 0);
});

/** Writes config.json for `config` and the given tensors as model.safetensors. */
async function writeRaw(config: LlamaConfig, tensors: ReturnType<typeof modelTensors>): Promise<string> {
  const dir = tmpDir();
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configToJson(config)));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

test('missing, unexpected and mis-shaped tensors are rejected naming the file and tensor', async () => {
  const m = randomModel(tinyConfig(), 14);
  const all = modelTensors(m, 'F32');
  const file = (dir: string) => path.join(dir, 'model.safetensors');

  let dir = await writeRaw(m.config, all.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'));
  await assert.rejects(loadModel(dir), (e: Error) => e.message.startsWith(file(dir)) && /missing tensors "model\.layers\.1\.mlp\.up_proj\.weight"/.test(e.message));

  dir = await writeRaw(m.config, [...all, { name: 'model.layers.0.self_attn.o_proj.bias', dtype: 'F32', shape: [32], data: new Float32Array(32) }]);
  await assert.rejects(loadModel(dir), (e: Error) => e.message.startsWith(file(dir)) && /unexpected tensors "model\.layers\.0\.self_attn\.o_proj\.bias"/.test(e.message));

  // A config that disagrees with the stored shapes.
  dir = await writeRaw({ ...m.config, intermediateSize: 40 }, all);
  await assert.rejects(loadModel(dir), (e: Error) =>
    e.message.startsWith(file(dir)) && /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[48, 32\], .*config\.json implies \[40, 32\]/.test(e.message));

  // A Llama config over a Qwen2 checkpoint: the biases are unexpected.
  const q = randomModel(qwen(), 15);
  dir = await writeRaw({ ...q.config, architecture: 'LlamaForCausalLM', attentionBias: false }, modelTensors(q, 'F32'));
  await assert.rejects(loadModel(dir), /unexpected tensors "model\.layers\.0\.self_attn\.q_proj\.bias"/);
});

test('derived tensors (rotary inv_freq, a stored tied head) are accepted and ignored', async () => {
  const m = randomModel(tinyConfig({ tieWordEmbeddings: true }), 16);
  const extra = [
    { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32' as const, shape: [4], data: new Float32Array(4) },
    { name: 'lm_head.weight', dtype: 'F32' as const, shape: [64, 32], data: m.weights.embed },
  ];
  const back = await loadModel(await writeRaw(m.config, [...modelTensors(m, 'F32'), ...extra]));
  assertSameWeights(m, back, () => 0);
  assert.equal(back.weights.lmHead, back.weights.embed);
});

test('folder problems: no config, bad JSON, no weights, not a folder, bad dtype option', async () => {
  const dir = tmpDir();
  fs.mkdirSync(dir);
  await assert.rejects(loadModel(dir), new RegExp(`${path.join(dir, 'config.json')}: cannot read`));
  fs.writeFileSync(path.join(dir, 'config.json'), '{bad');
  await assert.rejects(loadModel(dir), /config\.json: not valid JSON/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configToJson(tinyConfig())));
  await assert.rejects(loadModel(dir), /no weights found \(expected model\.safetensors or model\.safetensors\.index\.json\)/);
  await assert.rejects(loadModel(path.join(dir, 'config.json')), /expected a model folder/);
  await assert.rejects(loadModel(path.join(dir, 'nope')), /no such model folder/);
  await assert.rejects(loadModel(dir, { dtype: 'f16' as 'f32' }), /opts\.dtype expected "f32"/);
});

test('modelSummary counts parameters once for a tied head', () => {
  const c = qwen();
  const d = c.hiddenSize;
  const kv = c.nKVHeads * c.headDim;
  const q = c.nHeads * c.headDim;
  const perLayer = 2 * d + q * d + 2 * kv * d + d * q + q + 2 * kv + 3 * c.intermediateSize * d;
  const expected = c.vocabSize * d + c.nLayers * perLayer + d;
  const s = modelSummary(randomModel(c, 1));
  assert.equal(s.parameters, expected);
  assert.equal(s.bytes, expected * 4);
  assert.match(s.text, /Qwen2ForCausalLM, 2 layers, hidden 32, 4\/1 heads/);

  // Untied, no biases: the head counts as its own [vocab, d].
  const t = tinyConfig();
  const tq = t.nHeads * t.headDim;
  const tkv = t.nKVHeads * t.headDim;
  const tLayer = 2 * d + 2 * tq * d + 2 * tkv * d + 3 * t.intermediateSize * d;
  assert.equal(modelSummary(randomModel(t, 1)).parameters, 2 * t.vocabSize * d + t.nLayers * tLayer + d);
});

test('copyTokenizerFiles copies the files that exist', async () => {
  const from = tmpDir();
  const to = tmpDir();
  fs.mkdirSync(from);
  fs.writeFileSync(path.join(from, 'tokenizer.json'), '{"a": 1}');
  fs.writeFileSync(path.join(from, 'generation_config.json'), '{}');
  assert.deepEqual(await copyTokenizerFiles(from, to), ['tokenizer.json', 'generation_config.json']);
  assert.equal(fs.readFileSync(path.join(to, 'tokenizer.json'), 'utf8'), '{"a": 1}');
});
