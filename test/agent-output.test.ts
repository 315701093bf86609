import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { AgentMetrics } from '../contracts/metrics-names.ts';
import { freePort, mqttBroker } from './helpers/services.ts';

/**
 * What an operator sees of a running agent with an OPC UA line and an MQTT cell: stdout is JSON log lines
 * only (node-opcua's own messages included), each driver line names its driver once, and /metrics has
 * each driver's counters under its own protocol's names.
 */

const AGENT = resolve(import.meta.dirname, '..', 'agent', 'cli.ts');

test('agent run: JSON lines only, one driver key per line, OPC UA counters under OPC UA names', async () => {
  const { startLineServer } = await import('./plant-sim/opcua-line-server.ts');
  const plc = await startLineServer({ params: { intervalMs: 100, partsPerTick: 5, scrapEvery: 20, orderSize: 300, firstOrder: 1000100, operation: '0010', counterBits: 32 } });
  const broker = await mqttBroker();
  const dir = mkdtempSync(join(tmpdir(), 'pb-agent-output-'));
  const statusPort = await freePort();
  writeFileSync(
    join(dir, 'agent.yaml'),
    `agent: { id: output-test, plant: "1010", stateDir: ${join(dir, 'state')}, mode: shadow }
status: { port: ${statusPort} }
hub: { url: "http://127.0.0.1:9", token: "\${T}" }
drivers:
  - name: line1
    type: opcua
    endpoint: ${plc.endpoint}
    securityMode: None
    securityPolicy: None
    allowInsecure: true
    publishingInterval: 100ms
    nodes:
      - { ref: good, nodeId: "${plc.nodeIds.good}", samplingInterval: 100ms }
      - { ref: order, nodeId: "${plc.nodeIds.order}", samplingInterval: 100ms }
  - name: cell
    type: mqtt
    url: ${broker.url}
    clientId: output-test-${process.pid}
    subscriptions:
      - { filter: output-test/+machine/events, ref: "{machine}/events", fields: { id: { json: $.id } } }
`,
  );
  let stdout = '';
  let stderr = '';
  const child = spawn(process.execPath, [AGENT, 'run', '-c', join(dir, 'agent.yaml')], { env: { ...process.env, T: 'output-test-token-0123456789' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (stdout += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const scrape = async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    } catch {
      return '';
    }
  };
  try {
    let metrics = '';
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      metrics = await scrape();
      if (new RegExp(`${AgentMetrics.opcuaNotifications}\\{driver="line1"\\} [1-9]`).test(metrics) && new RegExp(`${AgentMetrics.mqttConnects}\\{driver="cell"\\} 1`).test(metrics)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(metrics, new RegExp(`${AgentMetrics.opcuaConnects}\\{driver="line1"\\} 1\\n`), `${metrics}\n${stdout}${stderr}`);
    assert.match(metrics, new RegExp(`${AgentMetrics.opcuaSessionsCreated}\\{driver="line1"\\} 1\\n`));
    assert.match(metrics, new RegExp(`${AgentMetrics.opcuaSubscriptionsCreated}\\{driver="line1"\\} 1\\n`));
    assert.match(metrics, new RegExp(`${AgentMetrics.opcuaSignalsCommitted}\\{driver="line1"\\} [1-9]`));
    assert.match(metrics, new RegExp(`${AgentMetrics.opcuaMonitoredItems}\\{driver="line1",state="ok"\\} 2\\n`));
    for (const name of [AgentMetrics.opcuaWatchdogRecreations, AgentMetrics.opcuaRepublished, AgentMetrics.opcuaMessagesLost, AgentMetrics.opcuaSessionsReactivated, AgentMetrics.opcuaSubscriptionsTransferred]) {
      assert.match(metrics, new RegExp(`${name}\\{driver="line1"\\} 0\\n`), name);
    }
    // the MQTT names carry MQTT drivers only, and OPC UA names OPC UA drivers only
    assert.match(metrics, new RegExp(`${AgentMetrics.mqttConnects}\\{driver="cell"\\} 1\\n`));
    assert.doesNotMatch(metrics, /plantbridge_agent_mqtt_\w+\{driver="line1"/);
    assert.doesNotMatch(metrics, /plantbridge_agent_(opcua|sparkplug)_\w+\{driver="cell"/);
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    await plc.stop();
    await broker.stop();
  }
  const lines = stdout.split('\n').filter((l) => l !== '');
  const records = lines.map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return assert.fail(`not a JSON log line on stdout: ${l}`);
    }
  });
  // node-opcua's own message on the first connect with a fresh PKI folder, as a log line
  assert.ok(records.some((r) => r.library === 'node-opcua' && /Creating default certificate/.test(String(r.msg))), 'node-opcua routed into the log');
  const driverLines = lines.filter((l) => l.includes('"driver":'));
  assert.ok(driverLines.some((l) => l.includes('"driver":"line1"')) && driverLines.some((l) => l.includes('"driver":"cell"')));
  for (const l of driverLines) assert.equal(l.split('"driver":').length - 1, 1, `one driver key: ${l}`);
  assert.equal(records.at(-1)?.msg, 'Stopped');
});
