import type { z } from 'zod';
import { PlantBridgeError, type ErrorCode } from './errors.ts';
import { parseSchemaId } from './wire.ts';
import { isWireText, printable } from './wire-text.ts';
import { transactionSchemas, type Transaction } from './transactions.ts';
import { compileFastAccept } from './fast-accept.ts';

export interface Issue {
  /** JSONPath-like location: `items[3].data.yield.qty` */
  path: string;
  message: string;
}

export type Validation<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    // a key with control characters (an unknown field anyone can send) is quoted, its controls escaped
    else if (typeof seg === 'string' && !isWireText(seg)) out += `["${printable(seg).replace(/"/g, '\\"')}"]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}

export function issuesOf(error: z.ZodError, prefix: readonly PropertyKey[] = []): Issue[] {
  const out: Issue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ path: formatPath([...prefix, ...issue.path, key]), message: 'unknown field' });
      }
      continue;
    }
    out.push({ path: formatPath([...prefix, ...issue.path]), message: issue.message });
  }
  return out;
}

export function validate<S extends z.ZodType>(schema: S, value: unknown, prefix: readonly PropertyKey[] = []): Validation<z.infer<S>> {
  const r = schema.safeParse(value);
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: issuesOf(r.error, prefix) };
}

/**
 * Like validate(), but a value the schema's fast accept path proves valid is returned as it is, without
 * zod's copy (fast-accept.ts). Anything else goes through zod, so results and issues are zod's. Use it
 * where the caller does not mutate the value and the input is fresh JSON (the hub's ingest path).
 */
export function validateFast<S extends z.ZodType>(schema: S, value: unknown, prefix: readonly PropertyKey[] = []): Validation<z.infer<S>> {
  let fast = false;
  try {
    fast = compileFastAccept(schema)(value);
  } catch {
    // a refine that throws: zod decides (and throws the same way it always did)
  }
  if (fast) return { ok: true, value: value as z.infer<S> };
  return validate(schema, value, prefix);
}

export function issuesToText(issues: Issue[]): string {
  return issues.map((i) => `${i.path}: ${i.message}`).join('; ');
}

/** Validates and throws a PlantBridgeError naming every offending path. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, code: ErrorCode = 'SCHEMA_INVALID'): z.infer<S> {
  const r = validate(schema, value);
  if (!r.ok) throw new PlantBridgeError(code, issuesToText(r.issues), { details: r.issues });
  return r.value;
}

type SchemaId = NonNullable<ReturnType<typeof parseSchemaId>>;
/** `schema` field value -> its id and zod schema: a few distinct strings, looked up for every item */
const dispatch = new Map<string, { id: SchemaId; schema: z.ZodType }>();

function transactionSchemaFor(field: unknown): { id: SchemaId; schema: z.ZodType } | undefined {
  if (typeof field !== 'string') return undefined;
  const hit = dispatch.get(field);
  if (hit) return hit;
  const id = parseSchemaId(field);
  // own keys only: "plantbridge.constructor/1.0" must not find Object's constructor
  if (!id || !Object.hasOwn(transactionSchemas, id.type)) return undefined;
  const entry = { id, schema: (transactionSchemas as Record<string, z.ZodType>)[id.type] };
  if (dispatch.size < 64) dispatch.set(field, entry);
  return entry;
}

/**
 * Validates one transaction, dispatching on its `schema` field so that the error names the fields of
 * the right type (a union would report every alternative's complaints).
 */
export function validateTransaction(value: unknown): Validation<Transaction> & { unsupported?: boolean } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, issues: [{ path: '(root)', message: 'expected an object' }] };
  }
  const known = transactionSchemaFor((value as { schema?: unknown }).schema);
  if (!known) {
    return {
      ok: false,
      issues: [{ path: 'schema', message: `expected one of ${Object.keys(transactionSchemas).map((t) => `plantbridge.${t}/1.0`).join(', ')}` }],
    };
  }
  const { id } = known;
  const r = validateFast(known.schema, value);
  if (!r.ok && id.major === 1 && id.minor > 0) return { ...r, unsupported: true };
  if (!r.ok && id.major !== 1) return { ...r, unsupported: true };
  return r as Validation<Transaction>;
}
