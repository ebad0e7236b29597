// Learning-rate schedules: linear warm-up from 0, then constant or cosine decay to
// minRatio·lr at the last step. Pure functions of the step, so resuming needs only the step.

export type ScheduleKind = 'constant' | 'cosine';
export const SCHEDULES: readonly ScheduleKind[] = ['constant', 'cosine'];

export interface Schedule {
  kind: ScheduleKind;
  /** Peak learning rate. */
  lr: number;
  /** Warm-up steps (lr grows linearly to the peak over them). */
  warmup: number;
  /** Total optimiser steps (cosine reaches its floor at the last). */
  steps: number;
  /** Cosine floor as a fraction of lr (default 0.1). */
  minRatio?: number;
}

/** Learning rate of optimiser step `step` (0-based). */
export function learningRate(s: Schedule, step: number): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  if (s.kind === 'constant') return s.lr;
  const span = Math.max(1, s.steps - s.warmup - 1);
  const progress = Math.min(1, (step - s.warmup) / span);
  const floor = s.lr * (s.minRatio ?? 0.1);
  return floor + 0.5 * (s.lr - floor) * (1 + Math.cos(Math.PI * progress));
}
