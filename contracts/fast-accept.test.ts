import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { z } from 'zod';
import { compileFastAccept, fastAcceptSource } from './fast-accept.ts';
import { ingestBatchSchema, parseSchemaId, transactionSchemas, validate, validateFast, validateTransaction } from './index.ts';

/**
 * The fast accept path (fast-accept.ts) must never accept what zod rejects, must hand back a value equal
 * to zod's output, and the validators built on it must answer exactly as zod does (same ok, same issues).
 */

const dir = join(import.meta.dirname, 'examples');
const golden = (name: string): any => JSON.parse(readFileSync(join(dir, name), 'utf8'));
const txGolden = Object.keys(transactionSchemas).map((type) => ({ type, schema: (transactionSchemas as Record<string, z.ZodType>)[type], value: golden(`${type}.json`) }));
const batchGolden = () => ({ ...golden('ingest-batch.json'), items: txGolden.map((g) => g.value) });

/** The property every value must satisfy, for one schema. */
function agrees(schema: z.ZodType, value: unknown, label: string): boolean {
  const fast = compileFastAccept(schema)(value);
  const zod = schema.safeParse(value);
  if (fast) {
    assert.ok(zod.success, `${label}: fast path accepted what zod rejects: ${JSON.stringify(value)?.slice(0, 500)} — ${zod.error?.message}`);
    assert.deepStrictEqual(value, zod.data, `${label}: fast-accepted value differs from zod's output`);
  }
  assert.deepStrictEqual(validateFast(schema, value), validate(schema, value), `${label}: validateFast differs from validate`);
  return fast;
}

function agreesTransaction(value: unknown, label: string): void {
  for (const g of txGolden) agrees(g.schema, value, `${label} as ${g.type}`);
  assert.deepStrictEqual(validateTransaction(value), referenceValidateTransaction(value), `${label}: validateTransaction differs from zod`);
}

/** validateTransaction as it was before the fast path: dispatch on `schema`, then zod alone. */
function referenceValidateTransaction(value: unknown): ReturnType<typeof validateTransaction> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return validateTransaction(value);
  const id = parseSchemaId((value as { schema?: unknown }).schema);
  const known = id && Object.hasOwn(transactionSchemas, id.type) ? (transactionSchemas as Record<string, z.ZodType>)[id.type] : undefined;
  if (!id || !known) return validateTransaction(value);
  const r = validate(known, value);
  if (!r.ok && (id.major !== 1 || id.minor > 0)) return { ...r, unsupported: true };
  return r as ReturnType<typeof validateTransaction>;
}

test('every ingest schema compiles to a fast path, and the golden examples take it', () => {
  for (const g of txGolden) {
    assert.ok(fastAcceptSource(g.schema), `${g.type} has no fast path`);
    assert.equal(compileFastAccept(g.schema)(g.value), true, `${g.type} golden example not fast-accepted`);
    const r = validateTransaction(g.value);
    assert.equal(r.ok, true);
    assert.equal(r.ok && r.value, g.value, 'the fast path hands back the input itself');
  }
  assert.ok(fastAcceptSource(ingestBatchSchema));
  assert.equal(compileFastAccept(ingestBatchSchema)(batchGolden()), true);
});

test('edge cases at the fast path bounds: zod decides, the answers agree', () => {
  const pc = () => golden('production-confirmation.json');
  const emoji = '😀'; // one code point, two UTF-16 units
  const cases: Array<[string, (t: any) => void]> = [
    ['200 astral code points (400 units) in a 200-char field', (t) => (t.id = emoji.repeat(200))],
    ['201 astral code points', (t) => (t.id = emoji.repeat(201))],
    ['300 astral code points in the key', (t) => (t.idempotencyKey = emoji.repeat(300))],
    ['one astral code point in a non-empty field', (t) => (t.plant = emoji)],
    ['a lone surrogate', (t) => (t.plant = '\ud800')],
    ['64 astral code points in plant', (t) => (t.plant = emoji.repeat(64))],
    ['65 astral code points in plant', (t) => (t.plant = emoji.repeat(65))],
    ['minor version 1', (t) => (t.schema = 'plantbridge.production-confirmation/1.1')],
    ['another type', (t) => (t.schema = 'plantbridge.goods-receipt/1.0')],
    ['leap day', (t) => (t.data.postingDate = '2024-02-29')],
    ['not a leap day', (t) => (t.data.postingDate = '2023-02-29')],
    ['offset time', (t) => (t.eventTime = '2026-03-02T09:15:02+01:00')],
    ['time without seconds', (t) => (t.eventTime = '2026-03-02T09:15Z')],
    ['negative zero', (t) => (t.data.yield.qty = -0)],
    ['huge qty', (t) => (t.data.yield.qty = 1e308)],
    ['Infinity', (t) => (t.data.yield.qty = Infinity)],
    ['NaN', (t) => (t.data.yield.qty = NaN)],
    ['fractional event count', (t) => (t.data.derivedFrom.events = 1.5)],
    ['unsafe integer event count', (t) => (t.data.derivedFrom.events = 2 ** 53)],
    ['negative event count', (t) => (t.data.derivedFrom.events = -1)],
    ['50 lineage ids', (t) => (t.data.derivedFrom.sourceIds = Array.from({ length: 50 }, (_, i) => `s${i}`))],
    ['51 lineage ids', (t) => (t.data.derivedFrom.sourceIds = Array.from({ length: 51 }, (_, i) => `s${i}`))],
    ['optional field present as undefined', (t) => (t.workCenter = undefined)],
    ['required field present as undefined', (t) => (t.plant = undefined)],
    ['null optional field', (t) => (t.workCenter = null)],
    ['array for an object', (t) => (t.source = [])],
    ['unknown key', (t) => (t.extra = 1)],
    ['unknown nested key', (t) => (t.data.window.extra = 1)],
    ['own "constructor" key', (t) => (t.constructor = { prototype: { polluted: true } })],
    ['own "__proto__" key', (t) => Object.defineProperty(t, '__proto__', { value: { polluted: true }, enumerable: true, configurable: true, writable: true })],
    ['inherited enumerable key', (t) => Object.setPrototypeOf(t, { inherited: 1 })],
    ['inherited required field', (t) => {
      const plant = t.plant;
      delete t.plant;
      Object.setPrototypeOf(t, Object.assign(Object.create(Object.prototype), { plant }));
    }],
    ['non-enumerable extra key', (t) => Object.defineProperty(t, 'hidden', { value: 1, enumerable: false })],
    ['boxed string', (t) => (t.plant = new String('P1'))],
  ];
  for (const [name, mutate] of cases) {
    const t = pc();
    mutate(t);
    agreesTransaction(t, name);
  }
  // the same through the wire: JSON text with "__proto__" and "constructor" keys
  for (const text of [
    JSON.stringify(pc()).replace(/^\{/, '{"__proto__":{"polluted":true},'),
    JSON.stringify(pc()).replace(/"data":\{/, '"data":{"__proto__":{"polluted":true},'),
    JSON.stringify(pc()).replace(/^\{/, '{"constructor":{"prototype":{"polluted":true}},'),
  ]) {
    const t = JSON.parse(text);
    assert.equal(compileFastAccept(transactionSchemas['production-confirmation'])(t), false);
    agreesTransaction(t, text.slice(0, 60));
    assert.equal(validateTransaction(t).ok, false);
  }
  const frame = batchGolden();
  frame.items.push(JSON.parse('{"__proto__":{"polluted":true}}'));
  assert.equal(compileFastAccept(ingestBatchSchema)(frame), false);
  agrees(ingestBatchSchema, frame, 'frame with a __proto__ item');
  assert.equal(({} as any).polluted, undefined);
});

test('a schema id naming an Object.prototype member is an unknown type, not a crash', () => {
  for (const type of ['constructor', 'tostring', 'valueof', 'hasownproperty']) {
    const r = validateTransaction({ ...golden('goods-receipt.json'), schema: `plantbridge.${type}/1.0` });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.issues[0].path, 'schema');
  }
});

test('constructs the fast path does not mirror make it answer false, and zod decides', () => {
  const unsupported: z.ZodType[] = [
    z.strictObject({ a: z.string().default('x') }),
    z.strictObject({ a: z.string().trim() }),
    z.strictObject({ a: z.email() }),
    z.strictObject({ a: z.string().transform((s) => s.length) }),
    z.strictObject({ a: z.union([z.string(), z.number()]) }),
    z.strictObject({ a: z.string() }).superRefine(() => undefined),
    z.strictObject({ toString: z.string() }),
    z.looseObject({ a: z.string() }),
  ];
  for (const s of unsupported) {
    assert.equal(fastAcceptSource(s), undefined);
    assert.equal(compileFastAccept(s)({ a: 'x' }), false);
  }
  // a required z.unknown() must still be present; a stripping object is only an identity without extras
  const req = z.strictObject({ a: z.unknown(), b: z.string().optional() });
  assert.equal(compileFastAccept(req)({}), false);
  assert.equal(compileFastAccept(req)({ a: undefined }), true);
  assert.equal(req.safeParse({ a: undefined }).success, true);
  const strip = z.object({ a: z.string() });
  assert.equal(compileFastAccept(strip)({ a: 'x' }), true);
  assert.equal(compileFastAccept(strip)({ a: 'x', b: 1 }), false);
  assert.equal(compileFastAccept(z.strictObject({ a: z.string() }))(Object.assign(Object.create(null), { a: 'x' })), false);
});

// ---------- generated mutations ----------

type Path = Array<string | number>;

function pathsOf(v: unknown, prefix: Path = []): Path[] {
  const out: Path[] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...pathsOf(x, [...prefix, i])));
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) out.push(...pathsOf(x, [...prefix, k]));
  return out;
}

/** Values that sit on or near the bounds and formats the schemas use. */
const interesting = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.string({ maxLength: 70 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', '😀', ' ', '\x7f', '-'), minLength: 0, maxLength: 320 }),
  fc.constantFrom('', 'P1', 'EA', 'none', 'auto', 'final', 'issue', 'reversal', 'x'.repeat(200), 'x'.repeat(201), 'x'.repeat(300), 'x'.repeat(301)),
  fc.date({ min: new Date('0001-01-01'), max: new Date('9999-12-31'), noInvalidDate: true }).chain((d) =>
    fc.constantFrom(d.toISOString(), d.toISOString().slice(0, 10), d.toISOString().replace('Z', '+02:00'), d.toISOString().replace(/\.\d+Z$/, 'Z'), d.toISOString().slice(0, 16) + 'Z'),
  ),
  fc.constantFrom('2024-02-29', '2023-02-29', '2026-02-30', '2026-04-31', '2000-02-29', '1900-02-29'),
  fc.constantFrom(
    'plantbridge.production-confirmation/1.0',
    'plantbridge.production-confirmation/1.7',
    'plantbridge.material-consumption/1.0',
    'plantbridge.goods-receipt/1.0',
    'plantbridge.goods-receipt/2.0',
    'plantbridge.goods-receipt/1.00',
  ),
  fc.double(),
  fc.integer(),
  fc.constantFrom(-0, 0, 2 ** 53, 2 ** 53 - 1, -1, 1.5, Infinity, NaN, Number.MAX_VALUE),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 60 }),
);

type Mutation = { kind: 'set'; path: number; value: unknown } | { kind: 'delete'; path: number } | { kind: 'add'; path: number; key: string; value: unknown };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), path: fc.nat(), value: interesting }),
  fc.record({ kind: fc.constant('delete' as const), path: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), path: fc.nat(), key: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'toString', 'qty', 'uom', 'extra')), value: interesting }),
);

function mutate(base: unknown, muts: Mutation[]): unknown {
  let root: any = structuredClone(base);
  for (const m of muts) {
    const paths = pathsOf(root);
    const path = paths[m.path % paths.length];
    if (path.length === 0) {
      if (m.kind === 'set') root = m.value;
      continue;
    }
    const parent = path.slice(0, -1).reduce((o: any, k) => o[k], root);
    const key = path[path.length - 1];
    if (m.kind === 'set') parent[key] = m.value;
    else if (m.kind === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else {
      const target = parent[key];
      if (typeof target === 'object' && target !== null && !Array.isArray(target)) Object.defineProperty(target, m.key, { value: m.value, enumerable: true, configurable: true, writable: true });
    }
  }
  return root;
}

test('generated mutations of the golden transactions: the fast path never accepts what zod rejects', () => {
  let fastAccepted = 0;
  let zodAccepted = 0;
  fc.assert(
    fc.property(fc.constantFrom(...txGolden), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), (g, muts, viaJson) => {
      let v = mutate(g.value, muts);
      if (viaJson) {
        const text = JSON.stringify(v);
        if (text === undefined) return;
        v = JSON.parse(text);
      }
      for (const t of txGolden) {
        if (agrees(t.schema, v, t.type)) fastAccepted++;
        if (t.schema.safeParse(v).success) zodAccepted++;
      }
      assert.deepStrictEqual(validateTransaction(v), referenceValidateTransaction(v));
    }),
    { numRuns: 4000 },
  );
  // the mutations must reach both sides, or the property proves little
  assert.ok(zodAccepted > 100, `only ${zodAccepted} mutations were valid`);
  assert.ok(fastAccepted > 50, `only ${fastAccepted} valid mutations took the fast path`);
});

test('generated mutations of the batch frame agree with zod', () => {
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (muts) => {
      agrees(ingestBatchSchema, mutate(batchGolden(), muts), 'frame');
    }),
    { numRuns: 1500 },
  );
});
