import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sapReleasedOrder } from '../erp/sap-odata/sap-odata-adapter.ts';
import { D365_SIM_CLIENT, startD365Simulator } from '../erp/d365-mes/d365-simulator.ts';
import { ODOO_SIM_API_KEY, startOdooSimulator } from '../erp/odoo/odoo-simulator.ts';
import { REST_SIM_TOKEN, startRestSimulator } from '../erp/rest/rest-simulator.ts';
import { SAP_SIM_USER, startSapSimulator } from '../erp/sap-odata/sap-simulator.ts';
import { testTx } from '../store/test-tx.ts';
import type { Breach } from './sla.ts';
import { monitorHub } from './test-kit.ts';

/**
 * Released-not-started through the real SAP adapter against the SAP simulator's API_PRODUCTION_ORDER_2_SRV:
 * REL orders are read per plant and cached; one never started is a breach after its window; failed and
 * hostile reads keep the last good list and say why.
 */
test('SAP: a released order never started is a breach after its window; failed reads keep the last list', async (t) => {
  const sim = await startSapSimulator();
  t.after(() => sim.stop());
  const { hub, stop } = await monitorHub({
    erp: `erp: { type: sap-odata, url: "${sim.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAPPW}" }, plants: { P1: "1010" }, maxResponseSize: 1MB }`,
    env: { SAPPW: SAP_SIM_USER.password },
    yaml: `monitor: { releasedOrders: { plants: [P1, P2] }, plants: { P2: { releasedNotStarted: 5m } } }`,
  });
  t.after(stop);
  const now = Date.now();
  const ago = (ms: number) => new Date(now - ms);
  sim.putProductionOrder({ order: '1000001', plant: '1010', workCenter: 'PRESS-1', scheduledStart: ago(2 * 3_600_000), status: 'REL' });
  sim.putProductionOrder({ order: '1000002', plant: '1010', workCenter: 'PRESS-2', scheduledStart: ago(2 * 3_600_000), status: 'REL' });
  sim.putProductionOrder({ order: '1000003', plant: '1010', workCenter: 'PRESS-1', scheduledStart: ago(10 * 60_000), status: 'REL' });
  sim.putProductionOrder({ order: '1000004', plant: '1010', workCenter: 'PRESS-1', scheduledStart: ago(2 * 3_600_000), status: 'CRTD' });
  sim.putProductionOrder({ order: '1000005', plant: '1010', workCenter: 'PRESS-1', scheduledStart: ago(2 * 3_600_000), status: 'TECO' });
  sim.putProductionOrder({ order: '1000006', plant: '1010', workCenter: 'PRESS-1', scheduledStart: ago(3 * 86_400_000), status: 'REL' });
  // P2 is sent as it is (no mapping), with its own 5 min window
  sim.putProductionOrder({ order: '2000001', plant: 'P2', workCenter: 'LINE-9', scheduledStart: ago(10 * 60_000), status: 'REL' });
  // 1000002 started: a confirmation reached the hub
  await hub.store.ingest('edge-1', [testTx({ plant: 'P1', order: '1000002' })], ago(60_000));

  const api = async (q = '', headers: Record<string, string> = {}) => {
    const res = await hub.app.inject({ method: 'GET', url: `/v1/monitor/released-not-started${q}`, headers });
    assert.equal(res.statusCode, 200, res.body);
    return res.json() as { supported: boolean; total: number; plants: Array<{ plant: string; error: { code: string; message: string } | null; orders: number; late: number; readAt: string | null }>; orders: Array<{ order: string; state: string; workCenter: string | null; plant: string }> };
  };
  assert.equal((await api()).total, 0, 'nothing read yet');
  await hub.monitor.released.poll(now);
  const r = await api();
  assert.equal(r.supported, true);
  assert.deepEqual(r.orders.map((o) => [o.plant, o.order, o.state, o.workCenter]), [
    ['P1', '1000001', 'late', 'PRESS-1'],
    ['P2', '2000001', 'late', 'LINE-9'],
    ['P1', '1000003', 'waiting', 'PRESS-1'],
    ['P1', '1000002', 'started', 'PRESS-2'],
  ]);
  assert.deepEqual(r.plants.map((p) => [p.plant, p.orders, p.late, p.error]), [['P1', 3, 1, null], ['P2', 1, 1, null]]);
  assert.deepEqual((await api('?state=late&plant=P1')).orders.map((o) => o.order), ['1000001']);
  assert.deepEqual((await api('', { 'x-test-plants': 'P2' })).orders.map((o) => o.order), ['2000001']);
  assert.deepEqual((await api('?limit=1&offset=1')).orders.map((o) => o.order), ['2000001']);

  const sla = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?kind=released-not-started' })).json() as { breaches: Breach[] };
  assert.deepEqual(sla.breaches.map((b) => [b.id, b.workCenter, b.order]), [
    ['released-not-started:P1:1000001', 'PRESS-1', '1000001'],
    ['released-not-started:P2:2000001', 'LINE-9', '2000001'],
  ]);
  assert.equal(sla.breaches[1].objectiveMs, 5 * 60_000);

  // the ERP fails, or answers garbage: the last list stays, the error is shown, the breach stays
  for (const fault of [
    { kind: 'status', status: 503 },
    { kind: 'status', status: 401 },
    { kind: 'hostile', body: 'html' },
    { kind: 'hostile', body: 'truncated-json' },
    { kind: 'hostile', body: 'wrong-content-type' },
    { kind: 'hostile', body: 'empty' },
    { kind: 'hostile', body: 'huge' },
  ] as const) {
    sim.setFault({ ...fault, count: 2, on: 'get' });
    await hub.monitor.released.poll(now);
    const f = await api();
    assert.equal(f.plants.length, 2, fault.kind);
    for (const p of f.plants) assert.ok(p.error, `${JSON.stringify(fault)}: ${p.plant} shows the failed read`);
    assert.deepEqual(f.orders.filter((o) => o.state === 'late').map((o) => o.order), ['1000001', '2000001'], `${JSON.stringify(fault)}: the last list stays`);
    sim.clearFaults();
  }
  // it starts: the breach resolves at the next cycle
  await hub.store.ingest('edge-1', [testTx({ plant: 'P1', order: '1000001' })], new Date());
  await hub.monitor.released.poll(now);
  const after = await api();
  assert.ok(after.plants.every((p) => p.error === null));
  assert.deepEqual(after.orders.filter((o) => o.state === 'late').map((o) => o.order), ['2000001']);
});

test('SAP released-order rows: malformed or hostile rows are left out, never thrown or guessed', () => {
  const ok = { ManufacturingOrder: '1000001', MfgOrderScheduledStartDate: '/Date(1765065600000)/', MfgOrderScheduledStartTime: 'PT08H30M00S', to_ProductionOrderOperation: { results: [{ WorkCenter: 'PRESS-1' }] } };
  assert.deepEqual(sapReleasedOrder(ok, 'P1'), { order: '1000001', plant: 'P1', workCenter: 'PRESS-1', scheduledStart: '2025-12-07T08:30:00.000Z' });
  assert.equal(sapReleasedOrder({ ...ok, MfgOrderScheduledStartTime: undefined }, 'P1')?.scheduledStart, '2025-12-07T00:00:00.000Z');
  assert.equal(sapReleasedOrder({ ...ok, to_ProductionOrderOperation: { results: [{ WorkCenter: 'x'.repeat(5000) }] } }, 'P1')?.workCenter, null);
  assert.equal(sapReleasedOrder({ ...ok, to_ProductionOrderOperation: 'junk' }, 'P1')?.workCenter, null);
  const bad: Array<Record<string, unknown>> = [
    { ...ok, ManufacturingOrder: undefined },
    { ...ok, ManufacturingOrder: '' },
    { ...ok, ManufacturingOrder: 1000001 },
    { ...ok, ManufacturingOrder: '1'.repeat(13) },
    { ...ok, MfgOrderScheduledStartDate: '2025-12-07' },
    { ...ok, MfgOrderScheduledStartDate: '/Date(abc)/' },
    { ...ok, MfgOrderScheduledStartDate: '/Date(9999999999999999)/' },
    { ...ok, MfgOrderScheduledStartDate: { __proto__: { x: 1 } } },
    { ...ok, MfgOrderScheduledStartDate: null },
  ];
  for (const row of bad) assert.equal(sapReleasedOrder(row, 'P1'), undefined, JSON.stringify(row));
});

test('REST: the configured GET lists released orders; unreadable rows are skipped and counted, failures keep the last list', async (t) => {
  const sim = await startRestSimulator();
  t.after(() => sim.stop());
  const { hub, stop } = await monitorHub({
    erp: `erp:
  type: rest
  post: { url: "${sim.url}/postings" }
  lookup: { type: get, url: "${sim.url}/postings?key={{key}}" }
  auth: { type: bearer, token: "\${TOK}" }
  releasedOrders: { url: "${sim.url}/released?plant={{plant}}&since={{since}}", itemsPath: orders }`,
    env: { TOK: REST_SIM_TOKEN },
    yaml: `monitor: { releasedOrders: { plants: ["P 1&x"] } }`,
  });
  t.after(stop);
  const now = Date.now();
  const plant = 'P 1&x';
  sim.putReleasedOrder({ plant, order: 'R-LATE', workCenter: 'CELL-4', scheduledStart: new Date(now - 3_600_000).toISOString() });
  sim.putReleasedOrder({ plant, order: 'R-SOON', scheduledStart: new Date(now + 3_600_000).toISOString() });
  sim.putReleasedOrder({ plant: 'other', order: 'R-OTHER', scheduledStart: new Date(now - 3_600_000).toISOString() });
  for (const raw of [null, 'text', 42, [], { order: 123, scheduledStart: new Date(now).toISOString() }, { order: 'R-X', scheduledStart: 'yesterday' }, { order: 'o'.repeat(65), scheduledStart: new Date(now).toISOString() }, { order: 'R-Y' }]) {
    sim.putReleasedOrder({ plant, raw });
  }
  await hub.monitor.released.poll(now);
  const r = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/released-not-started' })).json() as { plants: Array<{ plant: string; skipped: number; error: unknown }>; orders: Array<{ order: string; state: string; workCenter: string | null }> };
  assert.deepEqual(r.orders.map((o) => [o.order, o.state, o.workCenter]), [['R-LATE', 'late', 'CELL-4'], ['R-SOON', 'waiting', null]]);
  assert.deepEqual(r.plants.map((p) => [p.plant, p.skipped, p.error]), [[plant, 8, null]]);
  for (const fault of [{ kind: 'status', status: 500 }, { kind: 'hostile', body: 'html' }, { kind: 'hostile', body: 'truncated-json' }] as const) {
    sim.setFault({ ...fault, on: 'get' });
    await hub.monitor.released.poll(now);
    const f = (await hub.app.inject({ method: 'GET', url: '/v1/monitor/released-not-started?state=late' })).json() as typeof r;
    assert.ok(f.plants[0].error, JSON.stringify(fault));
    assert.deepEqual(f.orders.map((o) => o.order), ['R-LATE']);
  }
});

test('Odoo: confirmed mrp.production of the plant\'s warehouse, work center from its work order; failures keep the last list', async (t) => {
  const sim = await startOdooSimulator();
  t.after(() => sim.stop());
  const { hub, stop } = await monitorHub({
    erp: `erp: { type: odoo, url: "${sim.url}", apiKey: "\${KEY}", releasedOrders: { plants: { P1: WH1 } } }`,
    env: { KEY: ODOO_SIM_API_KEY },
    yaml: `monitor: { releasedOrders: { plants: [P1] } }`,
  });
  t.after(stop);
  const now = Date.now();
  sim.putOrder({ name: 'WH1/MO/00001', state: 'confirmed', warehouse: 'WH1', dateStart: new Date(now - 3_600_000), workcenter: 'Assembly 1' });
  sim.putOrder({ name: 'WH1/MO/00002', state: 'progress', warehouse: 'WH1', dateStart: new Date(now - 3_600_000), workcenter: 'Assembly 1' });
  sim.putOrder({ name: 'WH2/MO/00003', state: 'confirmed', warehouse: 'WH2', dateStart: new Date(now - 3_600_000), workcenter: 'Assembly 2' });
  sim.putOrder({ name: 'WH1/MO/00004', state: 'confirmed', warehouse: 'WH1', dateStart: new Date(now - 3 * 86_400_000), workcenter: 'Assembly 1' });
  await hub.monitor.released.poll(now);
  const get = async () => (await hub.app.inject({ method: 'GET', url: '/v1/monitor/released-not-started' })).json() as { plants: Array<{ error: unknown }>; orders: Array<{ order: string; state: string; workCenter: string | null; scheduledStart: string }> };
  const r = await get();
  assert.deepEqual(r.orders.map((o) => [o.order, o.state, o.workCenter]), [['WH1/MO/00001', 'late', 'Assembly 1']]);
  assert.equal(Math.abs(Date.parse(r.orders[0].scheduledStart) - (now - 3_600_000)) < 1000, true);
  sim.setFault({ kind: 'hostile', body: 'html', status: 502 });
  await hub.monitor.released.poll(now);
  const f = await get();
  assert.ok(f.plants[0].error);
  assert.deepEqual(f.orders.map((o) => o.order), ['WH1/MO/00001']);
});

test('D365: Released production orders of the plant\'s site; unreadable rows skipped; failures keep the last list', async (t) => {
  const sim = await startD365Simulator();
  t.after(() => sim.stop());
  const { hub, stop } = await monitorHub({
    erp: `erp: { type: d365-mes, url: "${sim.url}", company: USMF, auth: { type: oauth-client-credentials, tokenUrl: "${sim.tokenUrl}", clientId: ${D365_SIM_CLIENT.clientId}, clientSecret: "\${SEC}" }, releasedOrders: { plants: { P1: "1" } } }`,
    env: { SEC: D365_SIM_CLIENT.clientSecret },
    yaml: `monitor: { releasedOrders: { plants: [P1] } }`,
  });
  t.after(stop);
  const now = Date.now();
  sim.putProductionOrder({ order: 'P000101', site: '1', status: 'Released', scheduledStart: new Date(now - 3_600_000) });
  sim.putProductionOrder({ order: 'P000102', site: '1', status: 'StartedUp', scheduledStart: new Date(now - 3_600_000) });
  sim.putProductionOrder({ order: 'P000103', site: '2', status: 'Released', scheduledStart: new Date(now - 3_600_000) });
  sim.putProductionOrder({ order: 'P000104', site: '1', status: 'Released', scheduledStart: new Date(now - 3 * 86_400_000) });
  sim.putProductionOrder({ order: 'P000105', site: '1', status: 'Released', scheduledStart: new Date(now - 3_600_000), company: 'DEMF' });
  for (const raw of [{ dataAreaId: 'USMF', ProductionSiteId: '1', ProductionOrderStatus: 'Released', ScheduledStartDate: new Date(now).toISOString(), ProductionOrderNumber: 7 }, { dataAreaId: 'USMF', ProductionSiteId: '1', ProductionOrderStatus: 'Released', ScheduledStartDate: new Date(now).toISOString() }]) sim.putProductionOrder({ raw });
  await hub.monitor.released.poll(now);
  const get = async () => (await hub.app.inject({ method: 'GET', url: '/v1/monitor/released-not-started' })).json() as { plants: Array<{ error: unknown; skipped: number }>; orders: Array<{ order: string; state: string; scheduledStart: string }> };
  const r = await get();
  assert.deepEqual(r.orders.map((o) => [o.order, o.state]), [['P000101', 'late']]);
  assert.equal(Math.abs(Date.parse(r.orders[0].scheduledStart) - (now - 3_600_000)) < 1000, true);
  assert.equal(r.plants[0].skipped, 2);
  sim.setFault({ kind: 'status', status: 429, retryAfterS: 5 });
  await hub.monitor.released.poll(now);
  const f = await get();
  assert.ok(f.plants[0].error);
  assert.deepEqual(f.orders.map((o) => o.order), ['P000101']);
});
