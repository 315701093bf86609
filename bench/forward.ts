import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request } from 'node:http';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import pg from 'pg';
import { pino } from 'pino';
import { schemaId, ulid, type Transaction } from '../contracts/index.ts';
import { Forwarder } from '../agent/forwarder/forwarder.ts';
import { secret, signal, txDeriver } from '../agent/forwarder/test-kit.ts';
import { openOutbox } from '../agent/outbox/outbox.ts';
import { hashOf, startTestHub } from '../central-hub/api/test-hub.ts';
import type { HubStore } from '../central-hub/store/hub-store.ts';
import { PostgresHubStore } from '../central-hub/store/postgres/postgres-store.ts';
import { SqliteHubStore } from '../central-hub/store/sqlite/sqlite-store.ts';
import { POSTGRES_URL } from '../test/helpers/services.ts';

/**
 * Forwarding benchmark (issue 6, DESIGN.md §8). Agent and hub run in separate processes over loopback,
 * as on two machines; the hub's ERP posting is stopped so the figure is ingest alone.
 *
 *   drain_sqlite / drain_postgres: a backlog drained by the product (outbox -> Forwarder -> hub with
 *     auth, strict per-item validation, plant check, store) vs. a bare HTTP client posting the same
 *     batches (same size, same number in flight) to a bare endpoint that JSON-parses and inserts them
 *     into the same kind of store. Transactions per second; ratio = product / bare.
 *   drain_rss: peak RSS of the agent process during the SQLite drain (MB); baseline = before the drain.
 *   fleet_p99_ms: 200 simulated agents sending heartbeats and small batches to one hub at once: p99
 *     latency of ingest requests.
 *   hub_sqlite / hub_postgres (diagnostic, only with --only): the bare client posting to the product hub
 *     vs. to the bare endpoint: the hub's share of the product's cost, without the agent's.
 *
 *   node bench/forward.ts [--json] [--backlog 200000] [--runs 3] [--batch 1000] [--in-flight 2]
 *        [--agents 200] [--fleet-seconds 15] [--only drain_sqlite,drain_postgres,fleet_p99_ms]
 *        (--only also takes hub_sqlite,hub_postgres)
 */

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} expects a positive number`);
  return v;
}
function strArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const AGENT = 'bench-agent';
const PLANT = 'P1';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function pgUrl(): string {
  const u = new URL(POSTGRES_URL);
  if (!u.username) u.username = process.env.PGUSER ?? userInfo().username;
  return u.toString();
}

async function openStore(kind: string, dir: string, schema: string | undefined): Promise<HubStore> {
  const store = kind === 'postgres' ? new PostgresHubStore({ connectionString: POSTGRES_URL, max: 8, ...(schema ? { schema } : {}) }) : new SqliteHubStore(join(dir, 'hub.db'));
  await store.migrate();
  return store;
}

/**
 * PB_BENCH_MARKS=1: phase marks on stderr in the CPU profile's clock (µs), to profile one phase only.
 * PB_BENCH_CPU=1: CPU time of each child on stderr (agent: µs per transaction during the drain, and the
 * part of it inside the outbox's claims and settles; hub and bare endpoint: seconds while serving, and on
 * SQLite where the store's checkpoints ran): where the product's time goes, apart from the shared store.
 */
function mark(what: string): void {
  if (process.env.PB_BENCH_MARKS) process.stderr.write(`MARK ${what} ${process.hrtime.bigint() / 1000n}\n`);
}

/** PB_BENCH_CPU: time in garbage collection by kind (minor = scavenge, major = mark-compact), in ms */
function gcTimes(): { ms: Record<string, number>; stop(): void } {
  const ms: Record<string, number> = {};
  const obs = process.env.PB_BENCH_CPU
    ? new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = (e as { detail?: { kind?: number } }).detail?.kind;
          const name = kind === constants.NODE_PERFORMANCE_GC_MINOR ? 'minor' : kind === constants.NODE_PERFORMANCE_GC_MAJOR ? 'major' : 'other';
          ms[name] = (ms[name] ?? 0) + e.duration;
        }
      })
    : undefined;
  obs?.observe({ entryTypes: ['gc'] });
  return { ms, stop: () => obs?.disconnect() };
}

// ---------- child process: the hub, or the bare endpoint ----------

async function serve(): Promise<void> {
  const mode = strArg('serve')!;
  const kind = strArg('store') ?? 'sqlite';
  const dir = strArg('dir')!;
  const schema = strArg('pg-schema');
  const agents = Number(strArg('agents') ?? '1');
  const store = await openStore(kind, dir, schema);
  let url: string;
  let stop: () => Promise<void>;
  if (mode === 'hub') {
    const t = await startTestHub({ dir, store, rateLimitPerAgent: 100_000, bodyLimit: '16MiB' });
    await t.hub.posting.stop();
    for (let i = 0; i < agents; i++) await store.upsertAgent({ id: i === 0 ? AGENT : `${AGENT}-${i}`, plants: [PLANT], tokenHash: hashOf(tokenFor(i)) });
    url = t.url;
    stop = () => t.stop();
  } else {
    const srv = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: Transaction[] };
        store.ingest(AGENT, batch.items, new Date()).then(
          (results) => {
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ results }));
          },
          (err: Error) => {
            res.statusCode = 500;
            res.end(err.message);
          },
        );
      });
    });
    srv.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    stop = async () => {
      await new Promise((r) => srv.close(r));
      await store.close();
    };
  }
  process.stdout.write(`URL ${url}\n`);
  const cpu0 = process.cpuUsage();
  const gcMs = gcTimes();
  process.stdin.resume();
  process.stdin.on('end', () => {
    const cpu = process.cpuUsage(cpu0);
    gcMs.stop();
    const ck = store instanceof SqliteHubStore ? `, checkpoints ${JSON.stringify(store.checkpoints)}` : '';
    if (process.env.PB_BENCH_CPU) process.stderr.write(`${mode} ${kind} cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s (sys ${(cpu.system / 1e6).toFixed(2)}), gc s: ${Object.entries(gcMs.ms).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(2)}`).join(', ') || 'none'}${ck}\n`);
    void stop().then(() => process.exit(0));
  });
}

const BENCH_SECRET = randomBytes(16).toString('hex');
function tokenFor(i: number): string {
  return `pbc_bench_${i}_${process.env.PB_BENCH_SECRET ?? BENCH_SECRET}`;
}

interface Child {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startChild(mode: 'hub' | 'bare', kind: string, dir: string, schema?: string, agents = 1): Promise<Child> {
  const args = [import.meta.filename, '--serve', mode, '--store', kind, '--dir', dir, '--agents', String(agents), ...(schema ? ['--pg-schema', schema] : [])];
  const proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, PB_BENCH_SECRET: BENCH_SECRET } });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`${mode} child exited with ${c}`)));
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      if (l.startsWith('URL ')) resolve(l.slice(4).trim());
    });
  });
  return {
    url,
    proc,
    stop: async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.stdin!.end();
      await exited;
    },
  };
}

// ---------- the backlog ----------

/** An outbox with `n` pending transactions over 10 work centers x 5 orders; closed, ready to copy. */
async function makeTemplate(dir: string, n: number): Promise<string> {
  const path = join(dir, 'template-outbox.db');
  const outbox = openOutbox({ path, synchronous: 'normal', rules: txDeriver(AGENT), groupCommitRows: 1000 });
  for (let done = 0; done < n; ) {
    const k = Math.min(1000, n - done);
    const sigs = Array.from({ length: k }, (_, i) => signal({ wc: `WC-${(done + i) % 10}`, order: `O-${(done + i) % 5}` }));
    await outbox.append(sigs);
    done += k;
  }
  outbox.close();
  return path;
}

// ---------- one drain: product ----------

async function drainProduct(template: string, kind: string, runDir: string, batch: number, inFlight: number): Promise<{ rate: number; rssPeakMb: number; rssBeforeMb: number }> {
  const schema = kind === 'postgres' ? `pb_bench_${randomBytes(4).toString('hex')}` : undefined;
  const hub = await startChild('hub', kind, runDir, schema);
  const path = join(runDir, 'outbox.db');
  copyFileSync(template, path);
  // the agent in a process of its own, as on a plant server: its RSS is the agent's alone
  const args = [...process.execArgv, import.meta.filename, '--drain-agent', '--outbox', path, '--hub', hub.url, '--batch', String(batch), '--in-flight', String(inFlight)];
  const pg0 = postgresCpuByRole();
  const agent = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PB_BENCH_SECRET: BENCH_SECRET } });
  const result = await new Promise<{ rate: number; rssPeakMb: number; rssBeforeMb: number; dead: number; n: number }>((resolve, reject) => {
    let got: string | undefined;
    createInterface({ input: agent.stdout! }).on('line', (l) => {
      if (l.startsWith('RESULT ')) got = l.slice(7);
    });
    agent.once('exit', (code) => (code === 0 && got ? resolve(JSON.parse(got)) : reject(new Error(`drain agent exited with ${code}`))));
  });
  reportCpu('product drain (with the agent start)', kind, result.n, pg0);
  await hub.stop();
  if (schema) await dropSchema(schema);
  if (result.dead > 0) throw new Error(`${result.dead} transactions were dead-lettered`);
  return result;
}

/** Child: the agent side of one product drain (outbox -> Forwarder -> hub); prints RESULT {rate, rss…}. */
async function drainAgent(): Promise<void> {
  const outbox = openOutbox({ path: strArg('outbox')!, synchronous: 'full', rules: txDeriver(AGENT) });
  const n = outbox.stats().pending;
  // PB_BENCH_CPU: CPU time inside the outbox's claims and settles (the agent's SQLite work)
  const spent = { claim: 0, settle: 0 };
  const timed =
    <A extends unknown[], R>(k: keyof typeof spent, fn: (...a: A) => R) =>
    (...a: A): R => {
      const c0 = process.cpuUsage();
      try {
        return fn(...a);
      } finally {
        const c = process.cpuUsage(c0);
        spent[k] += c.user + c.system;
      }
    };
  if (process.env.PB_BENCH_CPU) {
    outbox.claim = timed('claim', outbox.claim.bind(outbox));
    outbox.settle = timed('settle', outbox.settle.bind(outbox));
  }
  let done = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const count = (k: number) => {
    done += k;
    if (done >= n) finish();
  };
  const f = new Forwarder({
    outbox,
    hubUrl: strArg('hub')!,
    token: secret(tokenFor(0)),
    agentId: AGENT,
    log: pino({ level: 'silent' }),
    batchSize: Number(strArg('batch')),
    inFlight: Number(strArg('in-flight')),
    onForwarded: count,
    onRejected: count,
    progressIntervalMs: 5000,
  });
  global.gc?.();
  const rssBefore = process.memoryUsage.rss();
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 50);
  const memLog = process.env.PB_BENCH_LOG
    ? setInterval(() => {
        const m = process.memoryUsage();
        process.stderr.write(`agent: done ${done} rss ${(m.rss / 1e6).toFixed(0)} MB heap ${(m.heapUsed / 1e6).toFixed(0)}/${(m.heapTotal / 1e6).toFixed(0)} MB external ${(m.external / 1e6).toFixed(0)} MB\n`);
      }, 2000)
    : undefined;
  const gcMs = gcTimes();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  mark('drain-start');
  f.start();
  await all;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  gcMs.stop();
  if (process.env.PB_BENCH_CPU) {
    const gc = Object.entries(gcMs.ms).map(([k, ms]) => `${k} ${((ms * 1000) / n).toFixed(2)}`).join(', ');
    process.stderr.write(`agent cpu ${((cpu.user + cpu.system) / n).toFixed(2)} us/tx (sys ${(cpu.system / n).toFixed(2)}), wall ${((seconds * 1e6) / n).toFixed(2)} us/tx, claim ${(spent.claim / n).toFixed(2)}, settle ${(spent.settle / n).toFixed(2)}; gc us/tx: ${gc || 'none'}\n`);
  }
  mark('drain-end');
  clearInterval(sampler);
  clearInterval(memLog);
  await f.stop();
  const dead = outbox.stats().deadLetters;
  outbox.close();
  process.stdout.write(`RESULT ${JSON.stringify({ rate: n / seconds, rssPeakMb: rssPeak / 1e6, rssBeforeMb: rssBefore / 1e6, dead, n })}\n`);
}

/**
 * PB_BENCH_CPU: CPU seconds of the PostgreSQL server's processes (Linux /proc; none elsewhere), read
 * around a drain, so that the server's share of each side shows next to the agent's and the hub's. By
 * role (cmdline): live backends, background processes, and the postmaster (its cutime holds the exited
 * backends and autovacuum workers).
 */
function postgresCpuByRole(): Record<string, number> {
  const out: Record<string, number> = {};
  if (!process.env.PB_BENCH_CPU || process.platform !== 'linux') return out;
  const tick = 100; // USER_HZ on Linux
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!name.startsWith('postgres')) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const role = /checkpointer|walwriter|background writer|autovacuum|logical replication/.exec(cmd)?.[0] ?? (/^postgres: \S+: /.test(cmd) ? 'backends' : 'postmaster');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name
      out[role] = (out[role] ?? 0) + (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / tick;
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

function reportCpu(what: string, kind: string, n: number, pg0: Record<string, number>, self0?: NodeJS.CpuUsage): void {
  if (!process.env.PB_BENCH_CPU) return;
  const parts: string[] = [];
  const pg1 = postgresCpuByRole();
  const usPerTx = (s: number) => ((s * 1e6) / n).toFixed(2);
  if (self0) {
    const c = process.cpuUsage(self0);
    parts.push(`bare client ${((c.user + c.system) / n).toFixed(2)} us/tx`);
  }
  if (kind === 'postgres') {
    const roles = Object.keys(pg1).map((r) => [r, pg1[r] - (pg0[r] ?? 0)] as const).filter(([, d]) => d > 0);
    const total = roles.reduce((a, [, d]) => a + d, 0);
    parts.push(`postgres server ${usPerTx(total)} us/tx (${roles.map(([r, d]) => `${r} ${usPerTx(d)}`).join(', ')})`);
  }
  if (parts.length) process.stderr.write(`${what}: ${parts.join(', ')}\n`);
}

// ---------- one drain: bare client -> bare endpoint, same batches ----------

async function drainBare(bodies: string[], kind: string, runDir: string, batch: number, inFlight: number, target: 'bare' | 'hub' = 'bare'): Promise<number> {
  const schema = kind === 'postgres' ? `pb_bench_${randomBytes(4).toString('hex')}` : undefined;
  const bare = await startChild(target, kind, runDir, schema);
  const auth = target === 'hub' ? { authorization: `Bearer ${tokenFor(0)}` } : {};
  const agent = new HttpAgent({ keepAlive: true, maxSockets: inFlight });
  const u = new URL(bare.url);
  const post = (body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/v1/ingest', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...auth } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`${target} endpoint: ${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
          JSON.parse(Buffer.concat(chunks).toString('utf8'));
          resolve();
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  let next = 0;
  const pg0 = postgresCpuByRole();
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next * batch < bodies.length) {
        const i = next++;
        const items = bodies.slice(i * batch, (i + 1) * batch);
        await post(`{"schema":"${schemaId('ingest-batch', 1, 0)}","batchId":"${ulid()}","agentId":"${AGENT}","sentAt":"${new Date().toISOString()}","items":[${items.join(',')}]}`);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  reportCpu(`${target} drain`, kind, bodies.length, pg0, self0);
  agent.destroy();
  await bare.stop();
  if (schema) await dropSchema(schema);
  return bodies.length / seconds;
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl() });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await c.end();
}

// ---------- fleet ----------

async function fleet(agents: number, seconds: number): Promise<{ p99: number; p50: number; requests: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-fleet-'));
  const hub = await startChild('hub', 'sqlite', dir, undefined, agents);
  const u = new URL(hub.url);
  const lat: number[] = [];
  const send = (agent: HttpAgent, token: string, path: string, body: string) =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      const req = request({ host: u.hostname, port: u.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${path}: ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  const end = performance.now() + seconds * 1000;
  const derive = txDeriver(AGENT);
  await Promise.all(
    Array.from({ length: agents }, async (_, i) => {
      const id = i === 0 ? AGENT : `${AGENT}-${i}`;
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      const token = tokenFor(i);
      await new Promise((r) => setTimeout(r, Math.random() * 1000));
      let beat = 0;
      // one valid template per agent; batches are cheap copies with fresh ids (the client must not eat the CPU)
      const template = derive.derive(signal({ wc: `WC-${i}`, order: `O-${i}` }), { get: () => undefined, set: () => {} }).items[0].tx;
      template.agentId = id;
      let n = 0;
      while (performance.now() < end) {
        const items = Array.from({ length: 10 }, () => ({ ...template, id: ulid(), idempotencyKey: `${id}:${BENCH_SECRET}:${n++}` }));
        const batch = JSON.stringify({ schema: schemaId('ingest-batch', 1, 0), batchId: ulid(), agentId: id, sentAt: new Date().toISOString(), items });
        lat.push(await send(agent, token, '/v1/ingest', batch));
        if (beat++ % 5 === 0) await send(agent, token, '/v1/heartbeat', JSON.stringify(heartbeat(id)));
        await new Promise((r) => setTimeout(r, 1000));
      }
      agent.destroy();
    }),
  );
  await hub.stop();
  rmSync(dir, { recursive: true, force: true });
  const s = [...lat].sort((a, b) => a - b);
  return { p99: s[Math.floor(s.length * 0.99)], p50: s[Math.floor(s.length * 0.5)], requests: s.length };
}

function heartbeat(agentId: string) {
  const now = new Date().toISOString();
  return {
    schema: schemaId('agent-heartbeat', 1, 0),
    id: ulid(),
    agentId,
    plant: PLANT,
    sentAt: now,
    version: '0.1.0',
    uptimeS: 1,
    configVersion: 'bench',
    mode: 'live',
    drivers: [{ name: 'sim', type: 'simulator', state: 'up', since: now }],
    outbox: { pending: 0, oldestPendingAgeS: 0, deadLetters: 0, bytes: 0, diskFreeBytes: 1e9, full: false },
    rates: { signalsPerS: 10, forwardedPerS: 10 },
    alarms: [],
  };
}

// ---------- main ----------

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const backlog = arg('backlog', 200_000);
  const runs = arg('runs', 3);
  const batch = arg('batch', 1000);
  const inFlight = arg('in-flight', 2);
  const agents = arg('agents', 200);
  const fleetSeconds = arg('fleet-seconds', 15);
  const only = new Set((strArg('only') ?? 'drain_sqlite,drain_postgres,fleet_p99_ms').split(','));
  const out = (r: Record<string, unknown>) => process.stdout.write(json ? `${JSON.stringify(r)}\n` : `${r.bench}.${r.metric}: ${r.value} ${r.unit}${r.baseline_value !== undefined ? ` (baseline ${r.baseline}: ${r.baseline_value}, ratio ${r.ratio})` : ''}\n`);
  const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-fwd-'));
  try {
    if (!json) process.stderr.write(`building a backlog of ${backlog} transactions...\n`);
    const template = await makeTemplate(dir, backlog);
    copyFileSync(template, join(dir, 'reader.db'));
    const r2 = openOutbox({ path: join(dir, 'reader.db'), synchronous: 'normal' });
    const bodies = r2.query<{ body: string }>("SELECT body FROM transactions_json WHERE status = 'pending' ORDER BY seq").map((r) => r.body);
    r2.close();
    const meanBytes = Math.round(bodies.reduce((s, b) => s + b.length, 0) / bodies.length);
    for (const kind of ['sqlite', 'postgres']) {
      if (!only.has(`drain_${kind}`)) continue;
      const product: number[] = [];
      const bare: number[] = [];
      const rss: Array<{ peak: number; before: number }> = [];
      for (let i = 0; i < runs; i++) {
        const bdir = mkdtempSync(join(dir, 'bare-'));
        bare.push(await drainBare(bodies, kind, bdir, batch, inFlight));
        rmSync(bdir, { recursive: true, force: true });
        const pdir = mkdtempSync(join(dir, 'prod-'));
        const p = await drainProduct(template, kind, pdir, batch, inFlight);
        rmSync(pdir, { recursive: true, force: true });
        product.push(p.rate);
        rss.push({ peak: p.rssPeakMb, before: p.rssBeforeMb });
        if (!json) process.stderr.write(`  ${kind} run ${i + 1}: product ${round(p.rate)} tx/s, bare ${round(bare[bare.length - 1])} tx/s\n`);
      }
      const pv = median(product);
      const bv = median(bare);
      out({
        bench: 'forward',
        metric: `drain_${kind}`,
        value: round(pv),
        unit: 'tx/s',
        baseline: `bare HTTP client -> bare endpoint inserting into the same ${kind} store, same ${batch}-item batches (~${meanBytes} B/tx), ${inFlight} in flight`,
        baseline_value: round(bv),
        ratio: round(pv / bv, 3),
        backlog,
        runs,
      });
      if (kind === 'sqlite') {
        out({ bench: 'forward', metric: 'drain_rss', value: round(median(rss.map((r) => r.peak)), 1), unit: 'MB', baseline: 'RSS of the same agent process (outbox open, forwarder built) before the drain', baseline_value: round(median(rss.map((r) => r.before)), 1), ratio: round(median(rss.map((r) => r.peak / r.before)), 3), backlog });
      }
    }
    // diagnostic: the hub alone. The same bare client posts the same batches to the product hub
    // (authenticated, validated, fastify) and to the bare endpoint, so the agent's share is left out.
    for (const kind of ['sqlite', 'postgres']) {
      if (!only.has(`hub_${kind}`)) continue;
      const hub: number[] = [];
      const bare: number[] = [];
      for (let i = 0; i < runs; i++) {
        for (const [target, into] of [['bare', bare], ['hub', hub]] as const) {
          const d = mkdtempSync(join(dir, `${target}-`));
          into.push(await drainBare(bodies, kind, d, batch, inFlight, target));
          rmSync(d, { recursive: true, force: true });
        }
        if (!json) process.stderr.write(`  ${kind} run ${i + 1}: hub ${round(hub[i])} tx/s, bare ${round(bare[i])} tx/s\n`);
      }
      out({
        bench: 'forward',
        metric: `hub_${kind}`,
        value: round(median(hub)),
        unit: 'tx/s',
        baseline: `the same bare HTTP client -> bare endpoint inserting into the same ${kind} store, same ${batch}-item batches, ${inFlight} in flight`,
        baseline_value: round(median(bare)),
        ratio: round(median(hub) / median(bare), 3),
        backlog,
        runs,
      });
    }
    if (only.has('fleet_p99_ms')) {
      const f = await fleet(agents, fleetSeconds);
      out({ bench: 'forward', metric: 'fleet_p99_ms', value: round(f.p99, 1), unit: 'ms', agents, requests: f.requests, p50_ms: round(f.p50, 1), seconds: fleetSeconds });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--serve')) await serve();
else if (process.argv.includes('--drain-agent')) await drainAgent();
else await main();
