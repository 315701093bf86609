import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, MqttClient, type IPublishPacket } from 'mqtt';
import type { Signal } from '../../../contracts/index.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import { HealthTracker } from '../driver.ts';
import { MqttSession } from './mqtt-session.ts';
import { mqttConfig, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from './test-kit.ts';

/**
 * Pins what the ack-after-commit design relies on in mqtt.js (and Mosquitto). If an mqtt.js upgrade changes
 * any of it, this file fails before a release can acknowledge messages that were never committed.
 */

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

void describe('mqtt.js behaviour the ack hook relies on', () => {
  void it('has MqttClient.prototype._sendPacket and handleMessage', () => {
    const proto = MqttClient.prototype as unknown as Record<string, unknown>;
    assert.equal(typeof proto._sendPacket, 'function');
    assert.equal(typeof proto.handleMessage, 'function');
    assert.equal(typeof proto._writePacket, 'function');
  });

  void it("sends a QoS 1 PUBACK only through _sendPacket, after 'message' and handleMessage; swallowing it keeps the stream flowing", async (t) => {
    const topic = uniq('pin/order');
    const clientId = uniq('pin-sub');
    const sub = connect(broker.url, { clientId, clean: false, protocolVersion: 5, reconnectPeriod: 0, properties: { sessionExpiryInterval: 60, receiveMaximum: 50 } });
    t.after(() => sub.end(true));
    const trace: string[] = [];
    const swallowed: number[] = [];
    let written = 0;
    const c = sub as unknown as { _sendPacket: (p: any, cb?: () => void, ...rest: unknown[]) => void; handleMessage: (p: IPublishPacket, cb: () => void) => void };
    const orig = c._sendPacket.bind(sub);
    c._sendPacket = (p, cb, ...rest) => {
      if (p.cmd === 'puback') {
        trace.push(`puback:${p.messageId}`);
        swallowed.push(p.messageId);
        cb?.();
        return;
      }
      orig(p, cb, ...rest);
    };
    c.handleMessage = (p, cb) => {
      trace.push(`handle:${p.messageId}`);
      cb();
    };
    sub.on('message', (_t, _p, packet) => trace.push(`message:${packet.messageId}`));
    sub.on('packetsend', (p) => {
      if (p.cmd === 'puback') written++;
    });
    await new Promise<void>((r) => sub.once('connect', () => r()));
    await sub.subscribeAsync(topic, { qos: 1 });
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    // more than the Receive Maximum: the broker must stop at 50 unacknowledged messages
    void publishAll(pub, Array.from({ length: 80 }, (_, i) => ({ topic, payload: String(i) })));
    await waitFor(() => swallowed.length >= 50, 5000, '50 messages without any PUBACK');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(swallowed.length, 50, 'Mosquitto honours the client Receive Maximum: no 51st message before an ack');
    assert.equal(written, 0, 'no PUBACK reached the socket');
    const first = swallowed[0];
    assert.deepEqual(trace.slice(0, 3), [`message:${first}`, `handle:${first}`, `puback:${first}`], 'order: message event, handleMessage, then the PUBACK');
    // acknowledging the first 10 ourselves frees 10 slots
    for (const id of swallowed.slice(0, 10)) orig({ cmd: 'puback', messageId: id, reasonCode: 0 });
    await waitFor(() => swallowed.length >= 60, 5000, '10 more messages after 10 acks');
    assert.equal(written, 10);
    // the 50 unacknowledged messages come back after a reconnect of the persistent session
    sub.end(true);
    const again = connect(broker.url, { clientId, clean: false, protocolVersion: 5, reconnectPeriod: 0, properties: { sessionExpiryInterval: 60 } });
    t.after(() => again.end(true));
    const redelivered = new Set<string>();
    again.on('message', (_t, payload) => redelivered.add(payload.toString()));
    await waitFor(() => redelivered.size >= 70, 5000, 'redelivery of every unacknowledged message');
    await again.endAsync();
    await pub.endAsync();
  });

  void it('the session writes no PUBACK before emit resolves, then all of them in arrival order', async (t) => {
    const topic = uniq('pin/session');
    const cfg = mqttConfig({ name: 'pin', url: broker.url, clientId: uniq('pin-session'), receiveMaximum: 100, subscriptions: [{ filter: topic, ref: 'x', fields: { id: { json: '$.id' } } }] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let emitted = 0;
    const sent: number[] = [];
    const received: number[] = [];
    const log = testLogger();
    const session = new MqttSession({
      config: cfg,
      subscriptions: [{ filter: topic, qos: 1 }],
      log,
      health: new HealthTracker(log),
      ctx: {
        emit: async (signals: Signal[]) => {
          emitted += signals.length;
          await gate;
        },
        deadLetter: () => undefined,
      },
      handle: (msg) => ({ signals: [{ source: 'pin', ref: 'x', value: msg.payload.toString(), quality: 'good', sourceTime: new Date().toISOString(), receivedAt: new Date().toISOString(), sourceId: `pin/${msg.payload.toString()}` }] }),
    });
    session.start();
    t.after(() => {
      release();
      return session.stop();
    });
    await waitFor(() => session.connected, 5000, 'session up');
    const client = (session as unknown as { conn: { client: MqttClient } }).conn.client;
    client.on('packetsend', (p) => {
      if (p.cmd === 'puback') sent.push((p as { messageId: number }).messageId);
    });
    client.on('message', (_t, _p, packet) => received.push(packet.messageId!));
    await new Promise((r) => setTimeout(r, 200));
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    void publishAll(pub, Array.from({ length: 150 }, (_, i) => ({ topic, payload: JSON.stringify({ id: i }) })));
    await waitFor(() => received.length >= 100, 5000, 'a full receive window');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received.length, 100);
    assert.ok(emitted >= 1 && emitted <= 100, 'a commit is in flight; the rest of the window waits for it');
    assert.equal(sent.length, 0, 'nothing acknowledged before the commit');
    release();
    await waitFor(() => sent.length >= 150, 5000, 'acks after the commit');
    assert.deepEqual(sent, received.slice(0, sent.length), 'PUBACKs in arrival order');
    assert.equal(session.counters.acksSent, 150);
    await session.stop();
    await pub.endAsync();
  });
});
