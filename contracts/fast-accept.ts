import { core, type z } from 'zod';

/**
 * A fast accept path for zod schemas on the hot path (the hub's /v1/ingest validates every item).
 *
 * `compileFastAccept(schema)` walks the schema's definition once and returns a predicate that answers
 * true only when zod would accept the value AND return a value deep-equal to it (so the caller may use
 * the input itself instead of zod's copy). It is a sufficient condition, never a decision: when it
 * answers false the caller runs zod, which decides and names the offending paths. So the predicate may
 * be conservative (a construct or check it does not know makes it answer false for every value), and it
 * must never be generous. `contracts/fast-accept.test.ts` holds it to that on the golden examples and
 * on generated mutations of them.
 *
 * It reads zod's own definitions (the same regexes, bounds, enum values and refine functions), so a
 * schema change needs no change here. The predicate is generated source (like zod's own JIT for
 * objects): named property reads and a `switch` over the allowed keys cost a fraction of zod's
 * per-field payload objects and copies.
 */
export type FastAccept = (value: unknown) => boolean;

type Def = Record<string, any> & { type: string };
type Schema = { _zod: { def: Def; traits: Set<string>; optin?: string; optout?: string } };

class Unsupported extends Error {}

const never: FastAccept = () => false;
const util = core.util as unknown as { NUMBER_FORMAT_RANGES: Record<string, [number, number]>; isPlainObject: (o: unknown) => boolean };
const cache = new WeakMap<object, FastAccept>();

export function compileFastAccept(schema: z.ZodType): FastAccept {
  let f = cache.get(schema);
  if (!f) {
    f = build(schema as unknown as Schema);
    cache.set(schema, f);
  }
  return f;
}

/** The generated source of a schema's predicate, or undefined when the schema is not supported (tests). */
export function fastAcceptSource(schema: z.ZodType): string | undefined {
  try {
    return new Gen().program(schema as unknown as Schema).source;
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}

function build(s: Schema): FastAccept {
  let p: { source: string; consts: unknown[] };
  try {
    p = new Gen().program(s);
  } catch (err) {
    if (err instanceof Unsupported) return never;
    throw err;
  }
  try {
    return new Function('c', `"use strict"; return function fastAccept(v0) {\n${p.source}\nreturn true;\n};`)(p.consts) as FastAccept;
  } catch {
    // code generation disallowed (--disallow-code-generation-from-strings): zod decides everything
    return never;
  }
}

function checksOf(s: Schema): Schema[] {
  const own = (s._zod.def.checks ?? []) as Schema[];
  // a format schema (z.iso.datetime()) is itself its first check
  return s._zod.traits.has('$ZodCheck') ? [s, ...own] : own;
}

class Gen {
  private readonly consts: unknown[] = [];
  private vars = 0;
  private out: string[] = [];

  /** every key an object in the schema declares */
  private readonly declared = new Set<string>();

  program(s: Schema): { source: string; consts: unknown[] } {
    this.node(s, 'v0');
    // Objects must have Object.prototype as prototype (fresh JSON does), so a declared field can only be
    // inherited from there: refuse while Object.prototype carries one (it never should; zod would copy it).
    const op = this.c(Object.prototype);
    const guard = this.declared.size > 0 ? [`if (${[...this.declared].map((k) => `${JSON.stringify(k)} in ${op}`).join(' || ')}) return false;`] : [];
    return { source: [...guard, ...this.out].join('\n'), consts: this.consts };
  }

  private c(value: unknown): string {
    this.consts.push(value);
    return `c[${this.consts.length - 1}]`;
  }

  private v(): string {
    return `v${++this.vars}`;
  }

  private emit(line: string): void {
    this.out.push(line);
  }

  /** Emits statements that `return false` unless `x` (a local holding the value) is accepted. */
  private node(s: Schema, x: string): void {
    const def = s._zod.def;
    if (def.coerce) throw new Unsupported();
    switch (def.type) {
      case 'string':
        this.emit(`if (typeof ${x} !== "string") return false;`);
        break;
      case 'number':
        this.emit(`if (typeof ${x} !== "number" || !Number.isFinite(${x})) return false;`);
        break;
      case 'boolean':
        this.emit(`if (typeof ${x} !== "boolean") return false;`);
        break;
      case 'enum': {
        const values = Object.values(def.entries as Record<string, unknown>);
        // a numeric TS enum maps names back to numbers, which zod filters out: not worth mirroring
        if (values.some((x) => typeof x !== 'string')) throw new Unsupported();
        this.emit(`if (!${this.c(new Set(values))}.has(${x})) return false;`);
        break;
      }
      case 'unknown':
      case 'any':
        break;
      case 'optional': {
        const inner = def.innerType as Schema;
        // a default inside would substitute a value for undefined; an exact optional refuses undefined
        if ((inner._zod.optin !== undefined && inner._zod.optin !== 'optional') || s._zod.traits.has('$ZodExactOptional')) throw new Unsupported();
        this.emit(`if (${x} !== undefined) {`);
        this.node(inner, x);
        this.emit('}');
        break;
      }
      case 'array': {
        this.emit(`if (!Array.isArray(${x})) return false;`);
        const i = this.v();
        const e = this.v();
        this.emit(`for (let ${i} = 0; ${i} < ${x}.length; ${i}++) {`);
        this.emit(`const ${e} = ${x}[${i}];`);
        this.node(def.element as Schema, e);
        this.emit('}');
        break;
      }
      case 'object':
        this.object(s, x);
        break;
      case 'record':
        this.record(s, x);
        break;
      default:
        throw new Unsupported();
    }
    for (const ch of checksOf(s)) this.check(ch, def.type, x);
  }

  /**
   * A node's own checks. zod measures string length in code points; a code point is one or two UTF-16
   * units, so units <= max proves "at most max" and units >= 2*min - 1 proves "at least min". Strings
   * in between answer false and zod counts them (conservative, never generous).
   */
  private check(ch: Schema, type: string, x: string): void {
    const c = ch._zod.def;
    const traits = ch._zod.traits;
    if (c.check === 'custom') {
      // .refine(fn): zod accepts when fn returns truthy synchronously (superRefine/check have no fn)
      if (!traits.has('$ZodCustom') || typeof c.fn !== 'function') throw new Unsupported();
      const r = this.v();
      this.emit(`const ${r} = ${this.c(c.fn)}(${x}); if (!${r} || ${r} instanceof Promise) return false;`);
      return;
    }
    if ((type === 'string' || type === 'array') && (c.check === 'max_length' || c.check === 'min_length')) {
      if (c.check === 'max_length') this.emit(`if (${x}.length > ${Number(c.maximum)}) return false;`);
      else this.emit(`if (${x}.length < ${type === 'string' ? 2 * Number(c.minimum) - 1 : Number(c.minimum)}) return false;`);
      return;
    }
    if (type === 'string' && c.check === 'string_format') {
      // only formats whose check is the pattern alone (zod's $ZodCheckStringFormat default)
      const patternOnly = (c.format === 'regex' && traits.has('$ZodCheckRegex')) || (c.format === 'datetime' && traits.has('$ZodISODateTime')) || (c.format === 'date' && traits.has('$ZodISODate'));
      if (!patternOnly || !(c.pattern instanceof RegExp)) throw new Unsupported();
      const re = this.c(c.pattern);
      this.emit(`${re}.lastIndex = 0; if (!${re}.test(${x})) return false;`);
      return;
    }
    if (type === 'number') {
      if ((c.check === 'greater_than' || c.check === 'less_than') && typeof c.value === 'number' && Number.isFinite(c.value)) {
        const op = c.check === 'greater_than' ? (c.inclusive ? '>=' : '>') : c.inclusive ? '<=' : '<';
        this.emit(`if (!(${x} ${op} ${c.value})) return false;`);
        return;
      }
      if (c.check === 'number_format') {
        const range = util.NUMBER_FORMAT_RANGES?.[c.format ?? 'float64'];
        if (!range) throw new Unsupported();
        if (String(c.format).includes('int')) this.emit(`if (!Number.isSafeInteger(${x})) return false;`);
        this.emit(`if (!(${x} >= ${range[0]} && ${x} <= ${range[1]})) return false;`);
        return;
      }
    }
    throw new Unsupported();
  }

  /**
   * Objects: every declared key passes (absent only when optional) and no undeclared key exists: a
   * strict object rejects one, a stripping object drops it (its output would not be the input). Arrays
   * and objects with another prototype answer false (zod takes some of them, and copies them).
   */
  private object(s: Schema, x: string): void {
    const def = s._zod.def;
    const catchall = def.catchall as Schema | undefined;
    if (catchall !== undefined && catchall._zod.def.type !== 'never') throw new Unsupported();
    const shape = def.shape as Record<string, Schema>;
    const keys = Object.keys(shape);
    if (Object.getOwnPropertySymbols(shape).length > 0 || keys.includes('__proto__')) throw new Unsupported();
    this.emit(`if (typeof ${x} !== "object" || ${x} === null || Object.getPrototypeOf(${x}) !== ${this.c(Object.prototype)}) return false;`);
    for (const key of keys) {
      // a name Object.prototype has (toString, constructor) would be "present" on every object
      if (key in Object.prototype) throw new Unsupported();
      this.declared.add(key);
      const f = shape[key];
      const optin = f._zod.optin;
      // only plain optional fields (zod then copies exactly what is there); "defaulted" substitutes
      if (optin !== undefined && !(optin === 'optional' && f._zod.optout === 'optional')) throw new Unsupported();
      const k = JSON.stringify(key);
      const fv = this.v();
      this.emit(`const ${fv} = ${x}[${k}];`);
      if (optin === undefined) this.emit(`if (${fv} === undefined && !(${k} in ${x})) return false;`);
      this.node(f, fv);
    }
    // zod walks `for...in` too: an inherited enumerable key (a polluted Object.prototype) is unknown
    const k = this.v();
    this.emit(`for (const ${k} in ${x}) { switch (${k}) { ${keys.map((key) => `case ${JSON.stringify(key)}:`).join(' ')} break; default: return false; } }`);
  }

  /**
   * `z.record(z.string(), z.unknown())` only (the ingest frame's items): zod copies a plain object's own
   * enumerable keys except "__proto__", so such an object without that key (fresh JSON) comes out equal.
   */
  private record(s: Schema, x: string): void {
    const def = s._zod.def;
    const keyType = def.keyType as Schema;
    const valueType = def.valueType as Schema;
    if (def.mode === 'loose' || def.partial) throw new Unsupported();
    if (keyType._zod.def.type !== 'string' || keyType._zod.def.coerce || checksOf(keyType).length > 0) throw new Unsupported();
    const vt = valueType._zod.def.type;
    if ((vt !== 'unknown' && vt !== 'any') || checksOf(valueType).length > 0) throw new Unsupported();
    this.emit(`if (!${this.c(plainRecord)}(${x})) return false;`);
  }
}

function plainRecord(o: unknown): boolean {
  if (!util.isPlainObject(o)) return false;
  const obj = o as object;
  if (Object.prototype.hasOwnProperty.call(obj, '__proto__')) return false;
  if (Object.getOwnPropertySymbols(obj).length > 0) return false;
  // inherited enumerable keys would not be copied; none exist on fresh JSON
  for (const k in obj) if (!Object.prototype.hasOwnProperty.call(obj, k)) return false;
  return true;
}
