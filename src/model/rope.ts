// Rotary position embedding frequencies, as Hugging Face computes them for Llama-family
// models: invFreq[i] = theta^(-2i/headDim), then adjusted by rope_scaling. Computed in float64
// and rounded once to float32 at the end.
import type { LlamaConfig } from './types.js';

/** RoPE inverse frequencies, [headDim/2], including any rope_scaling of the config. */
export function ropeInvFreq(config: LlamaConfig): Float32Array {
  const { headDim, ropeTheta, ropeScaling } = config;
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
    throw new RangeError(`ropeInvFreq: config.headDim must be a positive even integer, got ${headDim}`);
  }
  if (!(ropeTheta > 0)) throw new RangeError(`ropeInvFreq: config.ropeTheta must be positive, got ${ropeTheta}`);
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const base = 1 / Math.pow(ropeTheta, (2 * i) / headDim);
    out[i] = ropeScaling ? scaleFrequency(base, config) : base;
  }
  return out;
}

function scaleFrequency(freq: number, config: LlamaConfig): number {
  const s = config.ropeScaling!;
  if (!(s.factor > 0)) throw new RangeError(`ropeInvFreq: rope_scaling.factor must be positive, got ${s.factor}`);
  if (s.type === 'linear') return freq / s.factor;
  // Llama 3.1: wavelengths longer than original/lowFreqFactor are slowed by `factor`, those
  // shorter than original/highFreqFactor are kept, and the band between is interpolated.
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original } = s;
  if (!(highFreqFactor > lowFreqFactor)) {
    throw new RangeError(`ropeInvFreq: rope_scaling needs high_freq_factor > low_freq_factor, got ${highFreqFactor} and ${lowFreqFactor}`);
  }
  const wavelength = (2 * Math.PI) / freq;
  const lowFreqWavelength = original / lowFreqFactor;
  const highFreqWavelength = original / highFreqFactor;
  if (wavelength < highFreqWavelength) return freq;
  if (wavelength > lowFreqWavelength) return freq / factor;
  const smooth = (original / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
  return (1 - smooth) * (freq / factor) + smooth * freq;
}
