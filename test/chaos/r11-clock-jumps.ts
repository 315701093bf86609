import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rig, sleep } from './rig.ts';
import type { Check, Scenario, ScenarioResult } from './scenario.ts';

/**
 * R11: the wall clocks of agent and hub jump -3 h and +1 d (libfaketime, its offset read from a file
 * every second; the monotonic clock untouched: FAKETIME_DONT_FAKE_MONOTONIC=1) while the cell publishes.
 * Proves: 0 loss, 0 duplicates, and every confirmation's posting date is the plant's (Europe/Berlin) date
 * of the events it confirms, whatever the agent's or the hub's clock said.
 */

const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1', '/usr/lib/faketime/libfaketimeMT.so.1'];

/** [agent offset, hub offset] per phase, in libfaketime's relative format */
const PHASES: Array<[string, string]> = [
  ['-3h', '+0'],
  ['+1d', '-3h'],
  ['+0', '+1d'],
  ['-3h', '-3h'],
  ['+0', '+0'],
];

function berlinDate(ms: number): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Berlin', year: 'numeric', month: '2-digit', day: '2-digit' }).format(ms);
}

export const r11: Scenario = {
  id: 'r11',
  title: 'wall-clock jumps -3 h / +1 d on agent and hub',
  fault: 'libfaketime offsets (monotonic untouched)',
  load: (short) => (short ? '5 phases x 20 s, 300 events/s' : '5 phases x 2 min, 300 events/s'),
  async run(ctx): Promise<ScenarioResult> {
    const lib = LIBFAKETIME.find((p) => existsSync(p));
    if (!lib) return { metrics: {}, checks: [], skipped: 'libfaketime is not installed (apt-get install faketime; npm run setup:debian installs it)' };
    const phaseMs = ctx.short ? 20_000 : 120_000;
    const agentClock = join(ctx.dir, 'agent-clock');
    const hubClock = join(ctx.dir, 'hub-clock');
    writeFileSync(agentClock, '+0\n');
    writeFileSync(hubClock, '+0\n');
    const fake = (file: string) => ({ LD_PRELOAD: lib, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_CACHE_DURATION: '1' });
    const rig = new Rig({ dir: ctx.dir, agentEnv: fake(agentClock), hubEnv: fake(hubClock) });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const t0 = Date.now();
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 900, ratePerS: 300, shouldStop: () => stop });
      await sleep(5_000);
      for (const [a, h] of PHASES) {
        writeFileSync(agentClock, `${a}\n`);
        writeFileSync(hubClock, `${h}\n`);
        ctx.progress(`r11: agent clock ${a}, hub clock ${h}`);
        await sleep(phaseMs);
      }
      stop = true;
      await published;
      const t1 = Date.now();
      const drained = await rig.drained(180_000);
      const docs = rig.sap.confirmations();
      const ledger = await rig.ledger();
      // the events carry the real time: their plant dates are the only right posting dates
      const allowed = new Set([berlinDate(t0), berlinDate(t1)]);
      const wrong = docs.filter((d) => {
        const m = /^\/Date\((-?\d+)\)\/$/.exec(d.PostingDate);
        return !m || !allowed.has(berlinDate(Number(m[1])));
      });
      const checks: Check[] = [
        { name: 'posting dates', ok: wrong.length === 0, seen: `${wrong.length} of ${docs.length} confirmations posted on another date than ${[...allowed].join('/')}${wrong.length ? ` (e.g. ${wrong[0].PostingDate} on ${wrong[0].OrderID})` : ''}` },
        { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time (a window waiting on the wall clock?)' },
      ];
      return { ledger, metrics: { phases: PHASES.length, phaseS: phaseMs / 1000, confirmations: docs.length, wrongPostingDates: wrong.length }, checks };
    } finally {
      await rig.stop();
    }
  },
};
