// Tiny SVG charts by plain string building (no dependency): line charts for curves (perplexity
// against length, time per token against context) and heat maps for tables of shares (spectral
// energy per layer and head). The output is a complete, standalone .svg document.

export interface Series {
  name: string;
  /** [x, y] pairs; non-finite y values break the line there. */
  points: [number, number][];
}

export interface LineChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Pixels (default 640 x 400). */
  width?: number;
  height?: number;
  logX?: boolean;
  logY?: boolean;
}

export interface HeatMapOptions {
  title?: string;
  rowLabels: string[];
  colLabels: string[];
  /** Colour scale limits (default: the data's min and max). */
  min?: number;
  max?: number;
  /** Text written in each cell (default: 2 decimals); null writes none. */
  format?: ((v: number) => string) | null;
  /** Cell size in pixels (default 48 x 22). */
  cellWidth?: number;
  cellHeight?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const FONT = 'font-family="sans-serif" font-size="12"';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A number for a tick label: 1K, 64K, 2M for big round ones, else up to 4 significant digits. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6 && v % 1e6 === 0) return `${v / 1e6}M`;
  if (a >= 1e3 && v % 1024 === 0) return `${v / 1024}K`;
  if (a >= 1e3 && v % 1e3 === 0) return `${v / 1e3}k`;
  return Number(v.toPrecision(4)).toString();
}

/** About `count` round tick values covering [lo, hi] on a linear axis. */
export function linearTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Ticks for a log axis over [lo, hi] (lo > 0): powers of 2 when the range is under 10 decades of 2, else powers of 10. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const base = Math.log2(hi / lo) <= 12 ? 2 : 10;
  const step = base === 2 && Math.log2(hi / lo) > 8 ? 2 : 1; // every other power of 2 when crowded
  const first = Math.ceil(Math.log(lo) / Math.log(base) - 1e-9);
  const last = Math.floor(Math.log(hi) / Math.log(base) + 1e-9);
  for (let e = first; e <= last; e += step) out.push(base ** e);
  return out.length ? out : [lo, hi];
}

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
}

function axisOf(values: number[], log: boolean, name: string): Axis {
  const v = values.filter((x) => Number.isFinite(x) && (!log || x > 0));
  if (v.length === 0) throw new RangeError(`lineChart ${name}: no finite${log ? ' positive' : ''} values to plot`);
  let lo = Math.min(...v);
  let hi = Math.max(...v);
  if (lo === hi) {
    lo = log ? lo / 2 : lo - 1;
    hi = log ? hi * 2 : hi + 1;
  } else if (!log) {
    const pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
  }
  return { lo, hi, log };
}

function scale(a: Axis, v: number, from: number, to: number): number {
  const t = a.log ? Math.log(v / a.lo) / Math.log(a.hi / a.lo) : (v - a.lo) / (a.hi - a.lo);
  return from + t * (to - from);
}

const f1 = (v: number) => v.toFixed(1);

/** A line chart with one polyline and marker set per series, axes with ticks, and a legend. */
export function lineChart(series: Series[], opts: LineChartOptions = {}): string {
  if (series.length === 0) throw new RangeError('lineChart series: expected at least one series');
  const W = opts.width ?? 640;
  const Hh = opts.height ?? 400;
  const left = 70;
  const right = 150;
  const top = opts.title ? 40 : 20;
  const bottom = 50;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const ax = axisOf(xs, opts.logX ?? false, 'x');
  const ay = axisOf(ys, opts.logY ?? false, 'y');
  const X = (v: number) => scale(ax, v, left, W - right);
  const Y = (v: number) => scale(ay, v, Hh - bottom, top);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}" viewBox="0 0 ${W} ${Hh}">`);
  out.push(`<rect width="${W}" height="${Hh}" fill="white"/>`);
  if (opts.title) out.push(`<text x="${W / 2}" y="24" text-anchor="middle" ${FONT} font-weight="bold">${escapeXml(opts.title)}</text>`);
  // grid and ticks
  const xt = ax.log ? logTicks(ax.lo, ax.hi) : linearTicks(ax.lo, ax.hi);
  const yt = ay.log ? logTicks(ay.lo, ay.hi) : linearTicks(ay.lo, ay.hi);
  for (const t of xt) {
    const x = f1(X(t));
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${Hh - bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${Hh - bottom + 16}" text-anchor="middle" ${FONT}>${escapeXml(formatTick(t))}</text>`);
  }
  for (const t of yt) {
    const y = f1(Y(t));
    out.push(`<line x1="${left}" y1="${y}" x2="${W - right}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" ${FONT}>${escapeXml(formatTick(t))}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${W - left - right}" height="${Hh - top - bottom}" fill="none" stroke="#333"/>`);
  if (opts.xLabel) out.push(`<text x="${(left + W - right) / 2}" y="${Hh - 12}" text-anchor="middle" ${FONT}>${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) {
    const cy = (top + Hh - bottom) / 2;
    out.push(`<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})" ${FONT}>${escapeXml(opts.yLabel)}</text>`);
  }
  // series
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const ok = (p: [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!ax.log || p[0] > 0) && (!ay.log || p[1] > 0);
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.join(' ')}"/>`);
      run = [];
    };
    for (const p of s.points) {
      if (!ok(p)) {
        flush();
        continue;
      }
      const [x, y] = [f1(X(p[0])), f1(Y(p[1]))];
      run.push(`${x},${y}`);
      out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${color}"/>`);
    }
    flush();
    const ly = top + 10 + i * 18;
    out.push(`<line x1="${W - right + 12}" y1="${ly}" x2="${W - right + 32}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${W - right + 38}" y="${ly}" dominant-baseline="middle" ${FONT}>${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Colour of t in [0, 1] on a light-yellow -> green -> dark-blue scale (readable, prints in grey). */
export function colorAt(t: number): string {
  const stops = [
    [255, 255, 217],
    [161, 218, 180],
    [65, 182, 196],
    [34, 94, 168],
    [8, 29, 88],
  ];
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** A heat map of values[row][col] with row and column labels, values in the cells, and a colour bar. */
export function heatMap(values: number[][], opts: HeatMapOptions): string {
  const rows = values.length;
  const cols = rows ? values[0].length : 0;
  if (rows === 0 || cols === 0) throw new RangeError('heatMap values: expected at least one row and one column');
  if (values.some((r) => r.length !== cols)) throw new RangeError(`heatMap values: every row must have ${cols} columns`);
  if (opts.rowLabels.length !== rows) throw new RangeError(`heatMap rowLabels: expected ${rows} labels, got ${opts.rowLabels.length}`);
  if (opts.colLabels.length !== cols) throw new RangeError(`heatMap colLabels: expected ${cols} labels, got ${opts.colLabels.length}`);
  const finite = values.flat().filter(Number.isFinite);
  const lo = opts.min ?? (finite.length ? Math.min(...finite) : 0);
  const hi = opts.max ?? (finite.length ? Math.max(...finite) : 1);
  const span = hi > lo ? hi - lo : 1;
  const cw = opts.cellWidth ?? 48;
  const ch = opts.cellHeight ?? 22;
  const format = opts.format === undefined ? (v: number) => v.toFixed(2) : opts.format;
  const labelW = 8 + 7 * Math.max(...opts.rowLabels.map((l) => l.length));
  const top = (opts.title ? 34 : 10) + 20;
  const left = labelW;
  const W = Math.max(left + cols * cw + 90, opts.title ? 7 * opts.title.length + 20 : 0);
  const Hh = Math.max(top + rows * ch + 16, top + 140);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}" viewBox="0 0 ${W} ${Hh}">`);
  out.push(`<rect width="${W}" height="${Hh}" fill="white"/>`);
  if (opts.title) out.push(`<text x="${W / 2}" y="22" text-anchor="middle" ${FONT} font-weight="bold">${escapeXml(opts.title)}</text>`);
  opts.colLabels.forEach((c, j) => {
    out.push(`<text x="${left + j * cw + cw / 2}" y="${top - 6}" text-anchor="middle" ${FONT}>${escapeXml(c)}</text>`);
  });
  values.forEach((row, i) => {
    const y = top + i * ch;
    out.push(`<text x="${left - 6}" y="${y + ch / 2}" text-anchor="end" dominant-baseline="middle" ${FONT}>${escapeXml(opts.rowLabels[i])}</text>`);
    row.forEach((v, j) => {
      const t = (v - lo) / span;
      const x = left + j * cw;
      const fill = Number.isFinite(v) ? colorAt(t) : '#ccc';
      out.push(`<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${fill}" stroke="white"/>`);
      if (format && Number.isFinite(v)) {
        const ink = t > 0.55 ? 'white' : 'black';
        out.push(`<text x="${x + cw / 2}" y="${y + ch / 2}" text-anchor="middle" dominant-baseline="middle" ${FONT} fill="${ink}">${escapeXml(format(v))}</text>`);
      }
    });
  });
  // colour bar
  const bx = left + cols * cw + 20;
  const bh = 100;
  for (let k = 0; k < 20; k++) {
    out.push(`<rect x="${bx}" y="${f1(top + bh - ((k + 1) * bh) / 20)}" width="14" height="${f1(bh / 20 + 0.5)}" fill="${colorAt((k + 0.5) / 20)}"/>`);
  }
  out.push(`<text x="${bx + 18}" y="${top + 4}" ${FONT}>${escapeXml(formatTick(hi))}</text>`);
  out.push(`<text x="${bx + 18}" y="${top + bh}" ${FONT}>${escapeXml(formatTick(lo))}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
