import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { create } from './mqtt-driver.ts';
import { countEvents, mqttConfig, outboxHarness, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from './test-kit.ts';

/** The MQTT driver's commit thread (README.md, "Commit thread") against a real Mosquitto: what happens when it fails. */

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

const sub = (prefix: string) => ({ filter: `${prefix}/+machine/events`, ref: '{machine}/events', fields: { id: { json: '$.id' }, time: { json: '$.ts' } } });
const events = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ topic: `${prefix}/M${i % 4}/events`, payload: JSON.stringify({ id: i, ts: new Date(Date.UTC(2026, 0, 1) + i).toISOString() }) }));

/** starts the driver (stopped after the test) and waits until it is connected */
async function startUp(t: TestContext, d: ReturnType<typeof create>): Promise<void> {
  t.after(() => d.stop());
  await d.start();
  await waitFor(() => d.health().state === 'up', 5000, 'driver up');
}

/** a publisher on the test broker, closed after the test */
async function testPublisher(t: TestContext) {
  const pub = await publisher(broker.url);
  t.after(() => pub.end(true));
  return pub;
}

void describe('mqtt commit thread', () => {
  void it('a crashed commit thread loses nothing: its batches are not acknowledged, the broker redelivers, a new thread commits them once', async (t) => {
    const prefix = uniq('crash');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), reconnectMaxDelay: '1s', subscriptions: [sub(prefix)] });
    const d = create(cfg, h.ctx);
    await startUp(t, d);
    assert.equal(d.commitsOn(), 'worker');
    const pub = await testPublisher(t);
    const all = events(prefix, 6000);
    const publishing = publishAll(pub, all);
    await waitFor(() => countEvents(h.outbox) >= 500, 10_000, 'the first events');
    // crash until a crash lands while a batch is being committed (the thread may be idle for a moment)
    for (let k = 0; k < 50 && d.stats().commitFailures === 0; k++) {
      await d.crashThread();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(d.stats().commitFailures >= 1, 'a crash hit a batch in flight');
    await publishing;
    await waitFor(() => countEvents(h.outbox) >= 6000, 30_000, 'all 6000 after the crash');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(countEvents(h.outbox), 6000, 'each event once');
    assert.ok(d.stats().connects >= 2, 'reconnected for the redelivery');
    assert.equal(d.commitsOn(), 'worker', 'still on a commit thread (a new one)');
    await d.stop();
    await pub.endAsync();
  });

  void it('OUTBOX_FULL on the commit thread: nothing is acknowledged; after a restart with room, everything arrives once', async (t) => {
    const prefix = uniq('full');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const clientId = uniq('agent');
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId, reconnectMaxDelay: '1s', subscriptions: [sub(prefix)] });
    const full = create(cfg, { ...h.ctx, writer: { ...h.ctx.writer!, spec: { ...h.ctx.writer!.spec, outbox: { ...h.ctx.writer!.spec.outbox, maxBytes: 1 } } } });
    await startUp(t, full);
    const pub = await testPublisher(t);
    await publishAll(pub, events(prefix, 2000));
    await waitFor(() => full.stats().commitFailures >= 1, 5000, 'a refused commit');
    assert.equal(countEvents(h.outbox), 0);
    assert.equal(full.stats().acksSent, 0, 'nothing acknowledged');
    await full.stop();

    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => countEvents(h.outbox) >= 2000, 20_000, 'all 2000 after the restart');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(countEvents(h.outbox), 2000);
    await d.stop();
    await pub.endAsync();
  });

  void it('without a usable commit thread the driver commits on the main thread, says so, and loses nothing', async (t) => {
    const prefix = uniq('fallback');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), subscriptions: [sub(prefix)] });
    const spec = h.ctx.writer!.spec;
    const d = create(cfg, { ...h.ctx, writer: { ...h.ctx.writer!, spec: { ...spec, outbox: { ...spec.outbox, path: join(h.ctx.stateDir, 'missing', 'outbox.db') } } } });
    await startUp(t, d);
    assert.equal(d.commitsOn(), 'main');
    const pub = await testPublisher(t);
    await publishAll(pub, events(prefix, 1000));
    await waitFor(() => countEvents(h.outbox) >= 1000, 10_000, '1000 events on the main thread');
    assert.equal(countEvents(h.outbox), 1000);
    await d.stop();
    await pub.endAsync();
  });

  void it('a driver stopped before it started can start later and still commits on its thread', async (t) => {
    const prefix = uniq('restart');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const d = create(mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), subscriptions: [sub(prefix)] }), h.ctx);
    await d.stop();
    await startUp(t, d);
    const pub = await testPublisher(t);
    await publishAll(pub, events(prefix, 200));
    await waitFor(() => countEvents(h.outbox) >= 200, 10_000, '200 events');
    assert.equal(d.commitsOn(), 'worker');
    assert.equal(d.stats().commitFailures, 0);
    await pub.endAsync();
  });

  void it('commitThread: main keeps everything on the main thread', async (t) => {
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const d = create(mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), commitThread: 'main', subscriptions: [sub(uniq('m'))] }), h.ctx);
    t.after(() => d.stop());
    await d.start();
    assert.equal(d.commitsOn(), 'main');
    assert.equal(d.stats().commitThreadCpuSeconds, 0);
  });
});
