import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transactionSchema, type GoodsReceipt, type MaterialConsumption, type ProductionConfirmation } from '../../contracts/index.ts';
import { mapEventConfigSchema } from './map-event/config.ts';
import { boundedKey, mapEvent } from './map-event/map-event.ts';
import { T0, run, signal } from './test-kit.ts';

const build = (c: Record<string, unknown>) => mapEvent(mapEventConfigSchema.parse({ type: 'map-event', id: 'ev', inputs: [{ source: 'mq', ref: 'm1/material' }], ...c }), 'live');
const ev = (value: Record<string, unknown>, t = T0, extra = {}) => ({ kind: 'signal' as const, signal: signal('mq', 'm1/material', value as never, t, `mq/m1/material@id=${String(value.eventId)}`, extra) });

void test('material loaded -> MaterialConsumption with picks and constants; key plant:source:eventId', () => {
  const r = run(
    build({
      workCenter: 'WC-31',
      emit: 'material-consumption',
      eventId: { json: '$.eventId' },
      fields: { order: { json: '$.order' }, material: { json: '$.mat' }, batch: { json: '$.batch' }, quantity: { json: '$.qty' }, uom: { const: 'KG' }, storageLocation: { const: '0002' } },
    }),
    [ev({ eventId: 'm-1', order: 1000123, mat: 'RM-1', batch: 'B1', qty: 12.5 }), ev({ eventId: 'm-2', order: '1000123', mat: 'RM-1', qty: -2 })],
  );
  assert.deepEqual(r.quarantined, []);
  for (const tx of r.transactions) transactionSchema.parse(tx);
  const [a, b] = r.transactions as MaterialConsumption[];
  assert.equal(a.idempotencyKey, 'P1010:mq:m-1');
  assert.deepEqual(a.data, {
    order: '1000123',
    material: 'RM-1',
    batch: 'B1',
    storageLocation: '0002',
    quantity: { qty: 12.5, uom: 'KG' },
    movement: 'issue',
    postingDate: '2026-01-05',
    derivedFrom: { events: 1, sourceIds: ['mq/m1/material@id=m-1'], firstEventTime: a.eventTime, lastEventTime: a.eventTime },
  });
  // a negative quantity is a correction: a reversal, never a negative issue
  assert.deepEqual([b.data.movement, b.data.quantity.qty], ['reversal', 2]);
});

void test('conditions select events; retained (baseline) and bad-quality signals are never events', () => {
  const r = run(
    build({
      emit: 'production-confirmation',
      when: [{ json: '$.type', equals: 'cycle-complete' }],
      fields: { order: { json: '$.order' }, yield: { json: '$.good' }, scrap: { json: '$.bad' }, scrapReason: { const: 'R1' }, operation: { const: '0020' } },
    }),
    [
      ev({ eventId: 1, type: 'cycle-complete', order: 'A', good: 3, bad: 1 }),
      ev({ eventId: 2, type: 'door-open', order: 'A', good: 3 }),
      ev({ eventId: 3, type: 'cycle-complete', order: 'A', good: 3 }, T0, { baseline: true }),
      ev({ eventId: 4, type: 'cycle-complete', order: 'A', good: 3 }, T0, { quality: 'bad' }),
    ],
  );
  assert.equal(r.transactions.length, 1);
  const pc = r.transactions[0] as ProductionConfirmation;
  transactionSchema.parse(pc);
  assert.deepEqual([pc.data.yield.qty, pc.data.scrap, pc.data.operation, pc.data.final], [3, { qty: 1, uom: 'EA', reasonCode: 'R1' }, '0020', 'none']);
  assert.equal(pc.idempotencyKey, 'P1010:mq:mq/m1/material@id=1'); // no eventId pick: the signal's dedupe id
});

void test('order finished -> a final confirmation; the order comes from a tag when the event has none', () => {
  const rule = mapEvent(
    mapEventConfigSchema.parse({
      type: 'map-event',
      id: 'fin',
      inputs: [{ source: 'mq', ref: 'm1/finished' }],
      emit: 'production-confirmation',
      keySuffix: 'final',
      fields: { final: { const: 'final' } },
      activeOrder: { source: 'mq', ref: 'm1/order', orderPath: '$.order', materialPath: '$.material' },
    }),
    'live',
  );
  const r = run(rule, [
    { kind: 'signal', signal: signal('mq', 'm1/order', { order: 'A', material: 'FG-A' }, T0) },
    { kind: 'signal', signal: signal('mq', 'm1/order', { order: 'B' }, T0 + 5000) },
    { kind: 'signal', signal: signal('mq', 'm1/finished', { id: 'x' }, T0 + 4000, 'fin-1') },
  ]);
  const pc = r.transactions[0] as ProductionConfirmation;
  assert.deepEqual([pc.data.order, pc.data.material, pc.data.final, pc.data.yield.qty, pc.idempotencyKey], ['A', 'FG-A', 'final', 0, 'P1010:mq:fin-1:final']);
});

void test('goods receipt; a missing or malformed field quarantines the event with the reason', () => {
  const rule = build({ emit: 'goods-receipt', fields: { order: { json: '$.order' }, material: { json: '$.mat' }, quantity: { json: '$.qty' }, batch: { json: '$.batch' } } });
  const r = run(rule, [ev({ eventId: 'g1', order: 'A', mat: 'FG', qty: 10, batch: 'L7' }), ev({ eventId: 'g2', order: 'A', qty: 'ten' })]);
  assert.equal(r.transactions.length, 1);
  const gr = r.transactions[0] as GoodsReceipt;
  transactionSchema.parse(gr);
  assert.deepEqual([gr.data.quantity, gr.data.batch], [{ qty: 10, uom: 'EA' }, 'L7']);
  assert.equal(r.quarantined.length, 1);
  assert.equal(r.quarantined[0].code, 'SCHEMA_INVALID');
  assert.match(r.quarantined[0].reason, /material: expected a text.*quantity: expected a non-negative number/);
});

void test('an event id or order number beyond 2^53 (rounded when parsed: it could name another) quarantines the event with the reason', () => {
  const rule = build({ emit: 'goods-receipt', eventId: { json: '$.eventId' }, fields: { order: { json: '$.order' }, material: { json: '$.mat' }, quantity: { json: '$.qty' } } });
  const BIG = JSON.parse('9007199254740993') as number; // as a payload's parser reads it: 9007199254740992
  const r = run(rule, [
    ev({ eventId: BIG, order: 'A', mat: 'FG', qty: 1 }),
    ev({ eventId: 'g2', order: BIG, mat: 'FG', qty: 1 }),
    ev({ eventId: 9007199254740991, order: 9007199254740991, mat: 'FG', qty: 1 }),
  ]);
  assert.equal(r.transactions.length, 1);
  const gr = r.transactions[0] as GoodsReceipt;
  assert.equal(gr.data.order, '9007199254740991');
  assert.match(gr.idempotencyKey, /:9007199254740991$/);
  assert.deepEqual(r.quarantined.map((q) => q.code), ['SCHEMA_INVALID', 'SCHEMA_INVALID']);
  assert.match(r.quarantined[0].reason, /eventId: the number 9007199254740992, beyond 2\^53: it was rounded when parsed .*send it as a string/);
  assert.match(r.quarantined[1].reason, /order: the number 9007199254740992, beyond 2\^53/);
});

void test('config: fields are checked against the transaction type', () => {
  const bad = mapEventConfigSchema.safeParse({ type: 'map-event', id: 'x', inputs: [{ source: 'a', ref: 'b' }], emit: 'material-consumption', fields: { order: { const: 'A' }, yield: { json: '$.n' } } });
  assert.equal(bad.success, false);
  const msgs = bad.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
  assert.match(msgs, /fields\.quantity/);
  assert.match(msgs, /fields\.material/);
  assert.match(msgs, /fields\.yield is for production-confirmation/);
});

void test('keys stay within the wire limit, deterministically', () => {
  const long = `P:${'x'.repeat(400)}`;
  assert.equal(boundedKey(long).length, 300);
  assert.equal(boundedKey(long), boundedKey(long));
  assert.notEqual(boundedKey(long), boundedKey(`${long}y`));
  assert.equal(boundedKey('short'), 'short');
});

void test('one rule, two inputs of one source, ids from the payload: the same id from both is two events (the key carries the ref)', () => {
  const rule = build({
    workCenter: 'WC-31',
    inputs: [{ source: 'mq', ref: 'robot1/cycle' }, { source: 'mq', ref: 'robot2/cycle' }],
    emit: 'production-confirmation',
    eventId: { json: '$.eventId' },
    fields: { order: { json: '$.order' }, yield: { json: '$.good' } },
  });
  const cycle = (ref: string, order: string) => ({ kind: 'signal' as const, signal: signal('mq', ref, { eventId: 42, order, good: 1 } as never, T0, `mq/${ref}@id=42`) });
  const r = run(rule, [cycle('robot1/cycle', '1000001'), cycle('robot2/cycle', '1000002')]);
  assert.deepEqual(r.transactions.map((t) => t.idempotencyKey), ['P1010:mq:robot1/cycle:42', 'P1010:mq:robot2/cycle:42']);
});
