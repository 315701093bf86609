import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { PlantBridgeError, type Signal } from '../../../contracts/index.ts';
import { create } from './mqtt-driver.ts';
import { countEvents, mqttConfig, outboxHarness, runningDriver, startBroker, uniq, waitFor, type TestBroker } from './test-kit.ts';

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

void it('a batch that fails to commit is not overtaken: the batches after it wait, and events are stored in arrival order', async (t) => {
  const topic = uniq('T');
  const h = outboxHarness('m');
  const emit = h.ctx.emit;
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  // the first commit hits a transient I/O error that takes a moment to surface; the later ones succeed
  h.ctx.emit = async (signals: Signal[]) => {
    const n = ++calls;
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    try {
      if (n === 1) {
        await new Promise((r) => setTimeout(r, 200));
        throw new PlantBridgeError('OUTBOX_IO', 'test: transient');
      }
      await emit(signals);
    } finally {
      inFlight--;
    }
  };
  const d = create(mqttConfig({ name: 'm', url: broker.url, clientId: uniq('c'), commitThread: 'main', maxBatch: 2, reconnectMaxDelay: '1s', subscriptions: [{ filter: `${topic}/+machine/ev`, ref: '{machine}/ev', fields: { id: { json: '$.id' } } }] }), h.ctx);
  const pub = await runningDriver(t, d, h, broker.url);
  for (let i = 1; i <= 6; i++) pub.publish(`${topic}/M1/ev`, JSON.stringify({ id: `e${i}` }), { qos: 1 });
  await waitFor(() => countEvents(h.outbox) === 6 && d.stats().acksSent >= 6, 10_000, 'all six stored and acknowledged');
  const order = h.outbox.query<{ source_id: string }>('SELECT source_id FROM events ORDER BY seq').map((r) => r.source_id.split('=')[1]);
  assert.deepEqual(order, ['e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
  assert.equal(maxInFlight, 1, 'one commit at a time');
  assert.ok(d.stats().commitFailures >= 1);
});

void it('on the commit thread too: a batch that fails (the outbox locked past its busy timeout) is not overtaken by the batches queued behind it', { timeout: 60_000 }, async (t) => {
  const topic = uniq('T');
  const h = outboxHarness('m');
  const d = create(mqttConfig({ name: 'm', url: broker.url, clientId: uniq('c'), maxBatch: 2, reconnectMaxDelay: '1s', subscriptions: [{ filter: `${topic}/+machine/ev`, ref: '{machine}/ev', fields: { id: { json: '$.id' } } }] }), h.ctx);
  // another writer (an outbox CLI command, say) holds the outbox's write lock
  const { default: Database } = await import('better-sqlite3');
  const locker = new Database(join(h.ctx.stateDir, 'outbox.db'));
  t.after(async () => {
    if (locker.inTransaction) locker.exec('ROLLBACK');
    locker.close();
  });
  const pub = await runningDriver(t, d, h, broker.url);
  locker.exec('BEGIN IMMEDIATE');
  pub.publish(`${topic}/M1/ev`, JSON.stringify({ id: 'e1' }), { qos: 1 });
  pub.publish(`${topic}/M1/ev`, JSON.stringify({ id: 'e2' }), { qos: 1 });
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 3; i <= 6; i++) pub.publish(`${topic}/M1/ev`, JSON.stringify({ id: `e${i}` }), { qos: 1 });
  // the first batch fails after the outbox's 5 s busy timeout; the lock goes a little later, while the
  // batches behind it would still be waiting for it
  await waitFor(() => d.stats().commitFailures >= 1, 15_000, 'the first batch failed');
  await new Promise((r) => setTimeout(r, 500));
  locker.exec('ROLLBACK');
  await waitFor(() => countEvents(h.outbox) === 6 && d.stats().acksSent >= 6, 20_000, 'all six stored and acknowledged');
  const order = h.outbox.query<{ source_id: string }>('SELECT source_id FROM events ORDER BY seq').map((r) => r.source_id.split('=')[1]);
  assert.deepEqual(order, ['e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
});

void it('a bad message behind a batch that fails to commit is dead-lettered once, when it comes again', async (t) => {
  const topic = uniq('T');
  const h = outboxHarness('m');
  const emit = h.ctx.emit;
  let failOnce = true;
  h.ctx.emit = async (signals: Signal[]) => {
    if (failOnce) {
      failOnce = false;
      await new Promise((r) => setTimeout(r, 100));
      throw new PlantBridgeError('OUTBOX_IO', 'test: transient');
    }
    await emit(signals);
  };
  const d = create(mqttConfig({ name: 'm', url: broker.url, clientId: uniq('c'), commitThread: 'main', reconnectMaxDelay: '1s', subscriptions: [{ filter: `${topic}/+machine/ev`, ref: '{machine}/ev', fields: { id: { json: '$.id' } } }] }), h.ctx);
  const pub = await runningDriver(t, d, h, broker.url);
  pub.publish(`${topic}/M1/ev`, '{"id":"a1"}', { qos: 1 });
  pub.publish(`${topic}/M1/ev`, 'not json', { qos: 1 });
  await waitFor(() => countEvents(h.outbox) === 1 && d.stats().acksSent >= 2, 10_000, 'stored and acknowledged after the redelivery');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(h.outbox.listDeadLetters().length, 1);
  assert.ok(d.stats().commitFailures >= 1);
});

// A dead letter whose commit was durable but whose PUBACK never left (a crash, a dropped connection) comes
// again when the broker redelivers the message: the events table drops the redelivered signals by their
// sourceId, and the outbox drops the dead letter by its key, topic and payload digest (README.md, "Acknowledge
// after commit", 5).
for (const commitThread of ['worker', 'main'] as const) {
  void it(`a dead letter committed but not acknowledged is not written again when the broker redelivers it (${commitThread})`, async (t) => {
    const topic = uniq('D');
    const h = outboxHarness('m');
    // the commit is durable, then the ack is lost once (as in a crash between commit and PUBACK): the
    // connection is dropped and the broker redelivers the batch
    let lost = false;
    const loseAck = () => {
      if (lost) return;
      lost = true;
      throw new PlantBridgeError('OUTBOX_IO', 'test: the PUBACK is lost after the commit');
    };
    const committed = h.ctx.writer!.committed;
    h.ctx.writer!.committed = (r) => {
      committed(r);
      if ((r.deadLettered ?? 0) > 0) loseAck();
    };
    const deadLetter = h.ctx.deadLetter;
    h.ctx.deadLetter = (code, reason, payload, dedupeKey) => {
      deadLetter(code, reason, payload, dedupeKey);
      loseAck();
    };
    const d = create(mqttConfig({ name: 'm', url: broker.url, clientId: uniq('c'), commitThread, reconnectMaxDelay: '1s', subscriptions: [{ filter: `${topic}/+machine/ev`, ref: '{machine}/ev', fields: { id: { json: '$.id' } } }] }), h.ctx);
    const pub = await runningDriver(t, d, h, broker.url);
    pub.publish(`${topic}/M1/ev`, JSON.stringify({ id: 'e1' }), { qos: 1 });
    pub.publish(`${topic}/M1/ev`, 'not json', { qos: 1 });
    await waitFor(() => lost && d.stats().acksSent >= 2, 10_000, 'the redelivered batch committed and acknowledged');
    assert.equal(d.commitsOn(), commitThread);
    assert.equal(countEvents(h.outbox), 1, 'the redelivered signal is dropped by its sourceId');
    assert.ok(d.stats().commitFailures >= 1, 'the ack was lost and the batch redelivered');
    assert.equal(h.outbox.stats().deadLetters, 1, 'the redelivered bad message is dead-lettered once');
    const all = h.outbox.listDeadLetters(100, true);
    assert.equal(all.length, 1);
    assert.equal(all[0].dedupeKey, `m/${topic}/M1/ev@dl#${createHash('sha256').update('not json').digest('hex').slice(0, 16)}`);
    assert.equal(all[0].payload, 'not json');
  });
}
