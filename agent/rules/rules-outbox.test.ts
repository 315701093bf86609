import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ProductionConfirmation, Signal } from '../../contracts/index.ts';
import { agentConfigSchema } from '../config/schema.ts';
import { openOutbox, type Outbox } from '../outbox/outbox.ts';
import { RuleEngine, buildRules } from './engine.ts';
import { formatRulesReport, parseCompareCsv, rulesReport, rulesReportCommand } from './report.ts';
import { T0, signal } from './test-kit.ts';

/** The rules inside a real outbox: shadow items are stored but never claimed; state survives restarts. */

const dir = mkdtempSync(join(tmpdir(), 'pb-rules-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function config(agentMode: 'live' | 'shadow', lineBMode?: 'live' | 'shadow') {
  return agentConfigSchema.parse({
    agent: { id: 'edge-1', plant: '1010', mode: agentMode },
    hub: { url: 'http://127.0.0.1:9', token: '${T}' },
    drivers: [{ type: 'simulator', name: 'sim' }],
    rules: [
      { type: 'count-production', id: 'line-a', workCenter: 'WC-A', counter: { source: 'sim', ref: 'a-good' }, activeOrder: { source: 'sim', ref: 'a-order' }, emitEvery: { parts: 10 } },
      {
        type: 'count-production',
        id: 'line-b',
        workCenter: 'WC-B',
        counter: { source: 'sim', ref: 'b-good' },
        activeOrder: { order: '9000001' },
        emitEvery: { parts: 10 },
        consumption: { mode: 'per-unit', components: [{ material: 'RM-B', perUnit: 2, uom: 'KG' }] },
        ...(lineBMode ? { mode: lineBMode } : {}),
      },
    ],
  });
}

let clock = T0;
function open(name: string, agentMode: 'live' | 'shadow', lineBMode?: 'live' | 'shadow'): Outbox {
  const c = config(agentMode, lineBMode);
  const engine = new RuleEngine(buildRules(c.rules as never, agentMode), { plant: '1010', agentId: 'edge-1', timeZone: 'Europe/Berlin', mode: agentMode, now: () => clock });
  return openOutbox({ path: join(dir, `${name}.db`), rules: engine, now: () => clock, groupCommitDelayMs: 0 });
}

function feed(n: number, from = 0): Signal[] {
  const out: Signal[] = [signal('sim', 'a-order', '1000001/0010', T0, 'a-order/0')];
  for (let i = from; i <= n; i++) {
    out.push(signal('sim', 'a-good', i * 3, T0 + i * 1000, `a-good/${i}`));
    out.push(signal('sim', 'b-good', i * 2, T0 + i * 1000, `b-good/${i}`));
    if (i === 20) out.push(signal('sim', 'a-order', '1000002/0010', T0 + i * 1000 + 500, 'a-order/20'));
  }
  return out;
}

void test('a shadow rule stores its transactions with status shadow; claim() never returns them', async () => {
  const ob = open('shadow-rule', 'live', 'shadow');
  try {
    await ob.append(feed(40));
    const claimed = ob.claim(1000, 60_000);
    assert.ok(claimed.length > 0);
    assert.ok(claimed.every((c) => c.tx.workCenter === 'WC-A'), 'only the live rule forwards');
    const rows = ob.query<{ status: string; n: number }>("SELECT status, COUNT(*) AS n FROM transactions WHERE order_key LIKE 'WC-B:%' GROUP BY status");
    assert.deepEqual(rows, [{ status: 'shadow', n: 16 }]); // 8 confirmations + 8 consumptions
    ob.settle(claimed.map((c) => ({ seq: c.seq, status: 'sent' as const })));
    assert.equal(ob.claim(1000, 60_000).length, 0);
  } finally {
    ob.close();
  }
});

void test('an agent in shadow mode makes every rule shadow, even one that says live', async () => {
  const ob = open('shadow-agent', 'shadow', 'live');
  try {
    const r = await ob.append(feed(40));
    assert.ok(r.transactions > 0);
    assert.equal(ob.claim(1000, 60_000).length, 0);
    const [{ n }] = ob.query<{ n: number }>("SELECT COUNT(*) AS n FROM transactions WHERE status <> 'shadow'");
    assert.equal(n, 0);
  } finally {
    ob.close();
  }
});

void test('restarts between any batches and replayed signals: the same totals and keys as one straight run', async () => {
  const straight = open('straight', 'live');
  await straight.append(feed(60));
  clock += 3_600_000;
  await straight.tick();
  const want = straight.query<{ idempotency_key: string; body: string }>('SELECT idempotency_key, body FROM transactions_json ORDER BY idempotency_key');
  straight.close();

  clock = T0;
  const all = feed(60);
  let ob = open('restarts', 'live');
  for (let i = 0; i < all.length; ) {
    const n = 1 + ((i * 7) % 13);
    // the source re-sends what it had not seen acknowledged: the previous batch's tail comes again
    await ob.append(all.slice(Math.max(0, i - 3), i + n));
    i += n;
    if (i % 2 === 0) {
      ob.close();
      ob = open('restarts', 'live');
    }
  }
  clock += 3_600_000;
  await ob.tick();
  const got = ob.query<{ idempotency_key: string; body: string }>('SELECT idempotency_key, body FROM transactions_json ORDER BY idempotency_key');
  assert.deepEqual(
    got.map((r) => r.idempotency_key),
    want.map((r) => r.idempotency_key),
  );
  const yieldOf = (rows: typeof got) => rows.map((r) => JSON.parse(r.body) as ProductionConfirmation).filter((t) => t.schema.includes('production')).reduce((s, t) => s + t.data.yield.qty, 0);
  assert.equal(yieldOf(got), 60 * 3 + 60 * 2);
  assert.equal(yieldOf(got), yieldOf(want));

  // the report: per order what was (or would have been) posted, compared with an MES export
  const csv = ['order;operation;yield;scrap', '1000001;0010;60;0', '1000002;0010;119,0;', '9000001;;100', '7777777;0010;5'].join('\n');
  const report = rulesReport(ob, { since: T0 - 1, compareCsv: csv, now: clock });
  assert.deepEqual(
    report.orders.map((o) => [o.workCenter, o.order, o.yield, o.confirmations]),
    [
      ['WC-A', '1000001', 60, 5],
      ['WC-A', '1000002', 120, 10],
      ['WC-B', '9000001', 120, 12],
    ],
  );
  assert.deepEqual(report.orders[2].consumption, { 'RM-B': { qty: 240, uom: 'KG' } });
  const c = report.comparison!;
  assert.deepEqual(
    c.rows.map((r) => [r.order, r.status, r.diff.yield]),
    [
      ['1000001', 'match', 0],
      ['1000002', 'mismatch', 1],
      ['7777777', 'missing-in-agent', -5],
      ['9000001', 'mismatch', 20],
    ],
  );
  assert.match(formatRulesReport(report), /1000002\t0010\t120\t119\t1\t/);
  ob.close();
});

void test('two appending connections (agent + a commit thread\'s writer) interleaved: the same transactions as one connection', async () => {
  clock = T0;
  const straight = open('one-writer', 'live');
  await straight.append(feed(60));
  const want = straight.query<{ idempotency_key: string; body: string }>('SELECT idempotency_key, body FROM transactions_json ORDER BY idempotency_key');
  straight.close();

  clock = T0;
  const agent = open('two-writers', 'live');
  const c = config('live');
  const engine = new RuleEngine(buildRules(c.rules as never, 'live'), { plant: '1010', agentId: 'edge-1', timeZone: 'Europe/Berlin', mode: 'live', now: () => clock });
  const writer = openOutbox({ path: join(dir, 'two-writers.db'), role: 'writer', rules: engine, now: () => clock, groupCommitDelayMs: 0 });
  try {
    const all = feed(60);
    // both rules' state moves on both connections: each must see the other's commits
    for (let i = 0, k = 0; i < all.length; k++) {
      const n = 1 + ((k * 5) % 7);
      await (k % 2 === 0 ? agent : writer).append(all.slice(i, i + n));
      i += n;
    }
    const got = agent.query<{ idempotency_key: string; body: string }>('SELECT idempotency_key, body FROM transactions_json ORDER BY idempotency_key');
    assert.deepEqual(
      got.map((r) => r.idempotency_key),
      want.map((r) => r.idempotency_key),
    );
    const yieldOf = (rows: typeof got) => rows.map((r) => JSON.parse(r.body) as ProductionConfirmation).filter((t) => t.schema.includes('production')).reduce((sum, t) => sum + t.data.yield.qty, 0);
    assert.equal(yieldOf(got), yieldOf(want));
    assert.deepEqual(agent.ruleState('line-a'), writer.ruleState('line-a'));
    await assert.rejects(writer.tick(), /open as a writer: only the agent ticks/);
  } finally {
    writer.close();
    agent.close();
  }
  assert.throws(() => openOutbox({ path: join(dir, 'no-such.db'), role: 'writer' }), /the agent has not created it/);
});

void test('rules report command: text or JSON, usage errors exit 1', async () => {
  const stateDir = join(dir, 'cmd');
  const ob = openOutbox({ path: join(stateDir, 'outbox.db') });
  ob.close();
  writeFileSync(join(dir, 'mes.csv'), 'Order,Operation,Yield\n1,0010,5\n');
  let out = '';
  let err = '';
  assert.equal(await rulesReportCommand({ agent: { stateDir } }, { since: '24h', compare: join(dir, 'mes.csv'), json: true }, (s) => (out += s)), 0);
  assert.equal(JSON.parse(out).comparison.missingInAgent, 1);
  assert.equal(await rulesReportCommand({ agent: { stateDir } }, {}, undefined, (s) => (err += s)), 1);
  assert.equal(await rulesReportCommand({ agent: { stateDir } }, { since: 'yesterday-ish' }, undefined, (s) => (err += s)), 1);
  assert.match(err, /--since/);
});

void test('compare CSV: separators, quotes, decimal commas, aliases, summed rows', () => {
  assert.deepEqual(parseCompareCsv('\uFEFFOrderID;Op;Good;Scrap;Unit\r\n"100";0010;1.234,5;2\r\n100;0010;0,5;\n'), [
    { order: '100', operation: '0010', yield: 1234.5, scrap: 2, uom: undefined },
    { order: '100', operation: '0010', yield: 0.5 },
  ].map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined))));
  assert.throws(() => parseCompareCsv('material,qty\nA,1'), /order/);
  assert.throws(() => parseCompareCsv('order,yield\nA,x'), /line 2/);
});
