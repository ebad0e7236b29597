// Public API of the freqkv package.
export type { Backend, AttentionArgs, MatmulOptions } from './kernels/backend.js';
export { getBackend, setBackend } from './kernels/index.js';
export { referenceBackend } from './kernels/reference.js';
export type { KVCache, LayerView, CacheShape, BytesHeld } from './cache/types.js';
export type { LlamaConfig, ModelWeights, LayerWeights, Model, RopeScaling } from './model/types.js';
export { parseConfig, configToJson } from './model/config.js';
export { loadModel, modelSummary, type ModelSummary, type LoadOptions } from './model/loader.js';
export { saveModel, copyTokenizerFiles, type SaveOptions } from './model/writer.js';
export { writeSafetensors, SafetensorsFile, openSafetensorsDir, type TensorToWrite, type TensorSource } from './model/safetensors.js';
export { loadTokenizer, byteLevelTokenizerJson, saveTokenizer, type Tokenizer } from './model/tokenizer.js';
export { renderChat, DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_TEMPLATE_NAME, type ChatMessage } from './model/chat.js';
export { loadGguf, writeGguf, GgufFile } from './model/gguf.js';
export { writeFileAtomic, writeJsonAtomic } from './util/atomic.js';
