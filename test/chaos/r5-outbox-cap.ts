import { IngestWatch } from './ingest-watch.ts';
import { Rig, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R5: the outbox reaches its size cap (maxBytes 6 MiB) while the hub is unreachable and the cell keeps
 * publishing. Proves: the agent stops acknowledging within 1 s of reporting OUTBOX_FULL (the broker keeps
 * the rest), it never exits, and once the hub is back (delivered rows may go, so space returns) ingest
 * resumes within 10 s by itself; the ledger balances.
 */

export const r5: Scenario = {
  id: 'r5',
  title: 'outbox cap reached',
  fault: 'outbox maxBytes 6 MiB with the hub unreachable',
  load: (short) => (short ? '300 events/s, 30 s full' : '300 events/s, 5 min full'),
  async run(ctx) {
    const fullMs = ctx.short ? 30_000 : 300_000;
    const rig = new Rig({ dir: ctx.dir, proxyAgentToHub: true, agentOutbox: 'maxBytes: 6MiB, minFreeDiskBytes: 0' });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const watch = new IngestWatch(rig);
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 600, ratePerS: 300, shouldStop: () => stop });
      await sleep(3_000);
      rig.hubProxy!.setMode('blackhole');
      const tOut = Date.now();
      let tFull: number | undefined;
      while (!tFull && Date.now() - tOut < 600_000) {
        await sleep(500);
        tFull = watch.firstFull(tOut);
      }
      if (!tFull) throw new Error('the outbox never reported OUTBOX_FULL');
      ctx.progress(`r5: outbox full after ${Math.round((tFull - tOut) / 1000)} s of outage`);
      await sleep(fullMs);
      const acksAfter1s = watch.eventsAt(Date.now()) - watch.eventsAt(tFull + 1000);
      const alive = rig.agent!.proc.exitCode === null && rig.agent!.proc.signalCode === null;
      rig.hubProxy!.setMode('pass');
      const tBack = Date.now();
      await sleep(15_000);
      const tResume = watch.firstGrowthAfter(tBack);
      const resumeS = tResume ? (tResume - tBack) / 1000 : Number.POSITIVE_INFINITY;
      stop = true;
      await published;
      const drained = await rig.drained(240_000);
      await watch.stop();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { fullAfterS: Math.round((tFull - tOut) / 1000), acksAfterFullPlus1s: acksAfter1s, resumeS: Math.round(resumeS * 10) / 10 },
        checks: [
          { name: 'stops acknowledging < 1 s', ok: acksAfter1s === 0, seen: `${acksAfter1s} events committed later than 1 s after OUTBOX_FULL` },
          { name: 'never exits', ok: alive, seen: alive ? 'the agent ran throughout' : 'the agent exited' },
          { name: 'resumes <= 10 s', ok: resumeS <= 10, seen: `ingest resumed ${resumeS} s after the hub came back` },
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
