import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startLineServer, type LineServer } from '../../../test/plant-sim/opcua-line-server.ts';
import { lineAt, tickAt } from '../simulator/line-model.ts';
import { create } from './opcua-driver.ts';
import { fastLine, opcuaConfig, testCtx, waitFor } from './test-kit.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lineNodes(srv: LineServer) {
  return [
    { ref: 'good', nodeId: srv.nodeIds.good, samplingInterval: 50 },
    { ref: 'scrap', nodeId: srv.nodeIds.scrap, samplingInterval: 50 },
    { ref: 'order', browsePath: '/Objects/1:Line1/1:OrderNumber', samplingInterval: 50 },
  ];
}

void describe('opcua driver reconnects', () => {
  void test('server stopped and restarted on the same port: stale while down, values resume, the counter total is carried', async () => {
    let srv = await startLineServer({ params: fastLine });
    const port = srv.port;
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(opcuaConfig({ endpoint: srv.endpoint, nodes: lineNodes(srv), reconnectMaxDelay: 300 }), t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('values before the outage', () => t.committed.filter((s) => s.ref === 'good').length >= 5);

    await srv.stop();
    await waitFor('driver down', () => driver.health().state === 'down');
    await waitFor('stale marks committed', () => t.committed.filter((s) => s.meta?.stale === true).length === 3);
    const nBefore = t.committed.length;
    const lastBefore = t.committed.filter((s) => s.ref === 'good' && s.quality === 'good').at(-1)!;
    await sleep(1000); // the line keeps producing while the server is down
    assert.equal(t.committed.length, nBefore, 'nothing is repeated during the outage');

    srv = await startLineServer({ params: fastLine, port });
    await waitFor('values after the restart', () => t.committed.slice(nBefore).some((s) => s.ref === 'good' && s.quality === 'good'));
    await waitFor('driver up', () => driver.health().state === 'up');
    const firstAfter = t.committed.slice(nBefore).find((s) => s.ref === 'good' && s.quality === 'good')!;

    const stale = t.committed.filter((s) => s.meta?.stale === true);
    assert.deepEqual(stale.map((s) => s.ref).sort(), ['good', 'order', 'scrap']);
    for (const s of stale) {
      assert.equal(s.quality, 'bad');
      assert.equal(s.value, null);
      assert.ok(s.sourceTime > lastBefore.sourceTime);
    }
    // the first value after the restart is the line's total at its source time: nothing produced while
    // the server was down is missing from it
    const tick = tickAt(Date.parse(firstAfter.sourceTime), fastLine.intervalMs);
    assert.equal(firstAfter.value, lineAt(tick, fastLine).good);
    const producedWhileDown = (firstAfter.value as number) - (lastBefore.value as number);
    assert.ok(producedWhileDown >= 40, `the counter moved by ${producedWhileDown} parts during the outage, all in the first value`);
    const st = (driver as any).stats();
    assert.equal(st.sessionsCreated, 2, 'the old session was gone, one new session');
    assert.equal(st.subscriptionsCreated, 2);
    assert.equal(srv.sessionCount(), 1);
  });

  void test('20 reconnect cycles (10 dropped connections, 10 server restarts): never more than one session of ours', async () => {
    let srv = await startLineServer({ params: fastLine });
    const port = srv.port;
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(opcuaConfig({ endpoint: srv.endpoint, nodes: lineNodes(srv), reconnectMaxDelay: 200 }), t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('first values', () => t.committed.some((s) => s.ref === 'good'));

    let maxSessions = 0;
    const probe = setInterval(() => (maxSessions = Math.max(maxSessions, srv.sessionCount())), 5);
    cleanups.push(() => clearInterval(probe));
    for (let cycle = 0; cycle < 20; cycle++) {
      const connects = (driver as any).stats().connects;
      if (cycle % 2 === 0) {
        srv.dropConnections();
      } else {
        await srv.stop();
        await sleep(50);
        srv = await startLineServer({ params: fastLine, port });
      }
      await waitFor(`reconnected after cycle ${cycle}`, () => (driver as any).stats().connects > connects && driver.health().state === 'up');
      const n = t.committed.length;
      await waitFor(`values after cycle ${cycle}`, () => t.committed.slice(n).some((s) => s.ref === 'good' && s.quality === 'good'));
      maxSessions = Math.max(maxSessions, srv.sessionCount());
    }
    clearInterval(probe);
    assert.equal(maxSessions, 1, 'one session of ours at most, at every moment');
    const st = (driver as any).stats();
    assert.ok(st.sessionsReactivated >= 10, `dropped connections reactivate the session (${st.sessionsReactivated})`);
    assert.ok(st.subscriptionsKept >= 10, 'and keep the subscription');
    assert.equal(st.sessionsCreated, 11, 'a new session only after each server restart');
  });
});
