import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isWireText, keyBelongsToPlant, printable, printableJson, schemaId, ulid, type Transaction } from '../../contracts/index.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';
import { pgSchemaForTest } from '../store/postgres/pg-test-kit.ts';
import { openTestHub, removeDir, type TestHub } from './test-hub.ts';

/**
 * Issue #22: random strings (all of Unicode, lone surrogates, controls, NULs) in every string field of a
 * transaction are either stored identically on both stores (and so posted identically: the posting service
 * posts the stored body) or refused per item on both, with SCHEMA_INVALID naming that field. Never a 500.
 */

type Path = readonly (string | number)[];
type ItemAnswer = { status: string; code?: string; reason?: string };
const FIELDS: Path[] = [
  ['id'],
  ['idempotencyKey'],
  ['correlationId'],
  ['workCenter'],
  ['source', 'driver'],
  ['source', 'ref'],
  ['source', 'endpoint'],
  ['data', 'order'],
  ['data', 'operation'],
  ['data', 'material'],
  ['data', 'yield', 'uom'],
  ['data', 'window', 'counterRef'],
  ['data', 'derivedFrom', 'sourceIds', 0],
];

const hostileUnit = fc.constantFrom('\u0000', '\r', '\n', '\t', '\x1b', '\x7f', '\u0085', '\u009b', '\u061c', '\u200f', '\u202e', '\u2067', '\ud800', '\udfff', 'a', '7', ':', 'é', '€', '😀', '\u{10ffff}');
const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 24 }), fc.string({ unit: hostileUnit, maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 12 }));

function setAt(obj: Record<string, any>, path: Path, value: string): void {
  let o = obj;
  for (const k of path.slice(0, -1)) o = o[k];
  o[path[path.length - 1]] = value;
}

const pathText = (p: Path) => p.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');

void describe('the wire text rule on both stores (fast-check)', () => {
  const hubs: Array<{ name: string; t: TestHub }> = [];
  let skip: string | undefined;
  let drop: (() => Promise<void>) | undefined;
  let tokens: string[] = [];
  before(async () => {
    hubs.push({ name: 'sqlite', t: await openTestHub() });
    const pg = await pgSchemaForTest();
    if ('skip' in pg) skip = pg.skip;
    else {
      drop = pg.drop;
      hubs.push({ name: 'postgres', t: await openTestHub({ store: pg.open() }) });
    }
    tokens = await Promise.all(hubs.map((h) => h.t.addAgent('prop-agent', ['1010'])));
  });
  after(async () => {
    for (const h of hubs) {
      await h.t.stop();
      removeDir(h.t.dir);
    }
    await drop?.();
  });

  void it('printable() and printableJson() never let a forbidden code point through, and wire text passes printable() unchanged (no backslash)', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        assert.ok(isWireText(printable(s)), JSON.stringify(s));
        const j = printableJson({ s });
        assert.equal(JSON.parse(j).s, s, 'printableJson stays JSON that reads back the same');
        // eslint-disable-next-line no-control-regex -- the indentation's newlines aside, nothing raw
        assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(j), JSON.stringify(j));
        if (isWireText(s) && !s.includes('\\')) assert.equal(printable(s), s);
      }),
      { numRuns: 2000 },
    );
  });

  void it('every string field: stored identically on both stores, or refused per item on both naming the field; never a 500', async (c) => {
    if (skip) c.diagnostic(`PostgreSQL: ${skip} (SQLite only)`);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...FIELDS), anyText), { minLength: 1, maxLength: 6 }), async (edits) => {
        const items: Transaction[] = edits.map(([path, text]) => {
          const tx = confirmation('5000001', ++n, { agentId: 'prop-agent' }) as Transaction & Record<string, any>;
          // every item its own key, still in its plant, unless the key itself is the field under test
          tx.idempotencyKey = `1010:prop:${ulid()}`;
          tx.source.endpoint = 'opc.tcp://plc:4840';
          tx.data.material = 'M-1';
          setAt(tx, path, path[0] === 'idempotencyKey' ? `1010:${text}` : text);
          return tx;
        });
        const answers: ItemAnswer[][] = [];
        for (const [i, h] of hubs.entries()) {
          const r = await h.t.fetch('/v1/ingest', {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[i]}` },
            body: JSON.stringify({ schema: schemaId('ingest-batch', 1, 0), batchId: ulid(), agentId: 'prop-agent', sentAt: new Date().toISOString(), items }),
          });
          const text = await r.text();
          assert.equal(r.status, 200, `${h.name}: ${r.status} ${text.slice(0, 300)}`);
          answers.push((JSON.parse(text) as { results: ItemAnswer[] }).results);
        }
        for (const [k, [path, text]] of edits.entries()) {
          const results: ItemAnswer[] = answers.map((a) => a[k]);
          assert.equal(new Set(results.map((r) => `${r.status}/${r.code}`)).size, 1, `both stores answer alike for ${pathText(path)}=${JSON.stringify(text)}: ${JSON.stringify(results)}`);
          const [first] = results;
          if (first.status === 'rejected' && first.code === 'PLANT_MISMATCH') {
            // a key that is only its plant's prefix ("1010:") names no window: refused as outside its plant
            assert.ok(path[0] === 'idempotencyKey' && !keyBelongsToPlant(items[k]), `PLANT_MISMATCH only for a key outside its plant: ${JSON.stringify(items[k].idempotencyKey)}`);
            continue;
          }
          if (first.status === 'rejected') {
            assert.equal(first.code, 'SCHEMA_INVALID');
            assert.ok(first.reason?.includes(pathText(path)), `the reason names ${pathText(path)}: ${first.reason}`);
            continue;
          }
          const value = path[0] === 'idempotencyKey' ? `1010:${text}` : text;
          assert.ok(isWireText(value), `accepted only wire text: ${JSON.stringify(value)}`);
          if (first.status !== 'accepted') continue;
          for (const h of hubs) {
            const row = await h.t.hub.store.getTransaction(items[k].idempotencyKey);
            assert.deepEqual(row?.body, items[k], `${h.name} stores ${pathText(path)}=${JSON.stringify(text)} as sent`);
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
