// A small strict flag parser: every flag is declared with its kind; unknown flags, missing
// values and values of the wrong kind are errors that name the flag and what was expected.

export type FlagKind = 'string' | 'int' | 'number' | 'bool' | 'list';

export interface FlagSpec {
  kind: FlagKind;
  /** Default value (already typed). */
  default?: string | number | boolean | string[];
  /** For int/number: inclusive bounds. */
  min?: number;
  max?: number;
  /** For string: allowed values. */
  choices?: string[];
  help?: string;
}

export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

export class UsageError extends Error {}

export interface Parsed {
  flags: FlagValues;
  positional: string[];
}

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>, command: string): Parsed {
  const flags: FlagValues = {};
  const positional: string[] = [];
  for (const [name, spec] of Object.entries(specs)) if (spec.default !== undefined) flags[name] = spec.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '-') {
      positional.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = specs[name];
    if (!spec) {
      if (name.startsWith('no-') && specs[name.slice(3)]?.kind === 'bool' && value === undefined) {
        flags[name.slice(3)] = false;
        continue;
      }
      throw new UsageError(`${command}: unknown flag --${name} (known: ${Object.keys(specs).map((s) => '--' + s).join(', ')})`);
    }
    if (spec.kind === 'bool') {
      if (value === undefined) flags[name] = true;
      else if (value === 'true' || value === 'false') flags[name] = value === 'true';
      else throw new UsageError(`${command}: --${name} expects true or false, got "${value}"`);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${command}: --${name} expects a ${describe(spec)}`);
      value = argv[++i];
    }
    flags[name] = convert(command, name, spec, value);
  }
  return { flags, positional };
}

function describe(spec: FlagSpec): string {
  if (spec.choices) return `value, one of ${spec.choices.join(', ')}`;
  const range = spec.min !== undefined || spec.max !== undefined ? ` in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]` : '';
  switch (spec.kind) {
    case 'int': return `whole number${range}`;
    case 'number': return `number${range}`;
    case 'list': return 'comma-separated list';
    default: return 'value';
  }
}

function convert(command: string, name: string, spec: FlagSpec, value: string): string | number | string[] {
  if (spec.kind === 'string') {
    if (spec.choices && !spec.choices.includes(value)) {
      throw new UsageError(`${command}: --${name} expects one of ${spec.choices.join(', ')}, got "${value}"`);
    }
    return value;
  }
  if (spec.kind === 'list') {
    const items = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (items.length === 0) throw new UsageError(`${command}: --${name} expects a comma-separated list, got "${value}"`);
    if (spec.choices) {
      for (const it of items) {
        if (!spec.choices.includes(it)) throw new UsageError(`${command}: --${name} expects items from ${spec.choices.join(', ')}, got "${it}"`);
      }
    }
    return items;
  }
  const n = Number(value);
  const ok = value.trim() !== '' && Number.isFinite(n) && (spec.kind === 'number' || Number.isInteger(n));
  if (!ok || (spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    throw new UsageError(`${command}: --${name} expects a ${describe(spec)}, got "${value}"`);
  }
  return n;
}

/** One line per flag, for --help. */
export function helpText(specs: Record<string, FlagSpec>): string {
  return Object.entries(specs)
    .map(([name, s]) => {
      const def = s.default !== undefined ? ` (default ${Array.isArray(s.default) ? s.default.join(',') : s.default})` : '';
      return `  --${name.padEnd(16)} ${s.help ?? ''}${def}`;
    })
    .join('\n');
}
