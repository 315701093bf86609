import assert from 'node:assert/strict';
import { after, before, describe, it, mock } from 'node:test';
import type { PostingJob } from '../hub-store.ts';
import { testTx } from '../test-tx.ts';
import type { PostgresHubStore } from './postgres-store.ts';
import { pgSchemaForTest } from './pg-test-kit.ts';

/**
 * PostgreSQL only (SQLite has one hub instance): several hub instances share the posting queue, and their
 * clocks differ. Leases and retry times are kept by the database's clock, so an instance whose clock runs
 * ahead cannot take over a lease that is still live, nor look an in-doubt posting up before its wait.
 */
const pgt = await pgSchemaForTest();
const skip = 'skip' in pgt ? pgt.skip : false;
const TEN_MINUTES = 600_000;

/** Runs `fn` with this process's wall clock `offsetMs` off, as on a hub instance whose clock is wrong. */
async function withClockOff<T>(offsetMs: number, fn: () => Promise<T>): Promise<T> {
  mock.timers.enable({ apis: ['Date'], now: Date.now() + offsetMs });
  try {
    return await fn();
  } finally {
    mock.timers.reset();
  }
}

void describe('posting leases on PostgreSQL follow the database clock, not the instances\' clocks', { skip }, () => {
  let a: PostgresHubStore;
  let b: PostgresHubStore;
  before(async () => {
    if ('skip' in pgt) return;
    a = pgt.open();
    b = pgt.open();
    await a.migrate();
  });
  after(async () => {
    if ('skip' in pgt) return;
    await a.close();
    await b.close();
    await pgt.drop();
  });

  const queued = async (order: string) => {
    const tx = testTx({ order, agentId: 'edge-clock' });
    await a.ingest('edge-clock', [tx], new Date());
    return (jobs: PostingJob[]) => jobs.filter((j) => j.tx.idempotencyKey === tx.idempotencyKey);
  };

  void it('an instance whose clock runs ten minutes ahead cannot steal a live lease', async () => {
    const mine = await queued('CLK-1');
    const [job] = mine(await a.claimPostings(10, 60_000, 'inst-a#1'));
    assert.ok(job, 'instance A holds it');
    assert.deepEqual(mine(await withClockOff(TEN_MINUTES, () => b.claimPostings(10, 60_000, 'inst-b#1'))), [], 'B, ten minutes ahead, sees a live lease');
    assert.equal(await a.renewPosting(job.seq, 'inst-a#1', 60_000), true);
    assert.equal(await a.completePosting(job.seq, 'inst-a#1', { kind: 'posted', erpRef: 'DOC-CLK-1' }), true, 'A still owns it');
  });

  void it('an instance whose clock runs ten minutes behind keeps its lease alive when it renews it', async () => {
    const mine = await queued('CLK-2');
    const [job] = mine(await withClockOff(-TEN_MINUTES, () => a.claimPostings(10, 60_000, 'inst-a#2')));
    assert.ok(job);
    assert.equal(await withClockOff(-TEN_MINUTES, () => a.renewPosting(job.seq, 'inst-a#2', 60_000)), true);
    assert.deepEqual(mine(await b.claimPostings(10, 60_000, 'inst-b#2')), [], 'B, on time, sees a live lease');
    assert.equal(await a.completePosting(job.seq, 'inst-a#2', { kind: 'posted', erpRef: 'DOC-CLK-2' }), true);
  });

  void it('an in-doubt retry waits its delay by the database clock, whatever the claiming instance\'s clock says', async () => {
    const mine = await queued('CLK-3');
    const [job] = mine(await a.claimPostings(10, 60_000, 'inst-a#3'));
    assert.equal(await a.completePosting(job.seq, 'inst-a#3', { kind: 'retry', delayMs: 60_000, code: 'ERP_IN_DOUBT', message: 'timeout after sending', inDoubt: true }), true);
    assert.deepEqual(mine(await withClockOff(TEN_MINUTES, () => b.claimPostings(10, 60_000, 'inst-b#3'))), [], 'not looked up before the in-doubt wait');
  });

  void it('a lease does expire by the database clock, and the next claim is attempt 2', async () => {
    const mine = await queued('CLK-4');
    const [job] = mine(await a.claimPostings(10, 300, 'inst-a#4'));
    assert.deepEqual(mine(await b.claimPostings(10, 60_000, 'inst-b#4')), []);
    await new Promise((r) => setTimeout(r, 500));
    const [taken] = mine(await withClockOff(-TEN_MINUTES, () => b.claimPostings(10, 60_000, 'inst-b#5')));
    assert.deepEqual([taken?.seq, taken?.attempt], [job.seq, 2], 'B, ten minutes behind, still takes an expired lease over');
    assert.equal(await a.renewPosting(job.seq, 'inst-a#4', 60_000), false, 'A lost it');
  });
});
