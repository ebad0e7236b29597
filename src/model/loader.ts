// Loads a model folder in Hugging Face layout (config.json + model.safetensors or shards), or a
// GGUF file (gguf.ts), into float32 ModelWeights. Every tensor is checked against the config
// before any is read: missing, unexpected and mis-shaped tensors are errors naming the file and
// the tensor.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parseConfig, readJsonFile } from './config.js';
import { openSafetensorsDir, type TensorSource } from './safetensors.js';
import type { LayerWeights, LlamaConfig, Model, ModelWeights } from './types.js';

/** Where a Hugging Face tensor lives in ModelWeights: a layer field, or a model-wide one. */
export type WeightKey = { layer: number; field: keyof LayerWeights } | { layer: null; field: 'embed' | 'norm' | 'lmHead' };

export interface HfTensorSlot {
  name: string;
  /** Shape as stored (a Linear weight is [out, in]). */
  shape: number[];
  key: WeightKey;
}

/** Every tensor a checkpoint of this config holds, in Hugging Face names and order. */
export function hfTensorSlots(c: LlamaConfig): HfTensorSlot[] {
  const d = c.hiddenSize;
  const q = c.nHeads * c.headDim;
  const kv = c.nKVHeads * c.headDim;
  const ff = c.intermediateSize;
  const slots: HfTensorSlot[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, d], key: { layer: null, field: 'embed' } }];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    const add = (name: string, shape: number[], field: keyof LayerWeights) => slots.push({ name: p + name, shape, key: { layer: l, field } });
    add('input_layernorm.weight', [d], 'attnNorm');
    add('self_attn.q_proj.weight', [q, d], 'wq');
    add('self_attn.k_proj.weight', [kv, d], 'wk');
    add('self_attn.v_proj.weight', [kv, d], 'wv');
    if (c.attentionBias) {
      add('self_attn.q_proj.bias', [q], 'bq');
      add('self_attn.k_proj.bias', [kv], 'bk');
      add('self_attn.v_proj.bias', [kv], 'bv');
    }
    add('self_attn.o_proj.weight', [d, q], 'wo');
    add('post_attention_layernorm.weight', [d], 'mlpNorm');
    add('mlp.gate_proj.weight', [ff, d], 'wGate');
    add('mlp.up_proj.weight', [ff, d], 'wUp');
    add('mlp.down_proj.weight', [d, ff], 'wDown');
  }
  slots.push({ name: 'model.norm.weight', shape: [d], key: { layer: null, field: 'norm' } });
  if (!c.tieWordEmbeddings) slots.push({ name: 'lm_head.weight', shape: [c.vocabSize, d], key: { layer: null, field: 'lmHead' } });
  return slots;
}

/** The array a slot refers to (null for an absent bias). */
export function weightAt(w: ModelWeights, key: WeightKey): Float32Array | null {
  return key.layer === null ? w[key.field] : w.layers[key.layer][key.field];
}

/** Tensors some checkpoints carry that are derived, not learned (old Llama exports). */
function isIgnorable(name: string, c: LlamaConfig): boolean {
  if (/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name)) return true;
  // Tied checkpoints sometimes store the (identical) head anyway; the embedding is used.
  return c.tieWordEmbeddings && name === 'lm_head.weight';
}

function listNames(names: string[]): string {
  const shown = names.slice(0, 8).map((n) => `"${n}"`).join(', ');
  return names.length > 8 ? `${shown} and ${names.length - 8} more` : shown;
}

/** Checks names and shapes of `src` against the config, then reads every tensor as float32. */
export async function weightsFromSource(config: LlamaConfig, src: TensorSource, configFile: string): Promise<ModelWeights> {
  const slots = hfTensorSlots(config);
  const wanted = new Set(slots.map((s) => s.name));
  const present = new Set(src.names());
  const missing = slots.filter((s) => !present.has(s.name)).map((s) => s.name);
  if (missing.length) throw new Error(`${src.path}: missing tensors ${listNames(missing)} (required by ${configFile})`);
  const unexpected = [...present].filter((n) => !wanted.has(n) && !isIgnorable(n, config));
  if (unexpected.length) {
    const files = [...new Set(unexpected.map((n) => src.info(n)?.file ?? src.path))];
    throw new Error(`${files.join(', ')}: unexpected tensors ${listNames(unexpected)} (not part of a ${config.architecture} with ${configFile})`);
  }
  for (const s of slots) {
    const info = src.info(s.name)!;
    const same = info.shape.length === s.shape.length && info.shape.every((v, i) => v === s.shape[i]);
    if (!same) throw new Error(`${info.file}: tensor "${s.name}" has shape [${info.shape.join(', ')}], ${configFile} implies [${s.shape.join(', ')}]`);
  }

  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    layers.push({
      attnNorm: new Float32Array(0), wq: new Float32Array(0), wk: new Float32Array(0), wv: new Float32Array(0),
      wo: new Float32Array(0), bq: null, bk: null, bv: null, mlpNorm: new Float32Array(0),
      wGate: new Float32Array(0), wUp: new Float32Array(0), wDown: new Float32Array(0),
    });
  }
  const w: ModelWeights = { embed: new Float32Array(0), layers, norm: new Float32Array(0), lmHead: new Float32Array(0) };
  for (const s of slots) {
    const data = await src.read(s.name);
    if (s.key.layer === null) w[s.key.field] = data;
    else layers[s.key.layer][s.key.field] = data;
  }
  if (config.tieWordEmbeddings) w.lmHead = w.embed;
  return w;
}

export interface LoadOptions {
  /** Compute dtype; weights are always converted to float32. */
  dtype?: 'f32';
}

/** Reads and parses dir/config.json. */
export async function readConfig(dir: string): Promise<LlamaConfig> {
  const file = path.join(dir, 'config.json');
  return parseConfig(await readJsonFile(file, true), file);
}

/** Loads a Hugging Face model folder (config.json + safetensors, single or sharded), or a .gguf file, as float32. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<Model> {
  if (opts.dtype !== undefined && opts.dtype !== 'f32') throw new Error(`loadModel: opts.dtype expected "f32", got ${JSON.stringify(opts.dtype)}`);
  const st = await fsp.stat(dir).catch(() => null);
  if (!st) throw new Error(`${dir}: no such model folder`);
  if (st.isFile() && dir.toLowerCase().endsWith('.gguf')) {
    const { loadGguf } = await import('./gguf.js'); // loaded lazily: gguf.ts imports this module
    return loadGguf(dir);
  }
  if (!st.isDirectory()) throw new Error(`${dir}: expected a model folder (config.json + model.safetensors) or a .gguf file`);
  const config = await readConfig(dir);
  const src = await openSafetensorsDir(dir);
  try {
    return { config, weights: await weightsFromSource(config, src, path.join(dir, 'config.json')) };
  } finally {
    await src.close();
  }
}

export interface ModelSummary {
  architecture: string;
  /** Distinct learned values (a tied head counts once). */
  parameters: number;
  /** Bytes the float32 weights take in memory. */
  bytes: number;
  nLayers: number;
  hiddenSize: number;
  nHeads: number;
  nKVHeads: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** One line for logs: "LlamaForCausalLM, 12 layers, hidden 768, 12/4 heads, 110.4M params, 441.6 MB f32". */
  text: string;
}

function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e3).toFixed(1)}K`;
}

export function modelSummary(m: Model): ModelSummary {
  const seen = new Set<Float32Array>();
  let parameters = 0;
  let bytes = 0;
  for (const s of hfTensorSlots(m.config)) {
    const a = weightAt(m.weights, s.key);
    if (!a || seen.has(a)) continue;
    seen.add(a);
    parameters += a.length;
    bytes += a.byteLength;
  }
  const c = m.config;
  const text =
    `${c.architecture}, ${c.nLayers} layers, hidden ${c.hiddenSize}, ${c.nHeads}/${c.nKVHeads} heads, ` +
    `vocab ${c.vocabSize}, ${count(parameters)} params, ${(bytes / 1e6).toFixed(1)} MB f32`;
  return {
    architecture: c.architecture, parameters, bytes, nLayers: c.nLayers, hiddenSize: c.hiddenSize,
    nHeads: c.nHeads, nKVHeads: c.nKVHeads, vocabSize: c.vocabSize, maxPositionEmbeddings: c.maxPositionEmbeddings, text,
  };
}
