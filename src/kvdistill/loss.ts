// The KV-Distill objective on answer tokens, exact over the vocabulary (KVDISTILL.md "Training"):
//   L = mean over rows of  λ·KL(T‖S) + (1−λ)·KL(S‖T),   paper λ = 0.6
// with T the teacher's and S the student's next-token distributions. Gradient with respect to
// the student logits z (row-wise; lp = log-probabilities):
//   ∂KL(T‖S)/∂z = p_S − p_T,   ∂KL(S‖T)/∂z = p_S ∘ (lp_S − lp_T − KL(S‖T)).
// Computed in float64.

export const DEFAULT_LAMBDA = 0.6;

/** log-softmax of row r of z [rows, V] into out [V] (float64). */
function logSoftmaxRow(z: Float32Array, r: number, V: number, out: Float64Array): void {
  let m = -Infinity;
  for (let i = 0; i < V; i++) m = Math.max(m, z[r * V + i]);
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp(z[r * V + i] - m);
  const lse = m + Math.log(s);
  for (let i = 0; i < V; i++) out[i] = z[r * V + i] - lse;
}

export interface KlParts {
  /** The objective (mean over rows). */
  loss: number;
  /** Mean KL(T‖S) and KL(S‖T), for reporting. */
  klTS: number;
  klST: number;
}

/**
 * Mixed KL of student logits zS against teacher logits zT, both [rows, V]. When dz is given it
 * receives ∂loss/∂zS [rows, V] (written).
 */
export function mixedKl(zS: Float32Array, zT: Float32Array, rows: number, V: number, lambda: number, dz: Float32Array | null = null): KlParts {
  if (!(lambda >= 0 && lambda <= 1)) throw new RangeError(`kvdistill lambda: expected a number in [0, 1], got ${lambda}`);
  if (rows < 1) throw new RangeError('kvdistill loss: expected at least one answer row');
  const lS = new Float64Array(V), lT = new Float64Array(V);
  let ts = 0, st = 0;
  for (let r = 0; r < rows; r++) {
    logSoftmaxRow(zS, r, V, lS);
    logSoftmaxRow(zT, r, V, lT);
    let a = 0, b = 0;
    for (let i = 0; i < V; i++) {
      const pT = Math.exp(lT[i]), pS = Math.exp(lS[i]);
      a += pT * (lT[i] - lS[i]);
      b += pS * (lS[i] - lT[i]);
    }
    ts += a;
    st += b;
    if (dz) {
      for (let i = 0; i < V; i++) {
        const pT = Math.exp(lT[i]), pS = Math.exp(lS[i]);
        dz[r * V + i] = (lambda * (pS - pT) + (1 - lambda) * pS * (lS[i] - lT[i] - b)) / rows;
      }
    }
  }
  return { loss: (lambda * ts + (1 - lambda) * st) / rows, klTS: ts / rows, klST: st / rows };
}
