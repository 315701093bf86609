import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { AgentMetrics } from '../../../contracts/index.ts';
import { mqttBroker, type Broker } from '../../../test/helpers/services.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import { buildAgent } from '../../build-agent.ts';
import { parseAgentConfig } from '../../config/load.ts';
import { encodePayload } from '../sparkplug/codec.ts';
import { publishAll, publisher, uniq, waitFor } from './test-kit.ts';

/**
 * The mqtt and sparkplug drivers' counters on the agent's /metrics (DESIGN.md §8): a real agent (shadow
 * mode, status port 0) against the machine's Mosquitto (or one the helper starts), good and malformed
 * messages published, the figures read back from a scrape of GET /metrics.
 */

let broker: Broker;
before(async () => {
  broker = await mqttBroker();
});
after(async () => {
  await broker?.stop();
});

/** Prometheus text -> "name{labels}" -> value */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

void it('exports the mqtt and sparkplug driver counters on /metrics, collected at scrape time', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-mqtt-metrics-'));
  const prefix = uniq('metrics');
  const group = uniq('G');
  const yaml = `
agent: { id: metrics-test, plant: "1010", stateDir: ${join(dir, 'agent')}, mode: shadow }
status: { port: 0 }
hub: { url: "http://127.0.0.1:9", token: "\${HUB_TOKEN}" }
drivers:
  - type: mqtt
    name: cells
    url: ${broker.url}
    clientId: ${uniq('metrics-cells')}
    sessionExpiry: 30s
    maxPayloadBytes: 1KiB
    subscriptions:
      - { filter: "${prefix}/+machine/events", ref: "{machine}/events", fields: { id: { json: "$.id" }, time: { json: "$.ts" } } }
  - type: sparkplug
    name: edge
    url: ${broker.url}
    clientId: ${uniq('metrics-edge')}
    sessionExpiry: 30s
    groups: ["${group}"]
    onSeqGap: warn
    rebirthMinInterval: 10ms
`;
  const agent = buildAgent({ config: parseAgentConfig(yaml, join(dir, 'agent.yaml'), { env: { HUB_TOKEN: 'x' }, readFile: () => '' }).config, log: testLogger() });
  await agent.start();
  t.after(() => agent.stop());
  await waitFor(() => agent.health().drivers.every((d) => d.state === 'up'), 10_000, 'both drivers up');

  // before any message: every driver counter exists at 0, per driver
  let m = await scrape(agent.statusUrl);
  assert.equal(m.get(`${AgentMetrics.mqttMessagesReceived}{driver="cells"}`), 0);
  assert.equal(m.get(`${AgentMetrics.mqttMessagesReceived}{driver="edge"}`), 0);
  assert.equal(m.get(`${AgentMetrics.mqttConnects}{driver="cells"}`), 1);
  assert.equal(m.get(`${AgentMetrics.sparkplugBirths}{driver="edge"}`), 0);
  assert.equal(m.get(`${AgentMetrics.sparkplugBirths}{driver="cells"}`), undefined, 'sparkplug counters only for sparkplug drivers');

  // mqtt: 300 good, 40 not JSON, 20 without the id field (schema), 10 oversized, 5 on a topic no mapping takes
  const pub = await publisher(broker.url);
  t.after(() => pub.end(true));
  const items: Array<{ topic: string; payload: string }> = [];
  for (let i = 0; i < 300; i++) items.push({ topic: `${prefix}/M${i % 3}/events`, payload: JSON.stringify({ id: i, ts: new Date(Date.UTC(2026, 0, 1) + i).toISOString() }) });
  for (let i = 0; i < 40; i++) items.push({ topic: `${prefix}/M1/events`, payload: `{not json ${i}` });
  for (let i = 0; i < 20; i++) items.push({ topic: `${prefix}/M2/events`, payload: JSON.stringify({ ts: '2026-01-01T00:00:00.000Z' }) });
  for (let i = 0; i < 10; i++) items.push({ topic: `${prefix}/M0/events`, payload: JSON.stringify({ id: `big-${i}`, ts: '2026-01-01T00:00:00.000Z', pad: 'x'.repeat(2000) }) });
  // shuffled, so bad messages sit between good ones in the same batches
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  await publishAll(pub, items, 100);

  // sparkplug: NBIRTH, 5 NDATA, a seq gap, data from a node never born, NDEATH
  const sp = (type: string, edge: string) => `spBv1.0/${group}/${type}/${edge}`;
  const ts = Date.UTC(2026, 2, 1);
  await pub.publishAsync(sp('NBIRTH', 'E1'), encodePayload({ timestamp: ts, seq: 0, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 7 }, { name: 'Good', alias: 1, type: 'Int64', value: 100 }] }), { qos: 1 });
  for (let i = 1; i <= 5; i++) await pub.publishAsync(sp('NDATA', 'E1'), encodePayload({ timestamp: ts + i, seq: i, metrics: [{ alias: 1, type: 'Int64', value: 100 + i }] }), { qos: 1 });
  await pub.publishAsync(sp('NDATA', 'E1'), encodePayload({ timestamp: ts + 9, seq: 9, metrics: [{ alias: 1, type: 'Int64', value: 109 }, { alias: 99, type: 'Int64', value: 1 }] }), { qos: 1 });
  await pub.publishAsync(sp('NDATA', 'E2'), encodePayload({ timestamp: ts, seq: 3, metrics: [{ alias: 1, type: 'Int64', value: 1 }] }), { qos: 1 });
  await pub.publishAsync(sp('NDATA', 'E1'), Buffer.from([0xff, 0xff, 0xff, 0x01]), { qos: 1 });
  await pub.publishAsync(sp('NDEATH', 'E1'), encodePayload({ timestamp: ts + 20, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 7 }] }), { qos: 1 });

  const total = items.length;
  await waitFor(async () => {
    m = await scrape(agent.statusUrl);
    return m.get(`${AgentMetrics.mqttAcksSent}{driver="cells"}`) === total && m.get(`${AgentMetrics.mqttAcksSent}{driver="edge"}`) === 10 && m.get(`${AgentMetrics.mqttMessagesIgnored}{driver="edge"}`) === 3;
  }, 20_000, 'every message acknowledged');

  const cells = (name: string, extra = '') => m.get(`${name}{driver="cells"${extra}}`);
  assert.equal(cells(AgentMetrics.mqttMessagesReceived), total);
  assert.equal(cells(AgentMetrics.mqttSignalsCommitted), 300);
  assert.equal(cells(AgentMetrics.mqttDeadLetters, ',code="PAYLOAD_INVALID"'), 50);
  assert.equal(cells(AgentMetrics.mqttDeadLetters, ',code="SCHEMA_INVALID"'), 20);
  assert.equal(cells(AgentMetrics.mqttMessagesIgnored), 0);
  assert.equal(cells(AgentMetrics.mqttCommitFailures), 0);
  assert.equal(cells(AgentMetrics.mqttAcksDropped), 0);
  assert.ok(cells(AgentMetrics.mqttCommits)! >= 1 && cells(AgentMetrics.mqttCommits)! <= 300);
  // the agent's own per-driver signal count agrees with the driver's
  assert.equal(m.get(`${AgentMetrics.signalsReceived}{driver="cells"}`), 300);

  const edge = (name: string, extra = '') => m.get(`${name}{driver="edge"${extra}}`);
  // the 10 published + the driver's own 2 Rebirth requests (NCMD, QoS 0) under the subscribed spBv1.0/<group>/#
  assert.equal(edge(AgentMetrics.mqttMessagesReceived), 12);
  assert.equal(edge(AgentMetrics.sparkplugBirths), 1);
  assert.equal(edge(AgentMetrics.sparkplugDeaths), 1);
  assert.equal(edge(AgentMetrics.sparkplugSeqGaps), 1);
  assert.equal(edge(AgentMetrics.sparkplugUnknownNode), 1);
  assert.equal(edge(AgentMetrics.sparkplugUnknownAlias), 1);
  assert.equal(edge(AgentMetrics.sparkplugRebirthRequests), 2, 'one for the unborn node, one for the unknown alias (onSeqGap: warn asks none for the gap)');
  assert.equal(edge(AgentMetrics.mqttDeadLetters, ',code="PAYLOAD_INVALID"'), 1);
  assert.equal(edge(AgentMetrics.mqttMessagesIgnored), 3, 'the NDATA of the unborn node and the two NCMD');
  // 1 birth metric + 5 data + 1 after the gap (the unknown alias is skipped) + 1 stale on death
  assert.equal(edge(AgentMetrics.mqttSignalsCommitted), 8);
  assert.equal(edge(AgentMetrics.sparkplugEdgeNodes, ',state="offline"'), 1);
  assert.equal(edge(AgentMetrics.sparkplugEdgeNodes, ',state="online"'), 0);
  assert.equal(agent.health().drivers.length, 2);
});
