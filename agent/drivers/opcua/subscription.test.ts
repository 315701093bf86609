import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startLineServer } from '../../../test/plant-sim/opcua-line-server.ts';
import { create } from './opcua-driver.ts';
import { fastLine, opcuaConfig, testCtx, waitFor } from './test-kit.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

void describe('opcua driver subscriptions', () => {
  void test('a restart where one node is gone: that item is reported bad by name, the others flow', async () => {
    let srv = await startLineServer({ params: fastLine });
    const port = srv.port;
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({
        endpoint: srv.endpoint,
        reconnectMaxDelay: 200,
        nodes: [
          { ref: 'good', nodeId: srv.nodeIds.good, samplingInterval: 50 },
          { ref: 'scrap', browsePath: '/Objects/1:Line1/1:ScrapCount', samplingInterval: 50 },
          { ref: 'order', nodeId: srv.nodeIds.order, samplingInterval: 50 },
        ],
      }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('all three flow', () => ['good', 'scrap', 'order'].every((r) => t.committed.some((s) => s.ref === r)));
    assert.equal(driver.health().state, 'up');

    // a program download removed ScrapCount and OrderNumber
    await srv.stop();
    srv = await startLineServer({ params: fastLine, port, omit: ['scrap', 'order'] });
    await waitFor('degraded', () => driver.health().state === 'degraded');
    const n = t.committed.length;
    await waitFor('good flows after the restart', () => t.committed.slice(n).filter((s) => s.ref === 'good' && s.quality === 'good').length >= 3);
    const h = driver.health();
    assert.match(h.message ?? '', /2 of 3 nodes bad/);
    assert.match(h.message ?? '', /scrap \(browse path \/Objects\/1:Line1\/1:ScrapCount not found/);
    assert.match(h.message ?? '', /order \(BadNodeIdUnknown for ns=1;s=Line1.OrderNumber\)/);
    const unmonitored = t.committed.filter((s) => s.meta?.problem !== undefined);
    assert.deepEqual(unmonitored.map((s) => s.ref).sort(), ['order', 'scrap']);
    assert.ok(unmonitored.every((s) => s.quality === 'bad' && s.value === null));

    // the nodes come back with the next program download: all good again
    await srv.stop();
    srv = await startLineServer({ params: fastLine, port });
    await waitFor('up again', () => driver.health().state === 'up');
    const m = t.committed.length;
    await waitFor('order flows again', () => t.committed.slice(m).some((s) => s.ref === 'order' && s.quality === 'good'));
  });

  void test('1,000 items on a server allowing 100 per call: all created, in chunks', async () => {
    const srv = await startLineServer({ params: fastLine, maxMonitoredItemsPerCall: 100, extraVariables: 1000 });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({
        endpoint: srv.endpoint,
        publishingInterval: 200,
        nodes: srv.extraNodeIds.map((nodeId, i) => ({ ref: `v${i}`, nodeId, samplingInterval: 100 })),
      }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('up', () => driver.health().state === 'up', 30_000);
    const st = (driver as any).stats();
    assert.equal(st.itemsOk, 1000);
    assert.equal(st.itemsBad, 0);
    assert.equal(st.monitoredItemCalls, 10, 'ten calls of 100');
    await waitFor('every item delivered its initial value', () => new Set(t.committed.map((s) => s.ref)).size === 1000, 30_000);
  });

  void test('a server that stops publishing: the watchdog recreates the subscription within its period', async () => {
    const srv = await startLineServer({ params: fastLine });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({ endpoint: srv.endpoint, publishingInterval: 100, watchdogIntervals: 10, nodes: [{ ref: 'good', nodeId: srv.nodeIds.good, samplingInterval: 50 }] }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('values', () => t.committed.length >= 3);
    assert.equal(srv.stallSubscriptions(), 1);
    const stalledAt = performance.now();
    const n = t.committed.length;
    await waitFor('subscription recreated', () => (driver as any).stats().watchdogRecreations === 1, 15_000);
    const took = performance.now() - stalledAt;
    // period: 10 intervals of 100 ms, raised to the 3 s floor; checked every interval
    assert.ok(took >= 2900, `not before its period (${Math.round(took)} ms)`);
    await waitFor('values flow again', () => t.committed.length > n + 2);
    assert.equal((driver as any).stats().subscriptionsCreated, 2);
    assert.equal(srv.sessionCount(), 1, 'the session was kept');
  });

  void test('while the outbox refuses values, the latest value per node is kept and committed once it accepts again', async () => {
    const srv = await startLineServer({ params: fastLine });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(opcuaConfig({ endpoint: srv.endpoint, nodes: [{ ref: 'good', nodeId: srv.nodeIds.good, samplingInterval: 50 }] }), t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('values', () => t.committed.length >= 2);
    t.failEmit.on = true;
    const calls = t.failEmit.calls;
    await waitFor('degraded', () => driver.health().state === 'degraded');
    assert.match(driver.health().message ?? '', /OUTBOX_FULL/);
    await waitFor('retried several times', () => t.failEmit.calls > calls + 3);
    const lastBefore = t.committed.at(-1)!;
    t.failEmit.on = false;
    await waitFor('up', () => driver.health().state === 'up');
    const next = t.committed[t.committed.indexOf(lastBefore) + 1];
    assert.ok(next, 'values committed again');
    assert.ok((next.value as number) > (lastBefore.value as number), 'the held value carries the counter total');
    assert.ok((driver as any).stats().collapsed > 0, 'intermediate values were folded into the latest');
  });
});
