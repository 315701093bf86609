import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildSync } from 'esbuild';
import { after, describe, it } from 'node:test';
import { crashRules, crashSignal } from './crash-child.ts';
import { openOutbox } from './outbox.ts';
import { countingDeriver, signal, sleep, tempDir } from './test-kit.ts';

/**
 * Crash safety (DESIGN.md §3.1, §3.5): a child appends counter readings through the real count-production
 * rule and prints each acknowledgement only after its append resolved; it is killed with SIGKILL at random
 * points (also during start-up) 50 times, each restart re-sending from a little before the last
 * acknowledged reading, as a source re-sends what it has no ack for. Afterwards every acknowledged reading
 * is stored exactly once, and the rule state agrees with the events: confirmed quantity + open window ==
 * counter progress since the baseline, and the confirmation windows tile the count with no gap or overlap.
 *
 * Also: leases of a killed forwarder expire back to pending.
 */

const NODE = process.execPath;
const CHILD = bundledChild();
const KILLS = Number(process.env.PLANTBRIDGE_CRASH_KILLS ?? 50);
const tmp = tempDir('pb-outbox-crash-');
// 50 cold starts of a TypeScript child: the compile cache makes each ~2x faster on a loaded 2-core box
const CHILD_ENV = { ...process.env, NODE_COMPILE_CACHE: join(tmp.dir, 'compile-cache') };

/**
 * 50 cold starts of a TypeScript child cost most of this test's time on a loaded 2-core box: the child is
 * bundled once (esbuild, a dev dependency) into node_modules/.cache so that better-sqlite3 still resolves,
 * which halves the CPU of each start. Falls back to the .ts file.
 */
function bundledChild(): string {
  const source = join(import.meta.dirname, 'crash-child.ts');
  const out = join(import.meta.dirname, '..', '..', 'node_modules', '.cache', 'plantbridge', `outbox-crash-child-${process.pid}.mjs`);
  try {
    buildSync({
      entryPoints: [source],
      bundle: true,
      platform: 'node',
      format: 'esm',
      external: ['better-sqlite3'],
      outfile: out,
      logLevel: 'silent',
      // CommonJS dependencies inside an ESM bundle need a require
      banner: { js: "import { createRequire as __pbRequire } from 'node:module'; const require = __pbRequire(import.meta.url);" },
    });
    after(() => rmSync(out, { force: true }));
    return out;
  } catch {
    return source;
  }
}

interface Run {
  acks: Array<[number, number]>;
  errors: string[];
}

interface WarmChild {
  loaded: Promise<void>;
  /** sends the start index, kills at a random point, resolves with what the child acknowledged */
  run(start: number, kill: { afterReadyMs?: number; afterGoMs?: number; afterAcks?: [number, number] }): Promise<Run>;
  dispose(): void;
}

/** A child that has loaded its modules and waits for "go": the next run starts while this one appends. */
function warmChild(path: string): WarmChild {
  const child = spawn(NODE, [CHILD, 'append', path, 'stdin', 'better-sqlite3'], { stdio: ['pipe', 'pipe', 'pipe'], env: CHILD_ENV });
  const run: Run = { acks: [], errors: [] };
  let stderr = '';
  let onLoaded!: () => void;
  let onReady = () => {};
  let onAck = () => {};
  const loaded = new Promise<void>((r) => (onLoaded = r));
  child.stderr.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'loaded') onLoaded();
    if (line === 'ready') onReady();
    const m = /^ack (\d+) (\d+)$/.exec(line);
    if (m) {
      run.acks.push([Number(m[1]), Number(m[2])]);
      onAck();
    } else if (line.startsWith('error')) run.errors.push(line);
  });
  const closed = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (sig !== 'SIGKILL') return reject(new Error(`child ended with ${code ?? sig}: ${stderr.slice(-2000)}`));
      resolve(run);
    });
  });
  return {
    loaded,
    run(start, kill) {
      const k = () => child.kill('SIGKILL');
      if (kill.afterReadyMs !== undefined) onReady = () => setTimeout(k, kill.afterReadyMs);
      // a point defined by progress, not by wall time: the same on a fast and on a loaded machine
      if (kill.afterAcks) {
        const [acks, ms] = kill.afterAcks;
        onAck = () => {
          if (run.acks.length === acks) setTimeout(k, ms);
        };
      }
      child.stdin.write(`go ${start}\n`);
      if (kill.afterGoMs !== undefined) setTimeout(k, kill.afterGoMs);
      return closed;
    },
    dispose() {
      closed.catch(() => {});
      child.kill('SIGKILL');
    },
  };
}

void describe('outbox under SIGKILL', () => {
  after(() => tmp.cleanup());

  void it(`keeps every acknowledged reading exactly once and the rule state consistent across ${KILLS} kills`, { timeout: 600_000 }, async () => {
    const path = join(tmp.dir, 'crash', 'outbox.db');
    const acked = new Set<number>();
    let lastAcked = -1;
    let seed = 20260101;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    // a few children load their modules ahead of time: run k+1 starts as soon as run k is killed
    const warm = Array.from({ length: 3 }, () => warmChild(path));
    for (let k = 0; k < KILLS; k++) {
      const cur = warm.shift()!;
      warm.push(warmChild(path));
      await cur.loaded;
      // the source re-sends from somewhere at or before the first reading it has no ack for
      const start = Math.max(0, lastAcked + 1 - rnd(40));
      // most kills hit the append loop after a random number of commits, some right after the open, and
      // every 10th hits start-up (open, quick_check, migrations)
      const kill = k % 10 === 3 ? { afterGoMs: rnd(60) } : k % 10 === 7 ? { afterReadyMs: rnd(30) } : { afterAcks: [1 + rnd(25), rnd(15)] as [number, number] };
      const run = await cur.run(start, kill);
      assert.deepEqual(run.errors, []);
      for (const [from, to] of run.acks) {
        for (let i = from; i <= to; i++) acked.add(i);
        lastAcked = Math.max(lastAcked, to);
      }
    }
    for (const w of warm) w.dispose();
    assert.ok(acked.size > 200, `only ${acked.size} acknowledgements in ${KILLS} runs`);

    const outbox = openOutbox({ path, rules: crashRules(), minFreeDiskBytes: 0 });
    try {
      const rows = outbox.query<{ source_id: string; n: number }>('SELECT source_id, COUNT(*) AS n FROM events GROUP BY source_id');
      const stored = new Map(rows.map((r) => [r.source_id, r.n]));
      for (const i of acked) assert.equal(stored.get(crashSignal(i).sourceId), 1, `acknowledged reading ${i} stored exactly once`);
      // commits happen in order and restarts re-send from at or before the first unacknowledged reading: no holes
      const maxIndex = stored.size - 1;
      assert.ok(stored.has(crashSignal(maxIndex).sourceId), 'readings 0..max are all there');
      assert.ok(maxIndex >= lastAcked);

      const state = outbox.ruleState('line1-count') as {
        good?: { last: string | number };
        windows?: Record<string, { good: number; scrap: number; rework?: number }>;
        window?: { good: number; scrap: number; rework?: number };
      };
      const txs = outbox.query<{ k: string; body: string }>("SELECT idempotency_key AS k, body FROM transactions_json WHERE type = 'ProductionConfirmation' ORDER BY seq");
      const confirmed = txs.reduce((sum, t) => sum + (JSON.parse(t.body).data.yield.qty as number), 0);
      const windows = state.windows ? Object.values(state.windows) : state.window ? [state.window] : [];
      const open = windows.reduce((sum, w) => sum + w.good + w.scrap + (w.rework ?? 0), 0);
      const progress = 3 * maxIndex - 0;
      assert.equal(Number(state.good?.last), 3 * maxIndex, 'the counter state is the last committed reading');
      assert.equal(confirmed + open, progress, `confirmed ${confirmed} + open window ${open} == counter progress ${progress}`);
      // the windows tile the order's count: 0-100, 100-200, ... with no gap and no overlap
      let expectFrom = 0;
      for (const t of txs) {
        const m = /:(\d+)-(\d+)$/.exec(t.k)!;
        assert.equal(Number(m[1]), expectFrom, `window ${t.k} starts where the previous ended`);
        expectFrom = Number(m[2]);
      }
      assert.equal(expectFrom, confirmed);
      assert.equal(outbox.stats().pending, txs.length);
    } finally {
      outbox.close();
    }
  });

  void it('returns the leases of a killed forwarder to pending when they expire', { timeout: 30_000 }, async () => {
    const path = join(tmp.dir, 'lease', 'outbox.db');
    const outbox = openOutbox({ path, rules: countingDeriver(1, (s) => `O${s.value}`), minFreeDiskBytes: 0 });
    try {
      await outbox.append(Array.from({ length: 20 }, (_, i) => signal(i)));
      // a forwarder in another process claims 10 with a 1.5 s lease and dies
      const claimed = await new Promise<string>((resolve, reject) => {
        const child = spawn(NODE, [CHILD, 'claim', path, '10', '1500', 'better-sqlite3'], { stdio: ['ignore', 'pipe', 'inherit'], env: CHILD_ENV });
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line.startsWith('claimed ')) {
            child.kill('SIGKILL');
            resolve(line.slice(8));
          }
        });
        child.on('error', reject);
        child.on('close', (code, sig) => sig !== 'SIGKILL' && reject(new Error(`claim child ended with ${code}`)));
      });
      const seqs = claimed.split(',').map(Number);
      assert.equal(seqs.length, 10);
      assert.equal(outbox.stats().leased, 10);
      const now = outbox.claim(100, 60_000);
      assert.deepEqual(
        now.map((c) => c.seq).filter((s) => seqs.includes(s)),
        [],
        'leased items are not claimed twice while the lease runs',
      );
      outbox.settle(now.map((c) => ({ seq: c.seq, status: 'sent' as const })));
      await sleep(1600);
      const later = outbox.claim(100, 60_000);
      assert.deepEqual(later.map((c) => c.seq), seqs, 'expired leases come back, in order');
      assert.ok(later.every((c) => c.attempts === 2));
    } finally {
      outbox.close();
    }
  });
});
