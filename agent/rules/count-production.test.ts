import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transactionSchema, type MaterialConsumption, type ProductionConfirmation, type Transaction } from '../../contracts/index.ts';
import { countProductionConfigSchema } from './count-production/config.ts';
import { countProduction } from './count-production/count-production.ts';
import { orderAt, recordOrder, recordOrderChange } from './active-order.ts';
import { counterDelta } from './counter-delta.ts';
import { shiftAt } from './shift-calendar.ts';
import { T0, identity, run, signal, type Step } from './test-kit.ts';

const pcs = (txs: Transaction[]) => txs.filter((t) => t.schema.includes('production-confirmation')) as ProductionConfirmation[];
const mcs = (txs: Transaction[]) => txs.filter((t) => t.schema.includes('material-consumption')) as MaterialConsumption[];
const rule = (extra: Record<string, unknown>) =>
  countProduction(
    countProductionConfigSchema.parse({ type: 'count-production', id: 'r', workCenter: 'WC-7', counter: { source: 'plc', ref: 'good' }, activeOrder: { source: 'plc', ref: 'order' }, ...extra }),
    'live',
  );
const sig = (ref: string, value: unknown, t: number, extra = {}) => ({ kind: 'signal' as const, signal: signal('plc', ref, value as never, t, undefined, extra) });
const tick = (now: number): Step => ({ kind: 'tick', now });

void test('counterDelta: wrap per width, reset modes, never-resetting totals, jumps, UInt64 beyond 2^53', () => {
  const cfg = { wrap: 'uint16' as const, counts: 'resetting' as const, onReset: 'count-from-zero' as const, maxJump: 100 };
  assert.deepEqual(counterDelta(undefined, 5, cfg), { kind: 'baseline' });
  assert.deepEqual(counterDelta(10, 12, cfg, true), { kind: 'baseline' });
  assert.deepEqual(counterDelta(65530, 4, cfg), { kind: 'delta', d: 10, reset: false, wrapped: true });
  assert.deepEqual(counterDelta(500, 7, cfg), { kind: 'delta', d: 7, reset: true, wrapped: false });
  assert.deepEqual(counterDelta(500, 7, { ...cfg, onReset: 'drop' }), { kind: 'delta', d: 0, reset: true, wrapped: false });
  assert.equal(counterDelta(500, 7, { ...cfg, counts: 'total' }).kind, 'jump');
  assert.equal(counterDelta(500, 701, cfg).kind, 'jump');
  assert.equal(counterDelta(500, 70000, cfg).kind, 'invalid');
  assert.equal(counterDelta(500, -1, cfg).kind, 'invalid');
  assert.equal(counterDelta(500, 1.5, cfg).kind, 'invalid');
  const big = { ...cfg, wrap: 'uint64' as const };
  assert.deepEqual(counterDelta('18446744073709551610', '3', big), { kind: 'delta', d: 9, reset: false, wrapped: true });
  assert.deepEqual(counterDelta('9007199254740993', '9007199254740999', big), { kind: 'delta', d: 6, reset: false, wrapped: false });
});

void test('a Sparkplug birth re-baselines; a never-resetting total may count across it (onBaseline: count)', () => {
  const steps = [sig('order', '100', T0), sig('good', 10, T0 + 1000), sig('good', 20, T0 + 2000), sig('good', 50, T0 + 3000, { baseline: true }), sig('good', 55, T0 + 4000), tick(T0 + 86_400_000)];
  const plain = run(rule({}), steps);
  assert.equal(pcs(plain.transactions).reduce((s, t) => s + t.data.yield.qty, 0), 15);
  const total = run(rule({ counter: { source: 'plc', ref: 'good', counts: 'total', onBaseline: 'count' } }), steps);
  assert.equal(pcs(total.transactions).reduce((s, t) => s + t.data.yield.qty, 0), 45);
});

void test('PackML structure: the count is read from a field of the value', () => {
  const r = run(rule({ counter: { source: 'plc', ref: 'good', counts: 'total', field: '$.AccCount' }, emitEvery: { parts: 5 } }), [
    sig('order', '100/0020', T0),
    sig('good', { ID: 1, Count: 3, AccCount: 1000 }, T0 + 1000),
    sig('good', { ID: 1, Count: 0, AccCount: 1007 }, T0 + 2000),
  ]);
  const [pc] = pcs(r.transactions);
  assert.equal(pc.data.yield.qty, 7);
  assert.equal(pc.data.operation, '0020');
  assert.equal(pc.idempotencyKey, 'P1010:WC-7:100:0020:plc/good:0-7');
  assert.equal(pc.data.window.counterStart, 1000);
  assert.equal(pc.data.window.counterEnd, 1007);
});

void test('an invalid value or a part without an order is quarantined with a reason, never posted', () => {
  const r = run(rule({ emitEvery: { parts: 1 } }), [sig('good', 1, T0), sig('good', 3, T0 + 1000), sig('good', 'abc', T0 + 2000)]);
  assert.equal(r.transactions.length, 0);
  assert.deepEqual(r.quarantined.map((q) => q.code), ['ORDER_ATTRIBUTION', 'SCHEMA_INVALID']);
  assert.match(r.quarantined[0].reason, /no order is active/);
});

void test('bad quality is ignored; a stale reading (older source time) is never a reset', () => {
  const r = run(rule({ emitEvery: { parts: 1000 } }), [
    sig('order', '100', T0),
    sig('good', 10, T0 + 1000),
    { kind: 'signal', signal: { ...signal('plc', 'good', 0, T0 + 1500), quality: 'bad' } },
    sig('good', 30, T0 + 3000),
    sig('good', 20, T0 + 2000),
    sig('good', 31, T0 + 4000),
    tick(T0 + 86_400_000),
  ]);
  const [pc] = pcs(r.transactions);
  assert.equal(pc.data.yield.qty, 21);
  assert.equal(pc.data.window.resetDetected, false);
});

void test('transactions validate against the wire contract, with lineage capped and first/last times', () => {
  const steps: Step[] = [sig('order', '100', T0)];
  for (let i = 1; i <= 40; i++) steps.push(sig('good', i, T0 + i * 1000), sig('scrap', Math.floor(i / 10), T0 + i * 1000 + 1));
  steps.push(tick(T0 + 86_400_000));
  const r = run(rule({ scrapCounter: { source: 'plc', ref: 'scrap' }, reworkCounter: { source: 'plc', ref: 'rework' }, material: 'FG-1', emitEvery: { parts: 1000 }, consumption: { mode: 'per-unit', components: [{ material: 'RM-1', perUnit: 0.5, uom: 'KG' }] } }), steps);
  for (const tx of r.transactions) transactionSchema.parse(tx);
  const [pc] = pcs(r.transactions);
  assert.equal(pc.data.yield.qty, 39);
  assert.equal(pc.data.scrap?.qty, 4);
  assert.equal(pc.data.rework?.qty, 0);
  assert.equal(pc.data.derivedFrom.sourceIds.length, 20);
  assert.equal(pc.data.derivedFrom.events, 43);
  assert.equal(pc.data.derivedFrom.firstEventTime, new Date(T0 + 2000).toISOString());
  assert.equal(pc.data.derivedFrom.lastEventTime, new Date(T0 + 40_001).toISOString());
  assert.equal(pc.correlationId, 'order:100');
});

void test('consumption per unit: factors per component and unit, basis, product filter, key from the confirmation', () => {
  const r = run(
    rule({
      activeOrder: { source: 'plc', ref: 'order', orderPath: '$.order', materialPath: '$.material' },
      scrapCounter: { source: 'plc', ref: 'scrap' },
      emitEvery: { parts: 10 },
      consumption: {
        mode: 'per-unit',
        components: [
          { material: 'CARTON', perUnit: 1 / 12, uom: 'EA', basis: 'yield' },
          { material: 'STEEL', perUnit: 0.412, uom: 'KG' },
          { material: 'PAINT-RED', perUnit: 0.01, uom: 'L', forMaterial: 'FG-RED' },
          { material: 'PAINT-BLUE', perUnit: 0.02, uom: 'L', forMaterial: 'FG-BLUE' },
        ],
      },
    }),
    [sig('order', { order: '100', material: 'FG-RED' }, T0), sig('good', 0, T0 + 1), sig('scrap', 0, T0 + 2), sig('scrap', 2, T0 + 1000), sig('good', 8, T0 + 2000)],
  );
  const [pc] = pcs(r.transactions);
  assert.equal(pc.data.material, 'FG-RED');
  const byMat = Object.fromEntries(mcs(r.transactions).map((m) => [m.data.material, m]));
  assert.deepEqual(Object.keys(byMat).sort(), ['CARTON', 'PAINT-RED', 'STEEL']);
  assert.equal(byMat.CARTON.data.quantity.qty, 0.666667);
  assert.equal(byMat.STEEL.data.quantity.qty, 4.12);
  assert.deepEqual(byMat.STEEL.data.quantity, { qty: 4.12, uom: 'KG' });
  assert.equal(byMat['PAINT-RED'].data.quantity.qty, 0.1);
  assert.equal(byMat.STEEL.idempotencyKey, `${pc.idempotencyKey}:mc:STEEL`);
  assert.equal(byMat.STEEL.data.movement, 'issue');
  assert.equal(byMat.STEEL.data.postingDate, pc.data.postingDate);
});

void test('final confirmation: on the rising edge of a tag, closing the open window; a zero final when nothing is open; a repeated edge sends nothing', () => {
  const r = run(rule({ emitEvery: { parts: 1000 }, final: { source: 'plc', ref: 'done', type: 'final' } }), [
    sig('order', '100', T0),
    sig('done', false, T0),
    sig('good', 0, T0),
    sig('good', 25, T0 + 1000),
    sig('done', true, T0 + 2000),
    sig('done', true, T0 + 2500),
    sig('done', false, T0 + 3000),
    sig('done', true, T0 + 4000),
  ]);
  const list = pcs(r.transactions);
  assert.deepEqual(list.map((t) => [t.idempotencyKey, t.data.yield.qty, t.data.final]), [
    ['P1010:WC-7:100:0010:plc/good:0-25', 25, 'final'],
  ]);
  const zero = run(rule({ final: { source: 'plc', ref: 'done' } }), [sig('order', '100', T0), sig('done', false, T0), sig('done', true, T0 + 2000)]);
  assert.deepEqual(pcs(zero.transactions).map((t) => [t.idempotencyKey, t.data.yield.qty, t.data.final]), [['P1010:WC-7:100:0010:plc/good:0-0', 0, 'final']]);
});

/** cycle events that carry their parts and name their order; an "order finished" event names the order it ends */
const eventOrderRule = () =>
  countProduction(
    countProductionConfigSchema.parse({
      type: 'count-production',
      id: 'r',
      workCenter: 'WC-3',
      counter: { source: 'mq', ref: 'm1/cycle', counts: 'increment', field: '$.good' },
      activeOrder: { fromCounter: true, orderPath: '$.order' },
      emitEvery: { parts: 100 },
      final: { source: 'mq', ref: 'm1/finished', trigger: 'event', orderPath: '$.order' },
    }),
    'live',
  );

void test('final on an event naming its order (MQTT "order finished")', () => {
  const r = run(
    eventOrderRule(),
    [
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'A', good: 2 }, T0, 'e1') },
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'A', good: 3 }, T0 + 1000, 'e2') },
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'B', good: 1 }, T0 + 2000, 'e3') },
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'A', good: 4 }, T0 + 1500, 'e4') },
      { kind: 'signal', signal: signal('mq', 'm1/finished', { order: 'A' }, T0 + 2100, 'f1') },
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'B', good: 1, extra: 1 }, T0 + 2200, 'e5', { baseline: true }) },
      { kind: 'tick', now: T0 + 86_400_000 },
    ],
  );
  assert.deepEqual(pcs(r.transactions).map((t) => [t.data.order, t.data.yield.qty, t.data.final, t.idempotencyKey.split(':').pop()]), [
    ['A', 5, 'none', '0-5'],
    ['A', 4, 'none', '5-9'],
    ['A', 0, 'final', '9-9'],
    ['B', 1, 'none', '0-1'],
  ]);
});

void test('an order number beyond 2^53 (rounded when parsed, it could name another order) is never used: the parts or the final are quarantined with the reason', () => {
  const BIG = JSON.parse('9007199254740993') as number; // as a payload's parser reads it: 9007199254740992
  // from the counter's own event, and on the final event
  const fromEvent = run(
    eventOrderRule(),
    [
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: 'A', good: 2 }, T0, 'e1') },
      { kind: 'signal', signal: signal('mq', 'm1/cycle', { order: BIG, good: 3 }, T0 + 1000, 'e2') },
      { kind: 'signal', signal: signal('mq', 'm1/finished', { order: BIG }, T0 + 2000, 'f1') },
      { kind: 'tick', now: T0 + 86_400_000 },
    ],
  );
  assert.deepEqual(pcs(fromEvent.transactions).map((t) => [t.data.order, t.data.yield.qty, t.data.final]), [['A', 2, 'none']]);
  assert.deepEqual(fromEvent.quarantined.map((q) => q.code), ['ORDER_ATTRIBUTION', 'SCHEMA_INVALID']);
  assert.match(fromEvent.quarantined[0].reason, /3 good parts counted at .* are not confirmed: order: \$\.order holds the number 9007199254740992, beyond 2\^53: it was rounded when parsed/);
  assert.match(fromEvent.quarantined[1].reason, /names no order at \$\.order: order: the number 9007199254740992, beyond 2\^53/);
  // an order tag: the announcement is refused (the order before it stays active), never taken as that number
  const tag = run(rule({ emitEvery: { parts: 1000 } }), [sig('order', '100', T0), sig('good', 0, T0), sig('order', BIG, T0 + 1000), sig('good', 4, T0 + 2000), tick(T0 + 86_400_000)]);
  assert.deepEqual(pcs(tag.transactions).map((t) => [t.data.order, t.data.yield.qty]), [['100', 4]]);
  assert.equal(tag.quarantined.length, 1);
  assert.match(tag.quarantined[0].reason, /no order in plc\/order value 9007199254740992: order: the number 9007199254740992, beyond 2\^53: .*send it as a string/);
  // up to 2^53 - 1 an order number is exact and used
  const exact = run(rule({ emitEvery: { parts: 1000 } }), [sig('order', 9007199254740991, T0), sig('good', 0, T0), sig('good', 4, T0 + 2000), tick(T0 + 86_400_000)]);
  assert.deepEqual(pcs(exact.transactions).map((t) => [t.data.order, t.data.yield.qty]), [['9007199254740991', 4]]);
});

void test('parts threshold with minInterval: no window closes before it is old enough', () => {
  const steps: Step[] = [sig('order', '1', T0), sig('good', 0, T0)];
  for (let i = 1; i <= 12; i++) steps.push(sig('good', i * 10, T0 + i * 10_000));
  const r = run(rule({ emitEvery: { parts: 10, minInterval: '30s' } }), steps);
  assert.deepEqual(pcs(r.transactions).map((t) => t.data.yield.qty), [40, 40, 40]);
});

const SHIFTS = [
  { name: 'early', start: '06:00' },
  { name: 'late', start: '14:00' },
  { name: 'night', start: '22:00' },
];

void test('shift calendar: a night shift crosses midnight; on DST changes it lasts 7 or 9 hours', () => {
  const tz = 'Europe/Berlin';
  const spring = shiftAt(Date.parse('2026-03-29T00:30:00Z'), SHIFTS, tz);
  assert.deepEqual([spring.name, new Date(spring.start).toISOString(), new Date(spring.end).toISOString(), spring.date], ['night', '2026-03-28T21:00:00.000Z', '2026-03-29T04:00:00.000Z', '2026-03-28']);
  const autumn = shiftAt(Date.parse('2026-10-25T01:30:00Z'), SHIFTS, tz);
  assert.equal((autumn.end - autumn.start) / 3_600_000, 9);
  assert.equal(autumn.date, '2026-10-24');
  const ny = shiftAt(Date.parse('2026-11-01T05:30:00Z'), [{ name: 'a', start: '00:00' }, { name: 'b', start: '01:30' }], 'America/New_York');
  assert.equal(ny.name, 'b'); // 01:30 EDT happens first at 05:30Z: the earlier occurrence starts the shift
  const gap = shiftAt(Date.parse('2026-03-08T07:40:00Z'), [{ name: 'a', start: '00:00' }, { name: 'b', start: '02:30' }], 'America/New_York');
  assert.deepEqual([gap.name, new Date(gap.start).toISOString()], ['b', '2026-03-08T07:30:00.000Z']);
});

void test('windows close at shift end across midnight and the autumn DST change; posting date per shift start or event', () => {
  // readings every 10 minutes from 20:00 local on Saturday 24 Oct 2026 to 08:00 on Sunday (clocks go back at 03:00)
  const steps: Step[] = [sig('order', '500', Date.parse('2026-10-24T17:00:00Z'))];
  let v = 0;
  for (let t = Date.parse('2026-10-24T18:00:00Z'); t <= Date.parse('2026-10-25T07:00:00Z'); t += 600_000) steps.push(sig('good', (v += 6), t));
  steps.push(tick(Date.parse('2026-10-25T07:05:00Z')));
  steps.push(tick(Date.parse('2026-10-26T00:00:00Z')));
  for (const postingDate of ['shift-start', 'event'] as const) {
    const r = run(rule({ shifts: SHIFTS, postingDate, emitEvery: { parts: 100_000, maxInterval: '1d' } }), steps, { timeZone: 'Europe/Berlin' });
    const list = pcs(r.transactions);
    assert.deepEqual(
      list.map((t) => [t.data.window.from, t.data.window.to, t.data.yield.qty, t.data.postingDate]),
      [
        // late shift until 22:00 CEST (20:00Z); the first reading at 18:00Z is the baseline
        ['2026-10-24T18:10:00.000Z', '2026-10-24T19:50:00.000Z', 66, '2026-10-24'],
        // night shift 22:00 CEST -> 06:00 CET = 9 hours, crossing midnight
        ['2026-10-24T20:00:00.000Z', '2026-10-25T04:50:00.000Z', 54 * 6, postingDate === 'shift-start' ? '2026-10-24' : '2026-10-25'],
        // early shift, closed by the tick at 08:05 local after the last reading
        ['2026-10-25T05:00:00.000Z', '2026-10-25T07:00:00.000Z', 13 * 6, '2026-10-25'],
      ],
    );
  }
});

void test('posting date is the plant-local date of the last event, not UTC', () => {
  const r = run(rule({ emitEvery: { parts: 5 } }), [sig('order', '1', T0), sig('good', 0, Date.parse('2026-06-30T21:30:00Z')), sig('good', 5, Date.parse('2026-06-30T22:30:00Z'))], { timeZone: 'Europe/Berlin' });
  assert.equal(pcs(r.transactions)[0].data.postingDate, '2026-07-01');
});

void test('state written by the first version of the rule is read', () => {
  const r = rule({ emitEvery: { parts: 5 } });
  const out = r.apply({ good: { last: 10 }, order: { order: '9', operation: '0010' }, cum: { '9/0010': 100 } } as never, signal('plc', 'good', 15, T0), {
    plant: 'P',
    agentId: 'a',
    timeZone: 'UTC',
    now: T0,
  });
  assert.equal(out.transactions[0].idempotencyKey, 'P:WC-7:9:0010:plc/good:100-105');
});

/** Runs steps with the state kept in memory between steps, as the outbox's state cache does (no JSON). */
function runInMemory<S>(r: ReturnType<typeof rule>, steps: Step[]): { transactions: Transaction[]; state: unknown } {
  let state = r.initialState();
  const transactions: Transaction[] = [];
  for (const step of steps) {
    const ctx = { plant: 'P1010', agentId: 'edge-test', timeZone: 'Europe/Berlin', now: step.kind === 'tick' ? step.now : (step.now ?? Date.parse(step.signal.receivedAt)) };
    const out = step.kind === 'tick' ? r.tick!(state, ctx) : r.apply(state, step.signal, ctx);
    state = out.state;
    transactions.push(...out.transactions);
  }
  return { transactions, state: JSON.parse(JSON.stringify(state)) as S };
}

void test('cumulative counts are kept for the 200 orders counted last; state in memory and state through JSON agree', () => {
  const steps: Step[] = [];
  let t = T0;
  let good = 0;
  const count = (order: number) => {
    steps.push(sig('order', String(1000 + order), (t += 1000)));
    steps.push(sig('good', (good += 3), (t += 1000)));
  };
  for (let o = 0; o < 205; o++) count(o);
  count(10); // remembered: moves to the end
  count(2); // forgotten (one of the first 5): counts from 0 again
  for (let o = 300; o < 302; o++) count(o);
  steps.push(tick(t + 86_400_000));
  const r = rule({ emitEvery: { parts: 1000 } });
  const json = run(r, steps, { timeZone: 'Europe/Berlin' });
  const memory = runInMemory(rule({ emitEvery: { parts: 1000 } }), steps);
  assert.deepEqual(memory.transactions.map(identity), json.transactions.map(identity));
  assert.deepEqual(memory.state, json.state);
  const keys = pcs(json.transactions).map((x) => x.idempotencyKey.replace(/^.*:(\d+):0010:plc\/good:/, '$1 '));
  assert.equal(keys.filter((k) => k === '1010 3-6').length, 1, 'order 1010 continues from its remembered count');
  assert.equal(keys.filter((k) => k === '1002 0-3').length, 2, 'order 1002 was forgotten and counts from 0 again');
  const cum = (json.state as { cum: Record<string, number> }).cum;
  const expected = [...Array.from({ length: 205 }, (_, o) => o).filter((o) => o !== 10 && o >= 8), 10, 2, 300, 301].map((o) => `${1000 + o}/0010`);
  assert.deepEqual(Object.keys(cum), expected);
  assert.equal(cum['1010/0010'], 6);
});

const yieldOf = (r: { transactions: Transaction[] }) => pcs(r.transactions).reduce((s, t) => s + t.data.yield.qty, 0);

void test('a brief bad reading (a spike, a 0 in a PLC restart) is quarantined, and the return to the real value is not counted again', () => {
  const day = tick(T0 + 86_400_000);
  // resetting counter: 49990, 50000, a spike to 3e9, back to 50000, 50010 -> 20 parts
  const spike = run(rule({ emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), sig('good', 49990, T0 + 1000), sig('good', 50000, T0 + 2000), sig('good', 3e9, T0 + 3000), sig('good', 50000, T0 + 4000), sig('good', 50010, T0 + 5000), day]);
  assert.equal(yieldOf(spike), 20);
  assert.deepEqual(spike.quarantined.map((q) => q.code), ['COUNTER_JUMP']);
  // a never-resetting total that reads 0 for a moment -> 20 parts
  const zero = run(rule({ counter: { source: 'plc', ref: 'good', counts: 'total' }, emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), sig('good', 49990, T0 + 1000), sig('good', 50000, T0 + 2000), sig('good', 0, T0 + 3000), sig('good', 50000, T0 + 4000), sig('good', 50010, T0 + 5000), day]);
  assert.equal(yieldOf(zero), 20);
  // a real new range (a rescaled tag) is still taken: the jump is quarantined, counting goes on from it
  const rescaled = run(rule({ emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), sig('good', 50000, T0 + 1000), sig('good', 3e9, T0 + 2000), sig('good', 3e9 + 5, T0 + 3000), day]);
  assert.equal(yieldOf(rescaled), 5);
});

void test('uint16 with the default maxJump: a reset is a reset, not a wrap across most of the register', () => {
  const cfg = { wrap: 'uint16' as const, counts: 'resetting' as const, onReset: 'count-from-zero' as const, maxJump: 100_000 };
  assert.deepEqual(counterDelta(5000, 3, cfg), { kind: 'delta', d: 3, reset: true, wrapped: false });
  assert.deepEqual(counterDelta(65530, 4, cfg), { kind: 'delta', d: 10, reset: false, wrapped: true });
  assert.equal(counterDelta(5000, 3, { ...cfg, counts: 'total' }).kind, 'jump');
  const r = run(rule({ counter: { source: 'plc', ref: 'good', wrap: 'uint16' }, emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), sig('good', 4990, T0 + 1000), sig('good', 5000, T0 + 2000), sig('good', 3, T0 + 3000), tick(T0 + 86_400_000)]);
  assert.equal(yieldOf(r), 13);
});

void test('two readings with the same source time arriving in reverse: the lower one is stale, not a reset', () => {
  const r = run(rule({ emitEvery: { parts: 1_000_000 } }), [sig('order', 'A', T0), sig('good', 100, T0 + 1000), sig('good', 105, T0 + 2000, { sourceId: 'm2' }), sig('good', 103, T0 + 2000, { sourceId: 'm1' }), sig('good', 106, T0 + 3000), tick(T0 + 86_400_000)]);
  assert.equal(yieldOf(r), 6);
  assert.ok(pcs(r.transactions).every((t) => !t.data.window?.resetDetected));
});

void test('a counter ref longer than the wire allows: confirmations still valid (counterRef cut to 200, key bounded)', () => {
  const ref = `spBv1.0/${'Line7/'.repeat(40)}GoodCount`;
  const r = run(rule({ counter: { source: 'plc', ref }, emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), { kind: 'signal' as const, signal: signal('plc', ref, 10 as never, T0 + 1000) }, { kind: 'signal' as const, signal: signal('plc', ref, 15 as never, T0 + 2000) }, tick(T0 + 86_400_000)]);
  assert.equal(pcs(r.transactions).length, 1);
  for (const t of r.transactions) {
    assert.equal(transactionSchema.safeParse(t).success, true, JSON.stringify(transactionSchema.safeParse(t).error?.issues?.[0]));
    assert.ok(t.idempotencyKey.length <= 300);
  }
});

void test('one reading stamped far in the future (a PLC clock glitch) is quarantined; counting goes on and loses nothing', () => {
  const future = { kind: 'signal' as const, signal: signal('plc', 'good', 1010 as never, Date.UTC(2099, 0, 1), 'plc/good/2099', { receivedAt: new Date(T0 + 3000).toISOString() }) };
  const r = run(rule({ emitEvery: { parts: 1_000_000 } }), [sig('order', '100', T0), sig('good', 1000, T0 + 1000), sig('good', 1005, T0 + 2000), future, sig('good', 1020, T0 + 4000), sig('good', 1030, T0 + 5000), sig('good', 1500, T0 + 6000), tick(T0 + 86_400_000)]);
  assert.equal(yieldOf(r), 500);
  assert.deepEqual(r.quarantined.map((q) => q.code), ['SCHEMA_INVALID']);
  assert.match(r.quarantined[0].reason, /more than a day after it was received/);
});

void test('parts counted after an order\'s final confirmation are never confirmed again for it: reported as a dead letter naming the order and the quantity', () => {
  const finalRule = () => rule({ emitEvery: { parts: 1000 }, final: { source: 'plc', ref: 'done' } });
  // after the final, still order 100 on the tag: held, then reported when the window would close (here the tick)
  const after = run(finalRule(), [sig('order', '100', T0), sig('done', false, T0), sig('good', 0, T0), sig('good', 25, T0 + 1000), sig('done', true, T0 + 2000), sig('good', 30, T0 + 3000), tick(T0 + 86_400_000)]);
  assert.deepEqual(pcs(after.transactions).map((t) => [t.idempotencyKey, t.data.yield.qty, t.data.final]), [['P1010:WC-7:100:0010:plc/good:0-25', 25, 'final']]);
  assert.equal(after.quarantined.length, 1);
  assert.equal(after.quarantined[0].code, 'ORDER_ATTRIBUTION');
  assert.match(after.quarantined[0].reason, /5 good parts .*order 100\/0010 .*after its final confirmation/);
  // a reading measured before the final but received after it: reported at once, not a second confirmation
  const late = run(finalRule(), [sig('order', '100', T0), sig('done', false, T0), sig('good', 0, T0), sig('good', 25, T0 + 1000), sig('done', true, T0 + 2000), sig('good', 28, T0 + 1900, { receivedAt: new Date(T0 + 2100).toISOString() }), tick(T0 + 86_400_000)]);
  assert.equal(pcs(late.transactions).length, 1);
  assert.match(late.quarantined[0].reason, /3 good parts .*order 100\/0010/);
  // the next order's tag (stamped after those parts) closes the held window: reported; the next order counts normally
  const next = run(finalRule(), [sig('order', '100', T0), sig('done', false, T0), sig('good', 0, T0), sig('good', 25, T0 + 1000), sig('done', true, T0 + 2000), sig('good', 27, T0 + 3000), sig('order', '200', T0 + 4000), sig('good', 40, T0 + 5000), tick(T0 + 86_400_000)]);
  assert.deepEqual(pcs(next.transactions).map((t) => [t.data.order, t.data.yield.qty, t.data.final]), [['100', 25, 'final'], ['200', 13, 'none']]);
  assert.equal(next.quarantined.length, 1);
  assert.match(next.quarantined[0].reason, /2 good parts .*order 100\/0010/);
  // every part is accounted for: confirmed or reported
  assert.deepEqual(next.quarantined[0].payload, { order: '100', operation: '0010', good: 2, scrap: 0, rework: 0, from: new Date(T0 + 3000).toISOString(), to: new Date(T0 + 3000).toISOString(), finalAt: new Date(T0 + 2000).toISOString(), sourceIds: ['plc/good/' + (T0 + 3000) + '/27'] });
});

void test('a final flag already true in a baseline (birth, retained message, reconnect) fires the final once, also across a crash and a rebirth', () => {
  const finalRule = () => rule({ emitEvery: { parts: 1000 }, final: { source: 'plc', ref: 'done' } });
  const birth = { baseline: true };
  const steps: Step[] = [
    sig('order', '100', T0),
    sig('done', false, T0),
    sig('good', 0, T0),
    sig('good', 25, T0 + 1000),
    // the edge node was offline when the job completed: its birth shows the flag true
    sig('good', 25, T0 + 5000, birth),
    sig('done', true, T0 + 5000, birth),
    // a rebirth (or a retained message on the next reconnect) shows it again
    sig('done', true, T0 + 9000, birth),
    tick(T0 + 86_400_000),
  ];
  const expected = [['P1010:WC-7:100:0010:plc/good:0-25', 25, 'final']];
  const straight = run(finalRule(), steps);
  assert.deepEqual(pcs(straight.transactions).map((t) => [t.idempotencyKey, t.data.yield.qty, t.data.final]), expected);
  // a crash before the final's commit replays the birth: the same confirmation under the same key
  const crashed = run(finalRule(), steps, { crashes: [{ at: 5, length: 2 }] });
  assert.deepEqual(crashed.transactions.map(identity), straight.transactions.map(identity));
  assert.deepEqual(crashed.state, straight.state);
  // first sight of the flag (a new rule): true fires only for an order this rule has counted
  const counted = run(finalRule(), [sig('order', '100', T0), sig('good', 0, T0), sig('good', 7, T0 + 1000), sig('done', true, T0 + 2000, birth)]);
  assert.deepEqual(pcs(counted.transactions).map((t) => [t.idempotencyKey, t.data.final]), [['P1010:WC-7:100:0010:plc/good:0-7', 'final']]);
  const unknown = run(finalRule(), [sig('order', '100', T0), sig('done', true, T0 + 2000, birth), sig('done', true, T0 + 3000)]);
  assert.equal(unknown.transactions.length, 0);
});

void test('an order tag that arrives late: parts measured after its source time go to the new order, not the old one', () => {
  const totals = (r: { transactions: Transaction[] }) => {
    const m: Record<string, number> = {};
    for (const t of pcs(r.transactions)) m[t.data.order] = (m[t.data.order] ?? 0) + t.data.yield.qty + (t.data.scrap?.qty ?? 0);
    return m;
  };
  // order 200 starts at T0+1500, its tag arrives after the readings of T0+2000 and T0+3000
  const late = run(rule({ scrapCounter: { source: 'plc', ref: 'scrap' }, emitEvery: { parts: 1000 } }), [
    sig('order', '100', T0),
    sig('good', 0, T0),
    sig('scrap', 0, T0),
    sig('good', 10, T0 + 1000),
    sig('good', 20, T0 + 2000),
    sig('scrap', 2, T0 + 2500),
    sig('good', 30, T0 + 3000),
    sig('order', '200', T0 + 1500),
    sig('good', 35, T0 + 4000),
    tick(T0 + 86_400_000),
  ]);
  assert.deepEqual(totals(late), { '100': 10, '200': 27 });
  assert.deepEqual(late.quarantined, []);
  const [a, b] = pcs(late.transactions);
  assert.deepEqual([a.idempotencyKey, a.data.window.to, a.data.window.counterEnd], ['P1010:WC-7:100:0010:plc/good:0-10', new Date(T0 + 1000).toISOString(), 10]);
  assert.deepEqual([b.idempotencyKey, b.data.yield.qty, b.data.scrap?.qty, b.data.window.from, b.data.window.counterStart, b.data.window.counterEnd], ['P1010:WC-7:200:0010:plc/good:0-27', 25, 2, new Date(T0 + 2000).toISOString(), 10, 35]);
  assert.deepEqual(b.data.derivedFrom.sourceIds.length, 4);

  // the old order's window already closed (parts threshold) with parts of the new order in it: they stay
  // posted, and a dead letter says how many, where and which confirmation holds them
  const closed = run(rule({ emitEvery: { parts: 15 } }), [sig('order', '100', T0), sig('good', 0, T0), sig('good', 10, T0 + 1000), sig('good', 20, T0 + 2000), sig('order', '200', T0 + 1500), sig('good', 25, T0 + 3000), tick(T0 + 86_400_000)]);
  assert.deepEqual(totals(closed), { '100': 20, '200': 5 });
  assert.equal(closed.quarantined.length, 1);
  assert.equal(closed.quarantined[0].code, 'ORDER_ATTRIBUTION');
  assert.match(closed.quarantined[0].reason, /10 good parts measured at .*08:00:02.000Z.* confirmed to order 100\/0010 \(P1010:WC-7:100:0010:plc\/good:0-20\).*order 200\/0010/);

  // bounded: only the last 16 counted readings are re-attributed; the rest stay with the old order, and a
  // dead letter says so
  const steps: Step[] = [sig('order', '100', T0), sig('good', 0, T0), sig('good', 10, T0 + 1000)];
  for (let i = 1; i <= 20; i++) steps.push(sig('good', 10 + i, T0 + 1000 + i * 100));
  steps.push(sig('order', '200', T0 + 1050), tick(T0 + 86_400_000));
  const long = run(rule({ emitEvery: { parts: 1000 } }), steps);
  assert.deepEqual(totals(long), { '100': 14, '200': 16 });
  assert.equal(long.quarantined.length, 1);
  assert.equal(long.quarantined[0].code, 'ORDER_ATTRIBUTION');
  assert.match(long.quarantined[0].reason, /only the last 16 counted readings/);
});

void test('an order tag announced again and again (a republished MQTT topic, Sparkplug rebirths) moves nothing and reports nothing', () => {
  const totals = (r: { transactions: Transaction[] }) => {
    const m: Record<string, number> = {};
    for (const t of pcs(r.transactions)) m[t.data.order] = (m[t.data.order] ?? 0) + t.data.yield.qty;
    return m;
  };
  // order 100 counts 50 parts over 5 minutes; order 200's tag arrives on time, then is republished every 10 s
  // while order 200 counts a part after each
  const steps: Step[] = [sig('order', '100', T0), sig('good', 0, T0)];
  for (let i = 1; i <= 10; i++) steps.push(sig('good', 5 * i, T0 + i * 30_000));
  const start = T0 + 301_000;
  steps.push(sig('order', '200', start));
  for (let i = 1; i <= 30; i++) steps.push(sig('order', '200', start + i * 10_000), sig('good', 50 + i, start + i * 10_000 + 5000));
  steps.push(tick(T0 + 86_400_000));
  const r = run(rule({ emitEvery: { parts: 1000, maxInterval: '1h' } }), steps);
  assert.deepEqual(r.quarantined, []);
  assert.deepEqual(totals(r), { '100': 50, '200': 30 });
  // the repeats take no place in the order history: the 16 entries are kept for order changes
  assert.deepEqual((r.state as { orders: Array<{ order: string }> }).orders.map((o) => o.order), ['100', '200']);

  // more than 16 order changes within the last 16 readings: a reading older than the oldest remembered change
  // is not known to belong to another order, so it is neither moved nor reported
  const quick: Step[] = [sig('good', 0, T0)];
  for (let i = 1; i <= 20; i++) quick.push(sig('order', String(1000 + i), T0 + i * 1000), sig('good', i, T0 + i * 1000 + 500));
  quick.push(tick(T0 + 86_400_000));
  const many = run(rule({ emitEvery: { parts: 1000 } }), quick);
  assert.deepEqual(many.quarantined, []);
  assert.deepEqual(Object.values(totals(many)), Array.from({ length: 20 }, () => 1));
});

void test('order history: a repeat takes no entry, yet an order announced late between a first announcement and its repeat ends at the repeat', () => {
  const A = { order: 'A', operation: '0010' };
  const B = { order: 'B', operation: '0010' };
  let h = recordOrder([], A, 1000);
  const r = recordOrderChange(h, A, 3000);
  assert.equal(r.changed, false);
  h = recordOrder(r.orders, A, 4000);
  assert.deepEqual(h, [{ ...A, since: 1000, repeats: [3000, 4000] }]);
  const late = recordOrderChange(h, B, 2000);
  assert.equal(late.changed, true);
  assert.deepEqual(late.orders, [{ ...A, since: 1000 }, { ...B, since: 2000 }, { ...A, since: 3000, repeats: [4000] }]);
  // a history with repeats stored as entries (an earlier version) still reads, and becomes one entry at the next change
  const old = [{ ...A, since: 1000 }, { ...A, since: 3000 }];
  assert.equal(orderAt(old, 3500)?.order, 'A');
  assert.deepEqual(recordOrder(old, B, 5000), [{ ...A, since: 1000, repeats: [3000] }, { ...B, since: 5000 }]);
});

void test('a final flag true in a baseline or at first sight finishes only an order counted since it became active: never the next order, never an order only counted in an earlier run', () => {
  const finalRule = () => rule({ emitEvery: { parts: 1000 }, final: { source: 'plc', ref: 'done' } });
  const birth = { baseline: true };
  const summary = (r: { transactions: Transaction[] }) => pcs(r.transactions).map((t) => [t.idempotencyKey, t.data.yield.qty, t.data.final]);
  // order 100 completes while the edge node is offline and the tag turns to order 200: the birth shows
  // order 200 and the flag still true from order 100's end. Nothing was counted for 200: no final for it,
  // and its parts are confirmed as usual.
  const offline = run(finalRule(), [
    sig('order', '100', T0),
    sig('done', false, T0),
    sig('good', 0, T0),
    sig('good', 25, T0 + 1000),
    sig('order', '200', T0 + 4000, birth),
    sig('good', 25, T0 + 5000, birth),
    sig('done', true, T0 + 5000, birth),
    sig('good', 30, T0 + 6000),
    sig('done', false, T0 + 7000),
    tick(T0 + 86_400_000),
  ]);
  assert.deepEqual(summary(offline), [
    ['P1010:WC-7:100:0010:plc/good:0-25', 25, 'none'],
    ['P1010:WC-7:200:0010:plc/good:0-5', 5, 'none'],
  ]);
  assert.deepEqual(offline.quarantined, []);
  // a final tag newly configured whose flag is still true from an earlier job, while order 100 is back on
  // the line with nothing counted since: not finished; as parts were confirmed for it before, a dead
  // letter says so (its final may be due)
  const again = run(finalRule(), [
    sig('order', '100', T0),
    sig('good', 0, T0),
    sig('good', 25, T0 + 1000),
    sig('order', '200', T0 + 2000),
    sig('good', 30, T0 + 3000),
    sig('order', '100', T0 + 4000),
    sig('done', true, T0 + 5000),
    tick(T0 + 86_400_000),
  ]);
  assert.deepEqual(summary(again), [
    ['P1010:WC-7:100:0010:plc/good:0-25', 25, 'none'],
    ['P1010:WC-7:200:0010:plc/good:0-5', 5, 'none'],
  ]);
  assert.deepEqual(again.quarantined.map((q) => q.code), ['ORDER_ATTRIBUTION']);
  assert.match(again.quarantined[0].reason, /order 100\/0010\b.*no parts counted since it became active/);
});
