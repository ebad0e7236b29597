// Writes a model folder in Hugging Face layout (config.json + model.safetensors, or shards with
// model.safetensors.index.json) that loadModel and transformers both read. Every file is written
// to a temporary name and renamed; config.json goes last, so a folder with a config is complete.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { configToJson } from './config.js';
import { hfTensorSlots, weightAt } from './loader.js';
import { INDEX_FILE, SINGLE_FILE, tensorBytes, writeSafetensors, type FloatDtype, type TensorToWrite } from './safetensors.js';
import type { Model } from './types.js';

const TORCH_DTYPE: Record<FloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export interface SaveOptions {
  /** On-disk dtype (default F32; F16/BF16 round to nearest even). */
  dtype?: FloatDtype;
  /** Extra config.json fields (e.g. training provenance), merged over the generated ones. */
  extra?: Record<string, unknown>;
  /** Extra safetensors __metadata__ strings ("format": "pt" is always written). */
  metadata?: Record<string, string>;
  /** Split into shards of at most this many bytes each (a tensor is never split); default: one file. */
  maxShardBytes?: number;
}

/** The model's tensors in Hugging Face names, checked against its config. */
export function modelTensors(model: Model, dtype: FloatDtype): TensorToWrite[] {
  return hfTensorSlots(model.config).map((s) => {
    const data = weightAt(model.weights, s.key);
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (!data || data.length !== n) {
      throw new Error(`saveModel: tensor "${s.name}" expected ${n} values for shape [${s.shape.join(', ')}], got ${data ? data.length : 'null'}`);
    }
    return { name: s.name, dtype, shape: s.shape, data };
  });
}

/** Groups tensors in order into shards of at most maxBytes (one oversized tensor gets its own). */
function shard(tensors: TensorToWrite[], maxBytes: number): TensorToWrite[][] {
  const shards: TensorToWrite[][] = [];
  let size = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    if (shards.length === 0 || size + n > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += n;
  }
  return shards;
}

/** Writes `model` into `dir` (created when absent); returns the paths written. */
export async function saveModel(dir: string, model: Model, opts: SaveOptions = {}): Promise<string[]> {
  const dtype = opts.dtype ?? 'F32';
  if (!(dtype in TORCH_DTYPE)) throw new Error(`saveModel: opts.dtype expected F32, F16 or BF16, got ${JSON.stringify(dtype)}`);
  if (opts.maxShardBytes !== undefined && !(Number.isSafeInteger(opts.maxShardBytes) && opts.maxShardBytes > 0)) {
    throw new Error(`saveModel: opts.maxShardBytes expected a positive integer, got ${opts.maxShardBytes}`);
  }
  const config = { ...configToJson(model.config), torch_dtype: TORCH_DTYPE[dtype], ...(opts.extra ?? {}) };
  const tensors = modelTensors(model, dtype);
  const metadata = { format: 'pt', ...(opts.metadata ?? {}) };
  await fsp.mkdir(dir, { recursive: true });

  const written: string[] = [];
  const groups = opts.maxShardBytes === undefined ? [tensors] : shard(tensors, opts.maxShardBytes);
  if (groups.length === 1) {
    const file = path.join(dir, SINGLE_FILE);
    await writeSafetensors(file, tensors, metadata);
    await fsp.rm(path.join(dir, INDEX_FILE), { force: true }); // a stale index would win over the new file
    written.push(file);
  } else {
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < groups.length; i++) {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`;
      await writeSafetensors(path.join(dir, name), groups[i], metadata);
      for (const t of groups[i]) weightMap[t.name] = name;
      written.push(path.join(dir, name));
    }
    const totalSize = tensors.reduce((a, t) => a + tensorBytes(t), 0);
    const index = path.join(dir, INDEX_FILE);
    await writeJsonAtomic(index, { metadata: { total_size: totalSize }, weight_map: weightMap });
    await fsp.rm(path.join(dir, SINGLE_FILE), { force: true });
    written.push(index);
  }
  const configFile = path.join(dir, 'config.json');
  await writeJsonAtomic(configFile, config);
  written.push(configFile);
  return written;
}

/** Files that describe the tokenizer and generation defaults, copied along with a checkpoint. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'generation_config.json'];

/** Copies the TOKENIZER_FILES that exist in fromDir into toDir (atomically); returns the names copied. */
export async function copyTokenizerFiles(fromDir: string, toDir: string): Promise<string[]> {
  await fsp.mkdir(toDir, { recursive: true });
  const copied: string[] = [];
  for (const name of TOKENIZER_FILES) {
    const data = await fsp.readFile(path.join(fromDir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw new Error(`${path.join(fromDir, name)}: cannot read (${err.message})`);
    });
    if (data === null) continue;
    await writeFileAtomic(path.join(toDir, name), data);
    copied.push(name);
  }
  return copied;
}
