import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  agentHeartbeatSchema,
  ingestBatchSchema,
  ingestResultSchema,
  signalSchema,
  ulid,
  uuidv5,
  validate,
  validateTransaction,
  INGEST_MAX_ITEMS,
  type Issue,
} from './index.ts';

const dir = join(import.meta.dirname, 'examples');
const golden = (name: string): any => JSON.parse(readFileSync(join(dir, name), 'utf8'));
const clone = <T>(v: T): T => structuredClone(v);

function expectIssue(issues: Issue[], path: string, message?: RegExp): void {
  const hit = issues.find((i) => i.path === path);
  assert.ok(hit, `expected an issue at ${path}, got ${JSON.stringify(issues)}`);
  if (message) assert.match(hit.message, message);
}

test('golden transactions are valid', () => {
  for (const f of ['production-confirmation.json', 'material-consumption.json', 'goods-receipt.json']) {
    const r = validateTransaction(golden(f));
    assert.equal(r.ok, true, `${f}: ${JSON.stringify(!r.ok && r.issues)}`);
  }
});

test('golden heartbeat, signal, ingest result and batch frame are valid', () => {
  assert.equal(validate(agentHeartbeatSchema, golden('agent-heartbeat.json')).ok, true);
  assert.equal(validate(signalSchema, golden('signal.json')).ok, true);
  assert.equal(validate(ingestResultSchema, golden('ingest-result.json')).ok, true);
  assert.equal(validate(ingestBatchSchema, golden('ingest-batch.json')).ok, true);
});

test('each kind of invalid transaction fails with the offending path', () => {
  const base = golden('production-confirmation.json');
  const cases: Array<[string, (t: any) => void, string, RegExp?]> = [
    ['unknown root field', (t) => (t.surprise = 1), 'surprise', /unknown field/],
    ['unknown nested field', (t) => (t.data.window.extra = true), 'data.window.extra', /unknown field/],
    ['missing order', (t) => delete t.data.order, 'data.order'],
    ['negative quantity', (t) => (t.data.yield.qty = -5), 'data.yield.qty', /never negative/],
    ['NaN-like quantity', (t) => (t.data.yield.qty = '12'), 'data.yield.qty'],
    ['bad traceparent', (t) => (t.traceparent = 'abc'), 'traceparent', /traceparent/],
    ['bad timestamp', (t) => (t.eventTime = '02.03.2026 08:15'), 'eventTime', /ISO 8601/],
    ['bad posting date', (t) => (t.data.postingDate = '2026-13-45'), 'data.postingDate'],
    ['oversized key', (t) => (t.idempotencyKey = 'k'.repeat(301)), 'idempotencyKey', /at most 300/],
    ['empty plant', (t) => (t.plant = ''), 'plant', /empty/],
    ['wrong final flag', (t) => (t.data.final = 'maybe'), 'data.final'],
    ['too many lineage ids', (t) => (t.data.derivedFrom.sourceIds = Array.from({ length: 51 }, (_, i) => `s${i}`)), 'data.derivedFrom.sourceIds'],
  ];
  for (const [name, mutate, path, msg] of cases) {
    const t = clone(base);
    mutate(t);
    const r = validateTransaction(t);
    assert.equal(r.ok, false, name);
    if (!r.ok) expectIssue(r.issues, path, msg);
  }
});

test('unknown types and versions are refused, newer versions flagged as unsupported', () => {
  const base = golden('production-confirmation.json');
  const unknown = validateTransaction({ ...clone(base), schema: 'plantbridge.teleport/1.0' });
  assert.equal(unknown.ok, false);
  if (!unknown.ok) expectIssue(unknown.issues, 'schema', /expected one of/);
  const newerMinor = validateTransaction({ ...clone(base), schema: 'plantbridge.production-confirmation/1.1', newField: 1 });
  assert.equal(newerMinor.ok, false);
  assert.equal(newerMinor.unsupported, true);
  const newerMajor = validateTransaction({ ...clone(base), schema: 'plantbridge.production-confirmation/2.0' });
  assert.equal(newerMajor.unsupported, true);
  for (const hostile of [null, 42, 'x', [], { schema: 7 }]) assert.equal(validateTransaction(hostile).ok, false);
});

test('heartbeat and batch frames reject bad shapes with paths', () => {
  const hb = golden('agent-heartbeat.json');
  hb.drivers[0].state = 'exploded';
  const r = validate(agentHeartbeatSchema, hb);
  assert.equal(r.ok, false);
  if (!r.ok) expectIssue(r.issues, 'drivers[0].state');
  const batch = golden('ingest-batch.json');
  batch.items = Array.from({ length: INGEST_MAX_ITEMS + 1 }, () => ({}));
  const b = validate(ingestBatchSchema, batch);
  assert.equal(b.ok, false);
  if (!b.ok) expectIssue(b.issues, 'items');
  const empty = validate(ingestBatchSchema, { ...golden('ingest-batch.json'), items: [] });
  assert.equal(empty.ok, false);
});

test('uuidv5 matches the RFC 4122 test vector and is stable', () => {
  assert.equal(uuidv5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8'), '2ed6657d-e927-568b-95e1-2665a8aea6a2');
  const k = '1010:WC-07:1000009:0010:line7-plc/good:0-100';
  assert.equal(uuidv5(k), uuidv5(k));
  assert.notEqual(uuidv5(k), uuidv5(`${k}x`));
});

test('ulids are unique and sort in creation order, also within one millisecond', () => {
  const ids = Array.from({ length: 5000 }, () => ulid(1_700_000_000_000));
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
  assert.match(ids[0], /^[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.ok(ulid(1_700_000_000_001) > ids[ids.length - 1]);
});

test('docs/ERRORS.md has a row for every error code, with its retriable flag and HTTP status', async () => {
  const { ErrorCodes } = await import('./errors.ts');
  const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'ERRORS.md'), 'utf8');
  for (const [code, { retriable, http }] of Object.entries(ErrorCodes)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `docs/ERRORS.md has no row for ${code}`);
    const cells = row.split('|').map((c) => c.trim());
    assert.equal(cells[2], retriable ? 'yes' : 'no', `${code}: retriable`);
    assert.equal(cells[3], String(http), `${code}: http`);
  }
});

test('docs/ERRORS.md lists every ERP sub-code and every alarm code', async () => {
  const { AlarmCodes, ErpSubCodes } = await import('./errors.ts');
  const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'ERRORS.md'), 'utf8').split('\n');
  for (const code of [...Object.keys(ErpSubCodes), ...Object.keys(AlarmCodes)]) {
    assert.ok(doc.some((l) => l.startsWith(`| \`${code}\` |`)), `docs/ERRORS.md has no row for ${code}`);
  }
});
