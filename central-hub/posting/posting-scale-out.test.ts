import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Secret } from '../../contracts/index.ts';
import { testLogger } from '../../test/helpers/log.ts';
import { MissingService, postgresUrl } from '../../test/helpers/services.ts';
import { PostgresHubStore } from '../store/postgres/postgres-store.ts';
import { PostingService } from './posting-service.ts';
import { createSapOdataAdapter, sapExternalId } from '../erp/sap-odata/sap-odata-adapter.ts';
import { startSapSimulator, SAP_SIM_USER } from '../erp/sap-odata/sap-simulator.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';

/**
 * Scale-out: three hub instances, each with its own connection pool and posting service, share one
 * backlog on PostgreSQL. Leases with SKIP LOCKED must give exactly one ERP document per key, and each
 * order must still post in arrival order.
 */
test('three hub instances on PostgreSQL posting one backlog: exactly one document per key, orders in sequence', async (t) => {
  let url: string;
  try {
    url = await postgresUrl();
  } catch (err) {
    if (err instanceof MissingService && process.env.CI !== 'true') return t.skip(err.message);
    throw err;
  }
  const schema = `pb_scale_${randomBytes(4).toString('hex')}`;
  const sap = await startSapSimulator({ latencyMs: 10 });
  const stores = [0, 1, 2].map(() => new PostgresHubStore({ connectionString: url, max: 4, schema }));
  t.after(async () => {
    await sap.stop();
    for (const s of stores) await s.close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  });
  for (const s of stores) await s.migrate();
  const txs = Array.from({ length: 240 }, (_, i) => confirmation(`70000${String(i % 12).padStart(2, '0')}`, Math.floor(i / 12)));
  // ingest through different instances, as a load balancer would spread agents
  for (let i = 0; i < txs.length; i += 40) await stores[(i / 40) % 3].ingest('test-agent', txs.slice(i, i + 40), new Date());

  const adapter = () =>
    createSapOdataAdapter(
      { type: 'sap-odata', url: sap.url, auth: { type: 'basic', username: SAP_SIM_USER.username, password: new Secret(SAP_SIM_USER.password, 'test') }, timeout: 2000, concurrency: 4 } as never,
      {},
    );
  const services = stores.map((store, i) => new PostingService({ store, adapter: adapter(), log: testLogger(), concurrency: 4, leaseMs: 5000, idleMs: 10, owner: `hub-${i}` }));
  services.forEach((s) => s.start());
  t.after(() => Promise.all(services.map((s) => s.stop())));
  const end = Date.now() + 60_000;
  while ((await stores[0].counts()).posted < txs.length) {
    if (Date.now() > end) throw new Error(`only ${(await stores[0].counts()).posted} of ${txs.length} posted`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const confs = sap.confirmations();
  assert.equal(confs.length, txs.length, 'one document per transaction');
  const ext = new Set(confs.map((c) => c.ExternalSystemConfirmation));
  assert.equal(ext.size, txs.length, 'no key posted twice');
  for (const tx of txs) assert.ok(ext.has(sapExternalId(tx.idempotencyKey)));
  // each order's confirmations reached SAP in arrival order (window n before window n+1)
  const byOrder = new Map<string, number[]>();
  for (const c of confs) {
    const n = Number(/:(\d+)-\d+$/.exec(c.ConfirmationText)?.[1] ?? 'NaN');
    byOrder.set(c.OrderID, [...(byOrder.get(c.OrderID) ?? []), n]);
  }
  assert.ok([...byOrder.values()].flat().every((n) => Number.isInteger(n)), 'every confirmation text carries its window');
  for (const [order, seq] of byOrder) assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `order ${order} posted in arrival order`);
  const owners = await Promise.all(services.map(async (_s, i) => (await stores[i].listTransactions({ limit: 1 })).length));
  assert.ok(owners.every((n) => n > 0));
});
