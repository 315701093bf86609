import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { Outcome } from '../../contracts/index.ts';
import { makeTestPki, removeDir, startTestHub, type TestHub } from '../../central-hub/api/test-hub.ts';
import { testLogger } from '../../test/helpers/log.ts';
import type { ClaimedTx, Outbox } from '../outbox/outbox.ts';
import { Forwarder, serialiseBatch, splitLanes, type ForwarderOptions } from './forwarder.ts';
import { secret, signal, testOutbox, waitFor, type TxSpec } from './test-kit.ts';

/**
 * The forwarder against a real hub on port 0 (or in a child process), with a real outbox on disk.
 * The outages last as long as the issue asks (the two tests take ~110 s of wall time, mostly waiting, and
 * run beside the other test files); shorter ones for a quick local loop:
 *   PB_TEST_HUB_DOWN_MS  how long the hub is down during steady ingest (default 60000)
 *   PB_TEST_SIGSTOP_MS   how long the hub process is stopped (default 30000)
 */
const HUB_DOWN_MS = Number(process.env.PB_TEST_HUB_DOWN_MS ?? 60_000);
const SIGSTOP_MS = Number(process.env.PB_TEST_SIGSTOP_MS ?? 30_000);

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

type Frame = { batchId: string; items: Array<{ id: string; idempotencyKey: string }> };

/**
 * A bare endpoint in the hub's place that answers each ingest frame with `results(frame, raw, req)`; its
 * server and a test outbox are cleaned up after the test. Returns the endpoint's URL and the outbox.
 */
async function fakeHub(results: (frame: Frame, raw: Buffer, req: IncomingMessage) => unknown[]): Promise<{ url: string; outbox: Outbox }> {
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const frame = JSON.parse(raw.toString('utf8')) as Frame;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ schema: 'plantbridge.ingest-result/1.0', batchId: frame.batchId, receivedAt: new Date().toISOString(), results: results(frame, raw, req) }));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  const { outbox, dir } = testOutbox('edge-1');
  cleanups.push(() => {
    outbox.close();
    removeDir(dir);
  });
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, outbox };
}

function forwarder(outbox: Outbox, url: string, token: string, extra: Partial<ForwarderOptions> = {}): Forwarder {
  const f = new Forwarder({
    outbox,
    hubUrl: url,
    token: secret(token),
    agentId: 'edge-1',
    log: testLogger(),
    idleMs: 50,
    retryMaxDelayMs: 400,
    requestTimeoutMs: 2000,
    retries: 2,
    progressIntervalMs: 200,
    ...extra,
  });
  cleanups.push(() => f.stop());
  return f;
}

async function setup(hubOpts: Parameters<typeof startTestHub>[0] = {}) {
  const t = await startTestHub(hubOpts);
  const token = await t.addAgent('edge-1', ['P1']);
  const { outbox, dir } = testOutbox('edge-1');
  cleanups.push(() => {
    outbox.close();
    removeDir(dir);
  });
  cleanups.push(async () => {
    await t.stop().catch(() => {});
    removeDir(t.dir);
  });
  return { t, token, outbox };
}

const statusCount = (outbox: Outbox, status: string) => outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM transactions WHERE status = ?', status)[0].n;

/** every key exactly once in the hub, and per order in the order they were generated */
async function assertDeliveredInOrder(t: TestHub, keysByOrder: Map<string, string[]>): Promise<void> {
  const total = [...keysByOrder.values()].reduce((s, k) => s + k.length, 0);
  const rows = await t.hub.store.listTransactions({ limit: total + 1000 });
  assert.equal(rows.length, total, 'each transaction stored exactly once');
  const bySeq = [...rows].sort((a, b) => a.seq - b.seq);
  for (const [order, keys] of keysByOrder) {
    const got = bySeq.filter((r) => `${r.workCenter}:${r.order}` === order).map((r) => r.idempotencyKey);
    assert.deepEqual(got, keys, `order ${order} arrived in outbox order`);
  }
}

void describe('forwarder -> hub', () => {
  void it(`keeps everything through a hub outage during steady ingest (hub down ${HUB_DOWN_MS} ms), no duplicates stored, order kept, backlog drains`, async () => {
    const { t, token, outbox } = await setup();
    const port = Number(new URL(t.url).port);
    const registry = new Registry();
    const f = forwarder(outbox, t.url, token, { inFlight: 3, batchSize: 50, registry });
    f.start();
    const keysByOrder = new Map<string, string[]>();
    let produced = 0;
    let producing = true;
    const producer = (async () => {
      while (producing) {
        const sigs = Array.from({ length: 6 }, (_, i) => {
          const spec: TxSpec = { wc: `WC-${i % 3}`, order: `O-${i % 2}` };
          const s = signal(spec);
          const k = `${spec.wc}:${spec.order}`;
          keysByOrder.set(k, [...(keysByOrder.get(k) ?? []), s.sourceId]);
          return s;
        });
        await outbox.append(sigs);
        f.notify();
        produced += sigs.length;
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    await new Promise((r) => setTimeout(r, 400));
    await t.stop();
    const downAt = produced;
    await new Promise((r) => setTimeout(r, HUB_DOWN_MS));
    assert.ok(['backoff', 'sending'].includes(f.state().state));
    assert.ok(outbox.stats().pending > 0, 'a backlog built up while the hub was down');
    const t2 = await startTestHub({ dir: t.dir, port });
    cleanups.push(() => t2.stop().catch(() => {}));
    await new Promise((r) => setTimeout(r, 400));
    producing = false;
    await producer;
    assert.ok(produced > downAt);
    await waitFor(() => outbox.stats().pending === 0, 30_000, 'the backlog to drain');
    assert.equal(outbox.stats().deadLetters, 0);
    assert.equal(statusCount(outbox, 'sent'), produced);
    await assertDeliveredInOrder(t2, keysByOrder);
    const text = await registry.metrics();
    assert.match(text, /plantbridge_agent_forward_backlog_transactions \d+/);
    assert.match(text, /plantbridge_agent_forward_rate_per_second/);
  });

  void it(`retries in-flight batches when the hub process is SIGSTOPped (${SIGSTOP_MS} ms); re-sent items are answered as duplicates`, async (ctx) => {
    if (process.platform === 'win32') return ctx.skip('SIGSTOP is POSIX');
    const dir = mkdtempSync(join(tmpdir(), 'pb-hub-child-'));
    const credential = `pbc_${randomBytes(24).toString('base64url')}`;
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../central-hub/api/test-hub-child.ts'), dir, 'edge-1', 'P1'], {
      env: { ...process.env, PB_TEST_CREDENTIAL: credential },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(async () => {
      if (child.exitCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      removeDir(dir);
    });
    const url = await new Promise<string>((resolve) => {
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (line) => {
        if (/^https?:\/\//.test(line)) resolve(line.trim());
      });
    });
    const { outbox, dir: odir } = testOutbox('edge-1');
    cleanups.push(() => {
      outbox.close();
      removeDir(odir);
    });
    const f = forwarder(outbox, url, credential, { inFlight: 2, batchSize: 100, requestTimeoutMs: 1500, retries: 1 });
    const keysByOrder = new Map<string, string[]>();
    const add = async (n: number) => {
      const sigs = Array.from({ length: n }, (_, i) => {
        const spec = { wc: 'WC-1', order: `O-${i % 4}` };
        const s = signal(spec);
        const k = `${spec.wc}:${spec.order}`;
        keysByOrder.set(k, [...(keysByOrder.get(k) ?? []), s.sourceId]);
        return s;
      });
      await outbox.append(sigs);
    };
    await add(2000);
    f.start();
    await waitFor(() => statusCount(outbox, 'sent') > 0, 10_000, 'first batches');
    child.kill('SIGSTOP');
    await add(1000);
    f.notify();
    await new Promise((r) => setTimeout(r, SIGSTOP_MS));
    // requests time out (1.5 s), are retried once, then go back to the outbox: wait until that happened
    await waitFor(() => f.state().consecutiveFailures > 0, 15_000, 'the forwarder to notice the stopped hub');
    child.kill('SIGCONT');
    await waitFor(() => outbox.stats().pending === 0, 30_000, 'the backlog to drain after SIGCONT');
    assert.equal(outbox.stats().deadLetters, 0);
    // the hub saw some batches twice (the stopped process still read the timed-out requests) and said so
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const dup = Number(/plantbridge_hub_transactions_duplicate_total (\d+)/.exec(metrics)?.[1] ?? 0);
    const received = Number(/plantbridge_hub_transactions_received_total\{[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
    assert.equal(received, 3000, 'each transaction accepted exactly once');
    assert.ok(dup > 0, 'some were answered as duplicates');
    const results = outbox.query<{ result: string }>("SELECT result FROM transactions WHERE status = 'sent'").map((r) => JSON.parse(r.result).status);
    assert.equal(results.length, 3000);
    assert.ok(results.every((s) => s === 'accepted' || s === 'duplicate'));
  });

  void it('rides out a 429 storm honouring Retry-After, nothing dead-lettered, each order in outbox order', async () => {
    const { t, token, outbox } = await setup({ rateLimitPerAgent: 4 });
    const errors: string[] = [];
    // small batches on 4 lanes, many of them refused and retried: each order must still arrive in order
    const f = forwarder(outbox, t.url, token, { inFlight: 4, batchSize: 10, retryMaxDelayMs: 1500, onError: (k) => errors.push(k) });
    const keysByOrder = new Map<string, string[]>();
    const sigs = Array.from({ length: 300 }, (_, i) => {
      const s = signal({ order: `O-${i % 8}` });
      keysByOrder.set(`WC-1:O-${i % 8}`, [...(keysByOrder.get(`WC-1:O-${i % 8}`) ?? []), s.sourceId]);
      return s;
    });
    await outbox.append(sigs);
    f.start();
    await waitFor(() => outbox.stats().pending === 0, 60_000, 'drain under rate limiting');
    assert.ok(errors.includes('http_429'), `429s seen: ${errors.slice(0, 5)}`);
    assert.equal(outbox.stats().deadLetters, 0);
    assert.equal((await t.hub.store.counts()).queued + (await t.hub.store.counts()).posted, 300);
    await assertDeliveredInOrder(t, keysByOrder);
  });

  void it('413: splits batches until they fit; only an item too large on its own is dead-lettered', async () => {
    const { t, token, outbox } = await setup({ bodyLimit: '12KiB' });
    const f = forwarder(outbox, t.url, token, { inFlight: 1, batchSize: 200 });
    const sigs = Array.from({ length: 120 }, (_, i) => signal({ order: `O-${i % 3}` }));
    const big = signal({ order: 'O-BIG', big: true });
    await outbox.append([...sigs.slice(0, 60), big, ...sigs.slice(60)]);
    f.start();
    await waitFor(() => outbox.stats().pending === 0, 20_000, 'drain');
    const dead = outbox.listDeadLetters(10);
    assert.equal(dead.length, 1);
    assert.equal(dead[0].code, 'PAYLOAD_TOO_LARGE');
    assert.equal(statusCount(outbox, 'sent'), 120);
    assert.equal(await t.hub.store.getTransaction(big.sourceId), undefined);
  });

  void it('a batch with one bad item: only that item is dead-lettered, with the hub\'s reason', async () => {
    const { token, outbox, t } = await setup();
    const f = forwarder(outbox, t.url, token);
    const bad = signal({ order: 'O-2', bad: true });
    await outbox.append([signal(), signal(), bad, signal()]);
    f.start();
    await waitFor(() => outbox.stats().pending === 0, 10_000, 'drain');
    const dead = outbox.listDeadLetters(10);
    assert.equal(dead.length, 1);
    assert.equal(dead[0].code, 'SCHEMA_INVALID');
    assert.match(dead[0].reason, /data\.yield/);
    assert.equal(statusCount(outbox, 'sent'), 3);
  });

  void it('settles by key when the hub answers out of order or leaves an item out; the streamed frame arrives whole', async () => {
    // a bare endpoint in the hub's place: it answers the items in reverse order and leaves the first out
    const frames: Array<{ length: number; declared: number; items: Array<{ id: string; idempotencyKey: string }> }> = [];
    const { url, outbox } = await fakeHub((batch, raw, req) => {
      frames.push({ length: raw.length, declared: Number(req.headers['content-length']), items: batch.items });
      return batch.items.slice(1).reverse().map((t) => ({ id: t.id, idempotencyKey: t.idempotencyKey, status: 'accepted' }));
    });
    const f = forwarder(outbox, url, 'pbc_test', { inFlight: 1 });
    await outbox.append(Array.from({ length: 6 }, () => signal()));
    f.start();
    await waitFor(() => statusCount(outbox, 'sent') === 5, 10_000, 'five of six sent');
    await f.stop();
    assert.equal(frames[0].items.length, 6);
    assert.equal(frames[0].length, frames[0].declared, 'the declared content-length is the frame\'s length');
    const first = frames[0].items[0].idempotencyKey;
    const rows = outbox.query<{ idempotency_key: string; status: string; next_attempt_at: number }>('SELECT idempotency_key, status, next_attempt_at FROM transactions ORDER BY seq');
    assert.deepEqual(
      rows.map((r) => r.status),
      ['pending', 'sent', 'sent', 'sent', 'sent', 'sent'],
    );
    assert.equal(rows[0].idempotency_key, first, 'the item without a result is the one kept');
    assert.ok(rows[0].next_attempt_at > 0, 'it waits for a retry');
  });

  void it('an item the hub asks to retry holds back the rest of its lane: later items of its order never arrive first', async () => {
    // the first request's first item gets a retriable per-item code; everything else is accepted
    const accepted: string[] = [];
    let requests = 0;
    const { url, outbox } = await fakeHub((batch) => {
      const n = ++requests;
      return batch.items.map((t, i) => {
        if (n === 1 && i === 0) return { id: t.id, idempotencyKey: t.idempotencyKey, status: 'rejected', code: 'RATE_LIMITED', reason: 'busy, try again' };
        if (!accepted.includes(t.idempotencyKey)) accepted.push(t.idempotencyKey);
        return { id: t.id, idempotencyKey: t.idempotencyKey, status: 'accepted' };
      });
    });
    // one order, two batches of two in one lane
    const keys = ['A1', 'A2', 'A3', 'A4'];
    await outbox.append(keys.map((k) => signal({ wc: 'WC-1', order: 'O-1' }, k)));
    const byKey = new Map(outbox.query<{ idempotency_key: string; seq: number }>('SELECT idempotency_key, seq FROM transactions ORDER BY seq').map((r, i) => [r.idempotency_key, keys[i]]));
    const f = forwarder(outbox, url, 'pbc_test', { batchSize: 2, inFlight: 2 });
    f.start();
    await waitFor(() => statusCount(outbox, 'sent') === 4, 10_000, 'all four sent');
    await f.stop();
    assert.deepEqual(accepted.map((k) => byKey.get(k)), ['A2', 'A1', 'A3', 'A4'], 'A3 and A4 waited for A1');
  });

  void it('a cross-plant write: 403, items dead-lettered as PLANT_MISMATCH, audited, nothing stored', async () => {
    const { token, outbox, t } = await setup();
    const f = forwarder(outbox, t.url, token);
    await outbox.append([signal({ plant: 'P2', order: 'X' }), signal({ plant: 'P2', order: 'X' })]);
    f.start();
    await waitFor(() => outbox.stats().pending === 0, 10_000, 'drain');
    assert.deepEqual(outbox.listDeadLetters(10).map((d) => d.code), ['PLANT_MISMATCH', 'PLANT_MISMATCH']);
    assert.equal((await t.hub.store.listTransactions({ limit: 10 })).length, 0);
    assert.ok((await t.hub.store.listAudit(10)).some((e) => e.action === 'ingest.plant_mismatch' && e.actor === 'agent:edge-1'));
  });

  void it('a revoked credential: 401, the backlog is kept (never dead-lettered), an alarm is up; a new credential drains it', async () => {
    const { token, outbox, t } = await setup();
    await t.hub.store.revokeAgent('edge-1', 'admin:test');
    const f = forwarder(outbox, t.url, token);
    await outbox.append(Array.from({ length: 20 }, () => signal()));
    f.start();
    await waitFor(() => f.state().state === 'unauthorised', 10_000, 'unauthorised');
    assert.equal(f.state().alarm?.code, 'UNAUTHENTICATED');
    assert.equal(outbox.stats().deadLetters, 0);
    assert.equal(outbox.stats().pending, 20);
    const fresh = await t.addAgent('edge-1', ['P1']);
    const f2 = forwarder(outbox, t.url, fresh);
    await f.stop();
    f2.start();
    await waitFor(() => outbox.stats().pending === 0, 15_000, 'drain with the new credential');
    assert.equal(f2.state().alarm, undefined);
  });

  void it('TLS with the wrong CA: the agent refuses, says why, keeps everything', async () => {
    const pki = makeTestPki();
    cleanups.push(() => removeDir(pki.dir));
    const { token, outbox, t } = await setup({ tls: { cert: pki.serverCert, key: pki.serverKey } });
    const f = forwarder(outbox, t.url, token, { ca: readFileSync(pki.otherCaCert, 'utf8') });
    await outbox.append([signal(), signal()]);
    f.start();
    await waitFor(() => f.state().state === 'tls-refused', 10_000, 'tls-refused');
    assert.match(f.state().alarm?.message ?? '', /not signed by the CA in hub\.ca/);
    assert.equal(outbox.stats().deadLetters, 0);
    assert.equal(outbox.stats().pending, 2);
    await f.stop();
    const good = forwarder(outbox, t.url, token, { ca: readFileSync(pki.caCert, 'utf8'), gzip: true });
    good.start();
    await waitFor(() => outbox.stats().pending === 0, 15_000, 'drain with the right CA (gzip on)');
  });

  void it('fetches ERP outcomes for its sent transactions into the outcome sink', async () => {
    const { token, outbox, t } = await setup();
    const got = new Map<string, Outcome>();
    let cursor = '0';
    const f = forwarder(outbox, t.url, token, {
      outcomesIntervalMs: 100,
      outcomes: { cursor: () => cursor, apply: (items, c) => { for (const i of items) got.set(i.idempotencyKey, i.outcome); cursor = c; } },
    });
    const sigs = [signal({ order: 'A' }), signal({ order: 'B' })];
    await outbox.append(sigs);
    f.start();
    await waitFor(() => got.size === 2, 15_000, 'outcomes');
    for (const s of sigs) {
      assert.equal(got.get(s.sourceId)?.state, 'posted');
      assert.match(got.get(s.sourceId)?.erpRef ?? '', /^DOC-/);
    }
  });
});

void describe('splitLanes', () => {
  const c = (seq: number, wc: string, order: string) => ({ seq, key: `k${seq}`, orderKey: `${wc}:${order}`, body: '{}', attempts: 1, bytes: 10, tx: { workCenter: wc, data: { order } } }) as unknown as ClaimedTx;
  void it('keeps each work center + order whole and in outbox order, balancing lanes', () => {
    const items = [c(1, 'A', '1'), c(2, 'B', '1'), c(3, 'A', '1'), c(4, 'A', '2'), c(5, 'B', '1'), c(6, 'C', '9')];
    const lanes = splitLanes(items, 2);
    assert.equal(lanes.length, 2);
    const where = new Map<string, number>();
    lanes.forEach((l, i) => {
      for (const x of l) {
        const k = `${x.tx.workCenter}:${x.tx.data.order}`;
        assert.equal(where.get(k) ?? i, i, `${k} split across lanes`);
        where.set(k, i);
      }
      assert.deepEqual(l.map((x) => x.seq), [...l.map((x) => x.seq)].sort((a, b) => a - b));
    });
    assert.deepEqual(splitLanes(items, 1), [items]);
    assert.equal(splitLanes([c(1, 'A', '1'), c(2, 'A', '1')], 4).length, 1);
  });
});

void describe('serialiseBatch', () => {
  void it('splices the stored JSON of claimed items into a valid ingest batch, byte for byte', async () => {
    const { outbox, dir } = testOutbox();
    await outbox.append([signal({ wc: 'WC-1', order: 'O-1' }), signal({ wc: 'WC-2', order: 'O-"2"\u2028' })]);
    const claimed = outbox.claim(10, 60_000);
    assert.equal(claimed.length, 2);
    const text = serialiseBatch('01JBATCH', 'agent-1', claimed).toString('utf8');
    const parsed = JSON.parse(text) as { schema: string; batchId: string; agentId: string; sentAt: string; items: unknown[] };
    assert.equal(parsed.batchId, '01JBATCH');
    assert.equal(parsed.agentId, 'agent-1');
    assert.match(parsed.schema, /ingest-batch/);
    assert.ok(!Number.isNaN(Date.parse(parsed.sentAt)));
    assert.deepEqual(parsed.items, claimed.map((c) => c.tx));
    assert.deepEqual(claimed.map((c) => c.key), claimed.map((c) => c.tx.idempotencyKey));
    assert.deepEqual(claimed.map((c) => c.orderKey), claimed.map((c) => `${c.tx.workCenter ?? ''}:${c.tx.data.order}`));
    assert.equal(serialiseBatch('b', 'a', []).toString('utf8').endsWith('"items":[]}'), true);
    outbox.close();
    removeDir(dir);
  });

  void it('serialises any subset of a claim in any order (lanes), not only a run of consecutive items', async () => {
    const { outbox, dir } = testOutbox();
    await outbox.append(Array.from({ length: 5 }, (_, i) => signal({ wc: `WC-${i}`, order: `O-${i % 2}` })));
    const claimed = outbox.claim(10, 60_000);
    assert.equal(claimed.length, 5);
    for (const pick of [[0, 2, 4], [1, 3], [4, 3, 2, 1, 0], [2], [1, 2, 3]]) {
      const items = pick.map((i) => claimed[i]);
      const parsed = JSON.parse(serialiseBatch('b', 'a', items).toString('utf8')) as { items: unknown[] };
      assert.deepEqual(parsed.items, items.map((c) => c.tx), `items ${pick.join(',')}`);
    }
    outbox.close();
    removeDir(dir);
  });
});
