import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pgSchemaForTest } from '../store/postgres/pg-test-kit.ts';
import type { HubStore } from '../store/hub-store.ts';
import { SqliteHubStore } from '../store/sqlite/sqlite-store.ts';
import { testTx } from '../store/test-tx.ts';
import type { Breach } from './sla.ts';
import { heartbeatOf, monitorHub, seedAgent, seedDeadLetter, seedLatencies } from './test-kit.ts';

/**
 * The SLA checks end to end on each real store: seeded transactions, dead letters and heartbeats (back-dated,
 * so nothing waits on the clock) → /v1/monitor/sla and /metrics name each breach with its plant, work
 * center, order and transactions.
 */
const YAML = `monitor:
  keysPerBreach: 5
  plants:
    MA: { acceptedNotCompleted: 10m, latency: { percentile: p95, objective: 1m } }
`;

const pgt = await pgSchemaForTest();
const stores: Array<{ name: string; skip?: string; open(): Promise<HubStore>; cleanup(): Promise<void> }> = [
  (() => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-sla-'));
    return { name: 'sqlite', open: async () => new SqliteHubStore(join(dir, 'hub.db')), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  })(),
  'skip' in pgt
    ? { name: 'postgres', skip: pgt.skip, open: () => Promise.reject(new Error(pgt.skip)), cleanup: async () => {} }
    : { name: 'postgres', open: async () => pgt.open(), cleanup: () => pgt.drop() },
];

for (const s of stores) {
  void describe(`SLA checks on ${s.name}`, { ...(s.skip ? { skip: s.skip } : {}) }, () => {
    after(() => s.cleanup());

    void it('names every breach with plant, work center, order and transactions; a viewer of one plant sees only it', async () => {
      const { hub, stop } = await monitorHub({ yaml: YAML, store: await s.open() });
      try {
        const store = hub.store;
        const now = Date.now();
        const ago = (ms: number) => new Date(now - ms);
        // latency: MA's p95 over 1 min (2 of 22 at 5 min: the 21st value), MB well within its 5 min default
        const fast = await seedLatencies(store, 'MA', [...Array<number>(20).fill(30_000), 300_000, 310_000], ago(60_000), 'LA');
        await seedLatencies(store, 'MB', Array<number>(10).fill(120_000), ago(60_000), 'LB');
        // an order closed in the ERP: 1 dead letter, 54 confirmations behind it, 30 min old
        const { dead, held } = await seedDeadLetter(store, 'MA', 'CLOSED-1', 54, ago(30 * 60_000));
        // young work: not a breach
        await store.ingest('edge-seed', [testTx({ plant: 'MA', order: 'Y-1', agentId: 'edge-seed' })], ago(60_000));
        // MB: 20 min old queued work against the 15 min default
        const oldB = testTx({ plant: 'MB', order: 'OLD-B', agentId: 'edge-seed', workCenter: 'WC-B' });
        await store.ingest('edge-seed', [oldB], ago(20 * 60_000));
        // agents: one silent for 10 min; one live with a backlog, a driver down for 5 min, a silent driver
        await seedAgent(store, 'edge-off', 'MA', heartbeatOf('edge-off', 'MA'), ago(10 * 60_000));
        await seedAgent(store, 'edge-never', 'MA', undefined, ago(0));
        const since = ago(5 * 60_000).toISOString();
        await seedAgent(
          store,
          'edge-on',
          'MB',
          heartbeatOf('edge-on', 'MB', {
            drivers: [
              { name: 'opc', type: 'opcua', state: 'down', since, message: 'BadSessionIdInvalid' },
              { name: 'mqtt', type: 'mqtt', state: 'up', since, lastValueAt: ago(20 * 60_000).toISOString() },
              { name: 'fresh', type: 'mqtt', state: 'up', since, lastValueAt: ago(1000).toISOString() },
            ],
            outbox: { pending: 3, oldestPendingAgeS: 1200, deadLetters: 0, bytes: 10, diskFreeBytes: 1e9, full: false },
          }),
          ago(1000),
        );

        const res = await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?limit=1000' });
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json() as { breaches: Breach[]; total: number; latency: Array<{ plant: string; p95Ms: number; ok: boolean; count: number }>; open: Array<{ plant: string; heldBack: number; deadLetters: number }> };
        const byId = new Map(body.breaches.map((b) => [b.id, b]));
        const ids = [...byId.keys()].sort();
        assert.deepEqual(ids, [
          'accepted-not-completed:MA:CLOSED-1',
          'accepted-not-completed:MB:OLD-B',
          'agent-offline:MA:edge-off',
          'backlog:MB:edge-on',
          'data-watchdog:MB:edge-on:mqtt',
          'driver-unhealthy:MB:edge-on:opc',
          'latency:MA:production-confirmation',
        ]);
        assert.equal(body.total, 7);

        const lat = byId.get('latency:MA:production-confirmation')!;
        assert.equal(lat.valueMs, 300_000);
        assert.equal(lat.objectiveMs, 60_000);
        assert.deepEqual(lat.transactions.map((t) => t.idempotencyKey), [fast[21].idempotencyKey, fast[20].idempotencyKey]);
        assert.deepEqual([lat.order, lat.workCenter], ['LA-21', 'WC-0']);
        const ma = body.latency.find((l) => l.plant === 'MA')!;
        const mb = body.latency.find((l) => l.plant === 'MB')!;
        assert.deepEqual([ma.count, ma.ok, mb.count, mb.ok, mb.p95Ms], [22, false, 10, true, 120_000]);

        const closed = byId.get('accepted-not-completed:MA:CLOSED-1')!;
        assert.equal(closed.heldBack, 54);
        assert.equal(closed.count, 55);
        assert.deepEqual([closed.plant, closed.workCenter, closed.order], ['MA', 'WC-7', 'CLOSED-1']);
        assert.equal(closed.deadLetter?.idempotencyKey, dead.idempotencyKey);
        assert.equal(closed.deadLetter?.errorCode, 'ERP_BUSINESS');
        assert.match(closed.message, /holds back 54/);
        assert.equal(closed.transactions.length, 5, 'monitor.keysPerBreach');
        assert.deepEqual(closed.transactions.map((t) => t.state), ['dead-letter', 'held-back', 'held-back', 'held-back', 'held-back']);
        assert.deepEqual(closed.transactions.slice(1).map((t) => t.idempotencyKey), held.slice(0, 4).map((t) => t.idempotencyKey));
        assert.ok(closed.valueMs >= 30 * 60_000 && closed.valueMs < 31 * 60_000, String(closed.valueMs));
        const oldBreach = byId.get('accepted-not-completed:MB:OLD-B')!;
        assert.deepEqual([oldBreach.workCenter, oldBreach.transactions[0].idempotencyKey, oldBreach.transactions[0].state, oldBreach.objectiveMs], ['WC-B', oldB.idempotencyKey, 'queued', 15 * 60_000]);
        assert.deepEqual(body.open.find((o) => o.plant === 'MA'), { plant: 'MA', queued: 55, inDoubt: 0, heldBack: 54, deadLetters: 1, oldestAt: ago(30 * 60_000).toISOString() });

        assert.equal(byId.get('agent-offline:MA:edge-off')!.agentId, 'edge-off');
        assert.ok(byId.get('backlog:MB:edge-on')!.valueMs >= 1_200_000);
        assert.match(byId.get('driver-unhealthy:MB:edge-on:opc')!.message, /opc \(opcua\) is down.*BadSessionIdInvalid/);
        assert.equal(byId.get('data-watchdog:MB:edge-on:mqtt')!.driver, 'mqtt');

        // a viewer of MB sees MB only; a plant it may not see is empty, not an error
        const mbOnly = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?limit=1000', headers: { 'x-test-plants': 'MB' } })).json() as typeof body;
        assert.deepEqual([...new Set(mbOnly.breaches.map((b) => b.plant))], ['MB']);
        assert.deepEqual(mbOnly.latency.map((l) => l.plant), ['MB']);
        assert.deepEqual(mbOnly.open.map((o) => o.plant), ['MB']);
        const other = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?plant=MA', headers: { 'x-test-plants': 'MB' } })).json() as typeof body;
        assert.deepEqual([other.total, other.latency.length, other.open.length], [0, 0, 0]);
        // filters and pages
        const kind = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?kind=agent-offline' })).json() as typeof body;
        assert.deepEqual(kind.breaches.map((b) => b.id), ['agent-offline:MA:edge-off']);
        const p1 = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?limit=3&offset=0' })).json() as typeof body;
        const p2 = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?limit=3&offset=3' })).json() as typeof body;
        const p3 = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?limit=3&offset=6' })).json() as typeof body;
        assert.deepEqual([...p1.breaches, ...p2.breaches, ...p3.breaches].map((b) => b.id), body.breaches.map((b) => b.id));
        assert.equal(p3.breaches.length, 1);

        // /metrics carries the same figures
        const m = (await hub.app.inject({ method: 'GET', url: '/metrics' })).body;
        assert.match(m, /plantbridge_hub_sla_breaches\{plant="MA",kind="accepted-not-completed"\} 1\n/);
        assert.match(m, /plantbridge_hub_sla_breaches\{plant="MA",kind="released-not-started"\} 0\n/);
        assert.match(m, /plantbridge_hub_open_transactions\{plant="MA",state="held_back"\} 54\n/);
        assert.match(m, /plantbridge_hub_sla_latency_seconds\{plant="MA",type="production-confirmation",quantile="0.95"\} 300\n/);
        assert.match(m, /plantbridge_hub_sla_latency_objective_seconds\{plant="MA",type="production-confirmation",percentile="p95"\} 60\n/);
        assert.match(m, /plantbridge_hub_oldest_open_transaction_seconds\{plant="MA"\} 1[89]\d\d/);
      } finally {
        await stop();
      }
    });
  });
}
