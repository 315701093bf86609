import { killLoop } from './kill-loop.ts';
import { Rig, seeded } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R2: the hub is SIGKILLed again and again while it posts to the ERP (simulator latency 150 ms, so the hub
 * always has calls in flight and kills land between "the ERP applied it" and "the hub recorded it"); it is
 * restarted each time. Postings in doubt are resolved by looking the key up in the ERP, never by re-posting
 * blindly: no document twice.
 */

export const r2: Scenario = {
  id: 'r2',
  title: 'hub SIGKILL loop during posting',
  fault: 'hub SIGKILL',
  load: (short) => (short ? '10 kills, 3k events' : '50 kills, 20k events'),
  async run(ctx) {
    const kills = ctx.short ? 10 : 50;
    const events = ctx.short ? 3_000 : 20_000;
    const rate = Math.round(events / (kills * 2.5));
    const rig = new Rig({ dir: ctx.dir, erpLatencyMs: 150 });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const published = rig.publish(events, { perOrder: 300, ratePerS: rate });
      const k = await killLoop(rig, 'hub', kills, seeded(23_002), ctx, 'r2');
      await published;
      const drained = await rig.drained(ctx.short ? 120_000 : 600_000);
      const erpCalls = rig.sap.stats();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { kills: k.kills, events: rig.produced.length, restartMaxS: k.restartMaxS, hubEarlyExits: k.earlyExits, erpPosts: erpCalls.posts, erpLookups: erpCalls.gets },
        checks: [
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
          { name: 'no crash loop', ok: k.earlyExits === 0, seen: `${k.earlyExits} hub exits not caused by the harness` },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
