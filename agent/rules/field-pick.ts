import { z } from 'zod';
import type { Signal } from '../../contracts/index.ts';

/**
 * Field picks: where a value of a rule comes from — a JSON path into the signal's value (an MQTT JSON
 * payload, an OPC UA structure such as PackMLCountDataType), a field of the signal itself, or a constant.
 * Same path syntax as the MQTT driver's mappings: `$`, `$.a.b`, `$.items[0].qty`.
 */

const JSON_PATH = /^\$(\.[A-Za-z0-9_-]+|\[\d+\])*$/;
export const jsonPath = z.string().regex(JSON_PATH, 'expected a path such as $.order or $.items[0].qty');

export const fieldPick = z.union([
  z.strictObject({ json: jsonPath }),
  z.strictObject({ signal: z.enum(['source', 'ref', 'sourceId', 'sourceTime', 'value']) }),
  z.strictObject({ const: z.union([z.string(), z.number(), z.boolean()]) }),
]);
export type FieldPick = z.infer<typeof fieldPick>;

function compilePath(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of path.slice(1).matchAll(/\.([A-Za-z0-9_-]+)|\[(\d+)\]/g)) out.push(m[1] !== undefined ? m[1] : Number(m[2]));
  return out;
}

const compiled = new Map<string, Array<string | number>>();

/** The value at a JSON path, or undefined when any step is missing. */
export function atPath(value: unknown, path: string): unknown {
  let segs = compiled.get(path);
  if (!segs) {
    segs = compilePath(path);
    if (compiled.size < 10_000) compiled.set(path, segs);
  }
  let v: unknown = value;
  for (const seg of segs) {
    if (v === null || typeof v !== 'object') return undefined;
    if (typeof seg === 'number') {
      if (!Array.isArray(v)) return undefined;
      v = v[seg];
    } else {
      if (Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
      v = (v as Record<string, unknown>)[seg];
    }
  }
  return v;
}

export function pick(p: FieldPick, signal: Signal): unknown {
  if ('json' in p) return atPath(signal.value, p.json);
  if ('signal' in p) return signal[p.signal];
  return p.const;
}

/** A non-empty string form of a picked identifier (order numbers may arrive as numbers). */
export function asText(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim();
  if (typeof v === 'number' && Number.isFinite(v) && !roundedInteger(v)) return String(v);
  return undefined;
}

/**
 * An integer JSON number beyond 2^53: parsing rounded it (9007199254740993 reads as ...992), so as a text
 * (an event id, an order number) it could name another one. asText refuses it; callers say why.
 */
export function roundedInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v);
}

/**
 * The problem with a rounded integer (roundedInteger) where an id or order number was expected, for every
 * place that refuses one (rules and the MQTT mapping): `where` is the path it was read from, when known.
 */
export function roundedProblem(field: string, v: number, where?: string): string {
  return `${field}: ${where ? `${where} holds ` : ''}the number ${String(v)}, beyond 2^53: it was rounded when parsed and could name another ${field}; send it as a string`;
}

/** A finite non-negative quantity, or undefined. */
export function asQuantity(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Truthy as a PLC flag: true, a non-zero number, or a string other than "", "0", "false", "off". */
export function asFlag(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return !['', '0', 'false', 'off', 'no'].includes(v.trim().toLowerCase());
  return false;
}
