import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SAP_SIM_USER, startSapSimulator } from '../erp/sap-odata/sap-simulator.ts';
import { testTx } from '../store/test-tx.ts';
import type { Reconciliation } from './reconciliation.ts';
import { monitorHub } from './test-kit.ts';

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Reconciliation end to end: the hub posts to the SAP simulator; then a confirmation is deleted in SAP and
 * one is entered there twice by hand: the drift names the keys and the documents; results are stored with
 * their history and served by /v1/monitor/reconciliation.
 */
test('reconciliation against SAP: a deleted document and one posted twice by hand are drift naming the keys', async (t) => {
  const sim = await startSapSimulator();
  t.after(() => sim.stop());
  const { hub, stop } = await monitorHub({
    erp: `erp: { type: sap-odata, url: "${sim.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAPPW}" }, plants: { P1: "1010" } }`,
    env: { SAPPW: SAP_SIM_USER.password },
  });
  t.after(stop);
  const txs = [0, 1, 2].map(() => testTx({ plant: 'P1', order: '4000001', agentId: 'edge-1' }));
  const other = testTx({ plant: 'P1', order: '4000002', agentId: 'edge-1' });
  await hub.store.ingest('edge-1', [...txs, other], new Date());
  hub.posting.start();
  await until(async () => (await hub.store.counts()).posted === 4, 'the four postings');

  const clean = await hub.monitor.reconciler.run({ plant: 'P1', order: '4000001' });
  assert.deepEqual(clean.map((r) => [r.status, r.findings.length]), [['clean', 0]]);
  const qty = txs.reduce((s, t) => s + ((t.data as { yield?: { qty: number } }).yield?.qty ?? 0), 0);
  assert.ok(qty > 0);
  assert.deepEqual(clean[0].operations.map((o) => [o.hubAccepted, o.hubPosted, o.erpHeld, o.drift]), [[qty, qty, qty, 0]]);

  const refs = await Promise.all(txs.map(async (t) => (await hub.store.getTransaction(t.idempotencyKey))!.erpRef!));
  const [g0, c0] = refs[0].split('/');
  const [g1, c1] = refs[1].split('/');
  assert.equal(sim.deleteConfirmation(g0, c0), true);
  const dup = sim.duplicateConfirmation(g1, c1)!;
  const [r] = await hub.monitor.reconciler.run({ plant: 'P1', order: '4000001' });
  assert.equal(r.status, 'drift');
  const byKind = (k: string) => r.findings.filter((f) => f.kind === k);
  assert.deepEqual(byKind('missing-in-erp').map((f) => [f.idempotencyKey, f.erpRefs]), [[txs[0].idempotencyKey, [refs[0]]]]);
  assert.deepEqual(byKind('duplicate-in-erp').map((f) => [f.idempotencyKey, f.erpRefs.sort()]), [[txs[1].idempotencyKey, [refs[1], `${dup.ConfirmationGroup}/${dup.ConfirmationCount}`].sort()]]);
  assert.equal(byKind('unknown-in-erp').length, 0);
  // one removed, one doubled: the totals happen to match; the keys say what is wrong
  assert.equal(byKind('quantity-drift').length, 0);

  // a confirmation entered in SAP by someone else (no key of the hub)
  await hub.posting.stop();
  const foreign = testTx({ plant: 'P1', order: '4000001', agentId: 'edge-1' });
  const sapDirect = await fetchCsrfAndPost(sim.url, foreign);
  assert.ok(sapDirect);
  const [r2] = await hub.monitor.reconciler.run({ plant: 'P1', order: '4000001' });
  assert.deepEqual(r2.findings.map((f) => f.kind).sort(), ['duplicate-in-erp', 'missing-in-erp', 'quantity-drift', 'unknown-in-erp']);
  assert.equal(r2.findings.find((f) => f.kind === 'unknown-in-erp')!.erpRefs[0], sapDirect);

  // the history, newest first, filtered and paged
  const res = await hub.app.inject({ method: 'GET', url: '/v1/monitor/reconciliation?order=4000001&limit=2' });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json() as { total: number; reconciliations: Array<{ status: string; findings: number; detail: Reconciliation }> };
  assert.equal(body.total, 3);
  assert.deepEqual(body.reconciliations.map((x) => [x.status, x.findings]), [['drift', 4], ['drift', 2]]);
  assert.equal(body.reconciliations[0].detail.findings.length, 4);
  const scoped = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/reconciliation', headers: { 'x-test-plants': 'P2' } })).json() as typeof body;
  assert.equal(scoped.total, 0);
  const page2 = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/reconciliation?order=4000001&limit=2&offset=2' })).json() as typeof body;
  assert.deepEqual(page2.reconciliations.map((x) => x.status), ['clean']);

  // the ERP cannot answer: an error result, stored, not a crash
  sim.setFault({ kind: 'hostile', body: 'html', on: 'get' });
  const [r3] = await hub.monitor.reconciler.run({ plant: 'P1', order: '4000001' });
  assert.equal(r3.status, 'error');
  assert.ok(r3.error?.message);
});

/** A confirmation entered in SAP directly (someone else's posting): the simulator's API with basic auth and CSRF. */
async function fetchCsrfAndPost(url: string, tx: ReturnType<typeof testTx>): Promise<string> {
  const path = `${url}/sap/opu/odata/sap/API_PROD_ORDER_CONFIRMATION_2_SRV/ProdnOrdConf2`;
  const auth = `Basic ${Buffer.from(`${SAP_SIM_USER.username}:${SAP_SIM_USER.password}`).toString('base64')}`;
  const head = await fetch(path.replace(/ProdnOrdConf2$/, ''), { headers: { authorization: auth, 'x-csrf-token': 'Fetch' } });
  const cookie = head.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const res = await fetch(path, {
    method: 'POST',
    headers: { authorization: auth, 'x-csrf-token': head.headers.get('x-csrf-token')!, cookie, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ OrderID: tx.data.order, OrderOperation: '0010', ConfirmationYieldQuantity: '5', ConfirmationUnit: 'PC' }),
  });
  const j = (await res.json()) as { d: { ConfirmationGroup: string; ConfirmationCount: string } };
  assert.equal(res.status, 201, JSON.stringify(j));
  return `${j.d.ConfirmationGroup}/${j.d.ConfirmationCount}`;
}
