import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { postgresUrl } from './helpers/services.ts';

/**
 * Every benchmark suite still runs and reports what docs/BENCHMARKS.md quotes: each suite at a tiny size,
 * through `bench/run.ts` as `npm run bench` does. Checks the output contract of DESIGN.md §8 (one JSON
 * object per result line), that every metric the docs quote is still reported, and that each ratio is
 * value / baseline_value as printed (a figure is computed, never typed in). Nothing here judges speed.
 */

interface Result {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  baseline?: string;
  baseline_value?: number;
  ratio?: number;
}

const root = join(import.meta.dirname, '..');

function runSuite(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(root, 'bench/run.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function check(suite: string, out: { code: number | null; stdout: string; stderr: string }, metrics: string[]): Result[] {
  assert.equal(out.code, 0, `bench ${suite} exited with ${out.code}: ${out.stderr.slice(-2000)}`);
  const lines = out.stdout.split('\n').filter((l) => l.trim() !== '');
  const results = lines.map((l) => {
    assert.doesNotThrow(() => JSON.parse(l), `not a JSON line: ${l}`);
    return JSON.parse(l) as Result;
  });
  for (const r of results) {
    assert.equal(r.bench, suite);
    assert.equal(typeof r.metric, 'string');
    assert.ok(Number.isFinite(r.value) && r.value >= 0, `${r.metric}: value ${r.value}`);
    assert.equal(typeof r.unit, 'string');
    if (r.baseline_value !== undefined) {
      assert.ok(Number.isFinite(r.baseline_value) && r.baseline_value > 0, `${r.metric}: baseline ${r.baseline_value}`);
      assert.equal(typeof r.baseline, 'string', `${r.metric} says what its baseline is`);
      // printed figures are rounded: allow their rounding (half a unit in the last printed digit) and no more
      const expected = r.value / r.baseline_value;
      assert.ok(Math.abs((r.ratio ?? NaN) - expected) <= 0.0015 + expected * 0.002, `${r.metric}: ratio ${r.ratio} vs ${r.value}/${r.baseline_value}`);
    }
  }
  assert.deepEqual(results.map((r) => r.metric).sort(), [...metrics].sort());
  return results;
}

void describe('benchmark suites run and keep their output contract (tiny sizes)', { concurrency: false }, () => {
  void it('outbox', { timeout: 240_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-bench-smoke-'));
    try {
      const out = await runSuite(['outbox', '--json', '--rows', '3000', '--runs', '1', '--seconds', '1', '--pending', '20000', '--dir', dir]);
      check('outbox', out, ['durable_append', 'durable_append_outbox_only', 'rules_derive', 'bytes_per_million', 'claim_settle', 'rss_10m_pending', 'stats_ms_at_pending']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('forward (SQLite, PostgreSQL, fleet)', { timeout: 240_000 }, async () => {
    await postgresUrl();
    const out = await runSuite(['forward', '--json', '--backlog', '3000', '--runs', '1', '--agents', '10', '--fleet-seconds', '2']);
    check('forward', out, ['drain_sqlite', 'drain_rss', 'drain_postgres', 'fleet_p99_ms']);
    // the diagnostic of the hub alone, opt-in with --only
    const hub = await runSuite(['forward', '--json', '--backlog', '3000', '--runs', '1', '--only', 'hub_sqlite,hub_postgres']);
    check('forward', hub, ['hub_sqlite', 'hub_postgres']);
  });

  void it('mqtt', { timeout: 240_000 }, async () => {
    const out = await runSuite(['mqtt', '--json', '--events', '1000', '--runs', '1']);
    check('mqtt', out, ['durable_ingest', 'durable_ceiling', 'durable_ingest_live']);
  });

  void it('opcua', { timeout: 240_000 }, async () => {
    const out = await runSuite(['opcua', '--json', '--items', '200', '--seconds', '2', '--runs', '1', '--outage-s', '1']);
    check('opcua', out, ['durable_ingest', 'cpu_per_1k_changes', 'rss', 'reconnect_gap_s']);
  });

  void it('erp', { timeout: 240_000 }, async () => {
    const out = await runSuite(['erp', '--json', '--postings', '64', '--runs', '1']);
    check('erp', out, ['sap_postings', 'sap_postings_adapter']);
  });
});
