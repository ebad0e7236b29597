// config.json (Hugging Face layout) <-> LlamaConfig. Strict: a missing or ill-typed field is an
// error that names the file and the field, so a bad checkpoint fails before any weight is read.
import * as fsp from 'node:fs/promises';
import type { LlamaConfig, RopeScaling } from './types.js';

type Arch = LlamaConfig['architecture'];
const ARCHITECTURES: Arch[] = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'];
const MODEL_TYPES: Record<string, Arch> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };
const MODEL_TYPE_OF: Record<Arch, string> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2' };

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads one config field; `null` counts as absent (HF writes `"head_dim": null`). */
class Fields {
  constructor(private readonly obj: Json, private readonly where: string) {}

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  fail(key: string, expected: string): never {
    const got = this.obj[key] === undefined ? 'nothing' : JSON.stringify(this.obj[key]);
    throw new Error(`${this.where}: field "${key}" expected ${expected}, got ${got}`);
  }

  /** A positive (or non-negative when min = 0) integer. */
  int(key: string, fallback?: number, min = 1): number {
    if (!this.has(key) && fallback !== undefined) return fallback;
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`);
    return v;
  }

  /** A finite positive number. */
  positive(key: string, fallback?: number): number {
    if (!this.has(key) && fallback !== undefined) return fallback;
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a positive number');
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.obj[key];
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  /** A token id (integer >= 0) or null when absent. */
  tokenId(key: string): number | null {
    if (!this.has(key)) return null;
    return this.int(key, undefined, 0);
  }

  /** One token id or a list of them; [] when absent. */
  tokenIds(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.obj[key];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) this.fail(key, 'a token id or a list of token ids');
    }
    return list as number[];
  }

  string(key: string): string | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (typeof v !== 'string') this.fail(key, 'a string');
    return v;
  }
}

function parseArchitecture(f: Fields, json: Json, file: string): Arch {
  const archs = json.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
      f.fail('architectures', 'a list with one architecture name');
    }
    const a = archs[0] as string;
    if (!(ARCHITECTURES as string[]).includes(a)) {
      throw new Error(`${file}: field "architectures" names ${a}, expected one of ${ARCHITECTURES.join(', ')}`);
    }
    return a as Arch;
  }
  const mt = f.string('model_type');
  if (mt === null) f.fail('architectures', `a list with one of ${ARCHITECTURES.join(', ')} (or "model_type")`);
  const a = MODEL_TYPES[mt];
  if (!a) throw new Error(`${file}: field "model_type" is "${mt}", expected one of ${Object.keys(MODEL_TYPES).join(', ')}`);
  return a;
}

/**
 * rope_scaling: null, {type|rope_type: "linear", factor} or {type|rope_type: "llama3", factor,
 * low_freq_factor, high_freq_factor, original_max_position_embeddings}. "default" means none.
 */
function parseRopeScaling(v: unknown, where: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw new Error(`${where}: expected an object or null, got ${JSON.stringify(v)}`);
  const kind = v.rope_type ?? v.type;
  const f = new Fields(v, where);
  if (kind === 'default') return null;
  if (kind === 'linear') return { type: 'linear', factor: f.positive('factor') };
  if (kind === 'llama3') {
    return {
      type: 'llama3',
      factor: f.positive('factor'),
      lowFreqFactor: f.positive('low_freq_factor'),
      highFreqFactor: f.positive('high_freq_factor'),
      originalMaxPositionEmbeddings: f.int('original_max_position_embeddings'),
    };
  }
  throw new Error(`${where}: field "rope_type" (or "type") expected "linear" or "llama3", got ${JSON.stringify(kind ?? null)}`);
}

/** Reads a JSON object file; errors name the file. A missing optional file gives null. */
export async function readJsonFile(file: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !required) return null;
    throw new Error(`${file}: cannot read (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) throw new Error(`${file}: expected a JSON object`);
  return json;
}

/** Parses a config.json object; `file` names the source in every error. */
export function parseConfig(json: unknown, file: string): LlamaConfig {
  if (!isObject(json)) throw new Error(`${file}: expected a JSON object`);
  const f = new Fields(json, file);
  const architecture = parseArchitecture(f, json, file);

  const act = f.string('hidden_act');
  if (act !== null && act !== 'silu') f.fail('hidden_act', '"silu"');
  if (f.bool('mlp_bias', false)) f.fail('mlp_bias', 'false (MLP biases are not supported)');
  // Llama's attention_bias also adds an o_proj bias, which this runtime does not carry.
  if (architecture !== 'Qwen2ForCausalLM' && f.bool('attention_bias', false)) {
    f.fail('attention_bias', 'false (q/k/v/o biases are supported only for Qwen2)');
  }

  const hiddenSize = f.int('hidden_size');
  const nHeads = f.int('num_attention_heads');
  const nKVHeads = f.int('num_key_value_heads', nHeads);
  if (nHeads % nKVHeads !== 0) f.fail('num_key_value_heads', `a divisor of num_attention_heads (${nHeads})`);
  if (!f.has('head_dim') && hiddenSize % nHeads !== 0) {
    f.fail('hidden_size', `a multiple of num_attention_heads (${nHeads}) when head_dim is absent`);
  }
  const headDim = f.int('head_dim', hiddenSize / nHeads);
  if (headDim % 2 !== 0) f.fail('head_dim', 'an even number (RoPE rotates pairs)');

  // Newer transformers nest rope_theta and the scaling kind in "rope_parameters".
  let ropeTheta: number;
  let ropeScaling: RopeScaling | null;
  if (isObject(json.rope_parameters)) {
    const rp = new Fields(json.rope_parameters, `${file}: field "rope_parameters"`);
    ropeTheta = rp.positive('rope_theta', 10000);
    ropeScaling = parseRopeScaling(json.rope_parameters, `${file}: field "rope_parameters"`);
  } else {
    ropeTheta = f.positive('rope_theta', 10000);
    ropeScaling = parseRopeScaling(json.rope_scaling, `${file}: field "rope_scaling"`);
  }

  const config: LlamaConfig = {
    architecture,
    vocabSize: f.int('vocab_size'),
    hiddenSize,
    intermediateSize: f.int('intermediate_size'),
    nLayers: f.int('num_hidden_layers'),
    nHeads,
    nKVHeads,
    headDim,
    rmsNormEps: f.positive('rms_norm_eps'),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: f.int('max_position_embeddings'),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    attentionBias: architecture === 'Qwen2ForCausalLM',
    bosTokenId: f.tokenId('bos_token_id'),
    eosTokenIds: f.tokenIds('eos_token_id'),
  };
  for (const id of [config.bosTokenId ?? 0, ...config.eosTokenIds]) {
    if (id >= config.vocabSize) throw new Error(`${file}: token id ${id} in bos_token_id/eos_token_id is outside vocab_size ${config.vocabSize}`);
  }
  return config;
}

/** LlamaConfig -> config.json fields with Hugging Face names (loadable by transformers). */
export function configToJson(c: LlamaConfig): Record<string, unknown> {
  if (c.attentionBias !== (c.architecture === 'Qwen2ForCausalLM')) {
    throw new Error(`config: attentionBias ${c.attentionBias} does not match architecture ${c.architecture} (q/k/v biases belong to Qwen2ForCausalLM only)`);
  }
  let ropeScaling: Record<string, unknown> | null = null;
  if (c.ropeScaling?.type === 'linear') ropeScaling = { rope_type: 'linear', factor: c.ropeScaling.factor };
  if (c.ropeScaling?.type === 'llama3') {
    ropeScaling = {
      rope_type: 'llama3',
      factor: c.ropeScaling.factor,
      low_freq_factor: c.ropeScaling.lowFreqFactor,
      high_freq_factor: c.ropeScaling.highFreqFactor,
      original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings,
    };
  }
  const eos = c.eosTokenIds.length === 0 ? null : c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : [...c.eosTokenIds];
  const json: Record<string, unknown> = {
    architectures: [c.architecture],
    model_type: MODEL_TYPE_OF[c.architecture],
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKVHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScaling,
    max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: eos,
  };
  if (c.architecture !== 'Qwen2ForCausalLM') json.attention_bias = false;
  return json;
}
