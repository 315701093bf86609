import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { startLineServer, type LineServer } from '../../../test/plant-sim/opcua-line-server.ts';
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
  ];
}

/**
 * A TCP front for the server. `forward` pipes to it; `stall` accepts connections and keeps what the
 * client sends without answering (a PLC whose TCP stack is up while its OPC UA server is not, a gateway
 * whose backend is gone); `resume` delivers what was kept to the server and pipes from then on.
 */
async function stallingFront(target: () => number) {
  let stalled = false;
  const held: Array<{ s: Socket; data: Buffer[] }> = [];
  const sockets = new Set<Socket>();
  const pipe = (s: Socket, first: Buffer[] = []) => {
    const u = connect(target(), '127.0.0.1');
    sockets.add(u);
    for (const d of first) u.write(d);
    s.pipe(u).pipe(s);
    const end = () => {
      s.destroy();
      u.destroy();
    };
    s.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  };
  const server: Server = createServer((s) => {
    sockets.add(s);
    if (!stalled) return pipe(s);
    const h = { s, data: [] as Buffer[] };
    held.push(h);
    s.on('data', (d) => h.data.push(d)).on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    held,
    stall() {
      stalled = true;
      for (const s of sockets) s.destroy();
    },
    resume() {
      stalled = false;
      for (const h of held.splice(0)) {
        if (h.s.destroyed) continue;
        h.s.removeAllListeners('data');
        pipe(h.s, h.data);
      }
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

void describe('opcua driver stop', () => {
  void test('stop() in the reconnect backoff (server stopped): resolves at once, nothing connects to the restarted server', async () => {
    let srv = await startLineServer({ params: fastLine });
    const port = srv.port;
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(opcuaConfig({ endpoint: srv.endpoint, nodes: lineNodes(srv), reconnectMaxDelay: 5000 }), t.ctx);
    await driver.start();
    await waitFor('values before the outage', () => t.committed.filter((s) => s.ref === 'good').length >= 3);

    await srv.stop();
    await waitFor('driver down (in its backoff)', () => driver.health().state === 'down');
    await sleep(1500); // a few failed attempts: well inside the backoff
    const t0 = performance.now();
    await driver.stop();
    const stopMs = performance.now() - t0;
    assert.equal(driver.health().state, 'stopped');
    assert.ok(stopMs < 1000, `stop() resolved in ${stopMs.toFixed(0)} ms`);
    const n = t.committed.length;

    srv = await startLineServer({ params: fastLine, port });
    let maxSessions = 0;
    const probe = setInterval(() => (maxSessions = Math.max(maxSessions, srv.sessionCount())), 5);
    await sleep(2000);
    clearInterval(probe);
    assert.equal(maxSessions, 0, 'the stopped driver created no session on the restarted server');
    assert.equal(t.committed.length, n, 'no values after stop()');
    assert.equal((driver as any).stats().connects, 1, 'no connection after stop()');
  });

  void test('stop() while a connect hangs (the endpoint accepts TCP, the server does not answer): resolves at once, and the attempt does not go on when the server answers again', async () => {
    let srv = await startLineServer({ params: fastLine });
    const srvPort = srv.port;
    cleanups.push(() => srv.stop());
    const front = await stallingFront(() => srvPort);
    cleanups.push(() => front.close());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(opcuaConfig({ endpoint: `opc.tcp://127.0.0.1:${front.port}`, nodes: lineNodes(srv), reconnectMaxDelay: 300 }), t.ctx);
    await driver.start();
    await waitFor('values before the outage', () => t.committed.filter((s) => s.ref === 'good').length >= 3);

    // the server goes (its sessions with it); its TCP front stays and swallows every connect
    await srv.stop();
    front.stall();
    await waitFor('driver down', () => driver.health().state === 'down');
    await waitFor('a connect attempt hanging on the stalled endpoint', () => front.held.some((h) => !h.s.destroyed && h.data.length > 0));
    await sleep(200);
    const t0 = performance.now();
    await driver.stop();
    const stopMs = performance.now() - t0;
    assert.equal(driver.health().state, 'stopped');
    assert.ok(stopMs < 1500, `stop() resolved in ${stopMs.toFixed(0)} ms (a connect attempt waits 10 s for a server that does not answer)`);
    const n = t.committed.length;

    // the server is back: what the stopped driver had sent reaches it now
    srv = await startLineServer({ params: fastLine, port: srvPort });
    front.resume();
    let maxSessions = 0;
    const probe = setInterval(() => (maxSessions = Math.max(maxSessions, srv.sessionCount())), 5);
    await sleep(2000);
    clearInterval(probe);
    assert.equal(maxSessions, 0, 'no session of the stopped driver on the server');
    assert.equal(t.committed.length, n, 'no values after stop()');
    assert.equal((driver as any).stats().connects, 1, 'no connection after stop()');
  });
});
