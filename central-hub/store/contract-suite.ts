import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { erpMessageCode, schemaId, ulid, type AgentHeartbeat } from '../../contracts/index.ts';
import type { HubStore, PostingOutcome } from './hub-store.ts';
import { testTx } from './test-tx.ts';

/**
 * The HubStore contract (DESIGN.md §4, STYLE.md habit 6): one test body, run against every store.
 * `open` returns a fresh, empty store (a new file or a new PostgreSQL schema); `second` opens another
 * handle on the same data, like a second hub instance. `skip` is a reason to skip (service missing).
 */
export interface StoreFactory {
  open(): Promise<HubStore>;
  second?(): Promise<HubStore>;
  cleanup?(): Promise<void>;
  skip?(): Promise<string | undefined>;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

function heartbeat(agentId: string, plant: string, pending = 0): AgentHeartbeat {
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
    drivers: [{ name: 'sim', type: 'simulator', state: 'up', since: now }],
    outbox: { pending, oldestPendingAgeS: 0, deadLetters: 0, bytes: 0, diskFreeBytes: 1e9, full: false },
    rates: { signalsPerS: 1, forwardedPerS: 1 },
    alarms: [],
  };
}

export function hubStoreContract(name: string, factory: StoreFactory): void {
  void describe(`HubStore contract: ${name}`, async () => {
    const reason = await factory.skip?.();
    let store: HubStore;
    before(async () => {
      if (reason) return;
      store = await factory.open();
      await store.migrate();
    });
    after(async () => {
      if (reason) return;
      await store?.close();
      await factory.cleanup?.();
    });
    const test = (title: string, fn: () => Promise<void>) => it(title, reason ? { skip: reason } : {}, fn);

    void test('migrate is idempotent', async () => {
      await store.migrate();
      await store.migrate();
      assert.deepEqual(await store.counts(), { queued: 0, posted: 0, failed: 0, discarded: 0 });
    });

    void test('ingest is unique by idempotency key and answers duplicates with the original outcome', async () => {
      const a = testTx({ order: 'I-1' });
      const b = testTx({ order: 'I-1' });
      const r1 = await store.ingest('edge-1', [a, b], new Date(), { batchId: 'B1' });
      assert.deepEqual(r1.map((r) => r.status), ['accepted', 'accepted']);
      const c = testTx({ order: 'I-1' });
      const r2 = await store.ingest('edge-1', [a, c, c], new Date(), { batchId: 'B2' });
      assert.deepEqual(r2.map((r) => r.status), ['duplicate', 'accepted', 'duplicate']);
      assert.deepEqual(r2[0].outcome, { state: 'pending' });
      assert.equal(r2[0].idempotencyKey, a.idempotencyKey);
      const row = await store.getTransaction(a.idempotencyKey);
      assert.equal(row?.agentId, 'edge-1');
      assert.equal(row?.body.idempotencyKey, a.idempotencyKey);
      const lin = await store.lineage(a.idempotencyKey);
      assert.equal(lin?.transaction.batchId, 'B1');
      assert.equal(lin?.events[0].kind, 'received');
    });

    void test('ingest stores each body as sent: quotes, backslashes, non-ASCII and escapes come back equal, in batch order', async () => {
      const odd = testTx({ order: 'I-odd' });
      odd.correlationId = 'say "hi" \\ back\\slash \u00e9\u00df \u65e5\u672c 😀 \u0001 tab\t new\nline';
      odd.source = { ...odd.source, ref: '{"looks":"like json"}, [1,2]' };
      const plain = testTx({ order: 'I-odd' });
      const r = await store.ingest('edge-1', [odd, plain], new Date(), { batchId: 'B-odd' });
      assert.deepEqual(r.map((x) => x.status), ['accepted', 'accepted']);
      assert.deepEqual((await store.getTransaction(odd.idempotencyKey))?.body, odd);
      assert.deepEqual((await store.getTransaction(plain.idempotencyKey))?.body, plain);
      const rows = await store.listTransactions({ limit: 10 });
      const seqOf = (k: string) => rows.find((x) => x.idempotencyKey === k)?.seq ?? -1;
      assert.ok(seqOf(odd.idempotencyKey) < seqOf(plain.idempotencyKey), 'seq follows the batch order');
    });

    void test('ingest with the received items text stores items equal to the parsed ones; text that is not one array stores nothing of its own', async () => {
      const odd = testTx({ order: 'I-raw' });
      odd.correlationId = 'say "hi" \\ \u00e9 😀 \u0001';
      const plain = testTx({ order: 'I-raw' });
      // as an agent sends them: escapes and number forms that JSON.stringify would write differently
      const raw = (t: object) => JSON.stringify(t).replace('\u00e9', '\\u00e9').replace(/"qty":(\d+)/, '"qty":$1.0');
      const itemsJson = Buffer.from(`[${raw(odd)},\n ${raw(plain)}]`);
      const r = await store.ingest('edge-1', [odd, plain], new Date(), { batchId: 'B-raw', itemsJson });
      assert.deepEqual(r.map((x) => x.status), ['accepted', 'accepted']);
      assert.deepEqual((await store.getTransaction(odd.idempotencyKey))?.body, odd);
      assert.deepEqual((await store.getTransaction(plain.idempotencyKey))?.body, plain);
      // a frame with "items" twice: the view runs from the first array to the end, which is not one array
      const first = testTx({ order: 'I-raw2' });
      const second = testTx({ order: 'I-raw2' });
      const twice = Buffer.from(`[${JSON.stringify(first)}],"items":[${JSON.stringify(second)}]`);
      const r2 = await store.ingest('edge-1', [second], new Date(), { batchId: 'B-raw2', itemsJson: twice });
      assert.deepEqual(r2.map((x) => x.status), ['accepted']);
      assert.deepEqual((await store.getTransaction(second.idempotencyKey))?.body, second);
      assert.equal(await store.getTransaction(first.idempotencyKey), undefined);
    });

    void test('static agents: upsert, find by token hash, revoke at once', async () => {
      await store.upsertAgent({ id: 'static-1', plants: ['P1', 'P2'], tokenHash: hash('tok-static-1') });
      const a = await store.findAgentByTokenHash(hash('tok-static-1'));
      assert.deepEqual(a && { id: a.id, plants: a.plants, revoked: a.revokedAt }, { id: 'static-1', plants: ['P1', 'P2'], revoked: undefined });
      assert.equal(await store.findAgentByTokenHash(hash('nope')), undefined);
      assert.equal(await store.revokeAgent('static-1', 'admin'), true);
      assert.ok((await store.findAgentByTokenHash(hash('tok-static-1')))?.revokedAt);
      assert.equal(await store.revokeAgent('static-1', 'admin'), false);
    });

    void test('enrollment: a one-time token is redeemed once, before it expires; the hub keeps hashes only', async () => {
      const tok = randomBytes(16).toString('hex');
      await store.createEnrollment({ tokenHash: hash(tok), agentId: 'enr-1', plants: ['P7'], expiresAt: new Date(Date.now() + 86_400_000) }, 'admin');
      const pending = await store.getAgent('enr-1');
      assert.equal(pending?.enrolled, false);
      assert.equal(pending?.pendingEnrollments, 1);
      assert.deepEqual(pending?.plants, ['P7']);
      const r = await store.redeemEnrollment(hash(tok), hash('cred-1'));
      assert.equal(r.ok, true);
      assert.deepEqual((await store.findAgentByTokenHash(hash('cred-1')))?.plants, ['P7']);
      assert.deepEqual(await store.redeemEnrollment(hash(tok), hash('cred-2')), { ok: false, reason: 'used' });
      assert.deepEqual(await store.redeemEnrollment(hash('unknown'), hash('cred-3')), { ok: false, reason: 'unknown' });
      const old = randomBytes(16).toString('hex');
      await store.createEnrollment({ tokenHash: hash(old), agentId: 'enr-2', plants: ['P7'], expiresAt: new Date(Date.now() - 1000) }, 'admin');
      assert.deepEqual(await store.redeemEnrollment(hash(old), hash('cred-4')), { ok: false, reason: 'expired' });
      // rotation: a new token for the same agent replaces the credential when redeemed
      const rot = randomBytes(16).toString('hex');
      await store.createEnrollment({ tokenHash: hash(rot), agentId: 'enr-1', plants: ['P7'], expiresAt: new Date(Date.now() + 60_000) }, 'admin');
      assert.equal((await store.redeemEnrollment(hash(rot), hash('cred-5'))).ok, true);
      assert.equal(await store.findAgentByTokenHash(hash('cred-1')), undefined);
      assert.equal((await store.findAgentByTokenHash(hash('cred-5')))?.id, 'enr-1');
      // revocation also kills unused tokens
      const late = randomBytes(16).toString('hex');
      await store.createEnrollment({ tokenHash: hash(late), agentId: 'enr-1', plants: ['P7'], expiresAt: new Date(Date.now() + 60_000) }, 'admin');
      assert.equal(await store.revokeAgent('enr-1', 'admin'), true);
      assert.ok((await store.findAgentByTokenHash(hash('cred-5')))?.revokedAt);
      assert.deepEqual(await store.redeemEnrollment(hash(late), hash('cred-6')), { ok: false, reason: 'revoked' });
      const info = (await store.listAgentInfo()).find((a) => a.id === 'enr-1');
      assert.ok(info?.revokedAt);
      const actions = (await store.listAudit(100)).map((e) => e.action);
      for (const a of ['agent.enrollment_created', 'agent.enrolled', 'agent.enrollment_refused', 'agent.revoked']) assert.ok(actions.includes(a), a);
    });

    void test('only the newest enrollment token of an agent works: a rotation supersedes the unused ones, and so does an enrollment', async () => {
      const day = () => new Date(Date.now() + 86_400_000);
      const [t1, t2, t3] = [1, 2, 3].map(() => randomBytes(16).toString('hex'));
      await store.createEnrollment({ tokenHash: hash(t1), agentId: 'sup-1', plants: ['P1'], expiresAt: day() }, 'admin');
      assert.equal((await store.redeemEnrollment(hash(t1), hash('sup-cred-1'))).ok, true);
      // two rotations: t2 leaks, t3 is the one handed to the agent
      await store.createEnrollment({ tokenHash: hash(t2), agentId: 'sup-1', plants: ['P1'], expiresAt: day() }, 'admin');
      await store.createEnrollment({ tokenHash: hash(t3), agentId: 'sup-1', plants: ['P1'], expiresAt: day() }, 'admin');
      assert.equal((await store.getAgent('sup-1'))?.pendingEnrollments, 1, 'one usable token');
      assert.deepEqual(await store.redeemEnrollment(hash(t2), hash('thief')), { ok: false, reason: 'superseded' });
      assert.equal((await store.redeemEnrollment(hash(t3), hash('sup-cred-3'))).ok, true);
      assert.equal((await store.findAgentByTokenHash(hash('sup-cred-3')))?.id, 'sup-1');
      assert.equal(await store.findAgentByTokenHash(hash('thief')), undefined);
      // tokens issued for two agents do not supersede each other
      const [a, b] = [1, 2].map(() => randomBytes(16).toString('hex'));
      await store.createEnrollment({ tokenHash: hash(a), agentId: 'sup-a', plants: ['P1'], expiresAt: day() }, 'admin');
      await store.createEnrollment({ tokenHash: hash(b), agentId: 'sup-b', plants: ['P1'], expiresAt: day() }, 'admin');
      assert.equal((await store.redeemEnrollment(hash(a), hash('sup-cred-a'))).ok, true);
      assert.equal((await store.redeemEnrollment(hash(b), hash('sup-cred-b'))).ok, true);
    });

    void test('posting queue: one head per order, leases, owner-only completion, outcomes for the agent', async () => {
      const s = store;
      const x1 = testTx({ order: 'Q-X', agentId: 'edge-q' });
      const x2 = testTx({ order: 'Q-X', agentId: 'edge-q' });
      const y1 = testTx({ order: 'Q-Y', agentId: 'edge-q' });
      await s.ingest('edge-q', [x1, x2, y1], new Date());
      const t0 = new Date(Date.now() + 10_000);
      // everything from the earlier tests is queued as well: drain to our three orders by key
      const mine = new Set([x1, x2, y1].map((t) => t.idempotencyKey));
      const jobs = (await s.claimPostings(100, 5000, 'owner-a', t0)).filter((j) => mine.has(j.tx.idempotencyKey));
      assert.deepEqual(jobs.map((j) => j.tx.idempotencyKey).sort(), [x1.idempotencyKey, y1.idempotencyKey].sort());
      assert.equal(jobs[0].attempt, 1);
      // leased: nobody else gets them; the second item of order X waits for the head
      assert.deepEqual((await s.claimPostings(100, 5000, 'owner-b', t0)).filter((j) => mine.has(j.tx.idempotencyKey)), []);
      const jx = jobs.find((j) => j.tx.idempotencyKey === x1.idempotencyKey)!;
      const jy = jobs.find((j) => j.tx.idempotencyKey === y1.idempotencyKey)!;
      assert.equal(await s.completePosting(jx.seq, 'owner-b', { kind: 'posted', erpRef: 'nope' }, t0), false);
      assert.equal(await s.completePosting(jx.seq, 'owner-a', { kind: 'posted', erpRef: 'DOC-1' }, t0), true);
      const next = (await s.claimPostings(100, 5000, 'owner-b', t0)).filter((j) => mine.has(j.tx.idempotencyKey));
      assert.deepEqual(next.map((j) => j.tx.idempotencyKey), [x2.idempotencyKey]);
      // an expired lease comes back, with attempt 2 (the adapter looks the key up first)
      const later = new Date(t0.getTime() + 6000);
      const again = (await s.claimPostings(100, 5000, 'owner-c', later)).filter((j) => mine.has(j.tx.idempotencyKey));
      assert.deepEqual(again.map((j) => [j.tx.idempotencyKey, j.attempt]).sort(), [[x2.idempotencyKey, 2], [y1.idempotencyKey, 2]].sort());
      assert.equal(await s.completePosting(jy.seq, 'owner-a', { kind: 'posted', erpRef: 'late' }, later), false, 'a lease lost to expiry is ignored');
      const jy2 = again.find((j) => j.tx.idempotencyKey === y1.idempotencyKey)!;
      const jx2 = again.find((j) => j.tx.idempotencyKey === x2.idempotencyKey)!;
      assert.equal(await s.completePosting(jy2.seq, 'owner-c', { kind: 'retry', delayMs: 60_000, code: 'ERP_IN_DOUBT', message: 'timeout', inDoubt: true }, later), true);
      assert.equal(await s.completePosting(jx2.seq, 'owner-c', { kind: 'failed', code: 'ERP_BUSINESS', message: 'order closed', erpCode: erpMessageCode('CO 123') }, later), true);
      // duplicates now answer with the outcome
      const dup = await s.ingest('edge-q', [x1, x2, y1], new Date());
      assert.deepEqual(dup.map((r) => r.outcome?.state), ['posted', 'failed', 'pending']);
      assert.equal(dup[0].outcome?.erpRef, 'DOC-1');
      assert.equal(dup[1].outcome?.code, 'ERP_BUSINESS');
      // outcomes for the agent, with a cursor
      const o1 = await s.outcomesSince('edge-q', 0, 1);
      assert.equal(o1.items.length, 1);
      assert.equal(o1.items[0].idempotencyKey, x1.idempotencyKey);
      const o2 = await s.outcomesSince('edge-q', o1.cursor, 100);
      assert.deepEqual(o2.items.map((i) => [i.idempotencyKey, i.outcome.state]), [[x2.idempotencyKey, 'failed']]);
      assert.deepEqual((await s.outcomesSince('edge-q', o2.cursor, 100)).items, []);
      assert.deepEqual((await s.outcomesSince('someone-else', 0, 100)).items, []);
      // replay puts a dead letter back; discard ends it
      assert.equal(await s.replay(jx2.seq, 'admin'), true);
      assert.equal((await s.outcomeOf(x2.idempotencyKey))?.state, 'pending');
      const lin = await s.lineage(x2.idempotencyKey);
      assert.deepEqual(lin?.events.map((e) => e.kind), ['received', 'posting.failed', 'replay']);
      const counts = await s.counts();
      assert.ok(counts.posted >= 1 && counts.queued >= 2);
    });

    void test('a lease is renewed only by its claim; a late outcome of an earlier claim changes nothing; a replay starts a fresh budget', async () => {
      const s = store;
      const r1 = testTx({ order: 'R-1', agentId: 'edge-r' });
      await s.ingest('edge-r', [r1], new Date());
      const mine = <J extends { tx: { idempotencyKey: string } }>(jobs: J[]) => jobs.filter((j) => j.tx.idempotencyKey === r1.idempotencyKey);
      const t0 = Date.now() + 20_000;
      const at = (ms: number) => new Date(t0 + ms);
      const [a] = mine(await s.claimPostings(100, 5000, 'claim-1', at(0)));
      assert.equal(a.attempt, 1);
      assert.equal(await s.renewPosting(a.seq, 'claim-1', 5000, at(4000)), true, 'the holder extends its lease');
      assert.equal(await s.renewPosting(a.seq, 'claim-x', 5000, at(4000)), false, 'nobody else can');
      assert.deepEqual(mine(await s.claimPostings(100, 5000, 'claim-2', at(6000))), [], 'renewed: not claimable at its old end');
      // not renewed any more: it expires and another claim takes it over
      const [b] = mine(await s.claimPostings(100, 5000, 'claim-2', at(9500)));
      assert.equal(b.attempt, 2);
      assert.equal(await s.renewPosting(a.seq, 'claim-1', 5000, at(9600)), false, 'the first claim lost it');
      assert.equal(await s.completePosting(a.seq, 'claim-1', { kind: 'retry', delayMs: 0, code: 'ERP_IN_DOUBT', message: 'late', inDoubt: true }, at(9700)), false, "a late outcome of the first claim is ignored");
      assert.deepEqual(mine(await s.claimPostings(100, 5000, 'claim-3', at(9800))), [], 'and did not free the second claim\'s lease');
      assert.equal(await s.completePosting(b.seq, 'claim-2', { kind: 'failed', code: 'ERP_BUSINESS', message: 'order locked' }, at(9900)), true);
      assert.equal(await s.renewPosting(b.seq, 'claim-2', 5000, at(9950)), false, 'a completed posting has no lease');
      // replay: a fresh retry budget, and the next attempt (2) looks the key up first
      assert.equal(await s.replay(b.seq, 'admin'), true);
      const [c] = mine(await s.claimPostings(100, 5000, 'claim-4', at(10_000)));
      assert.equal(c.attempt, 2);
      assert.equal(await s.completePosting(c.seq, 'claim-4', { kind: 'posted', erpRef: 'DOC-R1' }, at(10_100)), true);
    });

    void test('a job says whether the ERP may hold it: after an in-doubt attempt or a claim that expired, until an attempt resolves it', async () => {
      const s = store;
      const u1 = testTx({ order: 'U-1', agentId: 'edge-u' });
      await s.ingest('edge-u', [u1], new Date());
      const mine = <J extends { tx: { idempotencyKey: string } }>(jobs: J[]) => jobs.filter((j) => j.tx.idempotencyKey === u1.idempotencyKey);
      const t0 = Date.now() + 50_000;
      const at = (ms: number) => new Date(t0 + ms);
      const [a] = mine(await s.claimPostings(100, 5000, 'u-1', at(0)));
      assert.equal(a.inDoubt, false, 'never tried');
      // the claim dies mid-call: whoever takes the posting over cannot know whether its call reached the ERP
      const [b] = mine(await s.claimPostings(100, 5000, 'u-2', at(6000)));
      assert.equal(b.inDoubt, true, 'taken over from an expired claim');
      // that attempt resolved it (looked up: not there) and failed before sending: no longer in doubt
      assert.equal(await s.completePosting(b.seq, 'u-2', { kind: 'retry', delayMs: 0, code: 'UPSTREAM_UNAVAILABLE', message: 'refused', inDoubt: false }, at(6100)), true);
      const [c] = mine(await s.claimPostings(100, 5000, 'u-3', at(6200)));
      assert.equal(c.inDoubt, false);
      assert.equal(await s.completePosting(c.seq, 'u-3', { kind: 'retry', delayMs: 0, code: 'ERP_IN_DOUBT', message: 'timeout', inDoubt: true }, at(6300)), true);
      const [d] = mine(await s.claimPostings(100, 5000, 'u-4', at(6400)));
      assert.equal(d.inDoubt, true, 'the last attempt ended in doubt');
      // still unknown after the last attempt: an in-doubt dead letter, shown as such
      assert.equal(await s.completePosting(d.seq, 'u-4', { kind: 'failed', code: 'ERP_IN_DOUBT', message: 'ERP outcome unknown after 4 attempts' }, at(6500)), true);
      const row = await s.getTransaction(u1.idempotencyKey);
      assert.deepEqual([row?.state, row?.inDoubt, row?.errorCode], ['failed', true, 'ERP_IN_DOUBT']);
      assert.deepEqual(await s.outcomeOf(u1.idempotencyKey), { state: 'failed', code: 'ERP_IN_DOUBT', message: 'ERP outcome unknown after 4 attempts' });
      // a replay keeps the doubt: its first attempt looks the key up before anything is sent
      assert.equal(await s.replay(d.seq, 'admin'), true);
      const [e] = mine(await s.claimPostings(100, 5000, 'u-5', at(6600)));
      assert.deepEqual([e.attempt, e.inDoubt], [2, true]);
      assert.equal(await s.completePosting(e.seq, 'u-5', { kind: 'posted', erpRef: 'DOC-U1' }, at(6700)), true);
      assert.equal((await s.getTransaction(u1.idempotencyKey))?.inDoubt, false);
    });

    void test('an in-doubt dead letter replayed at once is claimed only after its lookUpAfterMs; other dead letters at once', async () => {
      const s = store;
      const [w1, w2] = [testTx({ order: 'W-1', agentId: 'edge-w' }), testTx({ order: 'W-2', agentId: 'edge-w' })];
      await s.ingest('edge-w', [w1, w2], new Date());
      const keys = new Set([w1.idempotencyKey, w2.idempotencyKey]);
      const t0 = Date.now() + 60_000;
      const claim = async (owner: string, ms: number) => (await s.claimPostings(100, 5000, owner, new Date(t0 + ms))).filter((j) => keys.has(j.tx.idempotencyKey));
      const first = await claim('w-1', 0);
      const a = first.find((j) => j.tx.idempotencyKey === w1.idempotencyKey)!;
      const b = first.find((j) => j.tx.idempotencyKey === w2.idempotencyKey)!;
      // the last attempt of w1 went in doubt at t0+100: the ERP may still be processing it for a minute
      assert.equal(await s.completePosting(a.seq, 'w-1', { kind: 'failed', code: 'ERP_IN_DOUBT', message: 'outcome unknown', lookUpAfterMs: 60_000 }, new Date(t0 + 100)), true);
      assert.equal(await s.completePosting(b.seq, 'w-1', { kind: 'failed', code: 'ERP_BUSINESS', message: 'order locked' }, new Date(t0 + 100)), true);
      assert.equal(await s.replay(a.seq, 'admin'), true);
      assert.equal(await s.replay(b.seq, 'admin'), true);
      const now = await claim('w-2', 200);
      assert.deepEqual(now.map((j) => j.tx.idempotencyKey), [w2.idempotencyKey], 'the refused one at once, the in-doubt one not yet');
      assert.equal(await s.completePosting(now[0].seq, 'w-2', { kind: 'posted', erpRef: 'DOC-W2' }, new Date(t0 + 300)), true);
      assert.deepEqual(await claim('w-3', 60_000), [], 'not before the wait has passed since it went in doubt');
      const [late] = await claim('w-4', 60_200);
      assert.deepEqual([late?.tx.idempotencyKey, late?.attempt, late?.inDoubt], [w1.idempotencyKey, 2, true]);
    });

    void test('a dead letter holds back the later transactions of its order until it is replayed and posted, or discarded', async () => {
      const s = store;
      const [d1, d2, d3] = [0, 1, 2].map(() => testTx({ order: 'D-1', agentId: 'edge-d' }));
      const other = testTx({ order: 'D-2', agentId: 'edge-d' });
      await s.ingest('edge-d', [d1, d2, d3, other], new Date());
      const keys = new Set([d1, d2, d3, other].map((t) => t.idempotencyKey));
      const t0 = Date.now() + 40_000;
      const claim = async (owner: string, ms: number) => (await s.claimPostings(100, 5000, owner, new Date(t0 + ms))).filter((j) => keys.has(j.tx.idempotencyKey));
      const first = await claim('dl-1', 0);
      assert.deepEqual(first.map((j) => j.tx.idempotencyKey).sort(), [d1.idempotencyKey, other.idempotencyKey].sort());
      const j1 = first.find((j) => j.tx.idempotencyKey === d1.idempotencyKey)!;
      const jo = first.find((j) => j.tx.idempotencyKey === other.idempotencyKey)!;
      assert.equal(await s.completePosting(j1.seq, 'dl-1', { kind: 'failed', code: 'ERP_BUSINESS', message: 'order locked' }, new Date(t0 + 10)), true);
      assert.equal(await s.completePosting(jo.seq, 'dl-1', { kind: 'posted', erpRef: 'DOC-D2' }, new Date(t0 + 10)), true);
      assert.deepEqual(await claim('dl-2', 20), [], 'd2 waits behind the dead letter d1');
      // replayed: d1 comes first again, and d2 only after d1 is posted
      assert.equal(await s.replay(j1.seq, 'admin'), true);
      const again = await claim('dl-3', 30);
      assert.deepEqual(again.map((j) => j.tx.idempotencyKey), [d1.idempotencyKey]);
      assert.equal(await s.completePosting(again[0].seq, 'dl-3', { kind: 'posted', erpRef: 'DOC-D1' }, new Date(t0 + 40)), true);
      const next = await claim('dl-4', 50);
      assert.deepEqual(next.map((j) => j.tx.idempotencyKey), [d2.idempotencyKey]);
      // a dead letter that is discarded frees its order
      assert.equal(await s.completePosting(next[0].seq, 'dl-4', { kind: 'failed', code: 'ERP_BUSINESS', message: 'wrong operation' }, new Date(t0 + 60)), true);
      assert.deepEqual(await claim('dl-5', 70), []);
      assert.equal(await s.discard(next[0].seq, 'admin', 'posted by hand in the ERP'), true);
      assert.deepEqual((await claim('dl-6', 80)).map((j) => j.tx.idempotencyKey), [d3.idempotencyKey]);
    });

    void test("a key already stored for another plant is refused, not answered as that plant's duplicate", async () => {
      const s = store;
      const mine = testTx({ order: 'K-1', agentId: 'edge-k1', plant: 'P1' });
      assert.equal((await s.ingest('edge-k1', [mine], new Date()))[0].status, 'accepted');
      // another plant's agent sends the same key: no duplicate, no outcome of P1's transaction
      const squat = { ...testTx({ order: 'K-1', agentId: 'edge-k2', plant: 'P2' }), idempotencyKey: mine.idempotencyKey };
      const [r] = await s.ingest('edge-k2', [squat], new Date());
      assert.equal(r.status, 'rejected');
      assert.equal(r.code, 'PLANT_MISMATCH');
      assert.equal(r.outcome, undefined);
      assert.match(r.reason ?? '', /another plant/);
      // P1's transaction is untouched, and P1's own re-send is still its duplicate
      assert.equal((await s.getTransaction(mine.idempotencyKey))?.plant, 'P1');
      assert.equal((await s.ingest('edge-k1', [mine], new Date()))[0].status, 'duplicate');
      // and the other way round: a key squatted first does not swallow the real one silently
      const first = { ...testTx({ order: 'K-2', agentId: 'edge-k2', plant: 'P2' }), idempotencyKey: 'P1:WC-1:K-2:0010:good:0-10' };
      assert.equal((await s.ingest('edge-k2', [first], new Date()))[0].status, 'accepted');
      const real = { ...testTx({ order: 'K-2', agentId: 'edge-k1', plant: 'P1' }), idempotencyKey: first.idempotencyKey };
      const [r2] = await s.ingest('edge-k1', [real], new Date());
      assert.deepEqual([r2.status, r2.code], ['rejected', 'PLANT_MISMATCH'], 'refused with a reason the agent dead-letters, not settled as sent');
    });

    void test('two instances never claim the same posting', async () => {
      if (!factory.second) return;
      const other = await factory.second();
      try {
        const txs = Array.from({ length: 40 }, (_, i) => testTx({ order: `C-${i}`, agentId: 'edge-c' }));
        await store.ingest('edge-c', txs, new Date());
        const at = new Date(Date.now() + 3_600_000);
        const [a, b] = await Promise.all([store.claimPostings(30, 60_000, 'inst-a', at), other.claimPostings(30, 60_000, 'inst-b', at)]);
        const seen = new Set<number>();
        for (const j of [...a, ...b]) {
          assert.ok(!seen.has(j.seq), `seq ${j.seq} claimed twice`);
          seen.add(j.seq);
        }
        const keys = new Set(txs.map((t) => t.idempotencyKey));
        assert.equal([...a, ...b].filter((j) => keys.has(j.tx.idempotencyKey)).length, 40);
      } finally {
        await other.close();
      }
    });

    void test('heartbeats: latest per agent, history kept', async () => {
      await store.upsertAgent({ id: 'hb-1', plants: ['P1'], tokenHash: hash('tok-hb-1') });
      await store.recordHeartbeat(heartbeat('hb-1', 'P1', 5), new Date());
      await store.recordHeartbeat(heartbeat('hb-1', 'P1', 7), new Date());
      const row = (await store.listAgents()).find((a) => a.id === 'hb-1');
      assert.equal(row?.heartbeat?.outbox.pending, 7);
      assert.ok(row?.lastHeartbeatAt);
      const hist = await store.heartbeatHistory('hb-1', 10);
      assert.deepEqual(hist.map((h) => h.pending), [5, 7]);
      assert.equal(hist[0].driversUp, 1);
      assert.ok((await store.getAgent('hb-1'))?.lastHeartbeatAt);
    });

    void test('audit log keeps security events, newest first', async () => {
      await store.audit({ actor: 'agent:x', action: 'ingest.plant_mismatch', detail: { plants: ['P9'] } });
      const [last] = await store.listAudit(1);
      assert.equal(last.action, 'ingest.plant_mismatch');
      assert.deepEqual(last.detail, { plants: ['P9'] });
      assert.ok(!Number.isNaN(Date.parse(last.at)));
    });

    void test('large batches keep their order (seq follows the batch)', async () => {
      const txs = Array.from({ length: 1000 }, () => testTx({ order: 'BIG', agentId: 'edge-big' }));
      const r = await store.ingest('edge-big', txs, new Date());
      assert.equal(r.filter((x) => x.status === 'accepted').length, 1000);
      const rows = await store.listTransactions({ limit: 1000 });
      const seqOf = new Map(rows.map((x) => [x.idempotencyKey, x.seq]));
      for (let i = 1; i < txs.length; i++) assert.ok(seqOf.get(txs[i - 1].idempotencyKey)! < seqOf.get(txs[i].idempotencyKey)!);
    });
    void test('monitor queries: latencies per plant and type, the slowest postings, open orders, dead letters with what they hold back', async () => {
      const s = store;
      const t0 = Date.now() + 7_200_000;
      /** an event time `ago` ms before t0, written with a +02:00 offset and microseconds (both valid ISO 8601) */
      const offsetTime = (ago: number) => `${new Date(t0 - ago + 2 * 3_600_000).toISOString().slice(0, 23)}456+02:00`;
      const lat = [
        { tx: testTx({ plant: 'MON1', order: 'M-1', agentId: 'edge-m' }), eventTime: new Date(t0 - 60_000).toISOString() },
        { tx: testTx({ plant: 'MON1', order: 'M-2', agentId: 'edge-m', workCenter: 'WC-9' }), eventTime: offsetTime(120_000) },
        { tx: testTx({ plant: 'MON1', order: 'M-3', agentId: 'edge-m' }), eventTime: new Date(t0 - 600_000).toISOString() },
        // an agent clock ahead of the ERP: reads 0, never negative
        { tx: testTx({ plant: 'MON1', order: 'M-5', agentId: 'edge-m' }), eventTime: new Date(t0 + 90_000).toISOString() },
        { tx: testTx({ plant: 'MON2', order: 'M-4', agentId: 'edge-m' }), eventTime: new Date(t0 - 30_000).toISOString() },
      ];
      for (const l of lat) l.tx.eventTime = l.eventTime;
      const [h1, h2, h3] = [0, 1, 2].map(() => testTx({ plant: 'MON1', order: 'H-1', agentId: 'edge-m' }));
      const d1 = testTx({ plant: 'MON1', order: 'H-3', agentId: 'edge-m' });
      const receivedAt = new Date();
      await s.ingest('edge-m', [...lat.map((l) => l.tx), h1, h2, h3, d1], receivedAt);
      const mine = new Set([...lat.map((l) => l.tx), h1, d1].map((t) => t.idempotencyKey));
      const jobs = (await s.claimPostings(1000, 60_000, 'mon', new Date(t0 - 1000))).filter((j) => mine.has(j.tx.idempotencyKey));
      assert.equal(jobs.length, mine.size);
      for (const j of jobs) {
        const k = j.tx.idempotencyKey;
        const o: PostingOutcome =
          k === h1.idempotencyKey
            ? { kind: 'failed', code: 'ERP_BUSINESS', message: 'order closed' }
            : k === d1.idempotencyKey
              ? { kind: 'retry', delayMs: 1000, code: 'ERP_IN_DOUBT', message: 'timeout', inDoubt: true }
              : { kind: 'posted', erpRef: `DOC-${k.slice(-6)}` };
        assert.equal(await s.completePosting(j.seq, 'mon', o, new Date(t0)), true);
      }
      // an order received earlier, never claimed
      const q1 = testTx({ plant: 'MON1', order: 'H-2', agentId: 'edge-m' });
      await s.ingest('edge-m', [q1], new Date(receivedAt.getTime() - 60_000));

      const since = new Date(t0 - 3_600_000);
      const mon1 = await s.postingLatencies({ since, plants: ['MON1'] });
      assert.deepEqual(mon1.map((x) => x.latencyMs).sort((a, b) => a - b), [0, 60_000, 120_000, 600_000]);
      assert.ok(mon1.every((x) => x.plant === 'MON1' && x.type === 'production-confirmation'));
      assert.deepEqual((await s.postingLatencies({ since, plants: ['MON2'] })).map((x) => x.latencyMs), [30_000]);
      assert.deepEqual(await s.postingLatencies({ since, plants: [] }), []);
      assert.deepEqual(await s.postingLatencies({ since: new Date(t0 + 1), plants: ['MON1', 'MON2'] }), []);
      assert.equal((await s.postingLatencies({ since, plants: null })).filter((x) => x.plant.startsWith('MON')).length, 5);

      const slow = await s.slowPostings({ since, plant: 'MON1', type: 'production-confirmation', overMs: 100_000, limit: 10 });
      assert.deepEqual(slow.map((x) => [x.order, x.latencyMs, x.workCenter]), [['M-3', 600_000, 'WC-1'], ['M-2', 120_000, 'WC-9']]);
      assert.equal(slow[0].idempotencyKey, lat[2].tx.idempotencyKey);
      assert.equal(Date.parse(slow[0].postedAt), t0);
      assert.equal((await s.slowPostings({ since, plant: 'MON1', type: 'production-confirmation', overMs: 100_000, limit: 1 })).length, 1);
      assert.deepEqual(await s.slowPostings({ since, plant: 'MON1', type: 'goods-receipt', overMs: 0, limit: 10 }), []);

      const holds = await s.deadLetterHolds({ plants: ['MON1'], limit: 10 });
      assert.deepEqual(holds.map((h) => [h.idempotencyKey, h.order, h.heldBack, h.errorCode]), [[h1.idempotencyKey, 'H-1', 2, 'ERP_BUSINESS']]);
      assert.equal(holds[0].oldestHeldBackAt && Date.parse(holds[0].oldestHeldBackAt), receivedAt.getTime());
      assert.match(holds[0].errorMessage ?? '', /order closed/);
      assert.deepEqual(await s.deadLetterHolds({ plants: ['MON2'], limit: 10 }), []);

      const open = await s.openOrders({ receivedBefore: new Date(Date.now() + 1000), plants: ['MON1'], limit: 10, keysPerOrder: 1 });
      assert.deepEqual(
        open.map((o) => [o.order, o.queued, o.inDoubt, o.keys.map((k) => k.idempotencyKey)]),
        [
          ['H-2', 1, 0, [q1.idempotencyKey]],
          ['H-1', 2, 0, [h2.idempotencyKey]],
          ['H-3', 1, 1, [d1.idempotencyKey]],
        ].sort((a, b) => (a[0] === 'H-2' ? -1 : b[0] === 'H-2' ? 1 : String(a[0]).localeCompare(String(b[0])))),
      );
      assert.equal(Date.parse(open[0].oldestReceivedAt), receivedAt.getTime() - 60_000);
      assert.deepEqual(open.flatMap((o) => o.keys.map((k) => k.inDoubt)).sort(), [false, false, true]);
      const before = await s.openOrders({ receivedBefore: new Date(receivedAt.getTime() - 1), plants: ['MON1'], limit: 10, keysPerOrder: 5 });
      assert.deepEqual(before.map((o) => o.order), ['H-2']);
      assert.equal((await s.openOrders({ receivedBefore: new Date(Date.now() + 1000), plants: ['MON1'], limit: 1, keysPerOrder: 1 })).length, 1);

      const act = await s.orderActivity({ plant: 'MON1', orders: ['H-1', 'M-2', 'NONE', "x' OR 1=1 --", 'M-4'] });
      assert.deepEqual(act.map((a) => [a.order, a.transactions]).sort(), [['H-1', 3], ['M-2', 1]]);
      assert.equal(act.find((a) => a.order === 'M-2')?.firstEventTime, lat[1].eventTime);
      assert.deepEqual(await s.orderActivity({ plant: 'MON1', orders: [] }), []);

      const ot = await s.orderTransactions({ plant: 'MON1', order: 'H-1', limit: 10 });
      assert.deepEqual(ot.map((x) => [x.idempotencyKey, x.state, x.operation, x.type]), [h1, h2, h3].map((x, i) => [x.idempotencyKey, i === 0 ? 'failed' : 'queued', '0010', 'production-confirmation']));
      assert.equal((await s.orderTransactions({ plant: 'MON1', order: 'H-1', limit: 1 })).length, 1);
      const active = await s.activeOrders({ since: new Date(receivedAt.getTime() - 1), plants: ['MON1'], limit: 100 });
      assert.deepEqual(active.map((a) => a.order).sort(), ['H-1', 'H-3', 'M-1', 'M-2', 'M-3', 'M-5']);
      const id1 = await s.saveReconciliation({ plant: 'MON1', order: 'H-1', at: new Date().toISOString(), status: 'clean', findings: 0, detail: { ok: true } });
      const id2 = await s.saveReconciliation({ plant: 'MON1', order: 'H-1', at: new Date().toISOString(), status: 'drift', findings: 2, detail: { keys: ['a', 'b'] } });
      assert.ok(id2 > id1);
      const hist = await s.listReconciliations({ plants: ['MON1'], order: 'H-1', limit: 1, offset: 0 });
      assert.deepEqual([hist.total, hist.items[0].status, hist.items[0].detail], [2, 'drift', { keys: ['a', 'b'] }]);
      assert.equal((await s.listReconciliations({ plants: ['MON2'], limit: 10, offset: 0 })).total, 0);
      assert.equal((await s.listReconciliations({ plants: null, order: 'H-1', limit: 10, offset: 1 })).items[0].id, id1);
    });
  });
}
