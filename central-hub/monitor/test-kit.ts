import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { erpMessageCode, schemaId, ulid, type AgentHeartbeat, type Transaction } from '../../contracts/index.ts';
import { testLogger } from '../../test/helpers/log.ts';
import { instantErp } from '../api/test-hub.ts';
import { buildHub, type Hub } from '../build-hub.ts';
import { parseHubConfig } from '../config/load.ts';
import type { ErpAdapter } from '../erp/erp-adapter.ts';
import type { HubStore } from '../store/hub-store.ts';
import { testTx } from '../store/test-tx.ts';

/**
 * Monitoring tests: a hub on a given store (SQLite file or PostgreSQL schema), opened for inject(), with
 * a stand-in for the console's access hook (#21): the `x-test-plants` header makes the request a viewer
 * limited to those plants, as the real hook will.
 */
/** `erp`: an `erp:` section (the adapter is built from it, its secrets from `env`); else an instant ERP */
export async function monitorHub(opts: { yaml?: string; store?: HubStore; adapter?: ErpAdapter; erp?: string; env?: Record<string, string> } = {}): Promise<{ hub: Hub; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-monitor-'));
  const { config } = parseHubConfig(
    `hub: { port: 0, dataDir: ${dir} }
log: { level: warn }
${opts.erp ?? 'erp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: u, password: "${PW}" } }'}
${opts.yaml ?? ''}`,
    join(dir, 'hub.yaml'),
    { env: { PW: 'x', ...opts.env }, readFile: () => '' },
  );
  const adapter = opts.adapter ?? (opts.erp ? undefined : instantErp());
  const hub = buildHub({ config, log: testLogger(), ...(adapter ? { adapter } : {}), ...(opts.store ? { store: opts.store } : {}) });
  hub.app.addHook('onRequest', async (req) => {
    const h = req.headers['x-test-plants'];
    if (typeof h === 'string') req.principal = { kind: 'token', name: 'test', role: 'viewer', plants: h === '' ? [] : h.split(',') };
  });
  await hub.open();
  return {
    hub,
    stop: async () => {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Claims and completes `txs` (and only them) as posted at `postedAt`, order by order, until all are posted. */
export async function postAll(store: HubStore, txs: Transaction[], postedAt: Date): Promise<void> {
  const left = new Set(txs.map((t) => t.idempotencyKey));
  for (let round = 0; left.size > 0 && round < 10_000; round++) {
    const jobs = (await store.claimPostings(1000, 60_000, `seed-${round}`, postedAt)).filter((j) => left.has(j.tx.idempotencyKey));
    if (jobs.length === 0) throw new Error(`postAll: ${left.size} transaction(s) cannot be claimed`);
    for (const j of jobs) {
      await store.completePosting(j.seq, `seed-${round}`, { kind: 'posted', erpRef: `DOC-${j.seq}` }, postedAt);
      left.delete(j.tx.idempotencyKey);
    }
  }
}

/** Posted transactions of one plant and type with the given latencies, posted at `postedAt`, each its own order. */
export async function seedLatencies(store: HubStore, plant: string, latenciesMs: number[], postedAt: Date, prefix = 'L'): Promise<Transaction[]> {
  const txs = latenciesMs.map((ms, i) => {
    const tx = testTx({ plant, order: `${prefix}-${i}`, agentId: 'edge-seed', workCenter: `WC-${i % 3}` });
    tx.eventTime = new Date(postedAt.getTime() - ms).toISOString();
    return tx;
  });
  await store.ingest('edge-seed', txs, new Date(postedAt.getTime() - 1000));
  await postAll(store, txs, postedAt);
  return txs;
}

/** An order whose first transaction became a dead letter (ERP_BUSINESS) and `heldBack` more wait behind it. */
export async function seedDeadLetter(store: HubStore, plant: string, order: string, heldBack: number, receivedAt: Date, message = 'order is closed'): Promise<{ dead: Transaction; held: Transaction[] }> {
  const [dead, ...held] = Array.from({ length: heldBack + 1 }, () => testTx({ plant, order, agentId: 'edge-seed', workCenter: 'WC-7' }));
  await store.ingest('edge-seed', [dead, ...held], receivedAt);
  const at = new Date(receivedAt.getTime() + 1000);
  const job = (await store.claimPostings(1000, 60_000, 'seed-dl', at)).find((j) => j.tx.idempotencyKey === dead.idempotencyKey);
  if (!job) throw new Error('seedDeadLetter: the head was not claimed');
  await store.completePosting(job.seq, 'seed-dl', { kind: 'failed', code: 'ERP_BUSINESS', message, erpCode: erpMessageCode('RU/494') }, at);
  return { dead, held };
}

export function heartbeatOf(agentId: string, plant: string, opts: Partial<Pick<AgentHeartbeat, 'drivers' | 'outbox'>> = {}): AgentHeartbeat {
  const now = new Date().toISOString();
  return {
    schema: schemaId('agent-heartbeat', 1, 0),
    id: ulid(),
    agentId,
    plant,
    sentAt: now,
    version: '0.1.0',
    uptimeS: 5,
    configVersion: 'abc',
    mode: 'live',
    drivers: opts.drivers ?? [{ name: 'sim', type: 'simulator', state: 'up', since: now, lastValueAt: now }],
    outbox: opts.outbox ?? { pending: 0, oldestPendingAgeS: 0, deadLetters: 0, bytes: 0, diskFreeBytes: 1e9, full: false },
    rates: { signalsPerS: 1, forwardedPerS: 1 },
    alarms: [],
  };
}

export async function seedAgent(store: HubStore, id: string, plant: string, hb: AgentHeartbeat | undefined, receivedAt: Date): Promise<void> {
  await store.upsertAgent({ id, plants: [plant], tokenHash: createHash('sha256').update(`tok-${id}-${ulid()}`).digest('hex') });
  if (hb) await store.recordHeartbeat(hb, receivedAt);
}
