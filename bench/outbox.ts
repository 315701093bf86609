import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Signal } from '../contracts/index.ts';
import { migrations } from '../agent/outbox/migrations.ts';
import { openOutbox } from '../agent/outbox/outbox.ts';
import { countingDeriver, signal, transaction } from '../agent/outbox/test-kit.ts';
import { countProductionConfigSchema } from '../agent/rules/count-production/config.ts';
import { countProduction } from '../agent/rules/count-production/count-production.ts';
import { RuleEngine } from '../agent/rules/engine.ts';

/**
 * Outbox benchmark (issue 3, DESIGN.md §8). Every ratio is against a raw limit measured in the same run.
 *
 * - durable_append: signals/s through append() (dedupe + the real count-production rule on 4 counters +
 *   rule state + transactions, group commit, synchronous=FULL) vs a bare better-sqlite3 insert of the same
 *   event rows in 1000-row transactions with the same pragmas. Target ratio >= 0.7.
 * - claim_settle: transactions/s claimed (500 at a time) and settled while ingest runs at a steady rate
 *   (one transaction per signal); baseline = that ingest rate. Target ratio >= 2.
 * - rss_10m_pending: RSS of a process that opens the outbox and works on it (stats, claim/settle, append)
 *   with N pending transactions minus the same with none. Target <= 20 MB at 10M (--pending 10000000).
 * - stats_ms_at_pending: stats() latency with N pending (what /metrics pays).
 * - bytes_per_million: disk bytes per million events (events + rule state + 1 transaction per 100 events).
 *
 *   node bench/outbox.ts [--json] [--rows 100000] [--runs 3] [--append-runs 9] [--ingest-rate 2000] [--seconds 3]
 *                        [--pending 1000000] [--dir /var/tmp] [--skip-rss] [--only append|claim|rss]
 *   node --cpu-prof bench/outbox.ts --profile-append|--profile-derive|--profile-claim [--rows N] [--runs N]
 *     one side only, for a CPU profile: the product side of durable_append, its rules alone, claim_settle
 */

const argv = process.argv.slice(2);
function arg(name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} expects a positive number`);
  return v;
}
function strArg(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
}

const json = argv.includes('--json');
const rows = arg('rows', 100_000);
const runs = arg('runs', 3);
/** durable_append's runs are short (~0.5 s each): more of them for a stable median (--append-runs) */
const appendRuns = arg('append-runs', process.argv.includes('--runs') ? runs : 9);
const ingestRate = arg('ingest-rate', 2000);
const seconds = arg('seconds', 3);
const pending = arg('pending', 1_000_000);
const baseDir = strArg('dir') ?? tmpdir();

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

function emit(metric: string, value: number, unit: string, baseline?: string, baselineValue?: number): void {
  const r = {
    bench: 'outbox',
    metric,
    value: round(value, 2),
    unit,
    ...(baseline !== undefined ? { baseline, baseline_value: round(baselineValue!, 2), ratio: round(value / baselineValue!, 3) } : {}),
  };
  if (json) console.log(JSON.stringify(r));
  else console.log(`${metric}: ${r.value} ${unit}${baseline !== undefined ? `  | ${baseline}: ${r.baseline_value}  ratio ${r.ratio}` : ''}`);
}

// ------------------------------------------------------------------------------------------------ workloads

const COUNTERS = 4;

/** Reading i: counter (i % 4) advances by 1; a transaction per 100 parts per counter. */
function reading(i: number): Signal {
  const c = i % COUNTERS;
  const n = Math.floor(i / COUNTERS);
  const t = new Date(Date.UTC(2026, 0, 1) + i).toISOString();
  return { source: `plc${c}`, ref: 'good-count', value: n, quality: 'good', sourceTime: t, receivedAt: t, sourceId: `plc${c}:good-count:${String(n).padStart(12, '0')}` };
}

function countRules(): RuleEngine {
  const rules = Array.from({ length: COUNTERS }, (_, c) =>
    countProduction(
      countProductionConfigSchema.parse({
        type: 'count-production',
        id: `wc${c}-count`,
        workCenter: `WC${c}`,
        counter: { source: `plc${c}`, ref: 'good-count' },
        activeOrder: { order: `10000${c}` },
        emitEvery: { parts: 100 },
      }),
      'live',
    ),
  );
  return new RuleEngine(rules, { plant: 'P1', agentId: 'bench', timeZone: 'UTC', mode: 'live' });
}

function fileBytes(path: string): number {
  let n = 0;
  for (const s of ['', '-wal']) {
    try {
      n += statSync(path + s).size;
    } catch {
      // no WAL
    }
  }
  return n;
}

/** The raw limit: the same event rows, bare prepared INSERTs, 1000 per transaction, same pragmas. */
function bareInsert(dir: string, signals: Signal[]): { rate: number; bytes: number } {
  const path = join(dir, 'bare.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('cache_size = -8000');
  db.exec(migrations[0]);
  const ins = db.prepare('INSERT OR IGNORE INTO events(source_id, source, ref, value, quality, source_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const batch = db.transaction((from: number) => {
    for (let i = from; i < Math.min(from + 1000, signals.length); i++) {
      const s = signals[i];
      ins.run(s.sourceId, s.source, s.ref, JSON.stringify(s.value), s.quality, s.sourceTime, Date.parse(s.receivedAt));
    }
  });
  const t0 = performance.now();
  for (let i = 0; i < signals.length; i += 1000) batch.immediate(i);
  const rate = signals.length / ((performance.now() - t0) / 1000);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { rate, bytes: fileBytes(path) };
}

/** The product: append() with 100-signal calls, 20 in flight (drivers emitting concurrently). */
async function productAppend(dir: string, signals: Signal[], withRules = true): Promise<{ rate: number; bytes: number; txs: number }> {
  const path = join(dir, 'outbox.db');
  const o = openOutbox({ path, synchronous: 'full', minFreeDiskBytes: 0, retentionIntervalMs: 3_600_000, ...(withRules ? { rules: countRules() } : {}) });
  let next = 0;
  let txs = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < signals.length) {
        const from = next;
        next += 100;
        const r = await o.append(signals.slice(from, Math.min(from + 100, signals.length)));
        txs += r.transactions;
      }
    }),
  );
  const rate = signals.length / ((performance.now() - t0) / 1000);
  o.close();
  return { rate, bytes: fileBytes(path), txs };
}

async function durableAppend(): Promise<void> {
  const signals = Array.from({ length: rows }, (_, i) => reading(i));
  const bare: number[] = [];
  const product: number[] = [];
  const outboxOnly: number[] = [];
  const bytes: number[] = [];
  const bareBytes: number[] = [];
  for (let r = 0; r < appendRuns; r++) {
    // interleaved: bare, product, bare, product, … each on a fresh file
    for (const which of r % 2 ? ['product', 'outbox-only', 'bare'] : ['bare', 'outbox-only', 'product']) {
      const dir = mkdtempSync(join(baseDir, 'pb-bench-outbox-'));
      try {
        if (which === 'bare') {
          const b = bareInsert(dir, signals);
          bare.push(b.rate);
          bareBytes.push(b.bytes);
        } else if (which === 'outbox-only') {
          outboxOnly.push((await productAppend(dir, signals, false)).rate);
        } else {
          const p = await productAppend(dir, signals);
          if (p.txs < (rows / 100) * 0.9) throw new Error(`only ${p.txs} transactions derived`);
          product.push(p.rate);
          bytes.push(p.bytes);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  if (!json) {
    console.log(
      `  durable_append runs: product ${product.map((x) => round(x, 0)).join(', ')}; outbox only ${outboxOnly.map((x) => round(x, 0)).join(', ')}; bare ${bare.map((x) => round(x, 0)).join(', ')}`,
    );
  }
  emit(
    'durable_append',
    median(product),
    'signals/s',
    `bare better-sqlite3 INSERT of the same ${rows} event rows, 1000/transaction, WAL, synchronous=FULL, autocheckpoint off, same process; median of ${appendRuns} interleaved runs`,
    median(bare),
  );
  emit(
    'durable_append_outbox_only',
    median(outboxOnly),
    'signals/s',
    'the same bare INSERT; append() with dedupe and group commit but no rules: the outbox\'s own cost, apart from the rules\'',
    median(bare),
  );
  // the rules alone, in memory (no database): what the gap between the two figures above is made of
  const rulesOnly: number[] = [];
  for (let r = 0; r < runs; r++) {
    const engine = countRules();
    const state = new Map<string, unknown>();
    const access = { get: (id: string) => state.get(id), set: (id: string, v: unknown) => void state.set(id, v) };
    const t0 = performance.now();
    for (const sig of signals) engine.derive(sig, access);
    rulesOnly.push(signals.length / ((performance.now() - t0) / 1000));
  }
  emit('rules_derive', median(rulesOnly), 'signals/s');
  emit(
    'bytes_per_million',
    (median(bytes) / rows) * 1e6,
    'bytes',
    'bare event rows (UNIQUE source_id) per million, same run',
    (median(bareBytes) / rows) * 1e6,
  );
}

// ------------------------------------------------------------------------------------------------ claim + settle

async function claimSettleRun(): Promise<{ drained: number; ingested: number }> {
  const dir = mkdtempSync(join(baseDir, 'pb-bench-outbox-'));
  const o = openOutbox({ path: join(dir, 'outbox.db'), minFreeDiskBytes: 0, rules: countingDeriver(1, (s) => `O${Number(s.value) % 50}`) });
  try {
    // a backlog (the hub was away): enough that the forwarder never runs dry during the window (checked below)
    const backlog = Math.ceil(ingestRate * seconds * 40);
    for (let i = 0; i < backlog; i += 1000) await o.append(Array.from({ length: 1000 }, (_, k) => signal(i + k)));
    let seq = backlog;
    let ingested = 0;
    let drained = 0;
    let running = true;
    const t0 = performance.now();
    // steady ingest: every 10 ms, what is due at the target rate
    const ingest = (async () => {
      while (running) {
        const due = Math.floor(((performance.now() - t0) / 1000) * ingestRate) - ingested;
        if (due > 0) {
          const batch = Array.from({ length: due }, (_, k) => signal(seq + k));
          seq += due;
          ingested += due;
          await o.append(batch);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    // the forwarder's loop, with a hub that answers instantly: claim 500, settle all as sent
    const forward = (async () => {
      while (running) {
        const c = o.claim(500, 60_000);
        o.settle(c.map((x) => ({ seq: x.seq, status: 'sent' as const })));
        drained += c.length;
        // the backlog is gone: from here on the loop would measure the ingest rate, not its own
        if (c.length < 500) running = false;
        await new Promise((r) => setImmediate(r));
      }
    })();
    // the window: `seconds`, or until the backlog is drained (then the rate is over the time it took)
    const deadline = performance.now() + seconds * 1000;
    while (running && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    running = false;
    await Promise.all([ingest, forward]);
    const s = (performance.now() - t0) / 1000;
    return { drained: drained / s, ingested: ingested / s };
  } finally {
    o.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function claimSettle(): Promise<void> {
  const drained: number[] = [];
  const ingested: number[] = [];
  for (let r = 0; r < runs; r++) {
    const x = await claimSettleRun();
    drained.push(x.drained);
    ingested.push(x.ingested);
  }
  if (!json) console.log(`  claim_settle runs: ${drained.map((x) => round(x, 0)).join(', ')} tx/s while ingesting ${ingested.map((x) => round(x, 0)).join(', ')}/s`);
  emit(
    'claim_settle',
    median(drained),
    'transactions/s',
    `steady ingest of ${ingestRate} signals/s (1 transaction each) in the same process, FULL; claim 500 + settle per loop over a backlog of ${Math.ceil(ingestRate * seconds * 40)}; median of ${runs} runs of up to ${seconds} s (until the backlog is drained)`,
    median(ingested),
  );
}

// ------------------------------------------------------------------------------------------------ memory at a backlog

/** Writes n pending transactions straight into a fresh outbox file (fast, unsynced fill). */
function fill(path: string, n: number): void {
  openOutbox({ path, minFreeDiskBytes: 0 }).close();
  const db = new Database(path);
  db.pragma('synchronous = OFF');
  const body = JSON.stringify(transaction('template-key'));
  // the outbox's own layout (schema 4): the row, and its body in tx_bodies
  const ins = db.prepare(
    "INSERT INTO transactions(idempotency_key, id, type, order_key, status, legacy_body, bytes, created_at) VALUES (?, ?, 'ProductionConfirmation', ?, 'pending', '', ?, ?)",
  );
  const insBody = db.prepare('INSERT INTO tx_bodies(seq, body) VALUES (last_insert_rowid(), ?)');
  const now = Date.now();
  const chunk = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      ins.run(`P1:WC${i % 8}:1000${i % 8}:0010:plc/count:${i * 100}-${i * 100 + 100}`, `id-${i}`, `WC${i % 8}:1000${i % 8}`, body.length, now);
      insBody.run(body);
    }
  });
  for (let i = 0; i < n; i += 50_000) chunk(i, Math.min(n, i + 50_000));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

/** Child: open the outbox, work on it like the agent does, report RSS and stats() latency. */
async function rssChild(path: string): Promise<void> {
  const o = openOutbox({ path, minFreeDiskBytes: 0, rules: countRules() });
  for (let i = 0; i < 20_000; i += 500) await o.append(Array.from({ length: 500 }, (_, k) => reading(i + k)));
  for (let k = 0; k < 20; k++) {
    const c = o.claim(500, 60_000);
    o.settle(c.map((x) => ({ seq: x.seq, status: 'sent' as const })));
  }
  const t0 = performance.now();
  for (let k = 0; k < 100; k++) o.stats();
  const statsMs = (performance.now() - t0) / 100;
  const pendingNow = o.stats().pending;
  (globalThis as { gc?: () => void }).gc?.();
  const rss = process.memoryUsage().rss;
  o.close();
  console.log(JSON.stringify({ rss, statsMs, pending: pendingNow }));
}

function measureChild(path: string): { rss: number; statsMs: number; pending: number } {
  const r = spawnSync(process.execPath, ['--expose-gc', import.meta.filename, '--child-rss', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rss child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function rssAtBacklog(): void {
  const dir = mkdtempSync(join(baseDir, 'pb-bench-outbox-'));
  try {
    const empty = join(dir, 'empty.db');
    const full = join(dir, 'full.db');
    openOutbox({ path: empty, minFreeDiskBytes: 0 }).close();
    const t0 = performance.now();
    fill(full, pending);
    if (!json) console.log(`  filled ${pending} pending transactions in ${round((performance.now() - t0) / 1000)} s (${round(fileBytes(full) / 1024 ** 2)} MiB)`);
    const withNone: number[] = [];
    const withMany: number[] = [];
    const statsMs: number[] = [];
    for (let r = 0; r < runs; r++) {
      const a = measureChild(empty);
      const b = measureChild(full);
      withNone.push(a.rss);
      withMany.push(b.rss);
      statsMs.push(b.statsMs);
      // each child settles 10k of them and derives a few hundred
      if (b.pending < pending - 10_000 * (r + 1)) throw new Error(`expected about ${pending} pending, saw ${b.pending}`);
    }
    // the metric keeps its name at any size; the baseline text says which size was measured
    emit(
      'rss_10m_pending',
      (median(withMany) - median(withNone)) / 1024 ** 2,
      'MiB',
      `MEASURED AT ${pending} pending transactions${pending === 10_000_000 ? '' : ' (use --pending 10000000 for the 10M figure)'}: RSS minus the RSS (absolute MiB, as baseline_value) of the same open + 20k appends + 10k claim/settle + stats with 0 pending; median of ${runs} interleaved child processes`,
      median(withNone) / 1024 ** 2,
    );
    // no raw limit to compare with: the figure itself is the point (stats() with N pending, no COUNT scans)
    emit('stats_ms_at_pending', median(statsMs), 'ms');
    if (!json) console.log(`  stats() measured with ${pending} pending transactions`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------------ main

if (argv[0] === '--profile-append') {
  // node --cpu-prof bench/outbox.ts --profile-append: only the product side of durable_append
  const dir = mkdtempSync(join(baseDir, 'pb-bench-outbox-'));
  const r = await productAppend(dir, Array.from({ length: rows }, (_, i) => reading(i)));
  rmSync(dir, { recursive: true, force: true });
  console.log(r);
} else if (argv[0] === '--profile-derive') {
  // node --cpu-prof bench/outbox.ts --profile-derive: only the rules of durable_append, in memory (rules_derive)
  const signals = Array.from({ length: rows }, (_, i) => reading(i));
  let txs = 0;
  const t0 = performance.now();
  for (let r = 0; r < runs; r++) {
    const engine = countRules();
    const state = new Map<string, unknown>();
    const access = { get: (id: string) => state.get(id), set: (id: string, v: unknown) => void state.set(id, v) };
    for (const sig of signals) txs += engine.derive(sig, access).items.length;
  }
  console.log({ signals: rows * runs, txs, rate: Math.round((rows * runs) / ((performance.now() - t0) / 1000)) });
} else if (argv[0] === '--profile-claim') {
  console.log(await claimSettleRun());
} else if (argv[0] === '--child-rss') {
  await rssChild(argv[1]);
} else {
  if (!json) console.log(`outbox benchmark: Node ${process.version}, ${cpus().length} CPU (${cpus()[0]?.model ?? '?'}), files in ${baseDir}`);
  // --only append|claim|rss runs one part
  const only = strArg('only');
  if (!only || only === 'append') await durableAppend();
  if (!only || only === 'claim') await claimSettle();
  if ((!only || only === 'rss') && !argv.includes('--skip-rss')) rssAtBacklog();
}
