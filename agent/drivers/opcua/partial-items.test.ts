import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { DataType, StatusCodes, Variant, type UAVariable } from 'node-opcua';
import { create } from './opcua-driver.ts';
import { opcuaConfig, testCtx, waitFor } from './test-kit.ts';
import { startTestServer } from './test-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

void test('the connection drops while monitored items are being created: after the reconnect every node is monitored', async () => {
  const vars: UAVariable[] = [];
  const srv = await startTestServer({
    minSupportedSampleRate: 0,
    populate(ns, addressSpace) {
      for (const n of ['A', 'B', 'C']) vars.push(ns.addVariable({ organizedBy: addressSpace.rootFolder.objects, browseName: n, nodeId: `s=${n}`, dataType: 'UInt32', minimumSamplingInterval: 0 }));
    },
  });
  cleanups.push(() => srv.stop());
  const set = (i: number, v: number) => vars[i].setValueFromSource(new Variant({ dataType: DataType.UInt32, value: v }), StatusCodes.Good, new Date());
  vars.forEach((_, i) => set(i, 100));
  // one item per CreateMonitoredItems call, and the network drops while the second call is on its way
  (srv.server.engine as unknown as { serverCapabilities: { operationLimits: { maxMonitoredItemsPerCall: number } } }).serverCapabilities.operationLimits.maxMonitoredItemsPerCall = 1;
  let calls = 0;
  srv.server.on('request', (req: { constructor: { name: string } }) => {
    if (req.constructor.name === 'CreateMonitoredItemsRequest' && ++calls === 2) for (const ep of srv.server.endpoints) ep.abruptlyInterruptChannels();
  });
  const t = testCtx();
  cleanups.push(() => t.close());
  const driver = create(opcuaConfig({ endpoint: srv.endpoint, reconnectMaxDelay: 200, nodes: ['A', 'B', 'C'].map((n) => ({ ref: n, nodeId: `ns=1;s=${n}`, samplingInterval: 0 })) }), t.ctx);
  await driver.start();
  cleanups.push(() => driver.stop());
  await waitFor('reconnected and up', () => driver.stats().connects >= 2 && driver.health().state === 'up', 15_000);
  const by = (ref: string) => t.committed.filter((s) => s.ref === ref && s.quality === 'good').map((s) => s.value);
  vars.forEach((_, i) => set(i, 101));
  await waitFor('all three nodes deliver', () => ['A', 'B', 'C'].every((r) => by(r).includes(101)), 10_000);
  assert.equal(driver.stats().itemsOk, 3);
  const sub = (srv.server.engine.getSessions()[0] as unknown as { publishEngine: { subscriptions: Array<{ monitoredItemCount: number }> } }).publishEngine.subscriptions;
  assert.deepEqual(sub.map((x) => x.monitoredItemCount), [3]);
});
