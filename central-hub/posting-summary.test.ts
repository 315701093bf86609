import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { PostingSummary } from './posting-summary.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

test('posting summary: one info line per interval with activity, none when idle, a last one at stop', (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'] });
  const { log, lines } = capture();
  const s = new PostingSummary(log, 60_000);
  s.start();
  for (let i = 0; i < 3; i++) s.record({ kind: 'posted', erpRef: `1000${i}/1` });
  s.record({ kind: 'failed', code: 'ERP_BUSINESS', message: 'Order closed' });
  s.record({ kind: 'retry', delayMs: 1000, code: 'UPSTREAM_UNAVAILABLE', message: 'timeout', inDoubt: true });
  t.mock.timers.tick(60_000);
  assert.equal(lines.length, 1);
  assert.equal(lines[0].level, 30);
  assert.equal(lines[0].msg, 'Posting in the last 60 s: 3 posted to the ERP, 1 dead-lettered (ERP_BUSINESS 1), 1 to retry (1 in doubt: looked up before any re-send)');
  assert.deepEqual([lines[0].posted, lines[0].failed, lines[0].retried, lines[0].inDoubt], [3, 1, 1, 1]);
  assert.deepEqual(lines[0].failedByCode, { ERP_BUSINESS: 1 });
  t.mock.timers.tick(120_000);
  assert.equal(lines.length, 1, 'quiet while nothing is posted');
  s.record({ kind: 'posted', erpRef: '2000/1' });
  t.mock.timers.tick(10_000);
  s.stop();
  assert.equal(lines.length, 2);
  assert.match(String(lines[1].msg), /^Posting in the last \d+ s: 1 posted to the ERP$/);
  t.mock.timers.tick(600_000);
  assert.equal(lines.length, 2, 'no timer after stop');
});
