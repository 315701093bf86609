import { inspect } from 'node:util';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { PlantBridgeError } from './errors.ts';
import { formatPath, type Issue } from './validate.ts';

/**
 * Pure helpers that both the agent's and the hub's configuration use: secret references, sizes,
 * durations, and error messages that name the path and give a hint. No I/O here: reading environment
 * variables and files is injected by the caller.
 */

const REDACTED = '[secret]';

/** A resolved secret. It never prints itself: not in logs, not in JSON, not in util.inspect. */
export class Secret {
  readonly #value: string;
  readonly ref: string;
  constructor(value: string, ref: string) {
    this.#value = value;
    this.ref = ref;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

/** An unresolved reference, as parsed from YAML: `${ENV_VAR}` or `file:/path/to/secret`. */
export class SecretRef {
  readonly ref: string;
  constructor(ref: string) {
    this.ref = ref;
  }
  toJSON(): string {
    return this.ref;
  }
}

const ENV_REF = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

export const secretRef = z
  .string()
  .refine((s) => ENV_REF.test(s) || (s.startsWith('file:') && s.length > 5), {
    error: 'a secret must be a reference, ${ENV_VAR} or file:/path/to/secret, never the secret itself',
  })
  .transform((s) => new SecretRef(s))
  .meta({ description: 'Secret reference: ${ENV_VAR} or file:/path/to/file (the file content, trimmed)' });

export interface SecretSources {
  env: Record<string, string | undefined>;
  readFile: (path: string) => string;
}

/** Replaces every SecretRef in a parsed config with a Secret, reporting every missing one by path (and the file's name). */
export function resolveSecrets<T>(config: T, sources: SecretSources, file?: string): Resolved<T> {
  const issues: Issue[] = [];
  const walk = (v: unknown, path: PropertyKey[]): unknown => {
    if (v instanceof SecretRef) {
      const env = ENV_REF.exec(v.ref);
      if (env) {
        const value = sources.env[env[1]];
        if (value === undefined || value === '') {
          issues.push({ path: formatPath(path), message: `environment variable ${env[1]} is not set (referenced as ${v.ref})` });
          return v;
        }
        return new Secret(value, v.ref);
      }
      const file = v.ref.slice('file:'.length);
      try {
        const value = sources.readFile(file).trim();
        if (value === '') {
          issues.push({ path: formatPath(path), message: `secret file ${file} is empty` });
          return v;
        }
        return new Secret(value, v.ref);
      } catch (err) {
        issues.push({ path: formatPath(path), message: `cannot read secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
        return v;
      }
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]));
    if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, [...path, k]);
      return out;
    }
    return v;
  };
  const out = walk(config, []) as Resolved<T>;
  if (issues.length > 0) throw configError(issues, file);
  return out;
}

export function configError(issues: Issue[], file?: string): PlantBridgeError {
  const where = file ? `${file}: ` : '';
  return new PlantBridgeError('CONFIG_INVALID', `${where}invalid configuration\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`, {
    details: issues,
  });
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** A byte size: a number of bytes or a string such as "10 GiB", "500MB". */
export const byteSize = z
  .union([z.number().int().nonnegative(), z.string()])
  .transform((v, ctx) => {
    if (typeof v === 'number') return v;
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(v);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `expected a size such as 500MB or 10GiB, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]);
  })
  .meta({ description: 'Bytes, or a string with a unit: 500MB, 10GiB' });

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration in milliseconds: a number of ms or a string such as "15s", "5m", "7d". */
export const duration = z
  .union([z.number().int().nonnegative(), z.string()])
  .transform((v, ctx) => {
    if (typeof v === 'number') return v;
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(v);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as 500ms, 15s, 5m, 7d, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return Math.round(Number(m[1]) * DURATION_UNITS[m[2]]);
  })
  .meta({ description: 'Milliseconds, or a string with a unit: 500ms, 15s, 5m, 2h, 7d' });

/** A URL with one of the given schemes; the hint shows the expected form. */
export function urlWithScheme(schemes: string[], example: string) {
  return z.string().refine(
    (s) => {
      try {
        const u = new URL(s);
        return schemes.includes(u.protocol.replace(/:$/, '')) && u.hostname !== '';
      } catch {
        return false;
      }
    },
    { error: (iss) => `expected ${example}, got ${JSON.stringify(iss.input)}` },
  );
}

/** An IANA time zone name that this runtime knows. */
export const timeZone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { error: (iss) => `expected an IANA time zone such as Europe/Berlin, got ${JSON.stringify(iss.input)}` },
);

/** Walks a Zod schema along the input's path to list the keys allowed where an unknown key was found. */
export function allowedKeysAt(schema: z.ZodType, input: unknown, path: readonly PropertyKey[]): string[] {
  let s: any = schema;
  let v: any = input;
  const unwrap = () => {
    for (;;) {
      const def = s?._zod?.def;
      if (!def) return;
      if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault') s = def.innerType;
      else if (def.type === 'pipe') s = def.in;
      else if (def.type === 'union') {
        const disc = def.discriminator as string | undefined;
        const pick = (def.options as any[]).find((o) => {
          const shape = o?._zod?.def?.shape;
          if (!shape) return false;
          if (disc && v && typeof v === 'object') {
            const lit = shape[disc]?._zod?.def;
            return lit?.values ? lit.values.includes(v[disc]) : false;
          }
          return true;
        });
        if (!pick) return;
        s = pick;
      } else return;
    }
  };
  for (const seg of path) {
    unwrap();
    const def = s?._zod?.def;
    if (!def) return [];
    if (def.type === 'object') s = def.shape[seg as string];
    else if (def.type === 'array') s = def.element;
    else if (def.type === 'record') s = def.valueType;
    else return [];
    v = v?.[seg as any];
  }
  unwrap();
  const def = s?._zod?.def;
  return def?.type === 'object' ? Object.keys(def.shape) : [];
}

/** The closest known key, for "did you mean" hints (Damerau-free Levenshtein, small inputs only). */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

const EXPECTED: Record<string, string> = {
  number: 'a number',
  int: 'a whole number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping (key: value)',
  bigint: 'a whole number',
  date: 'a date',
};

function expectedText(expected: string): string {
  return EXPECTED[expected] ?? expected;
}

/** What a value found in the YAML is, for "expected a number, got the string \"five\"". */
export function describeValue(v: unknown): string {
  if (v === null) return 'nothing (the key has no value)';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'boolean') return `${v}`;
  if (Array.isArray(v)) return `a list (${v.length} item${v.length === 1 ? '' : 's'})`;
  if (v instanceof Date) return `the date ${v.toISOString().slice(0, 10)} (quote it to keep it a string)`;
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/**
 * Validates a parsed YAML document against a config schema. Every problem is reported at once, each
 * with its path and a hint; unknown keys suggest the nearest known one.
 */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, file?: string): z.infer<S> {
  // reportInput: the issue carries the value found, so a wrong type can say what it got
  const r = schema.safeParse(input, { reportInput: true });
  if (r.success) return r.data;
  const issues: Issue[] = [];
  for (const issue of r.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(schema, input, issue.path);
      for (const key of issue.keys) {
        const near = closest(key, allowed);
        const hint = near ? `did you mean "${near}"?` : allowed.length ? `allowed here: ${allowed.join(', ')}` : '';
        issues.push({ path: formatPath([...issue.path, key]), message: `unknown key${hint ? ` (${hint})` : ''}` });
      }
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      issues.push({ path: formatPath(issue.path), message: `is required (${expectedText(issue.expected)})` });
    } else if (issue.code === 'invalid_type') {
      const quote = issue.expected === 'string' && (typeof issue.input === 'number' || typeof issue.input === 'boolean') ? ` (in quotes it is one: "${String(issue.input)}")` : '';
      issues.push({ path: formatPath(issue.path), message: `expected ${expectedText(issue.expected)}, got ${describeValue(issue.input)}${quote}` });
    } else if (issue.code === 'invalid_union' && (issue as any).discriminator) {
      issues.push({ path: formatPath([...issue.path, (issue as any).discriminator]), message: issue.message });
    } else {
      issues.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  throw configError(issues, file);
}

/** A parsed config type with its secret references replaced by resolved secrets (what resolveSecrets returns). */
export type Resolved<T> = T extends SecretRef
  ? Secret
  : T extends Array<infer U>
    ? Resolved<U>[]
    : T extends (...args: any[]) => any
      ? T
      : T extends object
        ? { [K in keyof T]: Resolved<T[K]> }
        : T;

/**
 * Parses YAML text. A syntax error is reported once, at the first problem: its line and column, a sentence
 * of ours for the common mistakes, and the source line with a caret under the spot (the yaml library's
 * later errors are mostly consequences of the first). Duplicate keys are errors.
 */
export function parseYaml(text: string, file: string): unknown {
  if (text.length > 4 * 1024 * 1024) throw configError([{ path: '(file)', message: `${text.length} bytes is far too large for a configuration file (limit 4 MiB)` }], file);
  let doc;
  try {
    doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    throw configError([{ path: '(yaml)', message: `cannot parse: ${(err as Error).message}` }], file);
  }
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const { line, col, message } = explainYamlError(text, e.code, e.pos[0], e.message);
    throw configError([{ path: `line ${line}, column ${col}`, message: `${message}\n${sourceExcerpt(text, line, col)}` }], file);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // alias bombs and absurd nesting end here, as a config error rather than a crash
    throw configError([{ path: '(yaml)', message: (err as Error).message }], file);
  }
}

/** 1-based line and column of a character offset. */
function lineCol(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const line = before.split('\n').length;
  return { line, col: offset - (before.lastIndexOf('\n') + 1) + 1 };
}

/**
 * The yaml library's error in words a plant engineer recognises, at the line that needs the change: an
 * unclosed quote or bracket is reported where it opens (the library notices it at the end of the file), a
 * deeper-indented line after `key: value` at that line (the library blames the value above it).
 */
export function explainYamlError(text: string, code: string, offset: number, libraryMessage: string): { line: number; col: number; message: string } {
  const lines = text.split('\n');
  const at = lineCol(text, offset);
  // the library's own first sentence, without the location it appends ("… at line 3, column 1:")
  const own = libraryMessage.split('\n')[0].replace(/\s+at line \d+, column \d+:?\s*$/, '').trim();
  const startLine = lines[at.line - 1] ?? '';
  const firstChar = { line: at.line, col: startLine.length - startLine.trimStart().length + 1 };
  if (code === 'MULTILINE_IMPLICIT_KEY' && !/:(\s|$)/.test(startLine) && startLine.trim() !== '') {
    const key = startLine.trim();
    return { ...firstChar, message: `${JSON.stringify(key)} needs a colon after it to be a key (${key}:)` };
  }
  if (code === 'BLOCK_AS_IMPLICIT_KEY' && /^\s*- /.test(startLine)) {
    return { ...firstChar, message: 'a list item (- …) where the lines around it are key: value' };
  }
  if (code === 'BLOCK_AS_IMPLICIT_KEY' || code === 'MULTILINE_IMPLICIT_KEY') {
    const next = lines.findIndex((l, i) => i >= at.line && l.trim() !== '' && !l.trim().startsWith('#'));
    if (next >= 0) {
      const indent = lines[next].length - lines[next].trimStart().length;
      return { line: next + 1, col: indent + 1, message: `indented deeper than line ${at.line} above it, which already has a value: indent it like that line, or move the value of line ${at.line} onto lines of its own` };
    }
  }
  if (code === 'MISSING_CHAR' && /quote/.test(own)) {
    const q = /'/.test(own) && !/"/.test(own) ? "'" : '"';
    const open = unclosed(lines, q, q);
    if (open) return { ...open, message: `this ${q === '"' ? 'double' : 'single'} quote is never closed` };
  }
  if (code === 'BAD_INDENT' || code === 'MISSING_CHAR' || code === 'UNEXPECTED_TOKEN') {
    for (const [o, c] of [['[', ']'], ['{', '}']] as const) {
      if (own.includes(c)) {
        const open = unclosed(lines, o, c);
        if (open) return { ...open, message: `this ${o} is never closed with ${c}` };
      }
    }
  }
  if (code === 'DUPLICATE_KEY') {
    const key = /^\s*([^:#]+?)\s*:/.exec(lines[at.line - 1] ?? '')?.[1];
    if (key) return { ...at, message: `duplicate key ${JSON.stringify(key)}: each key may appear once in a mapping` };
  }
  if (code === 'BAD_INDENT' && /same column/.test(own)) {
    return { ...firstChar, message: 'not in the column of the keys above it: the keys of one mapping start in the same column' };
  }
  if (code === 'MISSING_CHAR' && /Sequence item without - indicator/.test(own)) {
    return { ...firstChar, message: 'not in the column of the list item\'s keys above it: the keys of one item start in the same column, after "- "' };
  }
  if (code === 'TAB_AS_INDENT') return { ...at, message: 'a tab is used for indentation: YAML allows spaces only' };
  return { ...at, message: own || code };
}

/** The first line where `open` is not matched by `close` (outside comments; quotes count pairwise). */
function unclosed(lines: string[], open: string, close: string): { line: number; col: number } | undefined {
  let depth = 0;
  let first: { line: number; col: number } | undefined;
  for (const [i, raw] of lines.entries()) {
    const l = open === close ? raw : raw.replace(/"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'/g, (m) => ' '.repeat(m.length));
    for (let j = 0; j < l.length; j++) {
      if (l[j] === '#' && (j === 0 || /\s/.test(l[j - 1])) && depth === 0) break;
      if (open === close) {
        if (l[j] === open && (open !== '"' || l[j - 1] !== '\\')) {
          if (depth === 0) first = { line: i + 1, col: j + 1 };
          depth = depth === 0 ? 1 : 0;
        }
      } else if (l[j] === open) {
        if (depth === 0) first = { line: i + 1, col: j + 1 };
        depth++;
      } else if (l[j] === close && depth > 0) depth--;
    }
  }
  return depth > 0 ? first : undefined;
}

/** `  3 |    plant: "1010"` and a caret under the column. */
export function sourceExcerpt(text: string, line: number, col: number): string {
  const src = (text.split('\n')[line - 1] ?? '').replace(/\r$/, '').replace(/\t/g, ' ');
  const gutter = `    ${line} | `;
  return `${gutter}${src}\n${' '.repeat(gutter.length - 2)}| ${' '.repeat(Math.max(0, col - 1))}^`;
}
