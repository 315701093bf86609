import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { parseConfig, type Signal } from '../../../contracts/index.ts';
import { deadLetterKey } from '../mqtt/mapping.ts';
import { countEvents, outboxHarness, publisher, startBroker, uniq, waitFor, type TestBroker } from '../mqtt/test-kit.ts';
import { encodePayload } from './codec.ts';
import { sparkplugConfigSchema, type SparkplugConfig } from './config.ts';
import { checkLive, create } from './sparkplug-driver.ts';

/**
 * Births, data, a seq gap, a death and a rebirth published by Eclipse Tahu's sparkplug-client (an
 * independent Sparkplug B implementation) through a real Mosquitto.
 */

const require = createRequire(import.meta.url);
interface TahuClient {
  seq: number;
  client: { end(force?: boolean): void; stream: { destroy(): void } };
  on(ev: string, fn: (...a: any[]) => void): void;
  publishNodeBirth(p: unknown): void;
  publishDeviceBirth(device: string, p: unknown): void;
  publishNodeData(p: unknown): void;
  publishDeviceData(device: string, p: unknown): void;
  publishDeviceDeath(device: string, p: unknown): void;
  stop(): void;
}
const tahu = require('sparkplug-client') as { newClient(cfg: Record<string, unknown>): TahuClient };

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

function config(group: string, extra: Record<string, unknown> = {}): SparkplugConfig {
  return parseConfig(sparkplugConfigSchema, {
    type: 'sparkplug',
    name: 'edge',
    url: broker.url,
    clientId: uniq('sp-host'),
    groups: [group],
    rebirthMinInterval: '100ms',
    ...extra,
  }) as SparkplugConfig;
}

function edgeNode(group: string, edge: string): Promise<TahuClient> {
  const c = tahu.newClient({ serverUrl: broker.url, groupId: group, edgeNode: edge, clientId: uniq('tahu'), username: 'tahu', password: 'x', version: 'spBv1.0', publishDeath: true });
  return new Promise((resolve) => c.on('birth', () => resolve(c)));
}

let clock = Date.UTC(2026, 2, 1, 8);
const now = () => (clock += 10);

function births(c: TahuClient, good: number): void {
  c.publishNodeBirth({
    timestamp: now(),
    metrics: [
      { name: 'Node Control/Rebirth', type: 'Boolean', value: false },
      { name: 'Good', alias: 1, type: 'Int64', value: good },
      { name: 'Order', alias: 2, type: 'String', value: '4711/0010' },
    ],
  });
  c.publishDeviceBirth('Press1', { timestamp: now(), metrics: [{ name: 'Temp', alias: 10, type: 'Double', value: 20.5 }, { name: 'Running', alias: 11, type: 'Boolean', value: true }] });
}

void describe('sparkplug driver with Eclipse Tahu edge nodes', () => {
  void it('births as baseline, data by alias, a seq gap → Rebirth, a death → bad quality, a rebirth → baseline again', async (t) => {
    const group = uniq('G');
    const h = outboxHarness('edge');
    t.after(() => h.close());
    const seen: Signal[] = [];
    const emit = h.ctx.emit;
    h.ctx.emit = async (signals) => {
      await emit(signals);
      seen.push(...signals);
    };
    const d = create(config(group, { primaryHost: { hostId: 'plantbridge' } }), h.ctx);
    t.after(() => d.stop());
    const states: Array<{ online: boolean }> = [];
    const watcher = await publisher(broker.url);
    t.after(() => watcher.end(true));
    watcher.on('message', (_t, p) => p.length > 0 && states.push(JSON.parse(p.toString()) as { online: boolean }));
    await watcher.subscribeAsync('spBv1.0/STATE/plantbridge', { qos: 1 });
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    await waitFor(() => states.some((s) => s.online), 5000, 'primary host STATE online');

    const node = await edgeNode(group, 'E1');
    t.after(() => node.client.end(true));
    let rebirths = 0;
    node.on('ncmd', (payload: { metrics: Array<{ name: string; value: unknown }> }) => {
      if (payload.metrics.some((m) => m.name === 'Node Control/Rebirth' && m.value === true)) {
        rebirths++;
        births(node, 2000);
      }
    });
    births(node, 1000);
    await waitFor(() => seen.filter((s) => s.baseline).length >= 4, 5000, 'birth metrics');
    const baseline = seen.filter((s) => s.baseline).map((s) => [s.ref, s.value]);
    assert.deepEqual(baseline.sort(), [
      [`${group}/E1/Good`, 1000],
      [`${group}/E1/Order`, '4711/0010'],
      [`${group}/E1/Press1/Running`, true],
      [`${group}/E1/Press1/Temp`, 20.5],
    ].sort());

    // data by alias only (no names)
    for (let i = 1; i <= 5; i++) {
      node.publishNodeData({ timestamp: now(), metrics: [{ alias: 1, type: 'Int64', value: 1000 + i }] });
      node.publishDeviceData('Press1', { timestamp: now(), metrics: [{ alias: 10, type: 'Double', value: 20.5 + i }] });
    }
    await waitFor(() => seen.filter((s) => !s.baseline).length >= 10, 5000, 'data');
    const data = seen.filter((s) => !s.baseline);
    assert.deepEqual(data.filter((s) => s.ref.endsWith('/Good')).map((s) => s.value), [1001, 1002, 1003, 1004, 1005]);
    assert.deepEqual(data.filter((s) => s.ref.endsWith('/Press1/Temp')).map((s) => s.value), [21.5, 22.5, 23.5, 24.5, 25.5]);
    assert.ok(data.every((s) => s.quality === 'good'));
    assert.equal(d.stats().rebirthRequests, 0);

    // a seq gap: the edge node skips two sequence numbers → the host asks for a Rebirth → births again
    node.seq += 2;
    node.publishNodeData({ timestamp: now(), metrics: [{ alias: 1, type: 'Int64', value: 1010 }] });
    await waitFor(() => rebirths >= 1, 5000, 'Rebirth request (NCMD) reaching the edge node');
    await waitFor(() => seen.filter((s) => s.baseline && s.value === 2000).length >= 1, 5000, 'baseline after rebirth');
    assert.equal(d.stats().seqGaps, 1);
    assert.ok(seen.some((s) => s.value === 1010), 'the message after the gap is still committed');

    // a death (graceful NDEATH from Tahu): every metric of the node and its device goes bad
    const before = seen.length;
    node.stop();
    await waitFor(() => seen.slice(before).filter((s) => s.quality === 'bad').length >= 4, 5000, 'stale signals');
    const stale = seen.slice(before).filter((s) => s.quality === 'bad');
    assert.deepEqual(stale.map((s) => s.ref).sort(), [`${group}/E1/Good`, `${group}/E1/Order`, `${group}/E1/Press1/Running`, `${group}/E1/Press1/Temp`]);
    assert.ok(stale.every((s) => s.value === null));
    assert.deepEqual(d.nodes(), [{ node: `${group}/E1`, online: false, bdSeq: '0', devices: 1 }]);

    // the node comes back (same bdSeq with Tahu): a new birth, new keys, committed as baseline
    const again = await edgeNode(group, 'E1');
    t.after(() => again.client.end(true));
    births(again, 3000);
    await waitFor(() => seen.some((s) => s.baseline && s.value === 3000), 5000, 'rebirth after death');
    assert.equal(d.nodes()[0].online, true);

    // everything reached the outbox exactly once
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(countEvents(h.outbox), new Set(seen.map((s) => s.sourceId)).size);
    assert.equal(countEvents(h.outbox), seen.length);

    await d.stop();
    await waitFor(() => states.at(-1)?.online === false, 5000, 'primary host STATE offline');
    again.stop();
  });

  void it('asks for a Rebirth when data comes from a node it has not seen born (after an agent restart)', async (t) => {
    const group = uniq('G');
    const h = outboxHarness('edge');
    t.after(() => h.close());
    const node = await edgeNode(group, 'E2');
    t.after(() => node.client.end(true));
    let asked = 0;
    node.on('ncmd', () => {
      asked++;
      births(node, 5);
    });
    births(node, 1);
    const d = create(config(group), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    node.publishNodeData({ timestamp: now(), metrics: [{ alias: 1, type: 'Int64', value: 2 }] });
    await waitFor(() => asked >= 1, 5000, 'Rebirth request');
    await waitFor(() => countEvents(h.outbox) >= 4, 5000, 'births after the request');
    assert.equal(d.stats().unknownNode, 1);
  });

  void it('dead-letters payloads that are not Sparkplug B, and checkLive reports groups and nodes', async (t) => {
    const group = uniq('G');
    const h = outboxHarness('edge');
    t.after(() => h.close());
    const d = create(config(group), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 5000, 'driver up');
    const pub = await publisher(broker.url);
    t.after(() => pub.end(true));
    // the same bytes twice (as a redelivery would bring them): one open dead letter, both counted
    await pub.publishAsync(`spBv1.0/${group}/NBIRTH/E3`, Buffer.from([0xff, 0xff, 0xff, 0x01]), { qos: 1 });
    await pub.publishAsync(`spBv1.0/${group}/NBIRTH/E3`, Buffer.from([0xff, 0xff, 0xff, 0x01]), { qos: 1 });
    await pub.publishAsync(`spBv1.0/${group}/NBIRTH/E3`, Buffer.from([0xff, 0xff, 0xff, 0x02]), { qos: 1 });
    await waitFor(() => (d.stats().deadLettered.PAYLOAD_INVALID ?? 0) >= 3, 5000, 'three dead-lettered messages');
    const dead = h.outbox.listDeadLetters();
    assert.equal(dead.length, 2);
    assert.match(dead[0].reason, /not a Sparkplug B payload/);
    assert.equal(dead[0].code, 'PAYLOAD_INVALID');
    assert.deepEqual(dead.map((x) => x.dedupeKey).sort(), [Buffer.from([0xff, 0xff, 0xff, 0x01]), Buffer.from([0xff, 0xff, 0xff, 0x02])].map((b) => deadLetterKey('edge', `spBv1.0/${group}/NBIRTH/E3`, b)).sort());

    const timer = setInterval(() => {
      void pub.publishAsync(`spBv1.0/${group}/NDATA/E4`, encodePayload({ timestamp: Date.now(), seq: 1, metrics: [{ name: 'x', type: 'Int32', value: 1 }] }));
    }, 100);
    const r = await checkLive(config(group), { durationMs: 800 });
    clearInterval(timer);
    assert.equal(r.ok, true);
    assert.ok(r.filters[0].byType.NDATA >= 3);
    assert.deepEqual(r.filters[0].nodes, [`${group}/E4`]);
  });
});
