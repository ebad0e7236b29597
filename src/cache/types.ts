// The one interface between the model's forward pass and a cache policy. The policy is the
// only thing that decides what the model remembers and at which positions it sees it.
//
// A forward step of T new tokens runs:
//   const T = Math.min(remaining, cache.room());   // a policy may cap a step (compression points)
//   const qPos = cache.begin(T);                   // compress/evict now if needed; query positions [T]
//   for each layer l:
//     q, k, v = projections of the T tokens         // k is PRE-RoPE
//     rope(q, qPos)
//     const view = cache.append(l, k, v);           // stores k (pre-RoPE) and v; returns rotated keys to attend over
//     attention(q over view.k/view.v, causal aligned to the end, scores into view.scores if non-null)
//     cache.attended(l, view)                       // eviction policies read view.scores here
//   cache.end();
//
// Layout: K and V rows are [tokens, nKVHeads*headDim], one row per token, every KV head's
// channels side by side (the FreqKV operator treats each channel independently).

export interface CacheShape {
  nLayers: number;
  nKVHeads: number;
  headDim: number;
  /** RoPE inverse frequencies, headDim/2 entries (already include any rope_scaling). */
  invFreq: Float32Array;
}

export interface LayerView {
  /** Keys rotated to the positions the policy assigns, [n, nKVHeads*headDim]; the step's T new keys are the last T rows. */
  k: Float32Array;
  /** Values, [n, nKVHeads*headDim]. */
  v: Float32Array;
  /** Rows to attend over (including the new ones). */
  n: number;
  /** Zeroed [nKVHeads, n] accumulator the attention kernel fills when the policy needs attention weights; null otherwise. */
  scores: Float32Array | null;
  /** Only queries with index >= this (within the step) add to scores (SnapKV's observation window). */
  scoresFromQuery: number;
}

export interface BytesHeld {
  /** Bytes of every buffer the cache holds, per layer. */
  perLayer: number[];
  total: number;
}

export interface KVCache {
  /** Policy name, e.g. "full", "freqkv". */
  readonly policy: string;
  readonly shape: CacheShape;
  /** Tokens seen so far (the length of the stream, not what is held). */
  readonly seen: number;
  /** Rows currently held per layer (the same in every layer). */
  readonly length: number;
  /** Most tokens the next step may carry without a compression or eviction falling inside it; Infinity when unbounded. Always >= 1. */
  room(): number;
  /** Starts a step of T tokens (T <= room()). Compresses/evicts first when needed. Returns the query positions [T]. */
  begin(T: number): Int32Array;
  /** Stores one layer's T new keys (pre-RoPE) and values, each [T, nKVHeads*headDim], and returns what that layer attends over. */
  append(layer: number, k: Float32Array, v: Float32Array): LayerView;
  /** Called after the layer's attention ran (view.scores is filled when it was requested). */
  attended(layer: number, view: LayerView): void;
  /** Ends the step. */
  end(): void;
  /** Bytes actually held, counted from the buffers that exist. */
  bytes(): BytesHeld;
  /** Serialises the whole state (rows, positions, counters, policy parameters). */
  save(): Uint8Array;
}
