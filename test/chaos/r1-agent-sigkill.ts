import { killLoop } from './kill-loop.ts';
import { Rig, seeded } from './rig.ts';
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
    // kills come every 0.3-3.3 s: the publisher spreads the events over that time
    const rate = Math.round(events / (kills * 1.8));
    const rig = new Rig({ dir: ctx.dir });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const published = rig.publish(events, { perOrder: 400, ratePerS: rate });
      const k = await killLoop(rig, 'agent', kills, seeded(23_001), ctx, 'r1');
      await published;
      const drained = await rig.drained(ctx.short ? 120_000 : 600_000);
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { kills: k.kills, events: rig.produced.length, restartMaxS: k.restartMaxS, agentEarlyExits: k.earlyExits },
        checks: [
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
          { name: 'no crash loop', ok: k.earlyExits === 0, seen: `${k.earlyExits} agent exits not caused by the harness` },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
