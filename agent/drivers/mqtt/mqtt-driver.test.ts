import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, checkLive } from './mqtt-driver.ts';
import { countEvents, mqttConfig, outboxHarness, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from './test-kit.ts';

/** The MQTT driver against a real Mosquitto (a private one per file: restarts and queue limits are ours). */

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

const eventsSub = (prefix: string) => ({
  filter: `${prefix}/+line/+machine/events`,
  ref: '{line}/{machine}/events',
  fields: { id: { json: '$.id' }, time: { json: '$.ts' }, order: { json: '$.order' }, quantity: { json: '$.qty' }, workCenter: { topic: 'machine' } },
});

const event = (prefix: string, i: number, machine = `M${i % 4}`) => ({
  topic: `${prefix}/L1/${machine}/events`,
  payload: JSON.stringify({ id: `E${i}`, ts: new Date(Date.UTC(2026, 0, 1) + i).toISOString(), order: `O${i % 7}`, qty: 1 }),
});

void describe('mqtt driver', () => {
  void it('commits mapped events once each, with topic levels, constants and retained state as baseline', async (t) => {
    const prefix = uniq('t1');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({
      name: 'cells',
      url: broker.url,
      clientId: uniq('agent'),
      subscriptions: [eventsSub(prefix), { filter: `${prefix}/+line/state`, ref: '{line}/state', fields: { time: { json: '$.t' }, value: { json: '$.mode' } } }],
    });
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    await pub.publishAsync(`${prefix}/L1/state`, JSON.stringify({ t: '2026-01-01T00:00:00Z', mode: 'RUN' }), { qos: 1, retain: true });
    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const items = Array.from({ length: 2000 }, (_, i) => event(prefix, i));
    await publishAll(pub, items);
    await publishAll(pub, items.slice(0, 100)); // the machine resends: deduped
    await waitFor(() => countEvents(h.outbox, 'cells') >= 2001, 10_000, '2001 events');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(countEvents(h.outbox, 'cells'), 2001);
    const row = h.outbox.query<{ ref: string; value: string; source_id: string }>("SELECT ref, value, source_id FROM events WHERE source_id LIKE '%@id=E5'")[0];
    assert.equal(row.ref, 'L1/M1/events');
    assert.deepEqual(JSON.parse(row.value), { order: 'O5', quantity: 1, workCenter: 'M1' });
    const state = h.outbox.query<{ value: string }>("SELECT value FROM events WHERE ref = 'L1/state'");
    assert.deepEqual(state.map((s) => JSON.parse(s.value)), ['RUN']);
    await waitFor(() => d.stats().acksSent === d.stats().received, 5000, 'every message acknowledged after its commit');
    const st = d.stats();
    assert.equal(st.acksSent, st.received);
    assert.equal(d.commitsOn(), 'worker', 'decoded and committed on the commit thread (the default)');
    assert.ok(st.commitThreadCpuSeconds > 0);
    await d.stop();
    assert.equal(d.health().state, 'stopped');
    await pub.publishAsync(`${prefix}/L1/state`, '', { qos: 1, retain: true });
    await pub.endAsync();
  });

  void it('dead-letters 1,000 malformed payloads among 10,000 with reasons (identical bytes once), commits the 9,000 good ones and keeps running', async (t) => {
    const prefix = uniq('t2');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), maxPayloadBytes: 1024, subscriptions: [eventsSub(prefix)] });
    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const bad = [
      (i: number) => `not json ${i}`,
      (i: number) => Buffer.concat([Buffer.from(`{"id":"B${i}","x":"`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
      (i: number) => JSON.stringify({ id: `B${i}`, ts: '2026-01-01T00:00:00Z', pad: 'x'.repeat(2000) }),
      (i: number) => JSON.stringify({ id: `B${i}`, ts: 'not a time', order: 'O', qty: 1 }),
      () => JSON.stringify({ ts: '2026-01-01T00:00:00Z', order: 'O', qty: 1 }),
    ];
    const items = Array.from({ length: 10_000 }, (_, i) =>
      i % 10 === 3 ? { topic: `${prefix}/L1/M1/events`, payload: bad[(i / 10) % 5 | 0](i) } : event(prefix, i),
    );
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    await publishAll(pub, items);
    await waitFor(() => countEvents(h.outbox, 'cells') >= 9000, 20_000, '9000 events');
    // the 200 copies of the payload without an id are the same bytes on the same topic: one dead letter
    // (README.md, "Dead letters of identical bytes"); the driver still counts every message
    await waitFor(() => h.outbox.stats().deadLetters >= 801, 5000, '801 dead letters');
    const dl = h.outbox.query<{ code: string; n: number }>("SELECT code, COUNT(*) AS n FROM dead_letters WHERE kind = 'signal' GROUP BY code ORDER BY code");
    assert.deepEqual(dl, [
      { code: 'PAYLOAD_INVALID', n: 600 },
      { code: 'SCHEMA_INVALID', n: 201 },
    ]);
    const reasons = h.outbox.query<{ reason: string }>('SELECT reason FROM dead_letters').map((r) => r.reason);
    assert.ok(reasons.some((r) => r.includes('not JSON')));
    assert.ok(reasons.some((r) => r.includes('UTF-8')));
    assert.ok(reasons.some((r) => r.includes('exceeds maxPayloadBytes')));
    const raw = h.outbox.query<{ payload: Buffer }>("SELECT payload FROM dead_letters WHERE reason LIKE '%not JSON%' LIMIT 1")[0];
    assert.match(Buffer.from(raw.payload).toString(), /^not json \d+$/);
    // the commit thread's reply (which updates the counters) arrives just after its commit is visible
    await waitFor(() => (d.stats().deadLettered.PAYLOAD_INVALID ?? 0) >= 600, 5000, 'the driver counted the dead letters');
    assert.equal(d.stats().deadLettered.PAYLOAD_INVALID, 600);
    await waitFor(() => (d.stats().deadLettered.SCHEMA_INVALID ?? 0) >= 400, 5000, 'the driver counted every message');
    assert.equal(d.stats().deadLettered.SCHEMA_INVALID, 400);
    // still running
    await publishAll(pub, [event(prefix, 20_001)]);
    await waitFor(() => countEvents(h.outbox, 'cells') === 9001, 5000, 'one more event after the bad ones');
    assert.equal(d.health().state, 'up');
    await d.stop();
    await pub.endAsync();
  });

  void it('dead-letters a number beyond a double and a string that is not Unicode, naming the field; two such ids are not one event', async (t) => {
    const prefix = uniq('t2b');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const d = create(mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), subscriptions: [eventsSub(prefix)] }), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const topic = `${prefix}/L1/M1/events`;
    // JSON text as a producer writes it: the escapes and the exponent are in the bytes
    const payloads = [
      '{"id":"\\ud800","ts":"2026-01-01T00:00:00.000Z","order":"O1","qty":1}',
      '{"id":"\\udbff","ts":"2026-01-01T00:00:00.001Z","order":"O1","qty":2}',
      '{"id":"E-big","ts":"2026-01-01T00:00:00.002Z","order":"O1","qty":1e400}',
    ];
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    await publishAll(pub, [...payloads.map((payload) => ({ topic, payload })), event(prefix, 1, 'M1')]);
    await waitFor(() => countEvents(h.outbox, 'cells') >= 1 && h.outbox.stats().deadLetters >= 3, 5000, 'one event and three dead letters');
    await new Promise((r) => setTimeout(r, 200));
    const events = h.outbox.query<{ source_id: string }>('SELECT source_id FROM events');
    assert.deepEqual(events.map((e) => e.source_id), ['cells/L1/M1/events@id=E1'], 'nothing stored with a replaced character or a null quantity');
    const dl = h.outbox.query<{ code: string; reason: string; payload: Buffer }>("SELECT code, reason, payload FROM dead_letters WHERE kind = 'signal' ORDER BY id");
    assert.deepEqual(dl.map((r) => r.code), ['SCHEMA_INVALID', 'SCHEMA_INVALID', 'SCHEMA_INVALID']);
    assert.match(dl[0].reason, /id: \$\.id is a string with an unpaired surrogate \(\\ud800 at character 0\)/);
    assert.match(dl[1].reason, /\\udbff/);
    assert.match(dl[2].reason, /quantity: \$\.qty is a number beyond the range of a double/);
    assert.deepEqual(dl.map((r) => Buffer.from(r.payload).toString()), payloads, 'the raw bytes are kept for a replay');
    await d.stop();
    await pub.endAsync();
  });

  void it('loses nothing when the broker restarts mid-stream', async (t) => {
    const prefix = uniq('t3');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), reconnectMaxDelay: '1s', subscriptions: [eventsSub(prefix)] });
    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const pub = await publisher(broker.url, { clean: false, clientId: uniq('pub'), properties: { sessionExpiryInterval: 300 } });
    t.after(() => pub.end(true));
    const N = 6000;
    const sending = publishAll(pub, Array.from({ length: N }, (_, i) => event(prefix, i)), 200);
    await waitFor(() => countEvents(h.outbox) >= 1500, 10_000, 'first events');
    await broker.restart(300);
    await sending;
    await waitFor(() => countEvents(h.outbox) >= N, 30_000, `all ${N} events after the broker restart`);
    assert.equal(countEvents(h.outbox), N);
    assert.ok(d.stats().connects >= 2, 'reconnected');
    await d.stop();
    await pub.endAsync();
  });

  void it('receives what the broker queued while the agent was down (persistent session)', async (t) => {
    const prefix = uniq('t4');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), subscriptions: [eventsSub(prefix)] });
    const d1 = create(cfg, h.ctx);
    t.after(() => d1.stop());
    await d1.start();
    await waitFor(() => d1.health().state === 'up', 5000, 'driver up');
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    await publishAll(pub, Array.from({ length: 500 }, (_, i) => event(prefix, i)));
    await waitFor(() => countEvents(h.outbox) >= 500, 5000, 'first 500');
    await d1.stop();
    await publishAll(pub, Array.from({ length: 3000 }, (_, i) => event(prefix, 500 + i)));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(countEvents(h.outbox), 500, 'nothing arrives while the agent is down');
    const d2 = create(cfg, h.ctx);
    t.after(() => d2.stop());
    await d2.start();
    await waitFor(() => countEvents(h.outbox) >= 3500, 15_000, 'the queued 3000');
    assert.equal(countEvents(h.outbox), 3500);
    assert.match(d2.health().message ?? '', /session resumed/);
    await d2.stop();
    await pub.endAsync();
  });

  void it('does not acknowledge when the commit fails, and gets everything redelivered once the outbox recovers', async (t) => {
    const prefix = uniq('t5');
    const h = outboxHarness('cells');
    t.after(() => h.close());
    // ctx.emit fails on demand: the main-thread commit path (the commit thread's failures: commit-thread.test.ts)
    const cfg = mqttConfig({ name: 'cells', url: broker.url, clientId: uniq('agent'), reconnectMaxDelay: '1s', commitThread: 'main', subscriptions: [eventsSub(prefix)] });
    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    h.failEmits = true;
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    await publishAll(pub, Array.from({ length: 1000 }, (_, i) => event(prefix, i)));
    await waitFor(() => d.stats().commitFailures >= 1, 5000, 'a failed commit');
    assert.equal(countEvents(h.outbox), 0);
    assert.notEqual(d.health().state, 'up');
    h.failEmits = false;
    await waitFor(() => countEvents(h.outbox) >= 1000, 20_000, 'all 1000 after recovery');
    assert.equal(countEvents(h.outbox), 1000);
    await waitFor(() => d.health().state === 'up', 5000, 'up again');
    await d.stop();
    await pub.endAsync();
  });

  void it('works with MQTT 3.1.1 and a broker in-flight window of 20', async (t) => {
    const prefix = uniq('t6');
    const small = await startBroker({ extraConf: 'max_inflight_messages 20' });
    t.after(() => small.stop());
    const h = outboxHarness('cells');
    t.after(() => h.close());
    const cfg = mqttConfig({ name: 'cells', url: small.url, protocolVersion: 4, clientId: uniq('agent'), subscriptions: [eventsSub(prefix)] });
    const d = create(cfg, h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const pub = await publisher(small.url, { protocolVersion: 4 });
    t.after(() => pub.end(true));
    await publishAll(pub, Array.from({ length: 2000 }, (_, i) => event(prefix, i)));
    await waitFor(() => countEvents(h.outbox) >= 2000, 15_000, '2000 events over 3.1.1');
    await d.stop();
    await pub.endAsync();
    await small.stop();
  });

  void it('checkLive reports what each filter matched, without touching the agent session', async (t) => {
    const prefix = uniq('t7');
    const cfg = mqttConfig({
      name: 'cells',
      url: broker.url,
      clientId: uniq('agent'),
      subscriptions: [eventsSub(prefix), { filter: `${prefix}/quiet/#`, ref: 'quiet', fields: { time: { json: '$.t' } } }],
    });
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    const timer = setInterval(() => {
      void pub.publishAsync(`${prefix}/L2/M9/events`, JSON.stringify({ id: 'x', ts: '2026-01-01T00:00:00Z', order: 'O', qty: 1 }));
      void pub.publishAsync(`${prefix}/L2/M9/events`, 'garbage');
    }, 100);
    const r = await checkLive(cfg, { durationMs: 1000 });
    clearInterval(timer);
    assert.equal(r.ok, true);
    assert.equal(r.connected, true);
    assert.ok(r.filters[0].matched >= 4);
    assert.ok(r.filters[0].valid >= 2 && r.filters[0].invalid >= 2);
    assert.match(r.filters[0].firstProblem ?? '', /PAYLOAD_INVALID/);
    assert.deepEqual(r.filters[0].topics, [`${prefix}/L2/M9/events`]);
    assert.equal(r.filters[1].matched, 0);
    const down = await checkLive({ ...cfg, url: 'mqtt://127.0.0.1:1' }, { durationMs: 100, connectTimeoutMs: 1000 });
    assert.equal(down.ok, false);
    assert.match(down.error ?? '', /ECONNREFUSED/);
    await pub.endAsync();
  });
});
