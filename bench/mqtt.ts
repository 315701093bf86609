/**
 * MQTT benchmark (DESIGN.md §8, issue 4).
 *
 *   ./node_modules/.bin/node bench/mqtt.ts [--json] [--events 30000] [--runs 5] [--receive-maximum n] [--only raw|driver]
 *
 * durable_ingest: QoS 1 events/s committed to the outbox (synchronous FULL) and acknowledged only after
 * the commit, by the mqtt driver; baseline: a bare mqtt.js v5 QoS 1 subscriber (acks at once, counts only)
 * draining the same stream from the same private Mosquitto in the same run. Each run queues N events for
 * an offline persistent session, then times the consumer from connect until all N are counted (baseline)
 * or committed and acknowledged (driver), so the publisher is never the bottleneck. Runs are interleaved;
 * medians are reported. Every run asserts that no message was lost.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'mqtt';
import { create } from '../agent/drivers/mqtt/mqtt-driver.ts';
import { mqttConfig, outboxHarness, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from '../agent/drivers/mqtt/test-kit.ts';

interface Options {
  events: number;
  runs: number;
  json: boolean;
  /** the driver's receiveMaximum (default: the driver default) */
  receiveMaximum?: number;
  /** run one side only (for a CPU profile of it): no ratio is reported */
  only?: 'raw' | 'driver';
}

function parseArgs(argv: string[]): Options {
  const o: Options = { events: 30_000, runs: 5, json: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') o.json = true;
    else if (argv[i] === '--events') o.events = Number(argv[++i]);
    else if (argv[i] === '--runs') o.runs = Number(argv[++i]);
    else if (argv[i] === '--receive-maximum') o.receiveMaximum = Number(argv[++i]);
    else if (argv[i] === '--only') o.only = argv[++i] === 'raw' ? 'raw' : 'driver';
  }
  return o;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function payload(i: number): string {
  // ~300 bytes, like a cell controller's cycle event
  return JSON.stringify({
    eventId: `c-${String(i).padStart(9, '0')}`,
    ts: new Date(Date.UTC(2026, 10, 27, 8) + i).toISOString(),
    order: `10001${String(i % 97).padStart(2, '0')}`,
    op: '0020',
    good: 1,
    scrap: 0,
    cycleMs: 4200 + (i % 300),
    station: 'robot1',
    note: 'x'.repeat(150),
  });
}

async function queueFor(broker: TestBroker, topicBase: string, n: number): Promise<void> {
  const pub = await publisher(broker.url);
  await publishAll(
    pub,
    Array.from({ length: n }, (_, i) => ({ topic: `${topicBase}/M${i % 8}/cycle`, payload: payload(i) })),
    1000,
  );
  await pub.endAsync();
}

/** PB_BENCH_MARKS=1: phase marks on stderr in the CPU profile's clock (µs), to profile one phase only. */
function mark(what: string): void {
  if (process.env.PB_BENCH_MARKS) process.stderr.write(`MARK ${what} ${process.hrtime.bigint() / 1000n}\n`);
}

/** The raw limit: mqtt.js v5, QoS 1, acks as soon as the handler returns, counts. */
async function rawRun(broker: TestBroker, n: number): Promise<number> {
  const topicBase = uniq('bench/raw');
  const clientId = uniq('raw');
  const opts = { clientId, clean: false, protocolVersion: 5 as const, reconnectPeriod: 0, properties: { sessionExpiryInterval: 300 } };
  const setup = connect(broker.url, opts);
  await new Promise<void>((r) => setup.once('connect', () => r()));
  await setup.subscribeAsync(`${topicBase}/+/cycle`, { qos: 1 });
  await setup.endAsync();
  await queueFor(broker, topicBase, n);
  let count = 0;
  const started = performance.now();
  const sub = connect(broker.url, opts);
  sub.on('message', () => count++);
  await waitFor(() => count >= n, 120_000, `raw subscriber to count ${n}`);
  const seconds = (performance.now() - started) / 1000;
  await sub.endAsync();
  assert.equal(count, n, 'raw subscriber lost or doubled messages');
  return n / seconds;
}

/** The product: mqtt driver → outbox (FULL) → PUBACK after commit. */
async function driverRun(broker: TestBroker, n: number, receiveMaximum?: number): Promise<number> {
  const topicBase = uniq('bench/drv');
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-mqtt-'));
  const h = outboxHarness('cells', dir);
  const cfg = mqttConfig({
    name: 'cells',
    url: broker.url,
    clientId: uniq('drv'),
    ...(receiveMaximum ? { receiveMaximum } : {}),
    subscriptions: [{ filter: `${topicBase}/+machine/cycle`, ref: '{machine}/cycle', fields: { id: { json: '$.eventId' }, time: { json: '$.ts' } } }],
  });
  const setup = create(cfg, h.ctx);
  await setup.start();
  await waitFor(() => setup.health().state === 'up', 10_000, 'driver up');
  await setup.stop();
  await queueFor(broker, topicBase, n);
  const started = performance.now();
  mark('driver-start');
  const d = create(cfg, h.ctx);
  await d.start();
  await waitFor(() => {
    const s = d.stats();
    return s.committed >= n && s.acksSent >= n;
  }, 120_000, `driver to commit and ack ${n}`);
  const seconds = (performance.now() - started) / 1000;
  mark('driver-end');
  await d.stop();
  const rows = h.outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM events')[0].n;
  h.close();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(rows, n, 'driver lost or doubled messages');
  return n / seconds;
}

export async function benchMqtt(o: Options): Promise<Array<Record<string, unknown>>> {
  const broker = await startBroker();
  try {
    // warm-up (JIT, broker, page cache): not measured
    await rawRun(broker, Math.min(5000, o.events));
    await driverRun(broker, Math.min(5000, o.events), o.receiveMaximum);
    if (o.only) {
      const rates: number[] = [];
      for (let r = 0; r < o.runs; r++) rates.push(o.only === 'raw' ? await rawRun(broker, o.events) : await driverRun(broker, o.events, o.receiveMaximum));
      return [{ bench: 'mqtt', metric: o.only === 'raw' ? 'raw_only' : 'driver_only', value: Math.round(median(rates)), unit: 'events/s' }];
    }
    const raw: number[] = [];
    const drv: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      raw.push(await rawRun(broker, o.events));
      drv.push(await driverRun(broker, o.events, o.receiveMaximum));
      if (!o.json) console.log(`run ${r + 1}: raw ${Math.round(raw[r])}/s, driver ${Math.round(drv[r])}/s, ratio ${(drv[r] / raw[r]).toFixed(2)}`);
    }
    const value = Math.round(median(drv));
    const baseline = Math.round(median(raw));
    return [
      {
        bench: 'mqtt',
        metric: 'durable_ingest',
        value,
        unit: 'events/s',
        baseline: 'bare mqtt.js v5 QoS 1 subscriber counting the same stream (same broker, same run)',
        baseline_value: baseline,
        ratio: Math.round((value / baseline) * 1000) / 1000,
      },
    ];
  } finally {
    await broker.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const o = parseArgs(process.argv.slice(2));
  const results = await benchMqtt(o);
  for (const r of results) {
    if (o.json) console.log(JSON.stringify(r));
    else console.log(`${r.metric}: ${r.value} ${r.unit} vs ${r.baseline_value} raw → ratio ${r.ratio} (medians of ${o.runs} interleaved runs, ${o.events} events each)`);
  }
  process.exit(0);
}
