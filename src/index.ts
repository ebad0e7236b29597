// Public API of the freqkv package.
export type { Backend, AttentionArgs, MatmulOptions } from './kernels/backend.js';
export { getBackend, setBackend } from './kernels/index.js';
export { referenceBackend } from './kernels/reference.js';
export type { KVCache, LayerView, CacheShape, BytesHeld } from './cache/types.js';
export type { LlamaConfig, ModelWeights, LayerWeights, Model, RopeScaling } from './model/types.js';
