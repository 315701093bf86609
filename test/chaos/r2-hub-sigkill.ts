import { Rig, seeded, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R2: the hub is SIGKILLed again and again while it posts to the ERP (simulator latency 150 ms, so the hub
 * always has calls in flight and kills land between "the ERP applied it" and "the hub recorded it"); it is restarted each time. Postings in
 * doubt are resolved by looking the key up in the ERP, never by re-posting blindly: no document twice.
 */

export const r2: Scenario = {
  id: 'r2',
  title: 'hub SIGKILL loop during posting',
  fault: 'hub SIGKILL',
  load: (short) => (short ? '10 kills, 3k events' : '50 kills, 20k events'),
  async run(ctx) {
    const kills = ctx.short ? 10 : 50;
    const events = ctx.short ? 3_000 : 20_000;
    const rnd = seeded(23_002);
    const rate = Math.round(events / (kills * 2.5));
    const rig = new Rig({ dir: ctx.dir, erpLatencyMs: 150 });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const published = rig.publish(events, { perOrder: 300, ratePerS: rate });
      let killed = 0;
      let earlyExits = 0;
      const restartMs: number[] = [];
      while (killed < kills) {
        const child = rig.hub!;
        const ended = await Promise.race([sleep(500 + rnd(3000)).then(() => undefined), child.exited]);
        if (ended) earlyExits++;
        await child.kill('SIGKILL');
        killed++;
        const t0 = Date.now();
        rig.startHub();
        if (killed % 5 === 0) continue;
        await rig.hubUp();
        restartMs.push(Date.now() - t0);
        if (killed % 10 === 0) ctx.progress(`r2: ${killed}/${kills} kills, ${rig.produced.length} events published`);
      }
      await published;
      await rig.hubUp();
      const drained = await rig.drained(ctx.short ? 120_000 : 600_000);
      const erpCalls = rig.sap.stats();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { kills: killed, events: rig.produced.length, restartMaxS: Math.max(...restartMs) / 1000, hubEarlyExits: earlyExits, erpPosts: erpCalls.posts, erpLookups: erpCalls.gets },
        checks: [
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
          { name: 'no crash loop', ok: earlyExits === 0, seen: `${earlyExits} hub exits not caused by the harness` },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
