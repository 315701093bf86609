import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startLineServer } from '../../../test/plant-sim/opcua-line-server.ts';
import { create } from './opcua-driver.ts';
import { fastLine, opcuaConfig, testCtx, waitFor } from './test-kit.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

void describe('opcua driver', () => {
  void test('values flow to the outbox, in order, with timestamps and status', async () => {
    const srv = await startLineServer({ params: fastLine });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({
        endpoint: srv.endpoint,
        nodes: [
          { ref: 'good', nodeId: srv.nodeIds.good, samplingInterval: 50 },
          { ref: 'scrap', nodeId: srv.nodeIds.scrap, samplingInterval: 50 },
          { ref: 'order', browsePath: '/Objects/1:Line1/1:OrderNumber', samplingInterval: 50 },
        ],
      }),
      t.ctx,
    );
    assert.equal(driver.health().state, 'starting');
    await driver.start();
    await waitFor('10 good values committed', () => t.committed.filter((s) => s.ref === 'good').length >= 10);
    await waitFor('an order value committed', () => t.committed.some((s) => s.ref === 'order'));
    assert.equal(driver.health().state, 'up');
    const goods = t.committed.filter((s) => s.ref === 'good');
    for (let i = 1; i < goods.length; i++) {
      assert.ok((goods[i].value as number) > (goods[i - 1].value as number), 'counter values arrive in order');
      assert.ok(goods[i].sourceTime > goods[i - 1].sourceTime, 'source times arrive in order');
    }
    const g = goods[0];
    assert.equal(g.source, 'line1-plc');
    assert.equal(typeof g.value, 'number');
    assert.equal(g.quality, 'good');
    assert.equal(g.sourceId, `line1-plc/good/${g.sourceTime}/${g.value}`);
    assert.equal(g.meta?.statusCode, 'Good');
    assert.equal(g.meta?.overflow, false);
    assert.match(String(g.meta?.serverTimestamp), /^\d{4}-/);
    const order = t.committed.find((s) => s.ref === 'order')!;
    assert.match(String(order.value), /^\d{7}\/0010$/);
    // the rows are in the outbox file
    assert.ok(t.outbox.stats !== undefined);
    await driver.stop();
    assert.equal(driver.health().state, 'stopped');
    assert.equal(srv.sessionCount(), 0, 'stop closes our session');
  });

  void test('create validates and never connects', async () => {
    const t = testCtx();
    cleanups.push(() => t.close());
    assert.throws(
      () => create(opcuaConfig({ endpoint: 'opc.tcp://127.0.0.1:1', nodes: [{ ref: 'a', nodeId: 'not a node id' }] }), t.ctx),
      (err: any) => err.code === 'CONFIG_INVALID' && /nodes\[0\]\.nodeId/.test(err.message),
    );
    const insecure = { ...opcuaConfig({ endpoint: 'opc.tcp://127.0.0.1:1', nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }] }), allowInsecure: false };
    assert.throws(() => create(insecure, t.ctx), (err: any) => err.code === 'CONFIG_INVALID' && /allowInsecure/.test(err.message));
    const unresolved = opcuaConfig({
      endpoint: 'opc.tcp://127.0.0.1:1',
      user: { type: 'username', username: 'op', password: '${NOT_RESOLVED}' },
      nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }],
    });
    assert.throws(() => create(unresolved, t.ctx), (err: any) => err.code === 'CONFIG_INVALID' && /user\.password/.test(err.message));
    const noCert = opcuaConfig({
      endpoint: 'opc.tcp://127.0.0.1:1',
      user: { type: 'certificate', certificate: '/nonexistent/user.pem', privateKey: 'file:/nonexistent/user.key' },
      nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }],
    });
    assert.throws(() => create(noCert, t.ctx), (err: any) => err.code === 'CONFIG_INVALID' && /ENOENT|user/.test(err.message));
    const d = create(opcuaConfig({ endpoint: 'opc.tcp://127.0.0.1:1', nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }] }), t.ctx);
    assert.equal(d.health().state, 'starting');
    assert.equal((d as any).stats().connects + (d as any).stats().connectFailures, 0, 'nothing happens before start()');
    await d.start();
    await waitFor('a failed attempt, visible in health', () => /cannot connect/.test(d.health().message ?? ''));
    assert.equal(d.health().state, 'starting');
    await d.stop();
    assert.equal(d.health().state, 'stopped');
  });
});
