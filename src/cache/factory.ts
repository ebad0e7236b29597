// Creates a KV cache by policy name. Each policy reads the options it understands and rejects
// the ones it does not, so a flag that would silently do nothing is an error instead.
import type { Backend } from '../kernels/backend.js';
import { ropeInvFreq } from '../model/rope.js';
import type { LlamaConfig } from '../model/types.js';
import { FullCache } from './full.js';
import { FreqKVCache, type FreqRope } from './freqkv.js';
import type { FreqKeep, FreqScaling } from '../dsp/freqkv-op.js';
import { type EvictionOptions, type PositionMode } from './evict.js';
import { WindowCache } from './window.js';
import { H2OCache } from './h2o.js';
import { SnapKVCache } from './snapkv.js';
import { TOVACache } from './tova.js';
import type { CacheShape, KVCache } from './types.js';

/** Policy names createCache() knows, for CLI flag choices. */
export const CACHE_POLICIES: readonly string[] = ['full', 'window', 'freqkv', 'h2o', 'snapkv', 'tova'];

export interface CacheOptions {
  /** Policy name, one of CACHE_POLICIES (default "full"). */
  policy?: string;
  /** Entries the cache may hold (bounded policies). */
  cacheSize?: number;
  /** Attention-sink tokens kept uncompressed (bounded policies). */
  sinks?: number;
  /** Retention ratio gamma in (0, 1) (FreqKV). */
  retain?: number;
  /** FreqKV ablations: which frequencies are kept, the amplitude scaling, compression before or after RoPE. */
  keep?: FreqKeep;
  scaling?: FreqScaling;
  rope?: FreqRope;
  /** Token budget (eviction policies). */
  budget?: number;
  /** Positions of held tokens after eviction: 'slot' (default) or 'original' (eviction policies). */
  positions?: PositionMode;
  backend?: Backend;
}

/** The cache shape of a model: layers, KV heads, head size and its RoPE frequencies. */
export function cacheShape(config: LlamaConfig): CacheShape {
  return { nLayers: config.nLayers, nKVHeads: config.nKVHeads, headDim: config.headDim, invFreq: ropeInvFreq(config) };
}

export function createCache(config: LlamaConfig, opts: CacheOptions = {}): KVCache {
  const policy = opts.policy ?? 'full';
  switch (policy) {
    case 'full':
      rejectOptions(policy, opts, ['cacheSize', 'sinks', 'retain', 'budget', 'positions', 'keep', 'scaling', 'rope']);
      return new FullCache(cacheShape(config), { backend: opts.backend });
    case 'freqkv':
      rejectOptions(policy, opts, ['budget', 'positions']);
      return new FreqKVCache(cacheShape(config), {
        cacheSize: opts.cacheSize ?? config.maxPositionEmbeddings,
        sinks: opts.sinks,
        retain: opts.retain,
        keep: opts.keep,
        scaling: opts.scaling,
        rope: opts.rope,
        backend: opts.backend,
      });
    case 'window':
      return new WindowCache(cacheShape(config), evictionOptions(policy, config, opts));
    case 'h2o':
      return new H2OCache(cacheShape(config), evictionOptions(policy, config, opts));
    case 'snapkv':
      return new SnapKVCache(cacheShape(config), evictionOptions(policy, config, opts));
    case 'tova':
      return new TOVACache(cacheShape(config), evictionOptions(policy, config, opts));
    default:
      throw new Error(`cache policy: expected one of ${CACHE_POLICIES.join(', ')}, got "${policy}"`);
  }
}

/** Eviction policies: the budget is `budget` or `cacheSize` (either names it; default the trained window). */
function evictionOptions(policy: string, config: LlamaConfig, opts: CacheOptions): EvictionOptions {
  rejectOptions(policy, opts, ['retain', 'keep', 'scaling', 'rope']);
  if (opts.budget !== undefined && opts.cacheSize !== undefined && opts.budget !== opts.cacheSize) {
    throw new Error(`cache policy "${policy}": budget (${opts.budget}) and cacheSize (${opts.cacheSize}) disagree; give one`);
  }
  const budget = opts.budget ?? opts.cacheSize ?? config.maxPositionEmbeddings;
  return { budget, sinks: opts.sinks, positions: opts.positions, backend: opts.backend };
}

function rejectOptions(policy: string, opts: CacheOptions, names: (keyof CacheOptions)[]): void {
  for (const name of names) {
    if (opts[name] !== undefined) throw new Error(`cache policy "${policy}" does not take the option ${name}`);
  }
}
