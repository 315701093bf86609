/**
 * OPC UA benchmark (DESIGN.md §8, issue 9).
 *
 *   ./node_modules/.bin/node bench/opcua.ts [--json] [--items 10000] [--change-ms 1000] [--sampling 100]
 *                                           [--seconds 6] [--runs 2] [--outage-s 3] [--no-reconnect]
 *
 * A node-opcua server runs in a child process with --items UInt32 variables, each changing every
 * --change-ms (a controlled rate: items × 1000 / change-ms changes/s), sampled every --sampling ms. Each
 * client runs in a child process of its own, so that its CPU time and RSS are its own:
 *
 * - durable_ingest: notifications/s the agent's OPC UA driver commits to the outbox (SQLite, synchronous
 *   FULL) vs. a bare node-opcua client subscription (ClientSubscription + monitored item groups, counting
 *   the good values of each notification message as it arrives) on the same server in the same run. Phases are interleaved; medians are reported.
 * - cpu_per_1k_changes: client CPU seconds per second, per 1,000 changes/s delivered (agent vs bare).
 * - rss: client RSS (MB) with --items monitored items (agent vs bare).
 * - reconnect_gap_s: the server is killed and restarted on the same port after --outage-s; seconds from
 *   the restarted server accepting connections to the first value committed (agent) vs the first
 *   notification of the bare client with node-opcua's default reconnection.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Options {
  json: boolean;
  items: number;
  changeMs: number;
  sampling: number;
  seconds: number;
  runs: number;
  outageS: number;
  reconnect: boolean;
  role?: 'server' | 'agent' | 'bare';
  port?: number;
  endpoint?: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { json: false, items: 10_000, changeMs: 1000, sampling: 100, seconds: 6, runs: 2, outageS: 3, reconnect: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--items') o.items = Number(argv[++i]);
    else if (a === '--change-ms') o.changeMs = Number(argv[++i]);
    else if (a === '--sampling') o.sampling = Number(argv[++i]);
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--outage-s') o.outageS = Number(argv[++i]);
    else if (a === '--no-reconnect') o.reconnect = false;
    else if (a === '--role') o.role = argv[++i] as Options['role'];
    else if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--endpoint') o.endpoint = argv[++i];
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const self = fileURLToPath(import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

type Msg =
  | { type: 'ready'; port?: number }
  | { type: 'result'; count: number; cpuS: number; rssMb: number; seconds: number }
  | { type: 'first'; at: number };

function send(m: Msg) {
  process.send?.(m);
}

// ---------------------------------------------------------------- roles (child processes)

async function serverRole() {
  const { startLineServer } = await import('../test/plant-sim/opcua-line-server.ts');
  const srv = await startLineServer({
    port: opts.port,
    params: { intervalMs: opts.changeMs, partsPerTick: 5, scrapEvery: 20, orderSize: 200, firstOrder: 1000100, operation: '0010', counterBits: 32 },
    updateMs: Math.max(10, Math.floor(opts.changeMs / 4)),
    extraVariables: opts.items,
    pkiDir: join(tmpdir(), 'pb-bench-opcua-server-pki'),
  });
  send({ type: 'ready', port: srv.port });
}

/** What a client role counts: good values after `reset`, and the first one after `mark`. */
function counter() {
  let count = 0;
  let markedAt: number | undefined;
  return {
    /** newestMs: the newest source timestamp among them; values the old server stamped before the mark are not the first after it */
    seen(n: number, newestMs = Infinity) {
      count += n;
      if (markedAt !== undefined && n > 0 && newestMs >= markedAt) {
        send({ type: 'first', at: Date.now() });
        markedAt = undefined;
      }
    },
    mark() {
      markedAt = Date.now();
    },
    async measure(seconds: number) {
      count = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(seconds * 1000);
      const c = count;
      const dt = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      send({ type: 'result', count: c, cpuS: (cpu.user + cpu.system) / 1e6, rssMb: process.memoryUsage().rss / 1e6, seconds: dt });
    },
  };
}

/** Every item delivered its initial value (or, on a saturated server, values stopped arriving faster). */
async function waitInitial(seen: () => number, role: string) {
  const t0 = performance.now();
  let last = -1;
  while (seen() < opts.items) {
    await sleep(1000);
    if (process.env.PB_BENCH_LOG) process.stderr.write(`${role}: ${seen()} values after ${Math.round((performance.now() - t0) / 1000)} s\n`);
    if (seen() === last && performance.now() - t0 > 60_000) break;
    last = seen();
  }
}

function nodeIds(n: number) {
  return Array.from({ length: n }, (_, i) => `ns=1;s=Line1.Extra.${i}`);
}

async function agentRole() {
  const { create } = await import('../agent/drivers/opcua/opcua-driver.ts');
  const { opcuaConfigSchema } = await import('../agent/drivers/opcua/config.ts');
  const { openOutbox } = await import('../agent/outbox/outbox.ts');
  const { pino } = await import('pino');
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-opcua-agent-'));
  const outbox = openOutbox({ path: join(dir, 'outbox.db'), synchronous: 'full' });
  const c = counter();
  let initial = 0;
  const driver = create(
    opcuaConfigSchema.parse({
      type: 'opcua',
      name: 'bench-plc',
      endpoint: opts.endpoint,
      securityMode: 'None',
      securityPolicy: 'None',
      allowInsecure: true,
      publishingInterval: opts.sampling,
      nodes: nodeIds(opts.items).map((nodeId, i) => ({ ref: `v${i}`, nodeId, samplingInterval: opts.sampling })),
    }) as any,
    {
      agentId: 'bench',
      plant: '1000',
      stateDir: dir,
      log: pino({ level: process.env.PB_BENCH_LOG ?? 'silent' }),
      async emit(signals) {
        await outbox.append(signals);
        let good = 0;
        let newest = -Infinity;
        for (const s of signals) {
          if (s.quality !== 'good') continue;
          good++;
          newest = Math.max(newest, Date.parse(s.sourceTime));
        }
        initial += good;
        c.seen(good, newest);
      },
      deadLetter() {},
    },
  );
  await driver.start();
  await waitInitial(() => initial, 'agent');
  send({ type: 'ready' });
  process.on('message', (m: { type: string; seconds?: number }) => {
    if (m.type === 'measure') void c.measure(m.seconds!);
    if (m.type === 'mark') c.mark();
    if (m.type === 'exit') {
      if (process.env.PB_BENCH_LOG) process.stderr.write(`agent stats: ${JSON.stringify(driver.stats())}\n`);
      void driver.stop().finally(() => {
        outbox.close();
        rmSync(dir, { recursive: true, force: true });
        process.exit(0);
      });
    }
  });
}

async function bareRole() {
  const { OPCUAClient, ClientSubscription, AttributeIds, TimestampsToReturn, ClientMonitoredItemGroup } = await import('node-opcua');
  const c = counter();
  const client = OPCUAClient.create({ endpointMustExist: false });
  await client.connect(opts.endpoint!);
  const session = await client.createSession();
  const sub = ClientSubscription.create(session, {
    requestedPublishingInterval: opts.sampling,
    requestedLifetimeCount: 1000,
    requestedMaxKeepAliveCount: 10,
    maxNotificationsPerPublish: 0,
    publishingEnabled: true,
    priority: 0,
  });
  let initial = 0;
  // the raw limit: count the good values in each notification message as it arrives (the library
  // still decodes and dispatches them; nothing is stored)
  sub.on('raw_notification', (nm: any) => {
    let good = 0;
    let newest = -Infinity;
    for (const d of nm.notificationData ?? []) {
      for (const mi of d?.monitoredItems ?? []) {
        if (!mi.value?.statusCode?.isGood()) continue;
        good++;
        newest = Math.max(newest, mi.value.sourceTimestamp?.getTime() ?? Infinity);
      }
    }
    initial += good;
    c.seen(good, newest);
  });
  const ids = nodeIds(opts.items);
  for (let i = 0; i < ids.length; i += 1000) {
    const group = ClientMonitoredItemGroup.create(
      sub,
      ids.slice(i, i + 1000).map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
      { samplingInterval: opts.sampling, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    await new Promise<void>((r) => group.once('initialized', () => r()));
  }
  await waitInitial(() => initial, 'bare');
  send({ type: 'ready' });
  process.on('message', (m: { type: string; seconds?: number }) => {
    if (m.type === 'measure') void c.measure(m.seconds!);
    if (m.type === 'mark') c.mark();
    if (m.type === 'exit') void client.disconnect().finally(() => process.exit(0));
  });
}

// ---------------------------------------------------------------- orchestration (parent)

function start(role: 'server' | 'agent' | 'bare', extra: string[] = []): ChildProcess {
  const args = ['--role', role, '--items', String(opts.items), '--change-ms', String(opts.changeMs), '--sampling', String(opts.sampling), ...extra];
  return fork(self, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
}

function next<T extends Msg['type']>(child: ChildProcess, type: T, timeoutMs = 120_000): Promise<Extract<Msg, { type: T }>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.off('message', on);
      reject(new Error(`no ${type} from the child within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (m: Msg) => {
      if (m.type !== type) return;
      clearTimeout(t);
      child.off('message', on);
      resolve(m as Extract<Msg, { type: T }>);
    };
    child.on('message', on);
  });
}

async function stopChild(child: ChildProcess, graceful: boolean) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  if (graceful) child.send({ type: 'exit' });
  else child.kill();
  await Promise.race([exited, sleep(10_000)]);
  if (child.exitCode === null) child.kill();
}

interface Phase {
  rate: number;
  cpuPer1k: number;
  rssMb: number;
}

async function phase(role: 'agent' | 'bare', endpoint: string): Promise<Phase> {
  const child = start(role, ['--endpoint', endpoint]);
  await next(child, 'ready');
  await sleep(2000); // past the initial values
  child.send({ type: 'measure', seconds: opts.seconds });
  const r = await next(child, 'result', (opts.seconds + 30) * 1000);
  await stopChild(child, true);
  const rate = r.count / r.seconds;
  return { rate, cpuPer1k: rate > 0 ? r.cpuS / r.seconds / (rate / 1000) : NaN, rssMb: r.rssMb };
}

function out(metric: string, value: number, unit: string, baseline?: string, baselineValue?: number) {
  const line: Record<string, unknown> = { bench: 'opcua', metric, value: round(value), unit };
  if (baseline !== undefined && baselineValue !== undefined) {
    line.baseline = baseline;
    line.baseline_value = round(baselineValue);
    line.ratio = round(value / baselineValue);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(line)}\n`);
  else process.stdout.write(`${metric}: ${line.value} ${unit}${baseline ? ` (${baseline}: ${line.baseline_value}, ratio ${line.ratio})` : ''}\n`);
}

/** 3 decimals, and at least 4 significant digits for small figures (so a printed ratio can be checked against value / baseline) */
const round = (v: number) => (Number.isFinite(v) && v !== 0 ? Number(Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(4)) : v);

async function main() {
  // a child never outlives the bench (a parent that failed or was interrupted)
  if (opts.role) process.on('disconnect', () => process.exit(0));
  if (opts.role === 'server') return serverRole();
  if (opts.role === 'agent') return agentRole();
  if (opts.role === 'bare') return bareRole();

  let server = start('server');
  const { port } = await next(server, 'ready');
  const endpoint = `opc.tcp://127.0.0.1:${port}`;
  const agent: Phase[] = [];
  const bare: Phase[] = [];
  try {
    for (let run = 0; run < opts.runs; run++) {
      bare.push(await phase('bare', endpoint));
      agent.push(await phase('agent', endpoint));
      if (!opts.json) process.stderr.write(`run ${run + 1}: agent ${Math.round(agent[run].rate)}/s, bare ${Math.round(bare[run].rate)}/s\n`);
    }
    const offered = (opts.items * 1000) / opts.changeMs;
    out('durable_ingest', median(agent.map((p) => p.rate)), 'notifications/s', `bare node-opcua subscription (${opts.items} items, ${offered} changes/s offered)`, median(bare.map((p) => p.rate)));
    out('cpu_per_1k_changes', median(agent.map((p) => p.cpuPer1k)), 'cpu s/s per 1k changes/s', 'bare node-opcua subscription', median(bare.map((p) => p.cpuPer1k)));
    out('rss', median(agent.map((p) => p.rssMb)), `MB with ${opts.items} items`, 'bare node-opcua subscription', median(bare.map((p) => p.rssMb)));

    if (opts.reconnect) {
      const a = start('agent', ['--endpoint', endpoint]);
      const b = start('bare', ['--endpoint', endpoint]);
      await Promise.all([next(a, 'ready'), next(b, 'ready')]);
      await sleep(1000);
      await stopChild(server, false); // like a power cut: no goodbye to the clients
      await sleep(opts.outageS * 1000);
      // marked only now: a value the clients were still committing from before the cut must not count
      // as the first one after the restart (it made the gap negative)
      a.send({ type: 'mark' });
      b.send({ type: 'mark' });
      const firstA = next(a, 'first', 120_000);
      const firstB = next(b, 'first', 120_000).catch(() => undefined);
      server = start('server', ['--port', String(port)]);
      await next(server, 'ready');
      const readyAt = Date.now();
      const gapA = ((await firstA).at - readyAt) / 1000;
      const fb = await firstB;
      const gapB = fb ? (fb.at - readyAt) / 1000 : NaN;
      out('reconnect_gap_s', gapA, 's', `node-opcua default reconnection (${opts.outageS} s outage)`, gapB);
      await Promise.all([stopChild(a, true), stopChild(b, true)]);
    }
  } finally {
    await stopChild(server, false);
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
