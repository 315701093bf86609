import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { PostingService } from '../central-hub/posting/posting-service.ts';
import { SqliteHubStore } from '../central-hub/store/sqlite/sqlite-store.ts';
import { parseConfig, resolveSecrets, type Transaction } from '../contracts/index.ts';
import { sapOdataConfigSchema } from '../central-hub/erp/sap-odata/config.ts';
import { createSapOdataAdapter } from '../central-hub/erp/sap-odata/sap-odata-adapter.ts';
import { SAP_SIM_USER, startSapSimulator } from '../central-hub/erp/sap-odata/sap-simulator.ts';
import { sampleTransaction } from '../central-hub/erp/sample-transactions.ts';

/**
 * ERP posting benchmark (DESIGN.md §8), both against the latency-bound limit concurrency / latency:
 * - `sap_postings`: the hub's real path — transactions ingested into a SQLite hub store (WAL,
 *   synchronous=FULL), claimed, posted by the PostingService through the sap-odata adapter, outcomes
 *   recorded — to the SAP simulator with a fixed latency per call. Orders outnumber the concurrency,
 *   since one order posts one transaction at a time.
 * - `sap_postings_adapter`: the adapter alone, driven by a bounded-concurrency loop (no store).
 * The ratio is what the hub's own work (store, mapping, HTTP, parsing) costs.
 *
 * The simulator runs in a worker thread, as the ERP runs on another machine: its CPU time is not
 * charged to the hub (on a 2-core machine the in-process simulator alone costs ~5% of the ratio).
 *
 *   node bench/erp.ts [--json] [--concurrency 16] [--latency-ms 50] [--postings 800] [--runs 3] [--in-process-sim]
 */

if (!isMainThread) {
  const sim = await startSapSimulator({ latencyMs: (workerData as { latencyMs: number }).latencyMs });
  parentPort!.postMessage(sim.url);
  parentPort!.once('message', () => void sim.stop().then(() => process.exit(0)));
}

/** The SAP simulator in a worker thread (default) or in this thread. */
async function startSim(latencyMs: number, inProcess: boolean): Promise<{ url: string; stop(): Promise<void> }> {
  if (inProcess) return startSapSimulator({ latencyMs });
  const worker = new Worker(new URL(import.meta.url), { workerData: { latencyMs } });
  const url = await new Promise<string>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    url,
    stop: async () => {
      const exited = new Promise((r) => worker.once('exit', r));
      worker.postMessage('stop');
      await exited;
    },
  };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} expects a positive number`);
  return v;
}

const json = process.argv.includes('--json');
const inProcessSim = process.argv.includes('--in-process-sim');
const concurrency = arg('concurrency', 16);
const latencyMs = arg('latency-ms', 50);
const postings = arg('postings', concurrency * 50);
const runs = arg('runs', 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function sapConfig(url: string) {
  return resolveSecrets(
    parseConfig(sapOdataConfigSchema, {
      type: 'sap-odata',
      url,
      auth: { type: 'basic', username: SAP_SIM_USER.username, password: '${SAP_PASSWORD}' },
      concurrency,
    }),
    { env: { SAP_PASSWORD: SAP_SIM_USER.password }, readFile: () => '' },
  );
}

/** The posting service over a SQLite store: postings/s from start until every outcome is recorded. */
async function runService(): Promise<number> {
  const sim = await startSim(latencyMs, inProcessSim);
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-erp-'));
  const store = new SqliteHubStore(join(dir, 'hub.db'));
  const adapter = createSapOdataAdapter(sapConfig(sim.url));
  const orders = concurrency * 4;
  const txs = Array.from({ length: postings }, (_, i) => sampleTransaction('ProductionConfirmation', { order: String(1_000_000 + (i % orders)) }));
  let done = 0;
  let failed = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const service = new PostingService({
    store,
    adapter,
    log: pino({ level: 'silent' }),
    concurrency,
    idleMs: 5,
    onOutcome: (_tx, outcome) => {
      if (outcome.kind !== 'posted') failed++;
      if (++done === txs.length) resolveAll();
    },
  });
  try {
    await store.ingest('bench-agent', txs, new Date());
    await adapter.healthcheck(); // CSRF token and a warm connection, as in a running hub
    const t0 = performance.now();
    service.start();
    await all;
    const seconds = (performance.now() - t0) / 1000;
    if (failed > 0) throw new Error(`${failed} postings were not posted`);
    return txs.length / seconds;
  } finally {
    await service.stop();
    await store.close();
    await adapter.close?.();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The adapter alone: postings/s of a bounded-concurrency loop. */
async function run(): Promise<number> {
  const sim = await startSim(latencyMs, inProcessSim);
  const adapter = createSapOdataAdapter(sapConfig(sim.url));
  try {
    // the transactions already sit in the hub's store: build them outside the timed part
    const txs: Transaction[] = Array.from({ length: postings }, (_, i) => sampleTransaction(i % 2 ? 'ProductionConfirmation' : 'MaterialConsumption'));
    // warm up: CSRF tokens and the connection pool
    await adapter.healthcheck();
    await Promise.all(Array.from({ length: concurrency }, () => adapter.post(sampleTransaction('ProductionConfirmation'), { attempt: 1 })));
    let next = 0;
    let failed = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < txs.length) {
          const tx = txs[next++];
          const r = await adapter.post(tx, { attempt: 1 });
          if (r.status !== 'posted') failed++;
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    if (failed > 0) throw new Error(`${failed} postings were not posted`);
    return txs.length / seconds;
  } finally {
    await adapter.close?.();
    await sim.stop();
  }
}

if (isMainThread) await main();

async function main(): Promise<void> {
  const limit = concurrency / (latencyMs / 1000);
  const where = `SAP simulator in ${inProcessSim ? 'this thread' : 'a worker thread'}, 1 call per posting`;
  const suites = [
    {
      metric: 'sap_postings',
      measure: runService,
      what: `PostingService + SQLite hub store + sap-odata adapter, ${concurrency * 4} orders`,
    },
    { metric: 'sap_postings_adapter', measure: run, what: 'sap-odata adapter alone, bounded-concurrency loop, no store' },
  ];
  for (const suite of suites) {
    const rates: number[] = [];
    for (let i = 0; i < runs; i++) rates.push(await suite.measure());
    const value = median(rates);
    const result = {
      bench: 'erp',
      metric: suite.metric,
      value: Math.round(value * 10) / 10,
      unit: 'postings/s',
      baseline: `latency-bound limit: concurrency ${concurrency} / ${latencyMs} ms per call (${where}); ${suite.what}; median of ${runs} runs of ${postings}`,
      baseline_value: limit,
      ratio: Math.round((value / limit) * 1000) / 1000,
    };
    if (json) console.log(JSON.stringify(result));
    else console.log(`${suite.metric}: ${result.value} postings/s of ${limit} (ratio ${result.ratio}; runs ${rates.map((r) => r.toFixed(1)).join(', ')}) — ${suite.what}`);
  }
}
