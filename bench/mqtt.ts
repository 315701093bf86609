/**
 * MQTT benchmark (DESIGN.md §8, issue 4).
 *
 *   ./node_modules/.bin/node bench/mqtt.ts [--json] [--events 30000] [--runs 5] [--receive-maximum n] [--only raw|driver] [--window 1000]
 *
 * durable_ingest: QoS 1 events/s committed to the outbox (synchronous FULL) and acknowledged only after
 * the commit, by the mqtt driver; baseline: a bare mqtt.js v5 QoS 1 subscriber (acks at once, counts only)
 * draining the same stream from the same private Mosquitto in the same run. Each run queues N events for
 * an offline persistent session, then times the consumer from connect until all N are counted (baseline)
 * or committed and acknowledged (driver), so the publisher is never the bottleneck. Runs are interleaved;
 * medians are reported. Every run asserts that no message was lost.
 *
 * durable_ingest_live: the same consumers, connected and subscribed first, while a publisher in a separate
 * process publishes the N events as fast as it can (QoS 1, at most --window unacknowledged); timed from
 * the publisher's first publish until the consumer has counted (raw) or committed and acknowledged
 * (driver) all N. The publisher shares the machine's cores with broker and consumer, as on a plant server.
 * Raw and driver runs are interleaved; medians are reported. --only runs the durable_ingest side only.
 *
 * durable_ceiling: what the building blocks alone allow on this machine, measured in the same run: the bare
 * subscriber (acks at once) hands each message's topic and bytes to a worker thread that inserts them with a
 * bare better-sqlite3 statement into a table with a UNIQUE key (1000 rows per FULL commit, no checkpoints)
 * and counts the committed rows. No mapping, no dedupe logic, no held acks, no back-pressure: no durable
 * path can be faster. Its ratio to the bare subscriber is the highest durable_ingest ratio this machine can
 * show; `of_ceiling` is the driver's rate over it.
 *
 * The driver's commit thread is started (prepare()) before the clock starts: it starts once per agent
 * start (~0.4 s of CPU loading its code), like opening the outbox, which the harness does beforehand too.
 * PB_BENCH_CPU=1 prints, per durable_ingest run, the CPU time per event of the consumer's main thread, the
 * commit thread and the Mosquitto process (Linux /proc), on stderr.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { connect } from 'mqtt';
import { create } from '../agent/drivers/mqtt/mqtt-driver.ts';
import { mqttConfig, outboxHarness, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from '../agent/drivers/mqtt/test-kit.ts';

interface Options {
  events: number;
  runs: number;
  json: boolean;
  /** the driver's receiveMaximum (default: the driver default) */
  receiveMaximum?: number;
  /** the driver's maxBatch (default: the driver default) */
  maxBatch?: number;
  /** run one side only (for a CPU profile of it): no ratio is reported */
  only?: 'raw' | 'driver';
  /** durable_ingest_live: the publisher's unacknowledged QoS 1 publishes at most */
  window: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { events: 30_000, runs: 5, json: false, window: 1000 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') o.json = true;
    else if (argv[i] === '--events') o.events = Number(argv[++i]);
    else if (argv[i] === '--runs') o.runs = Number(argv[++i]);
    else if (argv[i] === '--receive-maximum') o.receiveMaximum = Number(argv[++i]);
    else if (argv[i] === '--max-batch') o.maxBatch = Number(argv[++i]);
    else if (argv[i] === '--only') o.only = argv[++i] === 'raw' ? 'raw' : 'driver';
    else if (argv[i] === '--window') o.window = Number(argv[++i]);
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

/** CPU time (user + system) of another process so far, µs, from /proc (Linux; 0 elsewhere) */
function procCpuUs(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
  } catch {
    return 0;
  }
}

/** PB_BENCH_MARKS=1: phase marks on stderr in the CPU profile's clock (µs), to profile one phase only. */
function mark(what: string): void {
  if (process.env.PB_BENCH_MARKS) process.stderr.write(`MARK ${what} ${process.hrtime.bigint() / 1000n}\n`);
}

/**
 * A persistent QoS 1 session of a bare mqtt.js v5 client with `n` events queued for it by the broker
 * while it was offline; connecting with `opts` starts the drain.
 */
async function queuedSession(broker: TestBroker, name: string, n: number) {
  const topicBase = uniq(`bench/${name}`);
  const clientId = uniq(name);
  const opts = { clientId, clean: false, protocolVersion: 5 as const, reconnectPeriod: 0, properties: { sessionExpiryInterval: 300 } };
  const setup = connect(broker.url, opts);
  await new Promise<void>((r) => setup.once('connect', () => r()));
  await setup.subscribeAsync(`${topicBase}/+/cycle`, { qos: 1 });
  await setup.endAsync();
  await queueFor(broker, topicBase, n);
  return { clientId, opts };
}

/** The raw limit: mqtt.js v5, QoS 1, acks as soon as the handler returns, counts. */
async function rawRun(broker: TestBroker, n: number): Promise<number> {
  const { opts } = await queuedSession(broker, 'raw', n);
  let count = 0;
  const started = performance.now();
  const mainCpu = process.threadCpuUsage();
  const brokerCpu = procCpuUs(broker.process.pid);
  const sub = connect(broker.url, opts);
  sub.on('message', () => count++);
  await waitFor(() => count >= n, 120_000, `raw subscriber to count ${n}`);
  const seconds = (performance.now() - started) / 1000;
  const mainUsed = process.threadCpuUsage(mainCpu);
  if (process.env.PB_BENCH_CPU) console.error(`raw µs CPU per event: main ${((mainUsed.user + mainUsed.system) / n).toFixed(2)} broker ${((procCpuUs(broker.process.pid) - brokerCpu) / n).toFixed(2)} rate ${Math.round(n / seconds)}`);
  await sub.endAsync();
  assert.equal(count, n, 'raw subscriber lost or doubled messages');
  return n / seconds;
}

/** The ceiling's worker: a bare better-sqlite3 batched insert (FULL), no checkpoints; answers rows committed. */
const CEILING_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('wal_autocheckpoint = 0');
db.exec('CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, source_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL, received_at INTEGER NOT NULL)');
const ins = db.prepare('INSERT OR IGNORE INTO events(source_id, topic, payload, received_at) VALUES (?, ?, ?, ?)');
const commit = db.transaction((m) => {
  const now = Date.now();
  let n = 0;
  for (let i = 0; i < m.topics.length; i++) n += ins.run(workerData.prefix + (m.first + i), m.topics[i], m.payloads[i], now).changes;
  return n;
});
parentPort.on('message', (m) => {
  if (m === 'count') return parentPort.postMessage({ rows: db.prepare('SELECT COUNT(*) AS n FROM events').get().n });
  parentPort.postMessage({ committed: commit(m) });
});
`;

/** The building blocks' limit: the bare subscriber + a bare batched SQLite insert in a worker (see the header). */
async function ceilingRun(broker: TestBroker, n: number): Promise<number> {
  const { clientId, opts } = await queuedSession(broker, 'ceil', n);
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-ceiling-'));
  const worker = new Worker(CEILING_WORKER, { eval: true, workerData: { sqlite: createRequire(import.meta.url).resolve('better-sqlite3'), path: join(dir, 'ceiling.db'), prefix: `${clientId}:` } });
  await new Promise<void>((resolve, reject) => {
    worker.once('online', () => resolve());
    worker.once('error', reject);
  });
  let committed = 0;
  let rows = -1;
  worker.on('message', (m: { committed?: number; rows?: number }) => {
    if (m.committed !== undefined) committed += m.committed;
    if (m.rows !== undefined) rows = m.rows;
  });
  let topics: string[] = [];
  let payloads: Buffer[] = [];
  let first = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (topics.length === 0) return;
    worker.postMessage({ topics, payloads, first });
    first += topics.length;
    topics = [];
    payloads = [];
  };
  const started = performance.now();
  const sub = connect(broker.url, opts);
  sub.on('message', (topic, payload) => {
    topics.push(topic);
    payloads.push(payload);
    if (topics.length >= 1000) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  await waitFor(() => committed >= n, 120_000, `ceiling to commit ${n}`);
  const seconds = (performance.now() - started) / 1000;
  await sub.endAsync();
  worker.postMessage('count');
  await waitFor(() => rows >= 0, 10_000, 'ceiling row count');
  await worker.terminate();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(rows, n, 'ceiling lost or doubled messages');
  return n / seconds;
}

/** process CPU (user + system) per event of the last driverRun, µs: steadier than a rate on a busy machine */
let lastDriverCpuUs = 0;

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
    ...(benchMaxBatch ? { maxBatch: benchMaxBatch } : {}),
    subscriptions: [{ filter: `${topicBase}/+machine/cycle`, ref: '{machine}/cycle', fields: { id: { json: '$.eventId' }, time: { json: '$.ts' } } }],
  });
  const setup = create(cfg, h.ctx);
  await setup.start();
  await waitFor(() => setup.health().state === 'up', 10_000, 'driver up');
  await setup.stop();
  await queueFor(broker, topicBase, n);
  const d = create(cfg, h.ctx);
  // the commit thread starts once per agent start, like opening the outbox: not part of the drain
  await d.prepare();
  const started = performance.now();
  const cpu = process.cpuUsage();
  const mainCpu = process.threadCpuUsage();
  const brokerCpu = procCpuUs(broker.process.pid);
  const threadCpu = d.threadCpuMicros();
  mark('driver-start');
  await d.start();
  await waitFor(() => {
    const s = d.stats();
    return s.committed >= n && s.acksSent >= n;
  }, 120_000, `driver to commit and ack ${n}`);
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  lastDriverCpuUs = (used.user + used.system) / n;
  const mainUsed = process.threadCpuUsage(mainCpu);
  if (process.env.PB_BENCH_CPU) console.error(`µs CPU per event: main ${((mainUsed.user + mainUsed.system) / n).toFixed(2)} thread ${((d.threadCpuMicros() - threadCpu) / n).toFixed(2)} broker ${((procCpuUs(broker.process.pid) - brokerCpu) / n).toFixed(2)}`);
  mark('driver-end');
  await d.stop();
  const rows = h.outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM events')[0].n;
  h.close();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(rows, n, 'driver lost or doubled messages');
  return n / seconds;
}

/**
 * The live publisher, in its own process (`bench/mqtt.ts --publish <url> <topicBase> <n> <window>`):
 * connects, builds the payloads, says "connected", waits for "go" on stdin, then publishes with at most
 * `window` QoS 1 publishes unacknowledged, and exits when the broker has acknowledged all.
 */
async function publisherChild(url: string, topicBase: string, n: number, window: number): Promise<void> {
  const pub = await publisher(url, { clientId: uniq('live-pub') });
  const topics = Array.from({ length: 8 }, (_, m) => `${topicBase}/M${m}/cycle`);
  const payloads = Array.from({ length: n }, (_, i) => payload(i));
  process.stdout.write('connected\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  const started = performance.now();
  let sent = 0;
  let acked = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (sent < n && sent - acked < window) {
        const i = sent++;
        pub.publish(topics[i % 8], payloads[i], { qos: 1 }, (err) => {
          if (err) return reject(err);
          if (++acked === n) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  process.stdout.write(`published ${Math.round(n / ((performance.now() - started) / 1000))}\n`);
  await pub.endAsync();
}

/** Starts the live publisher and resolves once it is connected; `go()` starts publishing. */
async function livePublisher(broker: TestBroker, topicBase: string, n: number, window: number): Promise<{ go(): void; done: Promise<number> }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--publish', broker.url, topicBase, String(n), String(window)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  /** resolves with the publisher's own rate (publishes acknowledged by the broker per second) */
  const done = new Promise<number>((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(Number(/published (\d+)/.exec(out)?.[1] ?? NaN)) : reject(new Error(`live publisher exited with ${code}`)))),
  );
  done.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', () => out.includes('connected') && resolve());
    child.once('exit', () => reject(new Error('live publisher exited before it connected')));
  });
  return { go: () => child.stdin!.end('go\n'), done };
}

/** the live publisher's own rate in the last live run, for the text output */
let lastPublisherRate = NaN;

/** Live, raw: a bare mqtt.js v5 QoS 1 subscriber, subscribed before the publisher starts. */
async function rawLiveRun(broker: TestBroker, n: number, window: number): Promise<number> {
  const topicBase = uniq('bench/rawlive');
  let count = 0;
  const sub = connect(broker.url, { clientId: uniq('rawlive'), clean: true, protocolVersion: 5, reconnectPeriod: 0 });
  await new Promise<void>((r) => sub.once('connect', () => r()));
  sub.on('message', () => count++);
  await sub.subscribeAsync(`${topicBase}/+/cycle`, { qos: 1 });
  const pub = await livePublisher(broker, topicBase, n, window);
  const started = performance.now();
  pub.go();
  await waitFor(() => count >= n, 120_000, `raw live subscriber to count ${n}`);
  const seconds = (performance.now() - started) / 1000;
  lastPublisherRate = await pub.done;
  await sub.endAsync();
  assert.equal(count, n, 'raw live subscriber lost or doubled messages');
  return n / seconds;
}

/** Live, the product: the mqtt driver (up and subscribed) → outbox (FULL) → PUBACK after commit. */
async function driverLiveRun(broker: TestBroker, n: number, window: number, receiveMaximum?: number): Promise<number> {
  const topicBase = uniq('bench/drvlive');
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-mqtt-'));
  const h = outboxHarness('cells', dir);
  const cfg = mqttConfig({
    name: 'cells',
    url: broker.url,
    clientId: uniq('drvlive'),
    ...(receiveMaximum ? { receiveMaximum } : {}),
    ...(benchMaxBatch ? { maxBatch: benchMaxBatch } : {}),
    subscriptions: [{ filter: `${topicBase}/+machine/cycle`, ref: '{machine}/cycle', fields: { id: { json: '$.eventId' }, time: { json: '$.ts' } } }],
  });
  const d = create(cfg, h.ctx);
  await d.start();
  await waitFor(() => d.health().state === 'up', 10_000, 'driver up');
  const pub = await livePublisher(broker, topicBase, n, window);
  const started = performance.now();
  mark('driver-live-start');
  pub.go();
  await waitFor(() => {
    const s = d.stats();
    return s.committed >= n && s.acksSent >= n;
  }, 120_000, `driver to commit and ack ${n} live`);
  const seconds = (performance.now() - started) / 1000;
  mark('driver-live-end');
  lastPublisherRate = await pub.done;
  await d.stop();
  const rows = h.outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM events')[0].n;
  h.close();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(rows, n, 'driver lost or doubled live messages');
  return n / seconds;
}

let benchMaxBatch: number | undefined;

export async function benchMqtt(o: Options): Promise<Array<Record<string, unknown>>> {
  benchMaxBatch = o.maxBatch;
  const broker = await startBroker();
  try {
    // warm-up (JIT, broker, page cache): not measured
    await rawRun(broker, Math.min(5000, o.events));
    await driverRun(broker, Math.min(5000, o.events), o.receiveMaximum);
    if (o.only) {
      const rates: number[] = [];
      const cpu: number[] = [];
      for (let r = 0; r < o.runs; r++) {
        rates.push(o.only === 'raw' ? await rawRun(broker, o.events) : await driverRun(broker, o.events, o.receiveMaximum));
        cpu.push(lastDriverCpuUs);
      }
      const out: Array<Record<string, unknown>> = [{ bench: 'mqtt', metric: o.only === 'raw' ? 'raw_only' : 'driver_only', value: Math.round(median(rates)), unit: 'events/s' }];
      if (o.only === 'driver') out.push({ bench: 'mqtt', metric: 'driver_cpu_per_event', value: Math.round(median(cpu) * 100) / 100, unit: 'µs CPU (process, user+system)' });
      return out;
    }
    await ceilingRun(broker, Math.min(5000, o.events));
    const raw: number[] = [];
    const drv: number[] = [];
    const ceil: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      raw.push(await rawRun(broker, o.events));
      drv.push(await driverRun(broker, o.events, o.receiveMaximum));
      ceil.push(await ceilingRun(broker, o.events));
      if (!o.json) console.log(`run ${r + 1}: raw ${Math.round(raw[r])}/s, driver ${Math.round(drv[r])}/s, ceiling ${Math.round(ceil[r])}/s, ratio ${(drv[r] / raw[r]).toFixed(2)}, ceiling ratio ${(ceil[r] / raw[r]).toFixed(2)}`);
    }
    const value = Math.round(median(drv));
    const baseline = Math.round(median(raw));
    const ceiling = Math.round(median(ceil));

    await rawLiveRun(broker, Math.min(5000, o.events), o.window);
    await driverLiveRun(broker, Math.min(5000, o.events), o.window, o.receiveMaximum);
    const rawLive: number[] = [];
    const drvLive: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      rawLive.push(await rawLiveRun(broker, o.events, o.window));
      const pubRaw = lastPublisherRate;
      drvLive.push(await driverLiveRun(broker, o.events, o.window, o.receiveMaximum));
      if (!o.json) {
        console.log(`live run ${r + 1}: raw ${Math.round(rawLive[r])}/s (publisher ${pubRaw}/s), driver ${Math.round(drvLive[r])}/s (publisher ${lastPublisherRate}/s), ratio ${(drvLive[r] / rawLive[r]).toFixed(2)}`);
      }
    }
    const liveValue = Math.round(median(drvLive));
    const liveBaseline = Math.round(median(rawLive));
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
      {
        bench: 'mqtt',
        metric: 'durable_ceiling',
        value: ceiling,
        unit: 'events/s',
        baseline: 'bare mqtt.js v5 QoS 1 subscriber counting the same stream (same broker, same run)',
        baseline_value: baseline,
        ratio: Math.round((ceiling / baseline) * 1000) / 1000,
        what: 'the bare subscriber + a bare better-sqlite3 batched FULL insert in a worker thread: the fastest durable path these building blocks allow here',
        of_ceiling: Math.round((value / ceiling) * 1000) / 1000,
      },
      {
        bench: 'mqtt',
        metric: 'durable_ingest_live',
        value: liveValue,
        unit: 'events/s',
        baseline: `bare mqtt.js v5 QoS 1 subscriber consuming live while a publisher in a separate process publishes the same stream as fast as it can (QoS 1, window ${o.window}; same broker, same run)`,
        baseline_value: liveBaseline,
        ratio: Math.round((liveValue / liveBaseline) * 1000) / 1000,
      },
    ];
  } finally {
    await broker.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--publish') {
  const [url, topicBase, n, window] = process.argv.slice(3);
  await publisherChild(url, topicBase, Number(n), Number(window));
  process.exit(0);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const o = parseArgs(process.argv.slice(2));
  const results = await benchMqtt(o);
  for (const r of results) {
    if (o.json) console.log(JSON.stringify(r));
    else if (r.baseline_value === undefined) console.log(`${r.metric}: ${r.value} ${r.unit} (median of ${o.runs} runs, ${o.events} events each)`);
    else console.log(`${r.metric}: ${r.value} ${r.unit} vs ${r.baseline_value} raw → ratio ${r.ratio} (medians of ${o.runs} interleaved runs, ${o.events} events each)`);
  }
  process.exit(0);
}
