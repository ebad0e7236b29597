// The model as the rest of the library sees it: a parsed configuration and float32 weights in
// Hugging Face layout (a Linear weight is [out, in], row-major). Loaders (safetensors, GGUF)
// produce this; forward, training and writers consume it.

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface LlamaConfig {
  /** Architecture as named by config.json: LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM. */
  architecture: 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  nLayers: number;
  nHeads: number;
  nKVHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** The trained context window. */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2). */
  attentionBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export interface LayerWeights {
  attnNorm: Float32Array; // [d]
  wq: Float32Array; // [nHeads*headDim, d]
  wk: Float32Array; // [nKVHeads*headDim, d]
  wv: Float32Array; // [nKVHeads*headDim, d]
  wo: Float32Array; // [d, nHeads*headDim]
  bq: Float32Array | null; // [nHeads*headDim] (Qwen2)
  bk: Float32Array | null; // [nKVHeads*headDim]
  bv: Float32Array | null; // [nKVHeads*headDim]
  mlpNorm: Float32Array; // [d]
  wGate: Float32Array; // [ff, d]
  wUp: Float32Array; // [ff, d]
  wDown: Float32Array; // [d, ff]
}

export interface ModelWeights {
  embed: Float32Array; // [vocab, d]
  layers: LayerWeights[];
  norm: Float32Array; // [d]
  /** [vocab, d]; the same Float32Array as embed when tieWordEmbeddings. */
  lmHead: Float32Array;
}

export interface Model {
  config: LlamaConfig;
  weights: ModelWeights;
}
