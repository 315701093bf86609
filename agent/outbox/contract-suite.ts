import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isPlantBridgeError } from '../../contracts/index.ts';
import { migrations } from './migrations.ts';
import type { Outbox, OutboxOptions } from './outbox.ts';
import { openDb, type SqliteDriver } from './sqlite-db.ts';
import { countingDeriver, signal, tempDir, transaction } from './test-kit.ts';

/**
 * The Outbox contract (DESIGN.md §4): every implementation — better-sqlite3, node:sqlite, a future one —
 * runs this one suite against real files on disk.
 *
 *   outboxContractSuite({ name: 'better-sqlite3', driver: 'better-sqlite3', open: (o) => openOutbox(o) })
 */
export interface OutboxFactory {
  name: string;
  /** the SQLite driver the suite uses for its own side connections (a reader, a v1 database) */
  driver: SqliteDriver;
  open(opts: OutboxOptions): Outbox;
}

export function outboxContractSuite(factory: OutboxFactory): void {
  void describe(`Outbox contract: ${factory.name}`, () => {
    let tmp: ReturnType<typeof tempDir>;
    let n = 0;
    const opened: Outbox[] = [];
    before(() => {
      tmp = tempDir();
    });
    after(() => {
      for (const o of opened) {
        try {
          o.close();
        } catch {
          // already closed
        }
      }
      tmp.cleanup();
    });
    const newPath = () => join(tmp.dir, `t${++n}`, 'outbox.db');
    const open = (opts: Partial<OutboxOptions> & { path: string }) => {
      const o = factory.open({ minFreeDiskBytes: 0, checkpointIntervalMs: 200, driver: factory.driver, ...opts });
      opened.push(o);
      return o;
    };
    const clock = (start = Date.UTC(2026, 0, 10)) => {
      const c = { t: start, now: () => c.t };
      return c;
    };
    const count = (o: Outbox, sql: string, ...p: unknown[]) => Number(Object.values(o.query<Record<string, number>>(sql, ...p)[0])[0]);

    void it('commits signals once: duplicates within a call, across calls and across reopen are dropped', async () => {
      const path = newPath();
      let o = open({ path });
      assert.deepEqual(await o.append([signal(1), signal(2), signal(1)]), { accepted: 2, duplicates: 1, transactions: 0 });
      assert.deepEqual(await o.append([signal(2), signal(3)]), { accepted: 1, duplicates: 1, transactions: 0 });
      o.close();
      o = open({ path });
      assert.equal((await o.append([signal(3), signal(4)])).duplicates, 1);
      assert.equal(count(o, 'SELECT COUNT(*) FROM events'), 4);
      o.close();
    });

    void it('group-commits concurrent appends; each resolves only once its own rows are committed', async () => {
      const path = newPath();
      const o = open({ path, groupCommitDelayMs: 10 });
      const reader = openDb(path, { driver: factory.driver });
      const seen: number[] = [];
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          o.append([signal(i)]).then(() => {
            // another connection sees the row: the commit happened before the promise resolved
            seen.push(Number(reader.prepare('SELECT COUNT(*) AS n FROM events WHERE source_id = ?').get(signal(i).sourceId)!.n));
          }),
        ),
      );
      reader.close();
      assert.deepEqual(new Set(seen), new Set([1]));
      const commits = o.stats().commits!;
      assert.ok(commits >= 1 && commits <= 5, `200 concurrent appends took ${commits} commits`);
      o.close();
    });

    void it('bounds a group by groupCommitRows (a single larger append stays whole)', async () => {
      const o = open({ path: newPath(), groupCommitRows: 10, groupCommitDelayMs: 20 });
      await Promise.all(Array.from({ length: 50 }, (_, i) => o.append([signal(i)])));
      assert.ok(o.stats().commits! >= 5, `commits ${o.stats().commits}`);
      const before = o.stats().commits!;
      assert.equal((await o.append(Array.from({ length: 25 }, (_, i) => signal(100 + i)))).accepted, 25);
      assert.equal(o.stats().commits! - before, 1);
      o.close();
    });

    void it('commits events, rule state and transactions together; the state survives a reopen', async () => {
      const path = newPath();
      let o = open({ path, rules: countingDeriver(10) });
      const r = await o.append(Array.from({ length: 25 }, (_, i) => signal(i)));
      assert.deepEqual(r, { accepted: 25, duplicates: 0, transactions: 2 });
      assert.deepEqual(o.ruleState('count-plc1'), { n: 25, emitted: 20 });
      o.close();
      o = open({ path, rules: countingDeriver(10) });
      assert.deepEqual(o.ruleState('count-plc1'), { n: 25, emitted: 20 });
      // redelivered signals derive nothing; new ones continue from the committed state
      assert.equal((await o.append(Array.from({ length: 30 }, (_, i) => signal(i)))).transactions, 1);
      const keys = o.query<{ k: string }>('SELECT idempotency_key AS k FROM transactions ORDER BY seq').map((x) => x.k);
      assert.deepEqual(keys, ['P1:count-plc1:0-10', 'P1:count-plc1:10-20', 'P1:count-plc1:20-30']);
      assert.equal(o.stats().pending, 3);
      o.close();
    });

    void it('dead-letters a signal that makes a rule throw, and malformed signals, without failing the group', async () => {
      const o = open({ path: newPath(), rules: countingDeriver(10) });
      const [a, b, c] = await Promise.all([
        o.append([signal(1), signal(2, { ref: 'boom', sourceId: 'plc1:boom:1' }), signal(3)]),
        o.append([{ ...signal(4), sourceTime: undefined } as never, signal(5)]),
        o.append([signal(6, { ref: 'jump', sourceId: 'plc1:jump:1' })]),
      ]);
      assert.equal(a.accepted, 3);
      assert.equal(a.deadLettered, 1);
      assert.equal(b.accepted, 1);
      assert.equal(b.deadLettered, 1);
      assert.equal(c.accepted, 1);
      // the throwing rule's partial state change was discarded
      assert.deepEqual(o.ruleState('count-plc1'), { n: 3, emitted: 0 });
      const codes = o.listDeadLetters().map((d) => `${d.kind}:${d.code}`).sort();
      assert.deepEqual(codes, ['quarantine:COUNTER_JUMP', 'quarantine:INTERNAL', 'signal:SCHEMA_INVALID']);
      assert.equal(o.stats().deadLetters, 3);
      o.close();
    });

    void it('tick commits the transactions of time-based windows', async () => {
      const o = open({ path: newPath(), rules: countingDeriver(10) });
      await o.append([signal(1), signal(2), signal(3)]);
      assert.equal((await o.tick()).transactions, 1);
      assert.equal((await o.tick()).transactions, 0);
      assert.deepEqual(o.ruleState('count-plc1'), { n: 3, emitted: 3 });
      o.close();
    });

    void it('claims in outbox order, never one order in two leases, within maxBytes', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, (s) => (Number(s.value) % 2 ? 'A' : 'B')) });
      await o.append(Array.from({ length: 10 }, (_, i) => signal(i)));
      const first = o.claim(3, 60_000);
      assert.deepEqual(first.map((x) => x.seq), [1, 2, 3]);
      assert.equal(first[0].attempts, 1);
      // orders A and B are both leased now: nothing else may go
      assert.equal(o.claim(10, 60_000).length, 0);
      o.settle(first.map((x) => ({ seq: x.seq, status: 'sent' as const })));
      const bytes = first[0].bytes;
      const second = o.claim(10, 60_000, bytes * 2 + 1);
      assert.deepEqual(second.map((x) => x.seq), [4, 5]);
      assert.equal(o.stats().leased, 2);
      o.close();
    });

    void it('a claim skips the rows of blocked orders and looks no further than limit + 5,000 pending rows', async () => {
      const o = open({ path: newPath(), rules: countingDeriver(1, (s) => (Number(s.value) < 5009 ? 'A' : 'B')) });
      for (let i = 0; i < 6000; i += 1000) await o.append(Array.from({ length: 1000 }, (_, k) => signal(i + k)));
      // order A is in flight: its 5,008 other items are skipped, the first B item is row 5,010 of the claim's
      // horizon (10 + 5,000 rows, the leased one included); the B items past it wait for the next claim
      const a = o.claim(1, 60_000);
      assert.deepEqual(a.map((x) => x.seq), [1]);
      const b = o.claim(10, 60_000);
      assert.deepEqual(b.map((x) => x.seq), [5010]);
      o.settle([...a, ...b].map((x) => ({ seq: x.seq, status: 'sent' as const })));
      // nothing blocked now: the oldest pending rows, in outbox order
      assert.deepEqual(o.claim(3, 60_000).map((x) => x.seq), [2, 3, 4]);
      o.close();
    });

    void it('a value too deep to store is dead-lettered with the signal and what the value held, not "[object Object]"', async () => {
      const o = open({ path: newPath() });
      let deep: Record<string, unknown> = { leaf: 'the-bottom' };
      for (let i = 0; i < 20_000; i++) deep = { d: deep };
      const r = await o.append([signal(1, { value: deep as never, sourceId: 'plc1:deep:1' }), signal(2)]);
      assert.deepEqual([r.accepted, r.deadLettered], [1, 1], 'the deep one refused, the other stored');
      const [dl] = o.listDeadLetters();
      assert.equal(dl.code, 'SCHEMA_INVALID');
      assert.match(dl.reason, /cannot be stored/);
      assert.doesNotMatch(dl.payload ?? '', /\[object Object\]/);
      const payload = JSON.parse(dl.payload!) as { sourceId: string; value: string };
      assert.equal(payload.sourceId, 'plc1:deep:1');
      assert.match(payload.value, /^\{ d: \{ d: /);
      o.close();
    });

    void it('settles per item: sent, dead letter with code, retry later with backoff', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, (s) => `O${s.value}`) });
      await o.append(Array.from({ length: 4 }, (_, i) => signal(i)));
      const cl = o.claim(10, 60_000);
      assert.equal(cl.length, 4);
      o.settle([
        { seq: cl[0].seq, status: 'sent', result: { status: 'accepted' } },
        { seq: cl[1].seq, status: 'dead', code: 'SCHEMA_INVALID', reason: 'bad unit' },
        { seq: cl[2].seq, status: 'retry', delayMs: 5000, reason: 'hub 503' },
        { seq: cl[3].seq, status: 'retry', delayMs: -1 },
      ]);
      let s = o.stats();
      assert.equal(s.pending, 2);
      assert.equal(s.sent, 1);
      assert.equal(s.deadLetters, 1);
      assert.equal(o.claim(10, 60_000).length, 0, 'retries wait for their time');
      c.t += 1001;
      // the outbox's own backoff after 1 attempt is 0.5-1 s; the hub's 5 s still runs
      assert.deepEqual(o.claim(10, 60_000).map((x) => x.seq), [cl[3].seq]);
      c.t += 4000;
      const again = o.claim(10, 60_000);
      assert.deepEqual(again.map((x) => x.seq), [cl[2].seq]);
      assert.equal(again[0].attempts, 2);
      assert.equal(o.listTransactions({ status: 'leased' }).find((x) => x.seq === cl[2].seq)!.lastError, 'hub 503');
      c.t += 60_001;
      // both leases expired
      assert.deepEqual(o.claim(10, 60_000).map((x) => x.seq).sort(), [cl[2].seq, cl[3].seq].sort());
      // a late 'sent' for an item whose lease expired still counts: the hub has it
      o.settle([{ seq: cl[2].seq, status: 'sent' }]);
      s = o.stats();
      assert.equal(s.sent, 2);
      assert.equal(s.leased, 1);
      o.close();
    });

    void it('a late retry or dead letter from an expired lease is ignored while the item is in flight again; a late sent counts', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, () => 'A') });
      await o.append([signal(1), signal(2), signal(3)]);
      const first = o.claim(3, 1000);
      assert.equal(first.length, 3);
      assert.ok(first.every((x) => x.lease === first[0].lease), 'one claim, one lease');
      c.t += 1001;
      // the first request hung past its lease: a newer claim has the same items in flight
      const second = o.claim(3, 60_000);
      assert.deepEqual(second.map((x) => x.seq), first.map((x) => x.seq));
      assert.notEqual(second[0].lease, first[0].lease);
      // the first request's late answers: a retry, a dead letter and a sent
      o.settle([
        { seq: first[0].seq, lease: first[0].lease, status: 'retry', delayMs: 5000, reason: 'late 503' },
        { seq: first[1].seq, lease: first[1].lease, status: 'dead', code: 'SCHEMA_INVALID', reason: 'late 400' },
        { seq: first[2].seq, lease: first[2].lease, status: 'sent' },
      ]);
      const rows = o.query<{ seq: number; status: string; next_attempt_at: number }>('SELECT seq, status, next_attempt_at FROM transactions ORDER BY seq');
      assert.deepEqual(rows.map((r) => r.status), ['pending', 'pending', 'sent'], 'the retry and the dead letter were ignored');
      assert.equal(rows[0].next_attempt_at, 0, 'no retry time set under the newer lease');
      assert.equal(o.stats().deadLetters, 0);
      // still leased by the second claim: nothing else may take order A
      assert.deepEqual(o.claim(10, 60_000), []);
      // the second claim's own answers apply
      o.settle(second.map((x) => ({ seq: x.seq, lease: x.lease, status: 'sent' as const })));
      assert.equal(o.stats().sent, 3);
      assert.equal(o.stats().leased, 0);
      o.close();
    });

    void it('a wall clock set back does not hold an order behind a retry time for as long as the clock was wrong', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, () => 'A') });
      await o.append([signal(1), signal(2)]);
      const cl = o.claim(1, 60_000);
      o.settle([{ seq: cl[0].seq, lease: cl[0].lease, status: 'retry', delayMs: 2000, reason: 'hub 503' }]);
      assert.deepEqual(o.claim(10, 60_000), [], 'the retry waits, and holds back its order');
      c.t -= 86_400_000; // NTP steps the clock back by a day
      assert.deepEqual(o.claim(10, 60_000).map((x) => x.seq), [cl[0].seq, cl[0].seq + 1], 'due now, in order');
      o.close();
    });

    void it('returns expired leases to pending, and releases the leases of a previous run at open', async () => {
      const c = clock();
      const path = newPath();
      let o = open({ path, now: c.now, rules: countingDeriver(1) });
      await o.append([signal(1), signal(2)]);
      assert.equal(o.claim(10, 1000).length, 2);
      assert.equal(o.claim(10, 1000).length, 0);
      c.t += 1001;
      const re = o.claim(1, 1000);
      assert.equal(re.length, 1);
      assert.equal(re[0].attempts, 2);
      o.close();
      o = open({ path, now: c.now, rules: countingDeriver(1) });
      assert.equal(o.stats().leased, 0);
      assert.equal(o.claim(10, 1000).length, 2);
      o.close();
    });

    void it('dead letters: list, replay one, replay all, discard', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, (s) => `O${s.value}`) });
      await o.append(Array.from({ length: 4 }, (_, i) => signal(i)));
      o.deadLetterInput('mqtt1', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('{oops'));
      const cl = o.claim(10, 60_000);
      o.settle(cl.map((x) => ({ seq: x.seq, status: 'dead' as const, code: 'ERP_BUSINESS', reason: `order ${x.seq} closed` })));
      const dls = o.listDeadLetters();
      assert.equal(dls.length, 5);
      assert.equal(dls.find((d) => d.kind === 'signal')!.payload, '{oops');
      const txDls = dls.filter((d) => d.kind === 'transaction').sort((a, b) => a.id - b.id);
      assert.equal(o.replayDeadLetter(txDls[0].id), true);
      assert.equal(o.replayDeadLetter(txDls[0].id), false, 'already resolved');
      assert.equal(o.replayDeadLetter(dls.find((d) => d.kind === 'signal')!.id), false, 'inputs are not replayable here');
      assert.equal(o.discardDeadLetter(txDls[1].id), true);
      assert.equal(o.replayAllDeadLetters(), 2);
      const s = o.stats();
      assert.equal(s.pending, 3);
      assert.equal(s.deadLetters, 1);
      assert.equal(count(o, "SELECT COUNT(*) FROM transactions WHERE status = 'discarded'"), 1);
      assert.equal(o.listDeadLetters(100, true).length, 5);
      o.close();
    });

    void it('writes an input dead letter with a dedupe key once while one with that key is open, and counts only what it wrote', async () => {
      const path = newPath();
      let o = open({ path });
      const dl = (key: string | undefined, payload = 'not json') => ({ source: 'm', code: 'PAYLOAD_INVALID' as const, reason: 'payload is not JSON', payload: Buffer.from(payload), ...(key ? { dedupeKey: key } : {}) });
      // twice in one call (and so in one commit), and two without a key: those never conflict
      const a = await o.append([signal(1)], [dl('m/t@dl#aa'), dl('m/t@dl#aa'), dl(undefined), dl(undefined)]);
      assert.deepEqual(a, { accepted: 1, duplicates: 0, transactions: 0, deadLettered: 3 });
      // again in a later commit (a redelivery after a lost ack), with its signal: nothing written, nothing counted
      assert.deepEqual(await o.append([signal(1)], [dl('m/t@dl#aa')]), { accepted: 0, duplicates: 1, transactions: 0 });
      // in one group commit from two calls
      const [b, c] = await Promise.all([o.append([], [dl('m/t@dl#bb', 'b')]), o.append([], [dl('m/t@dl#bb', 'b'), dl('m/t@dl#cc', 'c')])]);
      assert.equal((b.deadLettered ?? 0) + (c.deadLettered ?? 0), 2);
      // outside an append
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('c'), 'm/t@dl#cc'), false);
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('d'), 'm/t@dl#dd'), true);
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('d')), true);
      o.close();
      // and after a reopen
      o = open({ path });
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('d'), 'm/t@dl#dd'), false);
      assert.deepEqual(await o.append([], [dl('m/t@dl#aa')]), { accepted: 0, duplicates: 0, transactions: 0 });
      const keys = o.listDeadLetters().map((d) => d.dedupeKey ?? '-');
      assert.deepEqual(keys.sort(), ['-', '-', '-', 'm/t@dl#aa', 'm/t@dl#bb', 'm/t@dl#cc', 'm/t@dl#dd']);
      assert.equal(o.stats().deadLetters, 7);
      assert.equal(o.stats().deadLetters, count(o, 'SELECT COUNT(*) FROM dead_letters WHERE resolved IS NULL'));
      // a resolved one holds nothing back: the same input coming again later is written (and visible) again
      assert.equal(o.discardDeadLetter(o.listDeadLetters().find((d) => d.dedupeKey === 'm/t@dl#aa')!.id), true);
      assert.deepEqual(await o.append([], [dl('m/t@dl#aa')]), { accepted: 0, duplicates: 0, transactions: 0, deadLettered: 1 });
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', Buffer.from('x'), 'm/t@dl#aa'), false);
      assert.equal(count(o, "SELECT COUNT(*) FROM dead_letters WHERE dedupe_key = 'm/t@dl#aa'"), 2);
      assert.equal(o.stats().deadLetters, 7);
      assert.equal(o.stats().deadLetters, count(o, 'SELECT COUNT(*) FROM dead_letters WHERE resolved IS NULL'));
      o.close();
    });

    void it('keeps its stats counters equal to the rows, whatever wrote them', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, (s) => `O${s.value}`) });
      await o.append(Array.from({ length: 30 }, (_, i) => signal(i)));
      await o.append([signal(99, { ref: 'shadow', sourceId: 'plc1:shadow:1' })]);
      const cl = o.claim(20, 60_000);
      // sent items in both settle statements (a group with one result, odd ones with their own), and one
      // settled twice: the counters move by what changed (schema 7), not by what was asked
      o.settle(cl.slice(0, 10).map((x, i) => ({ seq: x.seq, status: 'sent' as const, result: i < 8 ? { status: 'accepted' } : { status: 'duplicate', n: i } })));
      o.settle([{ seq: cl[0].seq, status: 'sent' }]);
      assert.equal(o.stats().sent, 10);
      o.settle(cl.slice(10, 15).map((x) => ({ seq: x.seq, status: 'dead' as const, code: 'ERP_BUSINESS', reason: 'no' })));
      o.settle(cl.slice(15).map((x) => ({ seq: x.seq, status: 'retry' as const, delayMs: 0 })));
      o.discardDeadLetter(o.listDeadLetters()[0].id);
      c.t += 8 * 86_400_000;
      await o.purgeExpired();
      const s = o.stats();
      const byStatus = (st: string) => count(o, 'SELECT COUNT(*) FROM transactions WHERE status = ?', st);
      assert.equal(s.pending, byStatus('pending') + byStatus('leased'));
      assert.equal(s.sent, byStatus('sent'));
      assert.equal(s.shadow, byStatus('shadow'));
      assert.equal(s.deadLetters, count(o, 'SELECT COUNT(*) FROM dead_letters WHERE resolved IS NULL'));
      assert.equal(s.sent, 0, 'sent rows past retention were purged');
      assert.ok(s.oldestPendingAgeS >= 8 * 86_400);
      assert.ok(s.bytes > 0);
      o.close();
    });

    void it('retention purges sent transactions and raw events by age, never pending or dead ones', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, retentionDays: 7, eventRetentionDays: 1, rules: countingDeriver(1, (s) => `O${s.value}`) });
      const old = Date.UTC(2026, 0, 1);
      await o.append(Array.from({ length: 6 }, (_, i) => signal(i, { receivedAt: new Date(old).toISOString() })));
      const cl = o.claim(10, 60_000);
      o.settle([{ seq: cl[0].seq, status: 'sent' }, { seq: cl[1].seq, status: 'dead', code: 'ERP_BUSINESS', reason: 'x' }]);
      o.settle(cl.slice(2).map((x) => ({ seq: x.seq, status: 'retry' as const, delayMs: 0 })));
      await o.append([signal(100, { receivedAt: new Date(c.t).toISOString() })]);
      await o.purgeExpired();
      assert.equal(count(o, 'SELECT COUNT(*) FROM events'), 1, 'events older than 1 day are gone');
      c.t += 2 * 86_400_000;
      await o.purgeExpired();
      assert.equal(o.stats().sent, 1, 'sent rows stay 7 days');
      c.t += 6 * 86_400_000;
      await o.purgeExpired();
      assert.equal(o.stats().sent, 0);
      assert.equal(count(o, "SELECT COUNT(*) FROM transactions WHERE status = 'dead'"), 1);
      assert.equal(o.stats().pending, 5);
      o.close();
    });

    void it('refuses with OUTBOX_FULL at maxBytes, drops no business transaction, and resumes by itself', async () => {
      const c = clock();
      const path = newPath();
      const big = 'x'.repeat(2000);
      const o = open({ path, now: c.now, maxBytes: 400_000, walMaxBytes: 64 * 1024, rules: countingDeriver(1, (s) => `O${Number(s.value) % 3}`) });
      let acked = 0;
      let err: unknown;
      for (let i = 0; i < 2000 && !err; i += 10) {
        try {
          await o.append(Array.from({ length: 10 }, (_, k) => signal(i + k, { value: `${big}${i + k}` })));
          acked += 10;
        } catch (e) {
          err = e;
        }
        o.checkpoint();
      }
      assert.ok(isPlantBridgeError(err, 'OUTBOX_FULL'), `expected OUTBOX_FULL, got ${String(err)}`);
      assert.ok(acked > 0);
      const s = o.stats();
      assert.equal(s.full, true);
      assert.ok(o.alarms().some((a) => a.code === 'OUTBOX_FULL'));
      assert.equal(s.pending, acked, 'every acknowledged transaction is still pending');
      await assert.rejects(o.append([signal(5000)]), (e) => isPlantBridgeError(e, 'OUTBOX_FULL'));
      // the hub comes back: transactions are sent; ingest resumes without anyone restarting anything
      for (let cl = o.claim(500, 60_000); cl.length > 0; cl = o.claim(500, 60_000)) o.settle(cl.map((x) => ({ seq: x.seq, status: 'sent' as const })));
      c.t += 11 * 60_000;
      await new Promise((r) => setTimeout(r, 1100));
      o.checkpoint();
      const r = await o.append([signal(5000)]);
      assert.equal(r.accepted, 1);
      assert.equal(o.stats().full, false);
      assert.equal(count(o, 'SELECT COUNT(*) FROM transactions'), count(o, "SELECT COUNT(*) FROM transactions WHERE status != 'sent'") + o.stats().sent!);
      o.close();
    });

    void it('an I/O error fails the group with OUTBOX_IO and an alarm, never a crash; the next append recovers', async () => {
      let fail = 1;
      const rules = countingDeriver(1);
      const flaky: typeof rules = {
        derive: (sig, st) => {
          // what SQLite raises on EIO in the middle of a commit
          if (sig.ref === 'eio' && fail-- > 0) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
          return rules.derive(sig, st);
        },
        tick: rules.tick,
      };
      const o = open({ path: newPath(), rules: flaky });
      await o.append([signal(1)]);
      const results = await Promise.allSettled([o.append([signal(2)]), o.append([signal(3, { ref: 'eio', sourceId: 'plc1:eio:1' })])]);
      for (const r of results) assert.ok(r.status === 'rejected' && isPlantBridgeError(r.reason, 'OUTBOX_IO'), 'the whole group failed');
      assert.equal(o.stats().full, true);
      assert.ok(o.alarms().some((a) => a.code === 'OUTBOX_IO'));
      assert.deepEqual(o.ruleState('count-plc1'), { n: 1, emitted: 1 }, 'no state from the failed commit');
      // the sources re-send; the connection is reopened and the commit succeeds
      const again = await o.append([signal(2), signal(3, { ref: 'eio', sourceId: 'plc1:eio:1' })]);
      assert.equal(again.accepted, 2);
      assert.equal(o.stats().full, false);
      assert.equal(o.alarms().length, 0);
      assert.equal(o.stats().pending, 2);
      o.close();
    });

    void it('resendSince puts sent transactions back to pending, in outbox order', async () => {
      const c = clock();
      const o = open({ path: newPath(), now: c.now, rules: countingDeriver(1, (s) => `O${s.value}`) });
      await o.append(Array.from({ length: 5 }, (_, i) => signal(i)));
      const cl = o.claim(10, 60_000);
      o.settle(cl.slice(0, 2).map((x) => ({ seq: x.seq, status: 'sent' as const })));
      const since = c.t + 1;
      c.t += 1000;
      o.settle(cl.slice(2).map((x) => ({ seq: x.seq, status: 'sent' as const })));
      assert.equal(o.resendSince(since, 2), 3);
      assert.equal(o.stats().pending, 3);
      assert.deepEqual(o.claim(10, 60_000).map((x) => x.seq), cl.slice(2).map((x) => x.seq));
      o.close();
    });

    void it('runs with temp_store MEMORY: statement journals stay in memory, not a temp file per settle or append', async () => {
      // a statement after the first in a transaction journals the pages it changes; with the default temp
      // store that journal spills to a new temp file past 64 KiB (two per settle of 1,000 items, seen with strace)
      const o = open({ path: newPath() });
      assert.equal(count(o, 'PRAGMA temp_store'), 2);
      o.close();
    });

    void it('migrates a version-1 database and keeps its rows and counts', async () => {
      const path = newPath();
      const o0 = open({ path });
      o0.close();
      // rebuild as a v1 file
      const raw = openDb(path, { driver: factory.driver });
      raw.exec('DROP VIEW transactions_json; DROP TABLE tx_bodies; DROP TABLE events; DROP TABLE rule_state; DROP TABLE transactions; DROP TABLE dead_letters; DROP TABLE alarms; DROP TABLE counters; DROP TABLE meta; DROP TABLE leases;');
      raw.exec(migrations[0]);
      raw.pragma('user_version = 1');
      const tx = transaction('v1-key');
      raw.prepare("INSERT INTO transactions(idempotency_key, id, type, order_key, status, body, bytes, created_at) VALUES (?, ?, 'ProductionConfirmation', 'WC1:4711', 'pending', ?, 10, 1)").run('v1-key', tx.id, JSON.stringify(tx));
      raw.prepare("INSERT INTO dead_letters(kind, code, reason, created_at) VALUES ('signal', 'PAYLOAD_INVALID', 'x', 1)").run();
      raw.close();
      const o = open({ path });
      assert.equal(count(o, 'PRAGMA user_version'), migrations.length);
      // migrations ran with the default temp store; the connection keeps its statement journals in memory after them
      assert.equal(count(o, 'PRAGMA temp_store'), 2);
      assert.equal(o.stats().pending, 1);
      assert.equal(o.stats().deadLetters, 1);
      assert.equal(o.claim(10, 1000)[0].tx.idempotencyKey, 'v1-key');
      o.close();
    });

    void it('migrates a version-4 database with leased rows: leases move to their own table, pending rows get their own index, none is lost', async () => {
      const c = clock();
      const path = newPath();
      open({ path }).close();
      // rebuild as a v4 file: one leased row (claimed once by a run that died), one pending, one sent
      const raw = openDb(path, { driver: factory.driver });
      raw.exec('DROP VIEW transactions_json; DROP TABLE tx_bodies; DROP TABLE events; DROP TABLE rule_state; DROP TABLE transactions; DROP TABLE dead_letters; DROP TABLE alarms; DROP TABLE counters; DROP TABLE meta; DROP TABLE leases;');
      for (const m of migrations.slice(0, 4)) raw.exec(m);
      raw.pragma('user_version = 4');
      const insert = raw.prepare("INSERT INTO transactions(idempotency_key, id, type, order_key, status, legacy_body, bytes, created_at, attempts, lease_until) VALUES (?, ?, 'ProductionConfirmation', ?, ?, '', 10, 1, ?, ?)");
      for (const [key, order, status, attempts, lease] of [['v4-leased', 'WC1:1', 'leased', 1, c.t + 600_000], ['v4-pending', 'WC1:2', 'pending', 0, null], ['v4-sent', 'WC1:3', 'sent', 1, null]] as const) {
        insert.run(key, transaction(key).id, order, status, attempts, lease);
        raw.prepare('INSERT INTO tx_bodies(seq, body) VALUES (last_insert_rowid(), ?)').run(JSON.stringify(transaction(key)));
      }
      raw.close();
      const o = open({ path, now: c.now });
      assert.equal(count(o, 'PRAGMA user_version'), migrations.length);
      const s = o.stats();
      assert.equal(s.pending, 2);
      assert.equal(s.leased, 0, 'a lease found at start belongs to a dead run');
      assert.equal(s.sent, 1);
      assert.equal(count(o, "SELECT COUNT(*) FROM transactions WHERE status = 'leased'"), 0);
      // schema 6: the status index holds pending rows and the rare statuses only
      assert.equal(count(o, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('transactions_pending', 'transactions_other')"), 2);
      assert.equal(count(o, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'transactions_status'"), 0);
      const cl = o.claim(10, 60_000);
      assert.deepEqual(cl.map((x) => [x.tx.idempotencyKey, x.attempts]), [['v4-leased', 2], ['v4-pending', 1]]);
      assert.equal(o.stats().leased, 2);
      assert.deepEqual(o.listTransactions({ status: 'leased' }).map((x) => x.idempotencyKey), ['v4-leased', 'v4-pending']);
      o.settle(cl.map((x) => ({ seq: x.seq, status: 'sent' as const })));
      assert.equal(o.stats().pending, 0);
      assert.equal(o.stats().leased, 0);
      assert.equal(o.stats().sent, 3);
      o.close();
    });

    void it('migrates a version-7 database with dead letters: they stay, counted, and keyed input dead letters are deduped from then on', async () => {
      const path = newPath();
      open({ path }).close();
      const raw = openDb(path, { driver: factory.driver });
      raw.exec('DROP VIEW transactions_json; DROP TABLE tx_bodies; DROP TABLE events; DROP TABLE rule_state; DROP TABLE transactions; DROP TABLE dead_letters; DROP TABLE alarms; DROP TABLE counters; DROP TABLE meta; DROP TABLE leases;');
      for (const m of migrations.slice(0, 7)) raw.exec(m);
      raw.pragma('user_version = 7');
      const insert = raw.prepare("INSERT INTO dead_letters(kind, source, code, reason, payload, created_at, resolved) VALUES ('signal', 'm', 'PAYLOAD_INVALID', 'not JSON', ?, 1, ?)");
      // the same bad input twice (written before there were keys), and one resolved
      insert.run('x', null);
      insert.run('x', null);
      insert.run('y', 'discarded');
      raw.close();
      const o = open({ path });
      assert.equal(count(o, 'PRAGMA user_version'), migrations.length);
      assert.equal(o.stats().deadLetters, 2);
      assert.equal(o.listDeadLetters(100, true).length, 3);
      assert.deepEqual(o.listDeadLetters().map((d) => d.dedupeKey), [null, null]);
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', 'x', 'm/t@dl#x'), true);
      assert.equal(o.deadLetterInput('m', 'PAYLOAD_INVALID', 'not JSON', 'x', 'm/t@dl#x'), false);
      assert.equal(o.stats().deadLetters, 3);
      o.close();
    });

    void it('refuses a database of a newer schema instead of touching it', () => {
      const path = newPath();
      open({ path }).close();
      const raw = openDb(path, { driver: factory.driver });
      raw.pragma(`user_version = ${migrations.length + 1}`);
      raw.close();
      assert.throws(() => open({ path }), /newer than this agent knows/);
      assert.ok(existsSync(path), 'not quarantined');
    });

    for (const [what, damage] of [
      ['truncated', (p: string) => truncateSync(p, Math.floor(statSync(p).size / 2))],
      ['with a garbage header', (p: string) => {
        const b = readFileSync(p);
        b.fill(0x5a, 0, 100);
        writeFileSync(p, b);
      }],
      ['with flipped bits in its b-tree pages', (p: string) => {
        const b = readFileSync(p);
        // every page header after the first: page type and cell counts
        for (let off = 4096; off + 8 < b.length; off += 4096) for (let k = 0; k < 8; k++) b[off + k] ^= 0xa5;
        writeFileSync(p, b);
      }],
    ] as const) {
      void it(`quarantines a database file ${what}: alarm until acknowledged, fresh outbox, no crash`, async () => {
        const path = newPath();
        let o = open({ path, rules: countingDeriver(1, (s) => `O${s.value}`) });
        await o.append(Array.from({ length: 400 }, (_, i) => signal(i, { value: `${'p'.repeat(200)}${i}` })));
        o.close();
        damage(path);
        o = open({ path, rules: countingDeriver(1) });
        const alarm = o.alarms().find((a) => a.code === 'OUTBOX_CORRUPT');
        assert.ok(alarm, 'alarm raised');
        assert.match(alarm.message, /corrupt-/);
        const moved = readdirSync(join(path, '..')).filter((f) => f.startsWith('outbox.db.corrupt-') && !/-(wal|shm)$/.test(f));
        assert.ok(moved.length >= 1, `quarantined file kept: ${readdirSync(join(path, '..'))}`);
        assert.equal(o.stats().pending, 0);
        assert.equal((await o.append([signal(1)])).accepted, 1);
        o.close();
        o = open({ path });
        assert.ok(o.alarms().some((a) => a.code === 'OUTBOX_CORRUPT'), 'the alarm persists across restarts');
        assert.equal(o.acknowledgeAlarm('OUTBOX_CORRUPT'), true);
        assert.equal(o.alarms().length, 0);
        o.close();
      });
    }

    void it('never crashes on random bit flips: opens clean or quarantines', async () => {
      const path = newPath();
      let o = open({ path, rules: countingDeriver(3) });
      await o.append(Array.from({ length: 300 }, (_, i) => signal(i)));
      o.close();
      const pristine = readFileSync(path);
      let seed = 42;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
      for (let round = 0; round < 15; round++) {
        const b = Buffer.from(pristine);
        for (let k = 0; k < 20; k++) b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
        writeFileSync(path, b);
        o = open({ path, rules: countingDeriver(3) });
        // whatever survived, it keeps working
        await o.append([signal(10_000 + round)]).catch((e) => assert.ok(isPlantBridgeError(e), String(e)));
        o.stats();
        o.close();
      }
    });

    void it('opens as a tool beside the agent: no creation, no quarantine, sees committed rows', async () => {
      const path = newPath();
      assert.throws(() => factory.open({ path, role: 'tool', driver: factory.driver }), (e) => isPlantBridgeError(e, 'OUTBOX_IO'));
      assert.ok(!existsSync(path));
      const o = open({ path, rules: countingDeriver(1) });
      await o.append([signal(1), signal(2)]);
      const tool = factory.open({ path, role: 'tool', driver: factory.driver });
      assert.equal(tool.stats().pending, 2);
      assert.equal(tool.listTransactions().length, 2);
      await assert.rejects(tool.append([signal(3)]));
      tool.close();
      assert.equal((await o.append([signal(3)])).accepted, 1, 'the agent goes on');
      o.close();
    });

    void it('close commits what is queued', async () => {
      const path = newPath();
      let o = open({ path, groupCommitDelayMs: 20 });
      const p = o.append([signal(1)]);
      o.close();
      assert.equal((await p).accepted, 1);
      o = open({ path });
      assert.equal(count(o, 'SELECT COUNT(*) FROM events'), 1);
      o.close();
    });
  });
}
