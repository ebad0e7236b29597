// Progress with an ETA on stderr. Work is counted in units (tokens for perplexity, prompt tokens
// for the grid tasks); the ETA assumes the remaining units go at the rate measured so far in
// this process (units restored from a state file do not count toward the rate). Rough: policies
// and lengths differ in cost, and the run visits them in a fixed order.

export interface ProgressSink {
  write(s: string): unknown;
  isTTY?: boolean;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private readonly t0 = performance.now();
  private doneUnits = 0;
  private measuredUnits = 0;
  private doneItems = 0;
  private lastPrint = -Infinity;
  private lastLen = 0;

  constructor(
    private readonly label: string,
    private readonly totalItems: number,
    private readonly totalUnits: number,
    private readonly sink: ProgressSink | null = process.stderr,
    /** Least milliseconds between two lines (on a terminal the line is rewritten in place). */
    private readonly intervalMs = sink?.isTTY ? 500 : 10000,
  ) {}

  /** Counts an item of `units` work; `restored` items came from a state file and took no time. */
  step(units: number, note: string, restored = false): void {
    this.doneItems++;
    this.doneUnits += units;
    if (!restored) this.measuredUnits += units;
    const now = performance.now();
    if (now - this.lastPrint >= this.intervalMs || this.doneItems === this.totalItems) {
      this.lastPrint = now;
      this.print(note);
    }
  }

  /** Seconds left at the rate measured so far (Infinity before anything was measured). */
  eta(): number {
    const elapsed = (performance.now() - this.t0) / 1000;
    if (this.measuredUnits === 0) return Infinity;
    return ((this.totalUnits - this.doneUnits) * elapsed) / this.measuredUnits;
  }

  private print(note: string): void {
    if (!this.sink) return;
    const elapsed = (performance.now() - this.t0) / 1000;
    const left = this.doneItems === this.totalItems ? 'done' : `ETA ${formatDuration(this.eta())}`;
    const line = `${this.label}: ${this.doneItems}/${this.totalItems} (${note}) ${formatDuration(elapsed)} elapsed, ${left}`;
    if (this.sink.isTTY) {
      this.sink.write('\r' + line.padEnd(this.lastLen) + (this.doneItems === this.totalItems ? '\n' : ''));
      this.lastLen = line.length;
    } else {
      this.sink.write(line + '\n');
    }
  }

  /** Ends a rewritten terminal line when the run stops early. */
  end(): void {
    if (this.sink?.isTTY && this.lastLen > 0 && this.doneItems !== this.totalItems) this.sink.write('\n');
  }
}
