import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ProductionConfirmation, Transaction } from '../../contracts/index.ts';
import { countProductionConfigSchema } from './count-production/config.ts';
import { countProduction } from './count-production/count-production.ts';
import { WRAP_MAX, type CounterWidth } from './counter-delta.ts';
import { T0, identity, run, signal, type Step } from './test-kit.ts';

/**
 * Properties over random counter histories: wraps, resets, duplicates, reordering, restarts anywhere (the
 * state goes through JSON after every step, as the outbox stores it), crashes before a commit (replayed),
 * and any chunking into windows (random parts thresholds and ticks). The confirmed total equals the
 * counter's true progress, never more; keys never collide and never change on replay.
 */

const RUNS = Number(process.env.PLANTBRIDGE_PROPERTY_RUNS ?? 150);
const MAX_JUMP = 1000;
const MAX_INTERVAL = 5 * 60_000;

type Op = { k: 'inc'; n: number } | { k: 'reset' } | { k: 'dup' } | { k: 'tick' } | { k: 'swap' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 60 }).map((n) => ({ k: 'inc' as const, n })) },
  { weight: 1, arbitrary: fc.constant({ k: 'reset' as const }) },
  { weight: 2, arbitrary: fc.constant({ k: 'dup' as const }) },
  { weight: 2, arbitrary: fc.constant({ k: 'tick' as const }) },
  { weight: 2, arbitrary: fc.constant({ k: 'swap' as const }) },
);

function confirmations(txs: Transaction[]): ProductionConfirmation[] {
  return txs.filter((t) => t.schema.includes('production-confirmation')) as ProductionConfirmation[];
}

/** Keys are unique, and per order/operation the windows tile [0, total) without gap or overlap. */
function assertKeysTile(txs: ProductionConfirmation[]): Map<string, number> {
  const keys = txs.map((t) => t.idempotencyKey);
  assert.equal(new Set(keys).size, keys.length, 'idempotency keys collide');
  const byOrder = new Map<string, Array<[number, number]>>();
  for (const t of txs) {
    const m = /:(\d+)-(\d+)$/.exec(t.idempotencyKey)!;
    const k = `${t.data.order}/${t.data.operation}`;
    const list = byOrder.get(k) ?? [];
    list.push([Number(m[1]), Number(m[2])]);
    byOrder.set(k, list);
    const parts = t.data.yield.qty + (t.data.scrap?.qty ?? 0) + (t.data.rework?.qty ?? 0);
    assert.equal(Number(m[2]) - Number(m[1]), parts, `key range of ${t.idempotencyKey} is its part count`);
  }
  const totals = new Map<string, number>();
  for (const [k, ranges] of byOrder) {
    ranges.sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [from, to] of ranges) {
      assert.equal(from, at, `windows of ${k} tile the order's count`);
      at = to;
    }
    totals.set(k, at);
  }
  return totals;
}

function build(width: CounterWidth, parts: number, onReset: 'count-from-zero' | 'drop', extra: Record<string, unknown> = {}) {
  return countProduction(
    countProductionConfigSchema.parse({
      type: 'count-production',
      id: 'p',
      workCenter: 'WC-1',
      counter: { source: 'plc', ref: 'good', wrap: width, maxJump: MAX_JUMP, onReset },
      activeOrder: { order: '1000001', operation: '0010' },
      emitEvery: { parts, maxInterval: MAX_INTERVAL },
      ...extra,
    }),
    'live',
  );
}

/** Turns random operations into delivered steps, and the counter's true progress. */
function history(width: CounterWidth, start: bigint, ops: Op[]): { steps: Step[]; progress: number } {
  const max = WRAP_MAX[width];
  const enc = (v: bigint) => (width === 'uint64' ? v.toString() : Number(v));
  let c = start;
  let t = T0;
  let progress = 0;
  type Obs = { sig: ReturnType<typeof signal>; reset: boolean };
  const obs: Obs[] = [{ sig: signal('plc', 'good', enc(c), t, `good/${t}`), reset: false }];
  const extras: Array<{ afterObs: number; step: Step }> = [];
  const swaps = new Set<number>();
  for (const op of ops) {
    if (op.k === 'inc') {
      c = (c + BigInt(op.n)) & max;
      progress += op.n;
      t += 1000;
      obs.push({ sig: signal('plc', 'good', enc(c), t, `good/${t}`), reset: false });
    } else if (op.k === 'reset') {
      // a reset near the top of the register is indistinguishable from a wrap: not generated
      if (c === 0n || c > max - BigInt(MAX_JUMP)) continue;
      c = 0n;
      t += 1000;
      obs.push({ sig: signal('plc', 'good', enc(c), t, `good/${t}`), reset: true });
    } else if (op.k === 'dup') {
      extras.push({ afterObs: obs.length - 1, step: { kind: 'signal', signal: obs[obs.length - 1].sig, now: t } });
    } else if (op.k === 'tick') {
      extras.push({ afterObs: obs.length - 1, step: { kind: 'tick', now: t + MAX_INTERVAL } });
    } else {
      swaps.add(obs.length);
    }
  }
  // reorder: deliver some observation after its successor (never across a reset, where order matters)
  const order = obs.map((_, i) => i);
  for (const i of swaps) {
    if (i < 1 || i + 1 >= obs.length || obs[i].reset || obs[i + 1].reset || order[i] !== i || order[i + 1] !== i + 1) continue;
    [order[i], order[i + 1]] = [order[i + 1], order[i]];
  }
  const steps: Step[] = [];
  order.forEach((oi, pos) => {
    const last = Date.parse(obs[Math.max(oi, order[pos - 1] ?? 0)].sig.sourceTime);
    steps.push({ kind: 'signal', signal: obs[oi].sig, now: last });
    for (const e of extras) if (e.afterObs === pos) steps.push(e.step);
  });
  steps.push({ kind: 'tick', now: t + 10 * MAX_INTERVAL });
  return { steps, progress };
}

const widthArb = fc.constantFrom<CounterWidth>('uint16', 'uint32', 'uint64');
const startArb = (width: CounterWidth) =>
  fc.oneof(fc.bigInt({ min: 0n, max: 5000n }), fc.bigInt({ min: WRAP_MAX[width] - 3000n, max: WRAP_MAX[width] }), fc.bigInt({ min: 0n, max: WRAP_MAX[width] }));

void test('confirmed total equals the true progress through wraps, resets, duplicates, reordering and any chunking', () => {
  fc.assert(
    fc.property(
      widthArb.chain((w) => fc.tuple(fc.constant(w), startArb(w))),
      fc.array(opArb, { minLength: 1, maxLength: 120 }),
      fc.integer({ min: 1, max: 300 }),
      fc.constantFrom<'count-from-zero' | 'drop'>('count-from-zero', 'drop'),
      ([width, start], ops, parts, onReset) => {
        const { steps, progress } = history(width, start, ops);
        const r = run(build(width, parts, onReset), steps);
        const pcs = confirmations(r.transactions);
        const confirmed = pcs.reduce((s, t) => s + t.data.yield.qty, 0);
        assert.equal(confirmed, progress);
        assert.deepEqual(r.quarantined, []);
        const totals = assertKeysTile(pcs);
        assert.equal(totals.get('1000001/0010') ?? 0, progress);
        for (const t of pcs) assert.ok(t.data.yield.qty > 0 && t.data.yield.qty <= Math.max(parts, 0) + 2 * 60, 'a window holds at most its threshold plus one reading');
      },
    ),
    { numRuns: RUNS },
  );
});

void test('restarts and crashes before a commit anywhere: the same transactions with the same keys', () => {
  fc.assert(
    fc.property(
      widthArb.chain((w) => fc.tuple(fc.constant(w), startArb(w))),
      fc.array(opArb, { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 1, max: 200 }),
      fc.array(fc.record({ at: fc.nat(120), length: fc.integer({ min: 1, max: 5 }) }), { maxLength: 6 }),
      ([width, start], ops, parts, crashes) => {
        const { steps } = history(width, start, ops);
        const straight = run(build(width, parts, 'count-from-zero'), steps);
        const crashed = run(build(width, parts, 'count-from-zero'), steps, { crashes });
        assert.deepEqual(crashed.transactions.map(identity), straight.transactions.map(identity));
        assert.deepEqual(crashed.state, straight.state);
      },
    ),
    { numRuns: RUNS },
  );
});

void test('implausible jumps are quarantined, never confirmed; everything else is', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 50 }) }, { weight: 1, arbitrary: fc.integer({ min: MAX_JUMP + 1, max: 50_000 }) }), { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 1, max: 200 }),
      fc.constantFrom<'resetting' | 'total'>('resetting', 'total'),
      (incs, parts, counts) => {
        const rule = countProduction(
          countProductionConfigSchema.parse({
            type: 'count-production',
            id: 'p',
            workCenter: 'WC-1',
            counter: { source: 'plc', ref: 'good', maxJump: MAX_JUMP, counts },
            activeOrder: { order: '1000001' },
            emitEvery: { parts },
          }),
          'live',
        );
        let c = 10_000;
        const steps: Step[] = [{ kind: 'signal', signal: signal('plc', 'good', c, T0) }];
        incs.forEach((n, i) => {
          c += n;
          steps.push({ kind: 'signal', signal: signal('plc', 'good', c, T0 + (i + 1) * 1000) });
        });
        steps.push({ kind: 'tick', now: T0 + 100 * 86_400_000 });
        const r = run(rule, steps);
        const plausible = incs.filter((n) => n <= MAX_JUMP);
        assert.equal(confirmations(r.transactions).reduce((s, t) => s + t.data.yield.qty, 0), plausible.reduce((a, b) => a + b, 0));
        assert.equal(r.quarantined.filter((q) => q.code === 'COUNTER_JUMP').length, incs.length - plausible.length);
        assertKeysTile(confirmations(r.transactions));
      },
    ),
    { numRuns: RUNS },
  );
});

/** Counts and order changes, one a second: the input of the order-change properties. */
const orderEvents = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 40 }).map((n) => ({ kind: 'count' as const, n })) },
    { weight: 1, arbitrary: fc.constantFrom('2000001', '2000002', '2000003').map((order) => ({ kind: 'order' as const, order })) },
  ),
  { minLength: 1, maxLength: 100 },
);

/** A count-production rule with an order tag (and a scrap counter if asked), confirming every `parts`. */
function orderRule(parts: number, withScrap: boolean) {
  return countProduction(
    countProductionConfigSchema.parse({
      type: 'count-production',
      id: 'p',
      workCenter: 'WC-1',
      counter: { source: 'plc', ref: 'good' },
      ...(withScrap ? { scrapCounter: { source: 'plc', ref: 'scrap' } } : {}),
      activeOrder: { source: 'plc', ref: 'order', operation: '0010' },
      emitEvery: { parts },
    }),
    'live',
  );
}

void test('order changes: each part is confirmed against the order active at its source time, even when the change arrives first', () => {
  type Ev = { t: number; kind: 'count'; n: number } | { t: number; kind: 'order'; order: string };
  fc.assert(
    fc.property(
      orderEvents,
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 100, maxLength: 100 }),
      fc.integer({ min: 1, max: 150 }),
      fc.boolean(),
      (raw, leads, parts, withScrap) => {
        const rule = orderRule(parts, withScrap);
        // timeline: the first order at t=0, one event per second after it
        const evs: Ev[] = [{ t: T0, kind: 'order', order: '2000000' }, ...raw.map((e, i) => ({ ...e, t: T0 + (i + 1) * 1000 }))];
        const expected = new Map<string, number>();
        let active = '2000000';
        let good = 0;
        let scrap = 0;
        const sigs: Array<{ at: number; step: Step }> = [];
        sigs.push({ at: T0, step: { kind: 'signal', signal: signal('plc', 'good', 0, T0) } });
        if (withScrap) sigs.push({ at: T0, step: { kind: 'signal', signal: signal('plc', 'scrap', 0, T0) } });
        evs.forEach((e, i) => {
          if (e.kind === 'order') {
            active = e.order;
            // the order tag may arrive up to 3 s before counter readings measured earlier
            sigs.push({ at: e.t - leads[i % leads.length] * 1000 - 1, step: { kind: 'signal', signal: signal('plc', 'order', `${e.order}/0010`, e.t) } });
          } else {
            const isScrap = withScrap && e.n % 5 === 0;
            if (isScrap) scrap += e.n;
            else good += e.n;
            expected.set(active, (expected.get(active) ?? 0) + e.n);
            sigs.push({ at: e.t, step: { kind: 'signal', signal: isScrap ? signal('plc', 'scrap', scrap, e.t) : signal('plc', 'good', good, e.t) } });
          }
        });
        sigs.sort((a, b) => a.at - b.at);
        const steps = sigs.map((s) => s.step);
        steps.push({ kind: 'tick', now: T0 + 86_400_000 });
        const r = run(rule, steps);
        assert.deepEqual(r.quarantined, []);
        const totals = assertKeysTile(confirmations(r.transactions));
        const got = new Map([...totals].map(([k, v]) => [k.replace('/0010', ''), v]));
        for (const [o, n] of expected) assert.equal(got.get(o) ?? 0, n, `order ${o}`);
        for (const [o, n] of got) assert.equal(expected.get(o) ?? 0, n, `order ${o}`);
      },
    ),
    { numRuns: RUNS },
  );
});

void test('backflush emits no consumption, whatever the history', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 100 }), (ops, parts) => {
      const { steps, progress } = history('uint32', 100n, ops);
      const r = run(build('uint32', parts, 'count-from-zero', { consumption: { mode: 'backflush' } }), steps);
      assert.ok(r.transactions.every((t) => t.schema.includes('production-confirmation')));
      assert.equal(confirmations(r.transactions).reduce((s, t) => s + t.data.yield.qty, 0), progress);
    }),
    { numRuns: 50 },
  );
});

void test('consumption per unit: the consumed total is the factor times the counted parts, per window and overall', () => {
  fc.assert(
    fc.property(
      fc.array(opArb, { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 1, max: 200 }),
      fc.double({ min: 0.001, max: 50, noNaN: true }),
      (ops, parts, perUnit) => {
        const { steps, progress } = history('uint32', 100n, ops);
        const r = run(build('uint32', parts, 'count-from-zero', { consumption: { mode: 'per-unit', components: [{ material: 'RM', perUnit, uom: 'KG' }] } }), steps);
        const pcsList = confirmations(r.transactions);
        const mcList = r.transactions.filter((t) => t.schema.includes('material-consumption')) as Array<Transaction & { data: { quantity: { qty: number } } }>;
        assert.equal(mcList.length, pcsList.filter((p) => Math.round(p.data.yield.qty * perUnit * 1e6) > 0).length);
        for (const mc of mcList) {
          const pc = pcsList.find((p) => mc.idempotencyKey === `${p.idempotencyKey}:mc:RM`)!;
          assert.ok(Math.abs(mc.data.quantity.qty - pc.data.yield.qty * perUnit) <= 5e-7);
        }
        const total = mcList.reduce((s, m) => s + m.data.quantity.qty, 0);
        assert.ok(Math.abs(total - progress * perUnit) <= 1e-6 * (mcList.length + 1) + 1e-9 * progress * perUnit);
      },
    ),
    { numRuns: 60 },
  );
});

void test('late order tags: parts measured after a tag arrived late go to its order; parts already confirmed are reported with their quantity', () => {
  type Ev = { t: number; kind: 'count'; n: number } | { t: number; kind: 'order'; order: string };
  fc.assert(
    fc.property(
      orderEvents,
      fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 100, maxLength: 100 }),
      fc.integer({ min: 1, max: 400 }),
      fc.boolean(),
      (raw, lags, parts, withScrap) => {
        const rule = orderRule(parts, withScrap);
        const evs: Ev[] = [{ t: T0, kind: 'order', order: '2000000' }, ...raw.map((e, i) => ({ ...e, t: T0 + (i + 1) * 1000 }))];
        const expected = new Map<string, number>();
        let active = '2000000';
        let good = 0;
        let scrap = 0;
        const sigs: Array<{ at: number; step: Step }> = [];
        sigs.push({ at: T0 - 1, step: { kind: 'signal', signal: signal('plc', 'good', 0, T0) } });
        if (withScrap) sigs.push({ at: T0 - 1, step: { kind: 'signal', signal: signal('plc', 'scrap', 0, T0) } });
        evs.forEach((e, i) => {
          if (e.kind === 'order') {
            active = e.order;
            // the order tag arrives up to 5 readings after it was written (the first one is known at the start)
            const lag = i === 0 ? 0 : lags[i % lags.length];
            sigs.push({ at: e.t + lag * 1000 + 1, step: { kind: 'signal', signal: signal('plc', 'order', `${e.order}/0010`, e.t) } });
          } else {
            const isScrap = withScrap && e.n % 5 === 0;
            if (isScrap) scrap += e.n;
            else good += e.n;
            expected.set(active, (expected.get(active) ?? 0) + e.n);
            sigs.push({ at: e.t, step: { kind: 'signal', signal: isScrap ? signal('plc', 'scrap', scrap, e.t) : signal('plc', 'good', good, e.t) } });
          }
        });
        sigs.sort((a, b) => a.at - b.at);
        const steps = sigs.map((s) => s.step);
        steps.push({ kind: 'tick', now: T0 + 86_400_000 });
        const r = run(rule, steps);
        const totals = assertKeysTile(confirmations(r.transactions));
        const got = new Map([...totals].map(([k, v]) => [k.replace('/0010', ''), v]));
        // a report moves its parts (on paper) from the order they were confirmed to, to the one they belong to
        for (const q of r.quarantined) {
          const p = q.payload as { confirmedTo: string; previouslyReportedFor?: string; belongsTo: { order: string }; good: number; scrap: number; rework: number };
          assert.ok(p.confirmedTo, q.reason);
          const n = p.good + p.scrap + p.rework;
          // a later report replaces an earlier one for the same parts
          const from = (p.previouslyReportedFor ?? p.confirmedTo).replace('/0010', '');
          got.set(from, (got.get(from) ?? 0) - n);
          got.set(p.belongsTo.order, (got.get(p.belongsTo.order) ?? 0) + n);
        }
        for (const [o, n] of expected) assert.equal(got.get(o) ?? 0, n, `order ${o}`);
        for (const [o, n] of got) assert.equal(expected.get(o) ?? 0, n, `order ${o}`);
        // tags arriving in the order they were written, and no window closing on its size: nothing to report
        // (a later tag arriving first closes the window of the order before it)
        const tagArrivals = sigs.filter((x) => x.step.kind === 'signal' && x.step.signal.ref === 'order').map((x) => (x.step.kind === 'signal' ? Date.parse(x.step.signal.sourceTime) : 0));
        const inOrder = tagArrivals.every((t, i) => i === 0 || t >= tagArrivals[i - 1]);
        if (inOrder && parts > good + scrap) assert.deepEqual(r.quarantined, [], 'nothing was confirmed before its order tag arrived: nothing to report');
      },
    ),
    { numRuns: RUNS },
  );
});
