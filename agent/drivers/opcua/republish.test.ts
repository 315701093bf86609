import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DataType, StatusCodes, Variant, type UAVariable } from 'node-opcua';
import { create } from './opcua-driver.ts';
import { opcuaConfig, testCtx, waitFor } from './test-kit.ts';
import { startTestServer } from './test-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/**
 * A server with one UInt32 marker (every write goes out at once: MinimumSamplingInterval 0, server
 * MinSupportedSampleRate 0), a driver on it, and `lose(value)`: the server "sends" the data response
 * carrying that write into the void, as if it were lost in flight.
 */
async function setup() {
  let marker!: UAVariable;
  const srv = await startTestServer({
    minSupportedSampleRate: 0,
    populate(ns, addressSpace) {
      marker = ns.addVariable({ organizedBy: addressSpace.rootFolder.objects, browseName: 'Marker', nodeId: 's=Marker', dataType: 'UInt32', minimumSamplingInterval: 0 });
    },
  });
  cleanups.push(() => srv.stop());
  const set = (value: number) => marker.setValueFromSource(new Variant({ dataType: DataType.UInt32, value }), StatusCodes.Good, new Date());
  set(0);
  const t = testCtx();
  cleanups.push(() => t.close());
  const logs: string[] = [];
  const { pino } = await import('pino');
  t.ctx.log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const driver = create(opcuaConfig({ endpoint: srv.endpoint, reconnectMaxDelay: 200, nodes: [{ ref: 'marker', nodeId: 'ns=1;s=Marker', samplingInterval: 0 }] }), t.ctx);
  await driver.start();
  cleanups.push(() => driver.stop());
  const values = () => t.committed.filter((s) => s.ref === 'marker' && s.quality === 'good').map((s) => s.value);
  await waitFor('initial value', () => values().length === 1);

  const sessions = srv.server.engine.getSessions();
  assert.equal(sessions.length, 1);
  // per session, so it survives the session moving to a new channel
  const engine = (sessions[0] as any).publishEngine;
  const subscription = engine.subscriptions[0];
  const send = engine._send_response_for_request;
  let swallow = 0;
  const swallowed: number[] = [];
  engine._send_response_for_request = function (publishData: unknown, response: any) {
    if (swallow > 0 && response.notificationMessage?.notificationData?.length > 0) {
      swallow--;
      swallowed.push(response.notificationMessage.sequenceNumber);
      return;
    }
    return send.call(this, publishData, response);
  };
  const lose = async (value: number) => {
    const n = swallowed.length;
    swallow = 1;
    set(value);
    await waitFor(`response with ${value} lost`, () => swallowed.length === n + 1);
  };
  return { srv, t, logs, driver, set, values, subscription, swallowed, lose };
}

void describe('opcua driver republish', () => {
  void test('a lost publish response is recovered by Republish, in order, and acknowledged; one the server no longer has is counted and logged', async () => {
    const { driver, logs, set, values, subscription, swallowed, lose } = await setup();

    // 1. only keep-alives follow: the next keep-alive's sequence number shows the gap
    await lose(1);
    await waitFor('1 recovered after a keep-alive', () => values().includes(1));
    assert.equal(driver.stats().republished, 1);

    // 2. a data message follows: the gap is filled before it
    await lose(2);
    set(3);
    await waitFor('2 and 3', () => values().includes(3) && values().includes(2));
    assert.deepEqual(values(), [0, 1, 2, 3], 'committed in sequence order, each once');
    assert.equal(driver.stats().republished, 2);
    assert.equal(driver.stats().messagesLost, 0);
    await waitFor('the recovered messages are acknowledged', () => !subscription.getAvailableSequenceNumbers().some((n: number) => swallowed.includes(n)));

    // 3. the server no longer has the message (its retransmission queue overflowed): counted and logged, the rest flows
    const keep = subscription.getMessageForSequenceNumber;
    subscription.getMessageForSequenceNumber = () => null;
    await lose(4);
    set(5);
    await waitFor('5 after the unrecoverable gap', () => values().includes(5));
    subscription.getMessageForSequenceNumber = keep;
    assert.deepEqual(values(), [0, 1, 2, 3, 5]);
    assert.equal(driver.stats().messagesLost, 1);
    const warn = logs.map((l) => JSON.parse(l) as { level: number; msg: string; lost?: number }).find((l) => /notification messages were lost and Republish could not recover them \(BadMessageNotAvailable\)/.test(l.msg));
    assert.equal(warn?.level, 40);
    assert.equal(warn?.lost, 1);
    assert.equal(driver.health().state, 'up');
  });

  void test('responses lost in flight when the channel breaks: the session is reactivated, the subscription kept, the messages republished', async () => {
    const { srv, t, driver, values, subscription, swallowed, lose, set } = await setup();
    const reactivated = driver.stats().sessionsReactivated;
    // two values in two responses that never arrive, then the channel breaks
    await lose(1);
    await lose(2);
    for (const ep of srv.server.endpoints) ep.abruptlyInterruptChannels();
    await waitFor('reactivated', () => driver.stats().sessionsReactivated === reactivated + 1);
    // node-opcua's server sends the current value (2) again after ActivateSession; only Republish has 1
    await waitFor('1 and 2 after the reconnect', () => values().includes(1) && values().includes(2));
    set(3);
    await waitFor('3 flows', () => values().includes(3));
    const st = driver.stats();
    assert.equal(st.subscriptionsKept, 1, 'the same subscription: its retransmission queue held the messages');
    assert.equal(st.republished, 2);
    assert.equal(st.messagesLost, 0);
    // in commit order, once each by sourceId (the outbox keeps one row per sourceId)
    const distinct = [...new Map(t.committed.filter((s) => s.ref === 'marker' && s.quality === 'good').map((s) => [s.sourceId, s.value])).values()];
    assert.deepEqual(distinct, [0, 1, 2, 3]);
    await waitFor('acknowledged', () => !subscription.getAvailableSequenceNumbers().some((n: number) => swallowed.includes(n)));
    assert.equal(srv.sessionCount(), 1);
  });

  void test('across the sequence-number wrap (4294966271, then 1): a lost message is still republished', async () => {
    const { driver, set, values, subscription, lose } = await setup();
    // the server's next numbers are the last two before the wrap; it gets there in steps under 2^31, as a
    // real sequence would (a single jump that far reads as a number behind the last one)
    for (const [k, n] of [1_500_000_000, 3_000_000_000, 4_294_966_270].entries()) {
      subscription._sequence_number_generator._set(n);
      set(100 + k); // a data message with the new number
      await waitFor(`step ${k}`, () => values().includes(100 + k));
    }
    // 4294966271 is lost, 1 arrives
    await lose(2);
    set(3);
    await waitFor('2 and 3 across the wrap', () => values().includes(3) && values().includes(2));
    assert.deepEqual(values(), [0, 100, 101, 102, 2, 3]);
    assert.equal(driver.stats().republished, 1);
    assert.equal(driver.stats().messagesLost, 0);
  });
});
