import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, outcomesResponseSchema, schemaId, validate } from '../../contracts/index.ts';
import { testLogger } from '../../test/helpers/log.ts';
import { renderDashboard } from '../dashboard/page.ts';
import { createHubMetrics } from '../metrics.ts';
import { SqliteHubStore } from '../store/sqlite/sqlite-store.ts';
import { d365TestAdapter } from '../erp/d365-mes/d365-test-kit.ts';
import { startD365Simulator } from '../erp/d365-mes/d365-simulator.ts';
import { ErpError, type ErpAdapter } from '../erp/erp-adapter.ts';
import { PostingService } from './posting-service.ts';
import { createSapOdataAdapter } from '../erp/sap-odata/sap-odata-adapter.ts';
import { startSapSimulator, SAP_SIM_USER, type SapSimulator } from '../erp/sap-odata/sap-simulator.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';

/**
 * The posting service against the real SAP simulator and a real store: exactly one ERP document per
 * idempotency key whatever fails, and nothing left behind.
 */

const adapterFor = (sap: SapSimulator, timeoutMs = 2000) =>
  createSapOdataAdapter(
    { type: 'sap-odata', url: sap.url, auth: { type: 'basic', username: SAP_SIM_USER.username, password: new Secret(SAP_SIM_USER.password, 'test') }, timeout: timeoutMs, concurrency: 4 } as never,
    {},
  );

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function assertOneDocumentPerKey(sap: SapSimulator, keys: string[], uuid: (k: string) => string): void {
  const byExt = new Map<string, number>();
  for (const c of sap.confirmations()) byExt.set(c.ExternalSystemConfirmation, (byExt.get(c.ExternalSystemConfirmation) ?? 0) + 1);
  const doubles = [...byExt.values()].filter((n) => n > 1).length;
  assert.equal(doubles, 0, 'no key was posted twice');
  for (const k of keys) assert.equal(byExt.get(uuid(k)), 1, `exactly one document for ${k}`);
  assert.equal(sap.confirmations().length, keys.length);
}

async function setup(t: { after: (fn: () => unknown) => void }, opts: { timeoutMs?: number; latencyMs?: number; productRetry?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pb-posting-'));
  const sap = await startSapSimulator({ latencyMs: opts.latencyMs ?? 0 });
  const store = new SqliteHubStore(join(dir, 'hub.db'));
  // productRetry: the shipped retry policy (backoff from 1 s, doubling, capped at 5 min; 20 attempts)
  const retry = opts.productRetry ? {} : { retryMaxDelayMs: 300, inDoubtWaitMs: 300 };
  const service = new PostingService({ store, adapter: adapterFor(sap, opts.timeoutMs), log: testLogger(), concurrency: 4, leaseMs: 5000, ...retry, idleMs: 20 });
  t.after(async () => {
    await service.stop();
    await store.close();
    await sap.stop();
  });
  return { dir, sap, store, service };
}

const { sapExternalId } = await import('../erp/sap-odata/sap-odata-adapter.ts');

test('the ERP answers 500 for a minute, then recovers: with the shipped retry policy everything is posted once, nothing dead-lettered', async (t) => {
  const { sap, store, service } = await setup(t, { productRetry: true });
  const txs = Array.from({ length: 40 }, (_, i) => confirmation(`10000${i % 8}`, i));
  await store.ingest('test-agent', txs, new Date());
  // the minute, against the default backoff: attempts must not run out during the outage; after
  // it the next attempt comes within one backoff step (at most ~64 s at that point)
  sap.setFault({ kind: 'status', status: 500, forMs: 60_000 });
  service.start();
  await until('all posted', async () => (await store.counts()).posted === txs.length, 180_000);
  assertOneDocumentPerKey(sap, txs.map((x) => x.idempotencyKey), sapExternalId);
  assert.equal((await store.counts()).failed, 0);
});

test('timeouts after the ERP committed: the key is looked up, never posted twice', async (t) => {
  const { sap, store, service } = await setup(t, { timeoutMs: 300 });
  const txs = Array.from({ length: 12 }, (_, i) => confirmation(`20000${i % 3}`, i));
  await store.ingest('test-agent', txs, new Date());
  sap.setFault({ kind: 'timeout-after-commit', mode: 'destroy', count: 4 });
  sap.setFault({ kind: 'timeout-after-commit', mode: 'hold', count: 2 });
  service.start();
  await until('all posted', async () => (await store.counts()).posted === txs.length);
  assertOneDocumentPerKey(sap, txs.map((x) => x.idempotencyKey), sapExternalId);
  const rows = await store.listTransactions({ limit: 100, state: 'posted' });
  assert.ok(rows.some((r) => r.attempts > 1), 'some postings needed a second attempt (resolved by lookup)');
});

test('a closed order becomes a dead letter with the SAP message; replay after reopening posts once', async (t) => {
  const { sap, store, service } = await setup(t);
  sap.closeOrder('3000001');
  const bad = confirmation('3000001', 0);
  const good = confirmation('3000002', 0);
  await store.ingest('test-agent', [bad, good], new Date());
  service.start();
  await until('one posted, one failed', async () => {
    const c = await store.counts();
    return c.posted === 1 && c.failed === 1;
  });
  const failed = (await store.listTransactions({ limit: 10, state: 'failed' }))[0];
  assert.equal(failed.idempotencyKey, bad.idempotencyKey);
  assert.equal(failed.errorCode, 'ERP_BUSINESS');
  assert.match(failed.errorMessage ?? '', /RU\/494/);
  const outcome = await store.outcomeOf(bad.idempotencyKey);
  assert.equal(outcome?.state, 'failed');

  sap.reopenOrder('3000001');
  assert.equal(await store.replay(failed.seq, 'tester'), true);
  await until('replayed and posted', async () => (await store.counts()).posted === 2);
  assertOneDocumentPerKey(sap, [bad.idempotencyKey, good.idempotencyKey], sapExternalId);
  const audit = await store.listAudit(10);
  assert.ok(audit.some((a) => a.action === 'dead-letter.replay' && a.actor === 'tester'), 'the replay is audited with who did it');
  assert.equal(await store.replay(failed.seq, 'tester'), false, 'a posted transaction cannot be replayed');
});

test('the hub killed with SIGKILL during posting 20 times: no duplicate document, nothing lost', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-posting-kill-'));
  const sap = await startSapSimulator({ latencyMs: 40 });
  t.after(() => sap.stop());
  const storePath = join(dir, 'hub.db');
  const seed = new SqliteHubStore(storePath);
  const txs = Array.from({ length: 300 }, (_, i) => confirmation(`40000${i % 10}`, i));
  await seed.ingest('test-agent', txs, new Date());
  await seed.close();
  const child = join(import.meta.dirname, 'test-kit', 'posting-child.ts');
  const startChild = () =>
    new Promise<ReturnType<typeof spawn>>((resolve, reject) => {
      const p = spawn(process.execPath, [child, storePath, sap.url, '300'], { stdio: ['ignore', 'pipe', 'inherit'] });
      p.once('error', reject);
      p.stdout!.once('data', () => resolve(p));
    });
  let kills = 0;
  for (; kills < 20; kills++) {
    const p = await startChild();
    // kill at a random point while calls are in flight
    await new Promise((r) => setTimeout(r, 60 + Math.random() * 140));
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }
  const last = await startChild();
  t.after(() => last.kill('SIGKILL'));
  const check = new SqliteHubStore(storePath);
  t.after(() => check.close());
  await until('all posted after the kills', async () => (await check.counts()).posted === txs.length, 60_000);
  assert.equal(kills, 20);
  const rows = await check.listTransactions({ limit: 1000, state: 'posted' });
  assert.ok(rows.some((r) => r.attempts > 1), 'kills landed while calls were in flight (leases expired, keys looked up)');
  assertOneDocumentPerKey(sap, txs.map((x) => x.idempotencyKey), sapExternalId);
});

/** An ERP stand-in that keeps what it committed, for timing races the simulators do not stage. */
function recordingErp(post: (tx: { idempotencyKey: string }, commit: () => void) => Promise<void>) {
  const docs: string[] = [];
  const adapter: ErpAdapter = {
    name: 'recording',
    async post(tx) {
      let ref = '';
      await post(tx, () => {
        docs.push(tx.idempotencyKey);
        ref = `DOC-${docs.length}`;
      });
      return { status: 'posted', erpRef: ref };
    },
    async lookup(tx) {
      const i = docs.indexOf(tx.idempotencyKey);
      return i >= 0 ? { found: true, erpRef: `DOC-${i + 1}` } : { found: false };
    },
    async healthcheck() {
      return { ok: true };
    },
  };
  return { adapter, docs };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store with one confirmation and a posting service on `erp`, started; both closed after the test. */
async function postOne(t: { after: (fn: () => Promise<void>) => void }, erp: ErpAdapter, opts: Partial<ConstructorParameters<typeof PostingService>[0]>, order: string) {
  const store = new SqliteHubStore(join(mkdtempSync(join(tmpdir(), 'pb-posting-one-')), 'hub.db'));
  const service = new PostingService({ store, adapter: erp, log: testLogger(), idleMs: 10, ...opts });
  t.after(async () => {
    await service.stop();
    await store.close();
  });
  const tx = confirmation(order, 0);
  await store.ingest('test-agent', [tx], new Date());
  const started = Date.now();
  service.start();
  await until('posted', async () => (await store.counts()).posted === 1);
  return { store, tx, started };
}

test('an ERP call that takes longer than the lease keeps it (renewed while it runs): one document, one call', async (t) => {
  let calls = 0;
  const erp = recordingErp(async (_tx, commit) => {
    calls++;
    await sleep(900);
    commit();
  });
  const { store, tx } = await postOne(t, erp.adapter, { leaseMs: 300 }, '5000001');
  await sleep(400); // a second claim, had there been one, would be in its call by now
  assert.equal(calls, 1, 'no second claim while the first call ran');
  assert.deepEqual(erp.docs, [tx.idempotencyKey]);
  const row = (await store.lineage(tx.idempotencyKey))!;
  assert.equal(row.transaction.attempts, 1);
});

test('a slow ERP still processing a timed-out post: the lookup waits inDoubtWait, so the key is not posted twice', async (t) => {
  // the first post times out at the hub after 100 ms, but the ERP commits it 1.5 s later
  let first = true;
  const erp = recordingErp(async (_tx, commit) => {
    if (first) {
      first = false;
      setTimeout(commit, 1500);
      await sleep(100);
      throw new ErpError('ERP_IN_DOUBT', 'no answer within 100 ms (request sent)');
    }
    commit();
  });
  // the shipped backoff would look up after 0.5-1 s, before the ERP committed
  const { store, tx, started } = await postOne(t, erp.adapter, { inDoubtWaitMs: 2500 }, '5000002');
  await sleep(1700 - (Date.now() - started)); // past the first post's late commit
  assert.deepEqual(erp.docs, [tx.idempotencyKey], 'one document: the late commit of the first post');
  const row = (await store.lineage(tx.idempotencyKey))!;
  assert.equal(row.transaction.erpRef, 'DOC-1');
  assert.ok(row.events.some((e) => e.kind === 'posting.retry'), 'the first attempt ended in doubt');
});

/** One confirmation posted on `erp` with 3 attempts at most, until it is a dead letter; its row, outcome and failure counts. */
async function deadLetterOf(t: { after: (fn: () => Promise<void>) => void }, erp: ErpAdapter, order: string) {
  const store = new SqliteHubStore(join(mkdtempSync(join(tmpdir(), 'pb-posting-dead-')), 'hub.db'));
  const metrics = createHubMetrics();
  const service = new PostingService({ store, adapter: erp, log: testLogger(), metrics, idleMs: 10, maxAttempts: 3, inDoubtWaitMs: 20, retryMaxDelayMs: 20 });
  t.after(async () => {
    await service.stop();
    await store.close();
  });
  const tx = confirmation(order, 0);
  await store.ingest('test-agent', [tx], new Date());
  service.start();
  await until('dead letter', async () => (await store.counts()).failed === 1);
  const failed = new Map((await metrics.erpFailed.get()).values.map((v) => [v.labels.class, v.value]));
  return { row: (await store.getTransaction(tx.idempotencyKey))!, outcome: (await store.outcomeOf(tx.idempotencyKey))!, failed };
}

const unreachable = () => new ErpError('UPSTREAM_UNAVAILABLE', 'connect ECONNREFUSED');

test('in doubt to the last attempt: a dead letter ERP_IN_DOUBT that tells the operator to check the ERP first, apart from plain failures', async (t) => {
  // every post times out after it was sent; the ERP may or may not hold the document
  let posts = 0;
  const { row, outcome, failed } = await deadLetterOf(
    t,
    {
      name: 'doubtful',
      post: async () => {
        posts++;
        throw new ErpError('ERP_IN_DOUBT', 'no answer within 30 s (request sent)');
      },
      lookup: async () => ({ found: false }),
      healthcheck: async () => ({ ok: true }),
    },
    '6000001',
  );
  assert.equal(posts, 3);
  assert.equal(row.state, 'failed');
  assert.equal(row.errorCode, 'ERP_IN_DOUBT');
  assert.match(row.errorMessage ?? '', /outcome unknown after 3 attempts/);
  assert.match(row.errorMessage ?? '', /check the ERP/i);
  assert.ok(row.errorMessage?.includes(row.idempotencyKey), 'names the reference to look for');
  assert.deepEqual([outcome.state, outcome.code], ['failed', 'ERP_IN_DOUBT'], 'the agent learns it is in doubt, not refused');
  assert.match(outcome.message ?? '', /check the ERP/i);
  const wire = { schema: schemaId('agent-outcomes', 1, 0), cursor: '1', more: false, items: [{ idempotencyKey: row.idempotencyKey, outcome }] };
  assert.equal(validate(outcomesResponseSchema, wire).ok, true, 'agents read it with the v1 outcomes contract');
  assert.equal(failed.get('in_doubt_unresolved'), 1);
  assert.equal(failed.get('exhausted'), undefined, 'not counted as a plain exhausted posting');
  assert.equal(row.inDoubt, true);
  const page = renderDashboard({ agents: [], counts: { queued: 0, posted: 0, failed: 1, discarded: 0 }, transactions: [], deadLetters: [row], version: 'test' });
  assert.match(page, /ERP_IN_DOUBT <span class="badge degraded">outcome unknown<\/span>/);
});

test('in doubt once, then the ERP unreachable until the attempts run out: still ERP_IN_DOUBT (nothing looked it up since)', async (t) => {
  let calls = 0;
  const { row, outcome, failed } = await deadLetterOf(
    t,
    {
      name: 'doubtful-then-down',
      post: async () => {
        calls++;
        throw calls === 1 ? new ErpError('ERP_IN_DOUBT', 'socket reset after the request was sent') : unreachable();
      },
      lookup: async () => {
        throw unreachable();
      },
      healthcheck: async () => ({ ok: false }),
    },
    '6000002',
  );
  assert.equal(row.errorCode, 'ERP_IN_DOUBT');
  assert.equal(outcome.code, 'ERP_IN_DOUBT');
  assert.match(row.errorMessage ?? '', /ECONNREFUSED/, 'the last error is kept');
  assert.equal(failed.get('in_doubt_unresolved'), 1);
});

test('never sent (the ERP refused connections to the last attempt): a plain UPSTREAM_UNAVAILABLE dead letter, not in doubt', async (t) => {
  const { row, outcome, failed } = await deadLetterOf(
    t,
    {
      name: 'down',
      post: async () => {
        throw unreachable();
      },
      lookup: async () => {
        throw unreachable();
      },
      healthcheck: async () => ({ ok: false }),
    },
    '6000003',
  );
  assert.equal(row.errorCode, 'UPSTREAM_UNAVAILABLE');
  assert.equal(outcome.code, 'UPSTREAM_UNAVAILABLE');
  assert.equal(failed.get('exhausted'), 1);
  assert.equal(failed.get('in_doubt_unresolved'), undefined);
});

test('an ERP_IN_DOUBT dead letter replayed at once is not looked up before inDoubtWait: the ERP still processing it, it is posted once', async (t) => {
  // D365 shows a message in its lookup entity only 1 s after SendMessage (still processing)
  const sim = await startD365Simulator({ processingIntervalMs: 20, entityLagMs: 1000 });
  const adapter = d365TestAdapter(sim.url, 2000);
  const store = new SqliteHubStore(join(mkdtempSync(join(tmpdir(), 'pb-posting-replay-')), 'hub.db'));
  const service = new PostingService({ store, adapter, log: testLogger(), idleMs: 10, maxAttempts: 1, inDoubtWaitMs: 1500, retryMaxDelayMs: 20 });
  t.after(async () => {
    await service.stop();
    await adapter.close?.();
    await store.close();
    await sim.stop();
  });
  const tx = confirmation('6100001', 0);
  await store.ingest('test-agent', [tx], new Date());
  // the only attempt's request reaches D365, its answer is lost: in doubt at the last attempt
  sim.setFault({ kind: 'timeout-after-commit', mode: 'destroy' });
  service.start();
  await until('dead letter', async () => (await store.counts()).failed === 1, 5000);
  const inDoubtAt = Date.now();
  const row = (await store.getTransaction(tx.idempotencyKey))!;
  assert.equal(row.errorCode, 'ERP_IN_DOUBT');
  // the operator replays at once
  const before = sim.stats();
  assert.equal(await store.replay(row.seq, 'operator'), true);
  await sleep(1200 - (Date.now() - inDoubtAt));
  assert.deepEqual([sim.stats().gets, sim.stats().sends], [before.gets, before.sends], 'no lookup and no post before inDoubtWait');
  await until('posted', async () => (await store.counts()).posted === 1, 10_000);
  assert.ok(Date.now() - inDoubtAt >= 1400, 'looked up only after the wait');
  assert.equal(sim.messages().filter((m) => m.Reference === tx.idempotencyKey).length, 1, 'posted once');
  assert.equal((await store.getTransaction(tx.idempotencyKey))?.erpRef, sim.messages()[0].MessageId);
});
