import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openOutbox } from './outbox.ts';
import { parseSince, runOutboxCommand, type CommandIo } from './outbox-cli.ts';
import { countingDeriver, signal, tempDir } from './test-kit.ts';

function capture(now?: number): CommandIo & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t), ...(now ? { now: () => now } : {}) };
  return io;
}

void describe('outbox CLI on the live database', () => {
  const tmp = tempDir('pb-outbox-cli-');
  after(() => tmp.cleanup());

  void it('parses --since as ISO time or a duration back from now', () => {
    const now = Date.UTC(2026, 4, 1, 12);
    assert.equal(parseSince('2h', now), now - 7_200_000);
    assert.equal(parseSince('2d', now), now - 172_800_000);
    assert.equal(parseSince('2026-05-01T06:00:00Z', now), Date.UTC(2026, 4, 1, 6));
    assert.equal(parseSince('yesterday', now), undefined);
  });

  void it('stats, list, dead-letters, replay, replay --all, discard, resend --since, ack-alarm beside a running agent', async () => {
    const path = join(tmp.dir, 'outbox.db');
    const agent = openOutbox({ path, minFreeDiskBytes: 0, rules: countingDeriver(1, (s) => `O${s.value}`) });
    await agent.append(Array.from({ length: 6 }, (_, i) => signal(i)));
    const cl = agent.claim(10, 60_000);
    agent.settle([
      { seq: cl[0].seq, status: 'sent' },
      { seq: cl[1].seq, status: 'sent' },
      { seq: cl[2].seq, status: 'dead', code: 'ERP_BUSINESS', reason: 'order closed' },
      { seq: cl[3].seq, status: 'dead', code: 'ERP_BUSINESS', reason: 'order closed' },
      { seq: cl[4].seq, status: 'dead', code: 'ERP_BUSINESS', reason: 'order closed' },
      { seq: cl[5].seq, status: 'retry', delayMs: 0 },
    ]);
    const tool = openOutbox({ path, role: 'tool' });
    try {
      let io = capture();
      assert.equal(runOutboxCommand(tool, 'stats', undefined, {}, io), 0);
      const stats = JSON.parse(io.stdout);
      assert.equal(stats.pending, 1);
      assert.equal(stats.deadLetters, 3);
      assert.deepEqual(stats.alarms, []);

      io = capture();
      assert.equal(runOutboxCommand(tool, 'list', undefined, { status: 'dead', limit: 2 }, io), 0);
      assert.deepEqual(JSON.parse(io.stdout).map((t: { seq: number }) => t.seq), [cl[2].seq, cl[3].seq]);
      assert.equal(runOutboxCommand(tool, 'list', undefined, { status: 'bogus' }, capture()), 1);

      io = capture();
      runOutboxCommand(tool, 'dead-letters', undefined, {}, io);
      const dls = JSON.parse(io.stdout) as Array<{ id: number; txSeq: number }>;
      assert.equal(dls.length, 3);
      // the agent keeps committing while the tool writes
      const ingest = agent.append([signal(100)]);
      assert.equal(runOutboxCommand(tool, 'replay', String(dls[0].id), {}, capture()), 0);
      assert.equal(runOutboxCommand(tool, 'discard', String(dls[1].id), {}, capture()), 0);
      assert.equal(runOutboxCommand(tool, 'discard', String(dls[1].id), {}, capture()), 1);
      io = capture();
      assert.equal(runOutboxCommand(tool, 'replay', undefined, { all: true }, io), 0);
      assert.match(io.stdout, /^1 dead-lettered/);
      assert.equal((await ingest).accepted, 1);
      assert.equal(runOutboxCommand(tool, 'replay', 'x', {}, capture()), 1);

      io = capture();
      assert.equal(runOutboxCommand(tool, 'resend', undefined, { since: '1h' }, io), 0);
      assert.match(io.stdout, /^2 transaction\(s\) sent since/);
      assert.equal(runOutboxCommand(tool, 'resend', undefined, {}, capture()), 1);
      // the agent's own view agrees: 1 retry + 2 replayed + 2 resent + 1 new
      assert.equal(agent.stats().pending, 6);
      assert.equal(agent.stats().deadLetters, 0);
      assert.equal(agent.claim(100, 60_000).length, 6);

      assert.equal(runOutboxCommand(tool, 'ack-alarm', 'OUTBOX_CORRUPT', {}, capture()), 1);
      io = capture();
      assert.equal(runOutboxCommand(tool, 'nope', undefined, {}, io), 1);
      assert.match(io.stderr, /resend --since/);
    } finally {
      tool.close();
      agent.close();
    }
  });
});
