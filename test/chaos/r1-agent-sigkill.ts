import { Rig, seeded, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R1: the agent is SIGKILLed again and again while a machine cell publishes QoS 1 cycle events, at random
 * points (start-up included); it is restarted at once each time. The broker keeps what the agent did not
 * acknowledge; the outbox keeps what it did. Then everything drains and the ledger must balance.
 */

export const r1: Scenario = {
  id: 'r1',
  title: 'agent SIGKILL loop during MQTT ingest',
  fault: 'agent SIGKILL',
  load: (short) => (short ? '10 kills, 5k events' : '100 kills, 50k events'),
  async run(ctx) {
    const kills = ctx.short ? 10 : 100;
    const events = ctx.short ? 5_000 : 50_000;
    const rnd = seeded(23_001);
    // kills come every 0.3-3.3 s: the publisher spreads the events over that time
    const rate = Math.round(events / (kills * 1.8));
    const rig = new Rig({ dir: ctx.dir });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let publishing = true;
      const published = rig.publish(events, { perOrder: 400, ratePerS: rate }).finally(() => (publishing = false));
      let killed = 0;
      let earlyExits = 0;
      const restartMs: number[] = [];
      while (killed < kills) {
        const child = rig.agent!;
        const wait = 300 + rnd(3000);
        const ended = await Promise.race([sleep(wait).then(() => undefined), child.exited]);
        if (ended) earlyExits++;
        await child.kill('SIGKILL');
        killed++;
        const t0 = Date.now();
        rig.startAgent();
        // every 5th kill lands during start-up (open, integrity check, migrations, subscribe)
        if (killed % 5 === 0) continue;
        await rig.agentUp();
        restartMs.push(Date.now() - t0);
        if (killed % 10 === 0) ctx.progress(`r1: ${killed}/${kills} kills, ${rig.produced.length} events published${publishing ? '' : ' (done)'}`);
      }
      await published;
      await rig.agentUp();
      const drained = await rig.drained(ctx.short ? 120_000 : 600_000);
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { kills: killed, events: rig.produced.length, restartMaxS: Math.max(...restartMs) / 1000, agentEarlyExits: earlyExits },
        checks: [
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
          { name: 'no crash loop', ok: earlyExits === 0, seen: `${earlyExits} agent exits not caused by the harness` },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
