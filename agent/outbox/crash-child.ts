import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { countProductionConfigSchema } from '../rules/count-production/config.ts';
import { countProduction } from '../rules/count-production/count-production.ts';
import { RuleEngine } from '../rules/engine.ts';
import { openOutbox, type Outbox } from './outbox.ts';
import type { SqliteDriver } from './sqlite-db.ts';
import { signal } from './test-kit.ts';

/**
 * Child processes for the crash and lease tests (killed with SIGKILL; never imported by product code).
 *
 *   crash-child.ts append <db> <startIndex|stdin> <driver>   appends counter readings from startIndex on, with up to
 *                                                       4 appends in flight; prints "ack <from> <to>" only after
 *                                                       each append resolved (= after its commit)
 *   crash-child.ts claim <db> <n> <leaseMs> <driver>   claims n transactions, prints "claimed <seqs>", then waits
 */

/** The real count-production rule, as the crash test configures it: fixed order, a window every 100 parts. */
export function crashRules(): RuleEngine {
  const cfg = countProductionConfigSchema.parse({
    type: 'count-production',
    id: 'line1-count',
    workCenter: 'WC1',
    counter: { source: 'plc1', ref: 'count' },
    activeOrder: { order: '4711' },
    emitEvery: { parts: 100 },
  });
  return new RuleEngine([countProduction(cfg, 'live')], { plant: 'P1', agentId: 'agent-1', timeZone: 'UTC', mode: 'live' });
}

/** Reading i of the crash test's counter: the counter goes up by 3 per reading (value = 3i). */
export function crashSignal(i: number) {
  return signal(i, { value: 3 * i });
}

const say = (line: string): void => void writeSync(1, `${line}\n`);

function goLine(): Promise<number> {
  return new Promise((resolve) => {
    let buf = '';
    process.stdin.on('data', (d) => {
      buf += String(d);
      const m = /go (\d+)\n/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
  });
}

async function appendForever(outbox: Outbox, start: number): Promise<never> {
  let next = start;
  let seed = start * 7919 + 17;
  const rnd = (n: number) => 1 + ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const inFlight = new Set<Promise<void>>();
  for (;;) {
    while (inFlight.size < 4) {
      const from = next;
      const to = from + rnd(20) - 1;
      next = to + 1;
      const p = outbox.append(Array.from({ length: to - from + 1 }, (_, k) => crashSignal(from + k))).then(
        () => say(`ack ${from} ${to}`),
        (err) => {
          say(`error ${String(err)}`);
          process.exit(3);
        },
      );
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    await Promise.race(inFlight);
  }
}

// import.meta.main is Node >= 24.2; the fallback keeps the child working on Node 22
if ((import.meta as { main?: boolean }).main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, path, a, b, driver] = process.argv.slice(2);
  if (mode === 'append') {
    // started ahead of time (module loading is the slow part of a cold start): waits for "go <start>"
    say('loaded');
    const start = a === 'stdin' ? await goLine() : Number(a);
    const outbox = openOutbox({ path, rules: crashRules(), minFreeDiskBytes: 0, groupCommitDelayMs: 2, driver: (b ?? 'better-sqlite3') as SqliteDriver });
    say('ready');
    await appendForever(outbox, start);
  } else if (mode === 'claim') {
    const outbox = openOutbox({ path, minFreeDiskBytes: 0, driver: (driver ?? 'better-sqlite3') as SqliteDriver });
    const claimed = outbox.claim(Number(a), Number(b));
    say(`claimed ${claimed.map((c) => c.seq).join(',')}`);
    setInterval(() => {}, 1000);
  } else {
    process.stderr.write('usage: crash-child.ts append|claim …\n');
    process.exit(2);
  }
}
