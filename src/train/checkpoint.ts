// Training checkpoints: one safetensors file (written to a temporary name, then renamed) with
// the trainable parameters under their Hugging Face names, the AdamW moments under
// "adam.m.<name>" / "adam.v.<name>", and a JSON header in the metadata: the model config, the
// run's options, the step and the optimiser counter. The data position is the step itself
// (batches are a pure function of seed and step), so restoring these and running one step gives
// bit-for-bit the step the interrupted run would have taken.
//
// Frozen weights (a fine-tune's base model) are not stored: the run options name where they
// come from, and a checksum of them refuses a resume on different ones.
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../model/safetensors.js';
import type { AdamW } from './adamw.js';
import type { Param } from './params.js';

export const CHECKPOINT_FORMAT = 'freqkv-train-checkpoint';
export const CHECKPOINT_VERSION = 1;
const META_KEY = 'freqkv_checkpoint';

export interface TrainState {
  /** Optimiser steps completed. */
  step: number;
  /** Tokens trained on so far. */
  tokens: number;
  /** Training wall time so far, over all sessions (ms). */
  elapsedMs: number;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  /** The model's config.json (configToJson). */
  config: Record<string, unknown>;
  /** Everything the caller needs to rebuild the run (CLI options, data folder, base model...). */
  run: Record<string, unknown>;
  state: TrainState;
  /** AdamW's update counter. */
  adamSteps: number;
  /** Checksum of the frozen parameters (hex), '' when everything is trainable. */
  frozenChecksum: string;
  /** Names of the stored trainable parameters, in order. */
  trainable: string[];
}

/** FNV-1a over the float32 bits of every frozen parameter, as 8 hex digits. */
export function frozenChecksum(params: readonly Param[]): string {
  let h = 0x811c9dc5;
  let any = false;
  for (const p of params) {
    if (p.grad) continue;
    any = true;
    const bits = new Uint32Array(p.data.buffer, p.data.byteOffset, p.data.length);
    for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i], 0x01000193) >>> 0;
  }
  return any ? h.toString(16).padStart(8, '0') : '';
}

export async function saveCheckpoint(file: string, params: readonly Param[], opt: AdamW,
  meta: Omit<CheckpointMeta, 'format' | 'version' | 'adamSteps' | 'trainable' | 'frozenChecksum'> & { frozenChecksum?: string }): Promise<void> {
  const trainable = params.filter((p) => p.grad);
  if (trainable.length !== opt.params.length || trainable.some((p, i) => p !== opt.params[i])) {
    throw new Error('saveCheckpoint: the optimiser does not hold exactly the trainable parameters');
  }
  const full: CheckpointMeta = {
    format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, config: meta.config, run: meta.run, state: meta.state,
    adamSteps: opt.t, frozenChecksum: meta.frozenChecksum ?? frozenChecksum(params), trainable: trainable.map((p) => p.name),
  };
  const tensors: TensorToWrite[] = [];
  trainable.forEach((p, i) => {
    tensors.push({ name: p.name, dtype: 'F32', shape: p.shape, data: p.data });
    tensors.push({ name: `adam.m.${p.name}`, dtype: 'F32', shape: p.shape, data: opt.m[i] });
    tensors.push({ name: `adam.v.${p.name}`, dtype: 'F32', shape: p.shape, data: opt.v[i] });
  });
  await writeSafetensors(file, tensors, { [META_KEY]: JSON.stringify(full) });
}

/** Reads only the JSON header of a checkpoint (to rebuild the model and options first). */
export async function readCheckpointMeta(file: string): Promise<CheckpointMeta> {
  const st = await SafetensorsFile.open(file);
  try {
    return parseMeta(st, file);
  } finally {
    await st.close();
  }
}

function parseMeta(st: SafetensorsFile, file: string): CheckpointMeta {
  const raw = st.metadata?.[META_KEY];
  if (!raw) throw new Error(`${file}: not a training checkpoint (no "${META_KEY}" metadata)`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(raw);
  } catch (err) {
    throw new Error(`${file}: checkpoint metadata is not valid JSON (${(err as Error).message})`);
  }
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`${file}: field "format" must be "${CHECKPOINT_FORMAT}", got ${JSON.stringify(meta.format)}`);
  if (meta.version !== CHECKPOINT_VERSION) throw new Error(`${file}: checkpoint version ${meta.version}, this reader knows ${CHECKPOINT_VERSION}`);
  const s = meta.state;
  if (!s || !Number.isInteger(s.step) || s.step < 0) throw new Error(`${file}: field "state.step" must be a whole number >= 0`);
  if (!Array.isArray(meta.trainable)) throw new Error(`${file}: field "trainable" must be a list of parameter names`);
  return meta;
}

/**
 * Loads a checkpoint into an already built run: the trainable parameters' values and the
 * optimiser's moments and counter. Throws, naming the parameter, when the run's trainable set
 * or shapes differ, or the frozen weights are not the ones the checkpoint was trained on.
 */
export async function restoreCheckpoint(file: string, params: readonly Param[], opt: AdamW): Promise<CheckpointMeta> {
  const st = await SafetensorsFile.open(file);
  try {
    const meta = parseMeta(st, file);
    const trainable = params.filter((p) => p.grad);
    const names = trainable.map((p) => p.name);
    if (names.join('\n') !== meta.trainable.join('\n')) {
      const missing = meta.trainable.filter((n) => !names.includes(n));
      const extra = names.filter((n) => !meta.trainable.includes(n));
      throw new Error(`${file}: the checkpoint's trainable parameters differ from this run's (only in checkpoint: ${missing.slice(0, 3).join(', ') || '-'}; only in run: ${extra.slice(0, 3).join(', ') || '-'})`);
    }
    const sum = frozenChecksum(params);
    if (sum !== meta.frozenChecksum) throw new Error(`${file}: the frozen weights differ from the ones this checkpoint was trained on (checksum ${sum}, expected ${meta.frozenChecksum})`);
    for (let i = 0; i < trainable.length; i++) {
      const p = trainable[i];
      for (const [name, dst] of [[p.name, p.data], [`adam.m.${p.name}`, opt.m[i]], [`adam.v.${p.name}`, opt.v[i]]] as const) {
        const info = st.info(name);
        if (!info) throw new Error(`${file}: tensor "${name}" is missing`);
        if (info.dtype !== 'F32' || info.shape.join(',') !== p.shape.join(',')) {
          throw new Error(`${file}: tensor "${name}" is ${info.dtype} [${info.shape.join(', ')}], expected F32 [${p.shape.join(', ')}]`);
        }
        await st.read(name, dst);
      }
    }
    opt.t = meta.adamSteps;
    return meta;
  } finally {
    await st.close();
  }
}
