// Cache policies as an evaluation names them: "freqkv", or a variant with its own options,
// "freqkv:retain=0.25:sinks=0" or "freqkv:rope=post" (ablations in one run). Shared flags (--cache-size, --sinks,
// --retain, --budget, --positions) go to every policy that understands them, so all bounded
// policies hold the same number of entries unless told otherwise; a flag that no chosen policy
// takes is an error rather than silently ignored.
import type { Backend } from '../kernels/backend.js';
import { CACHE_POLICIES, type CacheOptions, createCache } from '../cache/factory.js';
import type { PositionMode } from '../cache/evict.js';
import type { FreqRope } from '../cache/freqkv.js';
import type { FreqKeep, FreqScaling } from '../dsp/freqkv-op.js';
import type { KVCache } from '../cache/types.js';
import type { LlamaConfig } from '../model/types.js';

export interface CacheFlags {
  cacheSize?: number;
  sinks?: number;
  retain?: number;
  budget?: number;
  positions?: PositionMode;
  /** FreqKV ablations, per variant only ("freqkv:keep=high", ":scaling=none", ":rope=post"). */
  keep?: FreqKeep;
  scaling?: FreqScaling;
  rope?: FreqRope;
}

export interface PolicySpec {
  /** What tables and plots call it: the spec as written, e.g. "freqkv:retain=0.25". */
  label: string;
  policy: string;
  /** Options passed to createCache (no backend). */
  options: CacheOptions;
}

const EVICTION = new Set(['window', 'h2o', 'snapkv', 'tova']);
const KEYS: Record<string, keyof CacheFlags> = {
  'cache-size': 'cacheSize', sinks: 'sinks', retain: 'retain', budget: 'budget', positions: 'positions', keep: 'keep', scaling: 'scaling', rope: 'rope',
};
/** Options whose values are words, with the words allowed. */
const CHOICES: Record<string, readonly string[]> = {
  positions: ['slot', 'original'], keep: ['low', 'high'], scaling: ['amplitude', 'none', 'energy'], rope: ['pre', 'post'],
};

/** Which of the CacheFlags a policy takes. */
export function flagsTakenBy(policy: string): (keyof CacheFlags)[] {
  if (policy === 'full') return [];
  if (policy === 'freqkv') return ['cacheSize', 'sinks', 'retain', 'keep', 'scaling', 'rope'];
  if (EVICTION.has(policy)) return ['cacheSize', 'budget', 'sinks', 'positions'];
  return [];
}

function parseValue(item: string, key: string, raw: string): number | string {
  if (CHOICES[key]) {
    if (!CHOICES[key].includes(raw)) throw new Error(`policy "${item}": ${key} must be ${CHOICES[key].join(' or ')}, got "${raw}"`);
    return raw;
  }
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) throw new Error(`policy "${item}": ${key} must be a number, got "${raw}"`);
  if (key !== 'retain' && !Number.isInteger(n)) throw new Error(`policy "${item}": ${key} must be a whole number, got "${raw}"`);
  return n;
}

/** One "name[:key=value...]" item; keys are the flag names cache-size, sinks, retain, budget, positions. */
export function parsePolicyItem(item: string): { policy: string; own: CacheFlags } {
  const [policy, ...parts] = item.split(':');
  if (!CACHE_POLICIES.includes(policy)) throw new Error(`policy "${item}": expected one of ${CACHE_POLICIES.join(', ')}, optionally with :key=value options`);
  const own: CacheFlags = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = eq > 0 ? part.slice(0, eq) : part;
    const field = KEYS[key];
    if (eq <= 0 || !field) throw new Error(`policy "${item}": option "${part}" must be key=value with key one of ${Object.keys(KEYS).join(', ')}`);
    if (!flagsTakenBy(policy).includes(field)) throw new Error(`policy "${item}": ${policy} does not take ${key}`);
    (own as Record<string, unknown>)[field] = parseValue(item, key, part.slice(eq + 1));
  }
  return { policy, own };
}

/**
 * Policy specs from the --policy items and the shared flags. Eviction policies get one budget:
 * their own budget, else --budget, else their own cache-size, else --cache-size.
 */
export function policySpecs(items: readonly string[], shared: CacheFlags = {}): PolicySpec[] {
  if (items.length === 0) throw new Error('policy: expected at least one policy');
  const specs: PolicySpec[] = [];
  const used = new Set<keyof CacheFlags>();
  for (const item of items) {
    if (specs.some((s) => s.label === item)) throw new Error(`policy "${item}" is listed twice`);
    const { policy, own } = parsePolicyItem(item);
    const takes = flagsTakenBy(policy);
    for (const k of takes) if (shared[k] !== undefined) used.add(k);
    const pick = <K extends keyof CacheFlags>(k: K): CacheFlags[K] => own[k] ?? (takes.includes(k) ? shared[k] : undefined);
    let options: CacheOptions = { policy };
    if (policy === 'freqkv') {
      options = { policy, cacheSize: pick('cacheSize'), sinks: pick('sinks'), retain: pick('retain'), keep: own.keep, scaling: own.scaling, rope: own.rope };
    } else if (EVICTION.has(policy)) {
      const budget = own.budget ?? shared.budget ?? own.cacheSize ?? shared.cacheSize;
      options = { policy, budget, sinks: pick('sinks'), positions: pick('positions') };
    }
    for (const k of Object.keys(options) as (keyof CacheOptions)[]) if (options[k] === undefined) delete options[k];
    specs.push({ label: item, policy, options });
  }
  const flagName: Record<keyof CacheFlags, string> = {
    cacheSize: 'cache-size', sinks: 'sinks', retain: 'retain', budget: 'budget', positions: 'positions', keep: 'keep', scaling: 'scaling', rope: 'rope',
  };
  for (const k of Object.keys(shared) as (keyof CacheFlags)[]) {
    if (shared[k] !== undefined && !used.has(k)) {
      throw new Error(`--${flagName[k]} is taken by none of the policies ${items.join(', ')}`);
    }
  }
  return specs;
}

/** A fresh cache for a spec. */
export function cacheFor(config: LlamaConfig, spec: PolicySpec, backend?: Backend): KVCache {
  return createCache(config, { ...spec.options, backend });
}

/** Creates each spec's cache once, so bad option combinations fail before any work starts. */
export function checkPolicySpecs(config: LlamaConfig, specs: readonly PolicySpec[]): void {
  for (const s of specs) {
    try {
      cacheFor(config, s);
    } catch (err) {
      throw new Error(`policy "${s.label}": ${(err as Error).message}`);
    }
  }
}

/** A file-name-safe form of a label ("freqkv:retain=0.25" -> "freqkv-retain-0.25"). */
export function labelSlug(label: string): string {
  return label.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '') || 'policy';
}
